//! Vouching: when this device learns that a device was removed, it says in the log which of
//! that device's changes it holds (`OpBody::Vouch`).
//!
//! A device that knows of a removal takes no change from the removed device except those a
//! current device vouched for (`FamilyState::change_scope`). The changes this device took in
//! before it learned of the removal — the ones made before it, and any made after and passed
//! on by a device that had not heard yet — are vouched for, so every device decides from the
//! log alone and devices that were apart converge. What a vouched change of a removed device
//! can do is still bounded: its trash does not count ([`crate::index`]) and the entries it
//! removed are kept restorable ([`crate::keep`]).

use kith_protocol::keys::{DeviceId, DocId};
use kith_protocol::library::{DecodedChange, PhotoEntry};
use kith_protocol::membership::OpBody;
use kith_protocol::seal::{ChangeId, SealedChange};

use crate::doc_keys::OpChain;
use crate::error::{Error, Result};
use crate::library::{Library, State, open_sealed};
use crate::store::WriteBatch;

/// Change ids per `Vouch` op: 32 bytes each keeps an op far below the log's 64 KiB limit.
const IDS_PER_VOUCH: usize = 1024;

impl Library {
    /// Signs `Vouch` ops for the stored changes of revoked devices the log does not vouch for
    /// yet, and commits them. Called whenever the log changes.
    pub(crate) fn vouch_for_revoked(&self, state: &mut State) -> Result<()> {
        let due: Vec<(DeviceId, Vec<ChangeId>)> = state
            .changes_by_author
            .iter()
            .filter(|(device, _)| state.family.is_revoked(device))
            .map(|(device, ids)| {
                let open: Vec<ChangeId> = ids
                    .iter()
                    .filter(|id| !state.family.vouched.contains(id))
                    .copied()
                    .collect();
                (*device, open)
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        if due.is_empty() || state.current_role(&self.device_id()).is_none() {
            return Ok(());
        }
        self.keep_what_they_removed(state, &due);
        let mut chain = OpChain::new(state);
        for (device, ids) in &due {
            for chunk in ids.chunks(IDS_PER_VOUCH) {
                chain.push(
                    &self.device,
                    OpBody::Vouch {
                        device: *device,
                        changes: chunk.to_vec(),
                    },
                )?;
            }
            tracing::info!(%device, changes = ids.len(), "vouched for the changes of a removed device taken in before its removal was known here");
        }
        if chain.fresh.is_empty() {
            return Ok(());
        }
        self.persist(WriteBatch {
            ops: chain.fresh,
            ..WriteBatch::default()
        })?;
        state.ops = chain.ops;
        state.family = chain.family;
        // The caller re-indexes once the log settled (a removed device's trash no longer counts).
        Ok(())
    }
}

impl Library {
    /// Keeps restorable every entry that `due` changes of removed devices removed or replaced
    /// here, taken in before this device knew of their removal (a purge passed on by a
    /// device that had not heard either). Their blobs, deleted here since, are fetched again
    /// from devices that never took the purge. Runs once per learned removal, over that
    /// device's changes only.
    fn keep_what_they_removed(&self, state: &mut State, due: &[(DeviceId, Vec<ChangeId>)]) {
        let mut removed: Vec<(PhotoEntry, DocId, DeviceId)> = Vec::new();
        for (device, ids) in due {
            let held: Vec<(DocId, Vec<ChangeId>)> = state
                .change_ids
                .iter()
                .map(|(doc, held)| {
                    let here = ids.iter().filter(|id| held.contains(id)).copied();
                    (*doc, here.collect::<Vec<_>>())
                })
                .filter(|(_, here)| !here.is_empty())
                .collect();
            for (doc, here) in held {
                match self.removed_by_changes(state, &doc, &here) {
                    Ok(entries) => removed.extend(entries.into_iter().map(|e| (e, doc, *device))),
                    Err(e) => {
                        tracing::warn!(%doc, %device, "cannot read what a removed device's changes removed: {e}");
                    }
                }
            }
        }
        for (entry, doc, device) in removed {
            if state.photos.get(&entry.id) == Some(&entry) {
                continue;
            }
            state.removed_by.insert(entry.id, device);
            state.keep(entry, Some(doc));
        }
        self.save_kept(state);
    }

    /// The entries the stored changes `ids` of `doc` removed or replaced, as they were.
    fn removed_by_changes(
        &self,
        state: &mut State,
        doc: &DocId,
        ids: &[ChangeId],
    ) -> Result<Vec<PhotoEntry>> {
        let mut out = Vec::new();
        let Some(open) = state.docs.get_mut(doc) else {
            return Ok(out);
        };
        for bytes in self.store.changes_by_id(doc, ids)? {
            let sealed =
                SealedChange::from_bytes(bytes).map_err(|e| Error::Corrupt(e.to_string()))?;
            // Without the key of its epoch this device never applied it: nothing to undo.
            let Some(key) = open.record.key_for(sealed.header().epoch) else {
                continue;
            };
            let plain = open_sealed(&state.family, doc, key, &sealed).map_err(Error::Corrupt)?;
            let change = DecodedChange::decode(plain).map_err(|e| Error::Corrupt(e.to_string()))?;
            out.extend(
                open.doc
                    .removed_by_change(&change)
                    .map_err(|e| Error::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }
}

impl State {
    /// Notes received changes by their author, for [`Library::vouch_for_revoked`].
    pub(crate) fn note_authors(&mut self, changes: impl IntoIterator<Item = (DeviceId, ChangeId)>) {
        for (author, id) in changes {
            if author != self.me {
                self.changes_by_author.entry(author).or_default().insert(id);
            }
        }
    }
}
