//! When documents are snapshotted (`store::snapshots`), so that opening a library replays
//! few changes while the cost of writing snapshots follows the changes, not the library:
//!
//! - while the library is open, a document is snapshotted once the changes it holds beyond
//!   its snapshot are as many as those in it (and at least [`GROWING_MIN`]): each snapshot
//!   costs about the document's size, and the changes since pay for it, so that writing
//!   them stays proportional to the changes made (a node killed mid-way replays at most half
//!   of a document's changes on its next start);
//! - when the library closes, every document with more than an eighth of its changes beyond
//!   its snapshot (or [`CLOSING_MIN`] of them) is snapshotted, so a clean restart replays
//!   little.
//!
//! The changes a document holds are those stored minus those waiting for a key
//! (`State::unopened`). A document with edits not committed, or with changes automerge
//! queues for a missing dependency, is not snapshotted: those are not in its history.

use kith_protocol::keys::DocId;
use kith_protocol::seal::ChangeId;

use super::{Library, OpenDoc, State};
use crate::store::{Readout, Snapshot, key_fingerprints};

/// While open: no snapshot before this many changes beyond the last one.
const GROWING_MIN: usize = 64;
/// When closing: this many changes beyond the last snapshot are always worth one.
const CLOSING_MIN: usize = 16;

/// Which documents are due a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// After a commit: those whose changes since their snapshot doubled it.
    Growing,
    /// When closing: those a restart would replay more than a little of.
    Closing,
}

impl State {
    /// The stored changes `doc`'s open document holds.
    fn held_changes(&self, doc: &DocId) -> Vec<ChangeId> {
        let waiting = self.unopened.get(doc);
        (self.change_ids.get(doc).into_iter().flatten())
            .filter(|id| !waiting.is_some_and(|w| w.contains(id)))
            .copied()
            .collect()
    }

    fn snapshot_due(&self, doc: &DocId, due: Due) -> bool {
        if self.memory_ahead.contains(doc) {
            return false;
        }
        let held = (self.change_ids.get(doc).map_or(0, |ids| ids.len()))
            .saturating_sub(self.unopened.get(doc).map_or(0, |ids| ids.len()));
        let last = self.snapshotted.get(doc).copied().unwrap_or(0);
        // Fewer than the snapshot holds: changes went (a history started over), and the
        // snapshot will not be used.
        let since = if held >= last { held - last } else { held };
        match due {
            Due::Growing => since >= GROWING_MIN.max(last),
            Due::Closing => since > 0 && (since >= CLOSING_MIN || since * 8 >= last),
        }
    }
}

impl Library {
    /// Writes the snapshots due (see the module). A failure is logged: snapshots only save
    /// time, the stored changes hold everything.
    pub(crate) fn save_snapshots(&self, state: &mut State, due: Due) {
        let ids: Vec<DocId> = (state.docs.keys())
            .filter(|doc| state.snapshot_due(doc, due))
            .copied()
            .collect();
        let mut snapshots = Vec::new();
        for doc in ids {
            let changes = state.held_changes(&doc);
            // One not loaded since the library opened is what its snapshot holds.
            let Some((record, Some(loaded))) = state.docs.get_mut(&doc).map(OpenDoc::split_mut)
            else {
                continue;
            };
            if let Some(bytes) = loaded.snapshot() {
                // Read as the index reads it; one that does not read is read again at open.
                let readout = (loaded.kind().is_some())
                    .then(|| loaded.photos().ok())
                    .flatten()
                    .map(|entries| Readout {
                        album: loaded.album().ok(),
                        entries,
                    });
                let snapshot = Snapshot {
                    changes,
                    doc: bytes,
                    readout,
                    keys: key_fingerprints(record),
                };
                snapshots.push((doc, snapshot));
            }
        }
        if snapshots.is_empty() {
            return;
        }
        match self.store.put_snapshots(&snapshots) {
            Ok(()) => {
                for (doc, snapshot) in snapshots {
                    state.snapshotted.insert(doc, snapshot.changes.len());
                }
            }
            Err(e) => tracing::warn!("document snapshots not written: {e}"),
        }
    }
}
