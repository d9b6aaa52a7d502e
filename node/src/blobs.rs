//! The encrypted blob store: iroh-blobs' file store holding ciphertext only.
//!
//! Every blob the store keeps is kept by one tag, named `kith/<hash>` from the blob's hash
//! alone ([`tag_name`]). iroh-blobs' own automatic tags are named by the time they were made,
//! to the millisecond, which would tell when each blob arrived and, by their neighbouring
//! times, which three renditions are one photo; kith never makes them, and renames those an
//! older kith left ([`Blobs::open`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use iroh_blobs::Hash;
use iroh_blobs::api::proto::BlobStatus;
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::fs::options::Options;
use iroh_blobs::store::{GcConfig, ProtectOutcome};
use kith_protocol::library::BlobRef;

use crate::error::{Error, Result};

pub struct Blobs {
    store: FsStore,
    /// Where the store keeps blobs too large to inline in its database.
    data_dir: PathBuf,
    /// Armed with the blobs to keep when something should be deleted; see [`Blobs::release`].
    sweep: SweepGate,
    /// Blobs released for deletion since the fetcher last looked ([`Blobs::take_released`]).
    released: Released,
}

/// iroh-blobs collects garbage on a timer. It deletes what no tag and no protected hash keeps,
/// so a run is only let through once kith has said what to keep: the gate holds that set, and
/// the blobs released with it.
type SweepGate = Arc<Mutex<Option<Sweep>>>;

struct Sweep {
    keep: HashSet<Hash>,
    released: HashSet<[u8; 32]>,
}

type Released = Arc<Mutex<HashSet<[u8; 32]>>>;

/// How often the store looks at the gate.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

impl Blobs {
    pub async fn open(dir: &Path) -> Result<Blobs> {
        let sweep: SweepGate = Arc::default();
        let released: Released = Arc::default();
        let gate = sweep.clone();
        let swept = released.clone();
        let mut options = Options::new(dir);
        options.gc = Some(GcConfig {
            interval: SWEEP_EVERY,
            add_protected: Some(Arc::new(move |live| {
                let armed = gate.lock().ok().and_then(|mut g| g.take());
                // Told again as the run starts: a blob the fetcher found still held between
                // the release and this run is deleted now.
                if let (Some(armed), Ok(mut swept)) = (&armed, swept.lock()) {
                    swept.extend(armed.released.iter().copied());
                }
                Box::pin(async move {
                    match armed {
                        Some(armed) => {
                            live.extend(armed.keep);
                            ProtectOutcome::Continue
                        }
                        None => ProtectOutcome::Abort,
                    }
                })
            })),
        });
        let store = FsStore::load_with_opts(dir.join("blobs.db"), options)
            .await
            .map_err(|e| {
                Error::Blobs(format!(
                    "cannot open the blob store at {}: {e}",
                    dir.display()
                ))
            })?;
        let blobs = Blobs {
            store,
            data_dir: dir.join("data"),
            sweep,
            released,
        };
        blobs.rename_timed_tags().await?;
        Ok(blobs)
    }

    /// Renames the tags iroh-blobs named by the time (`auto-2026-…`, made by kith before
    /// version 0.2 for imported blobs) to [`tag_name`]. Found by their prefix, so a store
    /// without them pays one empty range scan.
    async fn rename_timed_tags(&self) -> Result<()> {
        let mut tags = self
            .store
            .tags()
            .list_prefix(TIMED_TAG_PREFIX)
            .await
            .map_err(|e| Error::Blobs(format!("cannot list tags: {e}")))?;
        let mut timed = Vec::new();
        while let Some(tag) = tags.next().await {
            let tag = tag.map_err(|e| Error::Blobs(format!("cannot list tags: {e}")))?;
            timed.push((tag.name, tag.hash));
        }
        for (name, hash) in &timed {
            self.tag(*hash).await?;
            self.store
                .tags()
                .delete(name)
                .await
                .map_err(|e| Error::Blobs(format!("cannot delete a tag: {e}")))?;
        }
        if !timed.is_empty() {
            tracing::info!("renamed {} blob tags named by time", timed.len());
        }
        Ok(())
    }

    /// Tags `hash` with [`tag_name`], so garbage collection keeps it.
    async fn tag(&self, hash: Hash) -> Result<()> {
        self.store
            .tags()
            .set(tag_name(&hash), iroh_blobs::HashAndFormat::raw(hash))
            .await
            .map_err(|e| Error::Blobs(format!("cannot tag a blob: {e}")))
    }

    /// Every tag as `(name, hash)`: what a look at the store's tags would tell.
    pub async fn tags(&self) -> Result<Vec<(String, [u8; 32])>> {
        let mut tags = self
            .store
            .tags()
            .list()
            .await
            .map_err(|e| Error::Blobs(format!("cannot list tags: {e}")))?;
        let mut all = Vec::new();
        while let Some(tag) = tags.next().await {
            let tag = tag.map_err(|e| Error::Blobs(format!("cannot list tags: {e}")))?;
            all.push((
                String::from_utf8_lossy(tag.name.as_ref()).into_owned(),
                *tag.hash.as_bytes(),
            ));
        }
        Ok(all)
    }

    /// Lets go of `released`: their tags are deleted and the next garbage collection (within
    /// seconds) deletes them, keeping every blob in `keep` and every blob a tag still names.
    pub async fn release(
        &self,
        released: &HashSet<[u8; 32]>,
        keep: HashSet<[u8; 32]>,
    ) -> Result<()> {
        // Tags are named by hash alone (older stores are renamed at open), so each released
        // blob's tag is deleted by name: the cost follows the purge, not the library.
        for hash in released {
            self.store
                .tags()
                .delete(tag_name(&Hash::from_bytes(*hash)))
                .await
                .map_err(|e| Error::Blobs(format!("cannot delete a tag: {e}")))?;
        }
        let keep = keep
            .into_iter()
            .filter(|h| !released.contains(h))
            .map(Hash::from_bytes)
            .collect();
        if let Ok(mut gate) = self.sweep.lock() {
            // A run not taken yet still deletes what it was armed to.
            let mut all = released.clone();
            if let Some(earlier) = gate.take() {
                all.extend(earlier.released);
            }
            *gate = Some(Sweep {
                keep,
                released: all,
            });
        }
        if let Ok(mut forgotten) = self.released.lock() {
            forgotten.extend(released.iter().copied());
        }
        Ok(())
    }

    /// The blobs released for deletion since the last call. A caller that remembers which
    /// blobs the store holds (the fetcher) forgets these, or it would never fetch one again
    /// that comes back (a photo restored from the trash, or one a removed device purged).
    pub(crate) fn take_released(&self) -> HashSet<[u8; 32]> {
        self.released
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Waits until the store holds none of `hashes` (the garbage collection armed by
    /// [`Blobs::release`] ran), or `deadline` passed; says which.
    pub async fn wait_deleted(&self, hashes: &HashSet<[u8; 32]>, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        let mut left: Vec<Hash> = hashes.iter().copied().map(Hash::from_bytes).collect();
        loop {
            let mut still = Vec::new();
            for hash in left {
                match self.store.status(hash).await {
                    Ok(BlobStatus::NotFound) => {}
                    Ok(_) => still.push(hash),
                    Err(e) => {
                        tracing::warn!("cannot ask the blob store about a blob: {e}");
                        return false;
                    }
                }
            }
            if still.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            left = still;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The hashes of every blob the store holds, complete or partial.
    pub async fn hashes(&self) -> Result<HashSet<[u8; 32]>> {
        let hashes = self
            .store
            .blobs()
            .list()
            .hashes()
            .await
            .map_err(|e| Error::Blobs(format!("cannot list blobs: {e}")))?;
        Ok(hashes.iter().map(|h| *h.as_bytes()).collect())
    }

    /// Adds ciphertext; returns its BLAKE3 reference. Tagged by its hash, so garbage
    /// collection keeps it (held by a temporary tag until then).
    pub async fn put(&self, ciphertext: Vec<u8>) -> Result<BlobRef> {
        let len = ciphertext.len() as u64;
        let held = self
            .store
            .add_bytes(ciphertext)
            .temp_tag()
            .await
            .map_err(|e| Error::Blobs(format!("cannot add a blob: {e}")))?;
        let hash = held.hash();
        self.tag(hash).await?;
        drop(held);
        Ok(BlobRef {
            hash: *hash.as_bytes(),
            len,
        })
    }

    /// Flushes the files of these blobs to disk. iroh-blobs writes large blobs to files it
    /// never fsyncs; a change must not reference a blob that a power cut could empty.
    pub fn flush_files(&self, blobs: &[BlobRef]) -> Result<()> {
        flush_files_in(&self.data_dir, blobs)
    }

    /// Makes fetched blobs durable off the async threads: their files, then the store's
    /// metadata. Batched, because one fsync per blob caps a transfer at the disk's fsync rate.
    pub async fn make_durable(&self, blobs: Vec<BlobRef>) -> Result<()> {
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || flush_files_in(&dir, &blobs))
            .await
            .map_err(|e| Error::Blobs(format!("flushing blobs stopped: {e}")))??;
        self.sync().await
    }

    /// Makes every blob added so far durable: the store's metadata (it batches its writes) and
    /// the folder entries of the blob files.
    pub async fn sync(&self) -> Result<()> {
        self.store
            .sync_db()
            .await
            .map_err(|e| Error::Blobs(format!("cannot sync the blob store: {e}")))?;
        crate::datadir::sync_dir(&self.data_dir)
    }

    /// Reads a whole blob and checks it against its hash: a flipped byte on disk is reported
    /// here as damage, never handed on.
    pub async fn get(&self, blob: &BlobRef) -> Result<Vec<u8>> {
        let hash = Hash::from_bytes(blob.hash);
        let bytes =
            self.store.get_bytes(hash).await.map_err(|e| {
                Error::Corrupt(format!("blob {} cannot be read: {e}", hash.to_hex()))
            })?;
        if blake3::hash(&bytes).as_bytes() != &blob.hash {
            return Err(Error::Corrupt(format!(
                "blob {} does not match its hash",
                hash.to_hex()
            )));
        }
        Ok(bytes.to_vec())
    }

    pub async fn has(&self, blob: &BlobRef) -> Result<bool> {
        let status = self
            .store
            .status(Hash::from_bytes(blob.hash))
            .await
            .map_err(|e| Error::Blobs(e.to_string()))?;
        Ok(matches!(status, BlobStatus::Complete { .. }))
    }

    /// The store as iroh-blobs' protocol handlers take it.
    pub(crate) fn api_store(&self) -> iroh_blobs::api::Store {
        (*self.store).clone()
    }

    /// Keeps a blob fetched whole from a peer (verified on the way in), tagged. Checked against
    /// its reference once more as it is stored. [`Blobs::make_durable`] flushes it, in batches.
    pub async fn put_fetched(&self, blob: &BlobRef, data: Vec<u8>) -> Result<()> {
        let hash = Hash::from_bytes(blob.hash);
        let stored = self
            .store
            .add_bytes(data)
            .with_named_tag(tag_name(&hash))
            .await
            .map_err(|e| Error::Blobs(format!("cannot store a fetched blob: {e}")))?;
        if stored.hash != hash {
            return Err(Error::Corrupt(format!(
                "fetched blob {} does not match its hash",
                hash.to_hex()
            )));
        }
        Ok(())
    }

    /// Keeps a blob fetched from a peer: checks it is complete and tags it (so garbage
    /// collection keeps it). [`Blobs::make_durable`] flushes it, in batches.
    pub async fn adopt(&self, blob: &BlobRef) -> Result<()> {
        if !self.has(blob).await? {
            return Err(Error::Blobs(format!(
                "blob {} is not complete after its transfer",
                Hash::from_bytes(blob.hash).to_hex()
            )));
        }
        self.tag(Hash::from_bytes(blob.hash)).await
    }

    /// Tags a blob about to be fetched, so garbage collection keeps what arrives.
    pub async fn protect(&self, blob: &BlobRef) -> Result<()> {
        self.tag(Hash::from_bytes(blob.hash)).await
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.store.shutdown().await {
            tracing::warn!("blob store shutdown: {e}");
        }
    }
}

/// The tag that keeps a blob from garbage collection: its hash and nothing else.
pub fn tag_name(hash: &Hash) -> String {
    format!("kith/{}", hash.to_hex())
}

/// How iroh-blobs names the tags it makes itself (`auto-` and the time, in ms).
const TIMED_TAG_PREFIX: &str = "auto-";

fn flush_files_in(data_dir: &Path, blobs: &[BlobRef]) -> Result<()> {
    for blob in blobs {
        let hex = Hash::from_bytes(blob.hash).to_hex();
        for ext in ["data", "obao4"] {
            let path = data_dir.join(format!("{hex}.{ext}"));
            match std::fs::File::open(&path) {
                Ok(file) => file
                    .sync_all()
                    .map_err(|e| Error::Blobs(format!("cannot flush {}: {e}", path.display())))?,
                // Small blobs live inline in the store's database, synced by `sync`.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Blobs(format!("cannot open {}: {e}", path.display())));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store an older kith wrote (imported blobs under iroh-blobs' timed tags) is renamed
    /// when opened, and keeps every blob.
    #[tokio::test]
    async fn timed_tags_of_an_older_store_are_renamed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut hashes = Vec::new();
        {
            let blobs = Blobs::open(dir.path()).await?;
            for i in 0..3u8 {
                let tag = blobs.store.add_bytes(vec![i; 100]).with_tag().await?;
                assert!(tag.name.as_ref().starts_with(TIMED_TAG_PREFIX.as_bytes()));
                hashes.push(tag.hash);
            }
            blobs.shutdown().await;
        }
        let blobs = Blobs::open(dir.path()).await?;
        let mut tags = blobs.tags().await?;
        tags.sort();
        let mut wanted: Vec<(String, [u8; 32])> = hashes
            .iter()
            .map(|h| (tag_name(h), *h.as_bytes()))
            .collect();
        wanted.sort();
        assert_eq!(tags, wanted);
        for h in &hashes {
            let blob = BlobRef {
                hash: *h.as_bytes(),
                len: 100,
            };
            assert!(blobs.has(&blob).await?);
        }
        blobs.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn put_tags_a_blob_by_its_hash_alone() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::open(dir.path()).await?;
        let blob = blobs.put(vec![7; 5000]).await?;
        let hash = Hash::from_bytes(blob.hash);
        assert_eq!(blobs.tags().await?, vec![(tag_name(&hash), blob.hash)]);
        blobs.shutdown().await;
        Ok(())
    }
}
