//! The keep: photo entries that left this device's documents other than by a purge of the
//! trash, kept restorable with their blobs for 30 days.
//!
//! A photo's blobs are deleted only when a current device of someone allowed to delete it
//! purged it from the trash (`State::purge_ok`, filled by this device's own purge and by a
//! received change that [`crate::replica`] found to be such a purge). Any other way an entry
//! disappears or has its renditions or file key replaced — a change deleting map keys, a
//! removed device's purge taken in through a device that had not heard of the removal — puts
//! the entry as it was here. `kith trash list` shows kept photos, `kith trash restore` brings
//! them back, `kith status` counts them, and after 30 days their blobs go like a purge's.

use std::collections::BTreeSet;

use kith_protocol::keys::{DeviceId, DocId, PhotoId};
use kith_protocol::library::PhotoEntry;
use kith_protocol::membership::Role;

use crate::edit::TRASH_RETENTION_MS;
use crate::error::{Error, Result};
use crate::library::{Library, State, now_ms};
use crate::people::find_removed_device;
use crate::store::{Kept, WriteBatch};
use crate::views::UndoView;

impl State {
    /// Keeps `entry` restorable (see the module docs); `doc` is the library shard it left.
    pub(crate) fn keep(&mut self, entry: PhotoEntry, doc: Option<DocId>) {
        if self.kept.contains_key(&entry.id) {
            return;
        }
        let kept = Kept {
            removed_by: self.removed_by.get(&entry.id).copied(),
            entry,
            doc,
            kept_at_ms: now_ms(),
        };
        tracing::warn!(photo = %kept.entry.id, by = ?kept.removed_by, "a photo left the library other than by the trash; kept restorable for 30 days");
        self.kept_unsaved.push(kept.entry.id);
        self.kept.insert(kept.entry.id, kept);
    }

    /// The kept photos that `device`'s changes removed, not back in the library since.
    pub(crate) fn kept_from_device(&self, device: &DeviceId) -> Vec<PhotoId> {
        self.kept
            .values()
            .filter(|k| k.removed_by == Some(*device) && !self.photos.contains_key(&k.entry.id))
            .map(|k| k.entry.id)
            .collect()
    }

    /// Blobs of kept entries: never collected while kept.
    pub(crate) fn kept_blobs(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.kept
            .values()
            .flat_map(|k| k.entry.blobs().map(|b| b.hash))
    }
}

impl Library {
    /// Writes the entries kept since the last call. Called right after the commit that made
    /// them kept; if this device stops in between, their blobs are never collected (nothing is
    /// lost), only the record that lists them.
    pub(crate) fn save_kept(&self, state: &mut State) {
        if state.kept_unsaved.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut state.kept_unsaved);
        let kept: Vec<Kept> = ids
            .iter()
            .filter_map(|id| state.kept.get(id).cloned())
            .collect();
        if let Err(e) = self.store.commit(&WriteBatch {
            kept,
            ..WriteBatch::default()
        }) {
            tracing::error!("kept photo entries are not recorded yet: {e}");
            state.kept_unsaved = ids;
        }
    }

    /// Forgets kept entries older than 30 days and hands their blobs to the collection.
    pub(crate) fn expire_kept(&self, state: &mut State, now_ms: u64) -> Result<()> {
        let expired: Vec<PhotoId> = state
            .kept
            .values()
            .filter(|k| now_ms > k.kept_at_ms.saturating_add(TRASH_RETENTION_MS))
            .map(|k| k.entry.id)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        self.store.commit(&WriteBatch {
            unkept: expired.clone(),
            ..WriteBatch::default()
        })?;
        let entries: Vec<PhotoEntry> = expired
            .iter()
            .filter_map(|id| state.kept.remove(id))
            .map(|k| k.entry)
            .collect();
        state.note_dropped(entries);
        Ok(())
    }

    /// Undoes what a removed device's changes did to the library: every entry they removed or
    /// replaced that is kept here goes back into its shard, in one commit (one change per
    /// document touched). Its trash needs no undo: it never counted. Admins only.
    pub async fn undo_removed_device(&self, which: &str) -> Result<UndoView> {
        let mut state = self.state.lock().await;
        if state.current_role(&self.device_id()) != Some(Role::Admin) {
            return Err(Error::NotAllowed(
                "only an admin can undo what a removed device did".into(),
            ));
        }
        let device = find_removed_device(&state.family, which)?;
        let ids = state.kept_from_device(&device);
        let restored = self.restore_kept_locked(&mut state, &ids)?;
        Ok(UndoView {
            device: device.to_string(),
            restored,
        })
    }

    /// Puts kept photos back in the library shards they left, out of the trash, in one commit.
    /// Returns how many came back.
    pub(crate) fn restore_kept_locked(&self, state: &mut State, ids: &[PhotoId]) -> Result<usize> {
        let mut touched: BTreeSet<DocId> = BTreeSet::new();
        let mut back = Vec::new();
        for id in ids {
            let Some(kept) = state.kept.get(id).cloned() else {
                continue;
            };
            let doc = kept
                .doc
                .filter(|d| state.docs.contains_key(d))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "photo {id} was kept from a library this device does not hold; \
                         restore it on a device of its owner"
                    ))
                })?;
            state.require_writable(&doc)?;
            let mut entry = kept.entry;
            entry.trashed_at_ms = None;
            entry.trashed_by = None;
            let open = state.doc_mut(&doc)?;
            if let Err(e) = open.put_photos([&entry]) {
                *state = self.reload_state()?;
                return Err(Error::Corrupt(e.to_string()));
            }
            touched.insert(doc);
            back.push(*id);
        }
        if back.is_empty() {
            return Ok(0);
        }
        let touched: Vec<DocId> = touched.into_iter().collect();
        self.commit_docs(state, &touched, Vec::new())?;
        self.store.commit(&WriteBatch {
            unkept: back.clone(),
            ..WriteBatch::default()
        })?;
        for id in &back {
            state.kept.remove(id);
        }
        Ok(back.len())
    }
}
