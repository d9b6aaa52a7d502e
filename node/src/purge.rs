//! The end of the trash: purging photos (30 days after they were trashed, or now with
//! `kith trash empty`), and deleting the blobs of purged photos on every device.
//!
//! **Purge.** A purge removes the photo's entry from every document this device holds it in (its
//! library shard and each album's copy), sealed and committed in one durable transaction like
//! any edit, so it reaches the other devices as ordinary document changes.
//!
//! **Which blobs are deleted.** Only blobs of entries that left the index: purged here, or
//! removed by a change from another device (`State::reindex_docs` notes them in
//! `State::dropped_blobs`), and of those only the ones that no entry of any open document
//! (library shard or album) still references, read out of the documents under the state lock
//! right before their tags go. Never a sweep of everything unreferenced: an import stores its
//! blobs before the change that references them is committed. Those blobs are tagged and can
//! never be a purged photo's (every import encrypts under a fresh random file key), so
//! releasing a purged photo's blobs cannot touch them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kith_protocol::keys::{DocId, PhotoId};
use rayon::prelude::*;

use crate::edit::TRASH_RETENTION_MS;
use crate::error::{Error, Result};
use crate::library::{Library, State, now_ms};
use crate::store::WriteBatch;
use crate::views::PhotoView;

/// How often the running node looks for photos whose 30 days in the trash are over.
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);
/// How long `kith trash empty` waits for the blob store to delete what it released.
const DELETE_DEADLINE: Duration = Duration::from_secs(30);

/// The photos whose time in the trash is over at `now_ms`: trashed more than
/// [`TRASH_RETENTION_MS`] before it. Sorted, so a purge is the same whatever the index order.
pub fn expired(
    trashed: impl IntoIterator<Item = (PhotoId, Option<u64>)>,
    now_ms: u64,
) -> Vec<PhotoId> {
    let mut ids: Vec<PhotoId> = trashed
        .into_iter()
        .filter(|(_, at)| at.is_some_and(|t| now_ms > t.saturating_add(TRASH_RETENTION_MS)))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

impl Library {
    /// Purges every photo trashed more than 30 days before `now_ms`, on every device, and
    /// deletes their blobs here. Returns the purged photos as they were.
    pub async fn purge_expired(&self, now_ms: u64) -> Result<Vec<PhotoView>> {
        let mut state = self.state.lock().await;
        self.expire_kept(&mut state, now_ms)?;
        let ids = expired(
            state.photos.values().map(|e| (e.id, e.trashed_at_ms)),
            now_ms,
        );
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let purged = self.purge_locked(&mut state, &ids)?;
        tracing::info!(
            photos = purged.len(),
            "purged photos 30 days after the trash"
        );
        if let Err(e) = self.collect_garbage_locked(&mut state).await {
            tracing::warn!("purged, but the blobs were not deleted yet: {e}");
        }
        Ok(purged)
    }

    /// `kith trash empty`: purges the named photos now, or every photo in the trash when none
    /// is named. Refuses, changing nothing, if a named photo is not in the trash. Returns the
    /// purged photos as they were, once their blobs are deleted here.
    pub async fn empty_trash(&self, photos: &[String]) -> Result<Vec<PhotoView>> {
        let mut state = self.state.lock().await;
        let ids = if photos.is_empty() {
            let mut all: Vec<PhotoId> = state
                .photos
                .values()
                .filter(|e| e.trashed_at_ms.is_some())
                .map(|e| e.id)
                .collect();
            all.sort();
            all
        } else {
            let ids = state.resolve_photos(photos)?;
            state.require_trashed(&ids)?;
            ids
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let purged = self.purge_locked(&mut state, &ids)?;
        let released = self.collect_garbage_locked(&mut state).await;
        drop(state);
        match released {
            // Without a running node the process ends right after: wait for the deletion.
            Ok(released) => {
                if !self.blobs.wait_deleted(&released, DELETE_DEADLINE).await {
                    tracing::warn!(
                        "the blob store has not deleted the purged photos' blobs yet; \
                         the next garbage collection will"
                    );
                }
            }
            // The purge is committed; the blobs go with a later collection.
            Err(e) => tracing::warn!("purged, but the blobs were not deleted yet: {e}"),
        }
        Ok(purged)
    }

    /// Deletes the blobs of photo entries that left the index since the last collection, if
    /// nothing references them any more. The running node calls it whenever changes were
    /// committed, so a purge received from another device frees the space here too.
    pub async fn collect_garbage(&self) -> Result<usize> {
        let mut state = self.state.lock().await;
        Ok(self.collect_garbage_locked(&mut state).await?.len())
    }

    /// The hashes of every blob this device's store holds: what a purge must have deleted is
    /// seen here, the thumbnails the store keeps inside its database among them.
    pub async fn stored_blobs(&self) -> Result<HashSet<[u8; 32]>> {
        self.blobs.hashes().await
    }

    /// Removes `ids` from every document that holds them, in one durable commit.
    fn purge_locked(&self, state: &mut State, ids: &[PhotoId]) -> Result<Vec<PhotoView>> {
        let purged = ids
            .iter()
            .map(|id| state.view_of(id))
            .collect::<Result<Vec<_>>>()?;
        let mut touched: Vec<DocId> = Vec::new();
        for id in ids {
            // A document this device may only view is left to those who may write it.
            let writable: Vec<DocId> = state
                .docs_holding(id)
                .into_iter()
                .filter(|doc| state.family.may_write(doc, &state.me))
                .collect();
            for doc in writable {
                let removed = match state.doc_mut(&doc)?.remove_photo(id) {
                    Ok(removed) => removed,
                    Err(e) => {
                        // Removals already made in memory must not ride along a later commit.
                        *state = self.reload_state()?;
                        return Err(Error::Corrupt(e.to_string()));
                    }
                };
                if removed && !touched.contains(&doc) {
                    touched.push(doc);
                }
            }
        }
        // Purged from the trash by this device, allowed to: their blobs may go.
        state.purge_ok.extend(ids.iter().copied());
        let committed = self.commit_docs(state, &touched, Vec::new());
        state.purge_ok.clear();
        committed?;
        Ok(purged)
    }

    /// Releases the noted blobs that no open document references; returns them. The state
    /// lock is held until their tags are gone, so no change of this device can reference them
    /// again in between.
    async fn collect_garbage_locked(&self, state: &mut State) -> Result<HashSet<[u8; 32]>> {
        if state.dropped_blobs.is_empty() {
            return Ok(HashSet::new());
        }
        let noted = std::mem::take(&mut state.dropped_blobs);
        // A document that does not read stays so until it is repaired; trying again after
        // every commit would re-read the whole library each time. Its blobs are kept instead.
        let referenced = referenced_blobs(state)?;
        let doomed: HashSet<[u8; 32]> = noted.difference(&referenced).copied().collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        if let Err(e) = self.release_blobs(state, &doomed, referenced).await {
            // Kept for the next collection: a blob is only ever deleted late, never early.
            state.dropped_blobs.extend(noted);
            return Err(e);
        }
        tracing::info!(blobs = doomed.len(), "released the blobs of purged photos");
        Ok(doomed)
    }

    async fn release_blobs(
        &self,
        state: &mut State,
        doomed: &HashSet<[u8; 32]>,
        referenced: HashSet<[u8; 32]>,
    ) -> Result<()> {
        // A set-aside original of a purged photo is not to be fetched back any more.
        let forgotten: Vec<[u8; 32]> = doomed
            .iter()
            .filter(|h| state.set_aside.contains(*h))
            .copied()
            .collect();
        if !forgotten.is_empty() {
            self.persist(WriteBatch {
                brought_back: forgotten.clone(),
                ..WriteBatch::default()
            })?;
            for hash in &forgotten {
                state.set_aside.remove(hash);
            }
        }
        // What `kith free-space` keeps: every referenced blob but the set-aside originals, so a
        // release of theirs that has not run yet still frees their space.
        let keep = referenced
            .into_iter()
            .filter(|h| !state.set_aside.contains(h))
            .collect();
        self.blobs.release(doomed, keep).await
    }
}

/// Every blob an entry of an open document references, read from the documents themselves
/// (the index keeps one entry per photo id, and only ids for albums). A document that does not
/// read stops the collection: what it references is unknown.
fn referenced_blobs(state: &State) -> Result<HashSet<[u8; 32]>> {
    let docs: Vec<(&DocId, &crate::library::OpenDoc)> = state.docs.iter().collect();
    let read: Vec<std::result::Result<Vec<[u8; 32]>, String>> = docs
        .par_iter()
        .map(|(id, open)| {
            open.read(&state.me, |doc| {
                doc.photos().map(|entries| {
                    entries
                        .iter()
                        .flat_map(|e| e.blobs())
                        .map(|b| b.hash)
                        .collect::<Vec<_>>()
                })
            })
            .and_then(|read| read.map_err(|e| e.to_string()))
            .map_err(|e| {
                format!("document {id} does not read ({e}); the purged photos' blobs are kept")
            })
        })
        .collect();
    // Kept entries keep their blobs until they expire (see `crate::keep`).
    let mut referenced: HashSet<[u8; 32]> = state.kept_blobs().collect();
    for hashes in read {
        referenced.extend(hashes.map_err(Error::Corrupt)?);
    }
    Ok(referenced)
}

impl State {
    /// Notes the blobs of index entries that a re-read dropped and no document brought back.
    pub(crate) fn note_dropped(&mut self, old: Vec<kith_protocol::library::PhotoEntry>) {
        for entry in old {
            if !self.photos.contains_key(&entry.id) {
                self.dropped_blobs
                    .extend(entry.blobs().iter().map(|b| b.hash));
            }
        }
    }
}

/// The running node's purge: at start and then hourly, photos whose 30 days in the trash are
/// over are purged; after every commit (a purge received from another device among them),
/// blobs nothing references any more are deleted.
pub fn spawn(library: Arc<Library>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut updates = library.subscribe();
        let mut hourly = tokio::time::interval(PURGE_EVERY);
        hourly.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = hourly.tick() => {
                    if let Err(e) = library.purge_expired(now_ms()).await {
                        tracing::warn!("purging the trash failed: {e}");
                    }
                }
                update = updates.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = update {
                        return;
                    }
                    // Lagged behind is a reason to look too: commits happened.
                    if let Err(e) = library.collect_garbage().await {
                        tracing::warn!("deleting the blobs of purged photos failed: {e}");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn id(n: u8) -> PhotoId {
        PhotoId([n; 32])
    }

    #[test]
    fn a_photo_expires_only_after_thirty_days_in_the_trash() {
        let trashed_at = 1_700_000_000_000;
        let trash = [(id(1), Some(trashed_at))];
        for (now, expected) in [
            (trashed_at, Vec::new()),
            (trashed_at + 29 * DAY_MS, Vec::new()),
            (trashed_at + TRASH_RETENTION_MS, Vec::new()),
            (trashed_at + TRASH_RETENTION_MS + 1, vec![id(1)]),
            (trashed_at + 365 * DAY_MS, vec![id(1)]),
        ] {
            assert_eq!(expired(trash, now), expected, "now = {now}");
        }
    }

    #[test]
    fn photos_not_in_the_trash_or_trashed_later_are_kept() {
        let now = 1_700_000_000_000 + 40 * DAY_MS;
        let trash = [
            (id(3), Some(now - 31 * DAY_MS)),
            // Not in the trash (never trashed, or restored).
            (id(4), None),
            (id(1), Some(now - 40 * DAY_MS)),
            (id(5), Some(now - 2 * DAY_MS)),
            // Trashed "in the future" by a device whose clock runs ahead.
            (id(6), Some(now + DAY_MS)),
            // A time near the end of the range does not wrap around.
            (id(7), Some(u64::MAX - 1)),
        ];
        assert_eq!(expired(trash, now), vec![id(1), id(3)]);
        assert_eq!(expired(trash, 0), Vec::<PhotoId>::new());
    }
}
