//! Bringing a library that a device built alone into the family it joins.
//!
//! Photo ids are keyed with the family secret, so every photo gets its new family's id (from
//! its decrypted original, in memory). The encrypted renditions are not re-encrypted: each
//! photo keeps its own random file key, which travels in its entry, so the ciphertext blobs are
//! copied as they are. Albums are re-created with their titles and nesting and hold the same
//! photos. The old library is only read.

use std::collections::{BTreeMap, HashMap};

use kith_protocol::blob::{self, Rendition};
use kith_protocol::keys::{DocId, PhotoId};
use kith_protocol::library::{AlbumMeta, PhotoEntry};

use crate::error::{Error, Result};
use crate::library::Library;
use crate::views::KeptLibraryView;

/// Photos carried over per committed batch (one change per library shard touched).
const BATCH: usize = 200;

impl Library {
    /// Copies every photo and album of `old` (another family's library, this device's own)
    /// into this library. Photos whose original cannot be read are reported and left behind
    /// (they stay in `old`).
    pub(crate) async fn take_in(&self, old: &Library) -> Result<KeptLibraryView> {
        let (photos, albums) = {
            let state = old.state.lock().await;
            let photos: Vec<PhotoEntry> = state.photos.values().cloned().collect();
            let albums: Vec<(DocId, AlbumMeta, Vec<PhotoId>)> = state
                .albums
                .iter()
                .map(|(id, (meta, set))| (*id, meta.clone(), set.iter().copied().collect()))
                .collect();
            (photos, albums)
        };
        let secret = {
            let state = self.state.lock().await;
            self.family_secret(&state)
        };
        let me = self.device_id();
        let mut kept = KeptLibraryView::default();
        let mut new_id: HashMap<PhotoId, PhotoId> = HashMap::new();

        for batch in photos.chunks(BATCH) {
            let mut entries = Vec::with_capacity(batch.len());
            let mut copied = Vec::new();
            for entry in batch {
                match self.copy_photo(old, entry, &secret).await {
                    Ok((id, blobs)) => {
                        new_id.insert(entry.id, id);
                        copied.extend(blobs);
                        entries.push(PhotoEntry {
                            id,
                            added_by: me,
                            ..entry.clone()
                        });
                    }
                    Err(e) => {
                        tracing::warn!(photo = %entry.id, "not carried over: {e}");
                        kept.skipped
                            .push(format!("{} ({}): {e}", entry.file_name, entry.id));
                    }
                }
            }
            // The blobs must be durable before the change that references them.
            self.blobs.flush_files(&copied)?;
            self.blobs.sync().await?;
            let mut state = self.state.lock().await;
            let (fresh, present): (Vec<PhotoEntry>, Vec<PhotoEntry>) = entries
                .into_iter()
                .partition(|e| !state.photos.contains_key(&e.id));
            kept.already_there += present.len();
            kept.photos += fresh.len();
            if !fresh.is_empty() {
                self.commit_entries(&mut state, fresh.iter(), None, &[])?;
            }
        }

        // Parents before children: an album waits while its parent is still to be created.
        let mut album_id: BTreeMap<DocId, DocId> = BTreeMap::new();
        let mut pending = albums;
        while !pending.is_empty() {
            let waiting: Vec<DocId> = pending.iter().map(|(id, _, _)| *id).collect();
            let (mut ready, later): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(_, meta, _)| meta.parent.is_none_or(|p| !waiting.contains(&p)));
            pending = later;
            if ready.is_empty() {
                // A cycle of parents (a damaged library): the rest become top-level albums.
                ready = std::mem::take(&mut pending);
                for (_, meta, _) in &mut ready {
                    meta.parent = None;
                }
            }
            for (old_id, meta, members) in ready {
                let parent = meta.parent.and_then(|p| album_id.get(&p).copied());
                let ids: Vec<PhotoId> = members
                    .iter()
                    .filter_map(|p| new_id.get(p).copied())
                    .collect();
                let mut state = self.state.lock().await;
                let id = self.create_album_under(&mut state, &meta.title, parent)?;
                self.add_to_album_locked(&mut state, &id, &ids)?;
                album_id.insert(old_id, id);
                kept.albums += 1;
            }
        }
        Ok(kept)
    }

    /// Copies one photo's three encrypted renditions; returns its id in this family.
    async fn copy_photo(
        &self,
        old: &Library,
        entry: &PhotoEntry,
        secret: &kith_protocol::keys::FamilySecret,
    ) -> Result<(PhotoId, Vec<kith_protocol::library::BlobRef>)> {
        let original = old.blobs.get(&entry.original).await?;
        let plain = blob::decrypt_blob(&entry.file_key, Rendition::Original, &original)
            .map_err(|e| Error::Corrupt(format!("its original does not decrypt: {e}")))?;
        let id = secret.photo_id(&plain);
        drop(plain);
        let mut refs = Vec::with_capacity(3);
        for (blob, bytes) in [
            (entry.thumbnail, None),
            (entry.preview, None),
            (entry.original, Some(original)),
        ] {
            let bytes = match bytes {
                Some(b) => b,
                None => old.blobs.get(&blob).await?,
            };
            let stored = self.blobs.put(bytes).await?;
            if stored.hash != blob.hash {
                return Err(Error::Corrupt("a rendition changed while copied".into()));
            }
            refs.push(stored);
        }
        Ok((id, refs))
    }
}
