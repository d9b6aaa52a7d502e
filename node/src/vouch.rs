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
use crate::error::Result;
use crate::library::{Library, OpenDoc, State, open_sealed};

/// Change ids per `Vouch` op: 32 bytes each keeps an op far below the log's 64 KiB limit.
const IDS_PER_VOUCH: usize = 1024;

impl Library {
    /// Called when this device learns that `newly_revoked` were removed: keeps restorable what
    /// their changes removed here (see [`Library::keep_what_they_removed`]), then signs `Vouch`
    /// ops for the stored changes of revoked devices the log does not vouch for yet, and
    /// commits them.
    pub(crate) fn vouch_for_revoked(
        &self,
        state: &mut State,
        newly_revoked: &[DeviceId],
    ) -> Result<()> {
        self.keep_what_they_removed(state, newly_revoked);
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
        chain.commit_alone(self, state)?;
        // The caller re-indexes once the log settled (a removed device's trash no longer counts).
        Ok(())
    }

    /// Keeps restorable every entry that the changes of `devices` (just learned removed)
    /// removed or replaced here, whether this device or another vouches for them: a purge
    /// passed on by a device that had not heard of the removal. Their blobs, deleted here
    /// since, are fetched again from devices that never took the purge. Runs once per learned
    /// removal, over those devices' changes only; a change that cannot be read is skipped and
    /// logged, so one bad change never keeps the others from being read.
    fn keep_what_they_removed(&self, state: &mut State, devices: &[DeviceId]) {
        let mut removed: Vec<(PhotoEntry, DocId, DeviceId)> = Vec::new();
        for device in devices {
            let Some(ids) = state.changes_by_author.get(device) else {
                continue;
            };
            let held: Vec<(DocId, Vec<ChangeId>)> = state
                .change_ids
                .iter()
                .map(|(doc, held)| {
                    let unopened = state.unopened.get(doc);
                    let here = ids
                        .iter()
                        .filter(|id| held.contains(id) && !unopened.is_some_and(|u| u.contains(id)))
                        .copied();
                    (*doc, here.collect::<Vec<_>>())
                })
                .filter(|(_, here)| !here.is_empty())
                .collect();
            for (doc, here) in held {
                let entries = self.removed_by_changes(state, &doc, &here);
                removed.extend(entries.into_iter().map(|e| (e, doc, *device)));
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

    /// The entries the stored changes `ids` of `doc` removed or replaced, as they were. Changes
    /// this device never applied (no key, or built on changes it lacks) removed nothing here.
    fn removed_by_changes(
        &self,
        state: &mut State,
        doc: &DocId,
        ids: &[ChangeId],
    ) -> Vec<PhotoEntry> {
        let mut out = Vec::new();
        let stored = match self.store.changes_by_id(doc, ids) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(%doc, "cannot read a removed device's changes: {e}");
                return out;
            }
        };
        state.load_docs([doc]);
        let family = &state.family;
        let Some((record, Some(loaded))) = state.docs.get_mut(doc).map(OpenDoc::split_mut) else {
            return out;
        };
        for bytes in stored {
            let read = SealedChange::from_bytes(bytes)
                .map_err(|e| e.to_string())
                .and_then(|sealed| {
                    let Some(key) = record.key_for(sealed.header().epoch) else {
                        return Ok(None);
                    };
                    let plain = open_sealed(family, doc, key, &sealed)?;
                    let change = DecodedChange::decode(plain).map_err(|e| e.to_string())?;
                    if !loaded.has_deps_of(&change) {
                        return Ok(None);
                    }
                    loaded
                        .removed_by_change(&change)
                        .map(Some)
                        .map_err(|e| e.to_string())
                });
            match read {
                Ok(entries) => out.extend(entries.into_iter().flatten()),
                Err(e) => {
                    tracing::warn!(%doc, "cannot read what a removed device's change removed: {e}");
                }
            }
        }
        out
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
