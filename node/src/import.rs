//! Import: files and folders in, encrypted blobs and sealed library changes out.
//!
//! Files are read, identified, analysed (decode, EXIF, thumbnail, preview) and encrypted in
//! parallel on a rayon pool; the encrypted renditions go into the blob store as they are ready.
//! One committer task gathers whatever photos are ready into a batch, makes the blob store
//! durable, commits one change per touched document in one redb transaction, and only then
//! reports those photos as imported. A crash at any moment loses only unreported work.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use kith_protocol::blob::{self, FileKey, Rendition};
use kith_protocol::keys::{DocId, PhotoId};
use kith_protocol::library::{DocKind, Document, PhotoEntry};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::library::{Library, NewDoc, OpenDoc, State, now_ms, shard_doc_id, shard_of};
use crate::media;
use crate::store::DocRecord;
use crate::views::{FileOutcome, FileStatus, ImportEvent, ImportSummary};

/// Largest file import reads: far above any camera's photo, far below what would exhaust memory.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Most photos committed in one change.
const MAX_BATCH: usize = 256;
/// How long the committer waits for more photos before committing what it has: long enough to
/// keep changes few (DESIGN.md: one change per batch), short enough that progress stays live.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

/// What to import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    pub paths: Vec<PathBuf>,
    /// Also add every imported (or already present) photo to this album, created if missing.
    pub album: Option<String>,
}

/// A file's result from the parallel stage, before it is committed.
enum Staged {
    Ready {
        path: PathBuf,
        entry: Box<PhotoEntry>,
    },
    Duplicate {
        path: PathBuf,
        id: PhotoId,
    },
    Skipped {
        path: PathBuf,
        reason: String,
    },
}

/// Files of an export kith wrote itself: never photos.
fn is_sidecar(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".kith.json"))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Expands the paths into files (folders recursively, sorted); unreadable paths become skips.
fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Staged>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        if !path.exists() {
            skipped.push(Staged::Skipped {
                path: path.clone(),
                reason: "not-found: no such file or folder".into(),
            });
            continue;
        }
        for entry in walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()))
        {
            match entry {
                Ok(e) if e.file_type().is_file() && !is_sidecar(e.path()) => {
                    files.push(e.into_path())
                }
                Ok(_) => {}
                Err(e) => skipped.push(Staged::Skipped {
                    path: e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| path.clone()),
                    reason: format!("unreadable: {e}"),
                }),
            }
        }
    }
    (files, skipped)
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The parallel stage for one file: read, identify, analyse, encrypt, store the blobs.
fn stage_file(
    library: &Library,
    rt: &tokio::runtime::Handle,
    secret: &kith_protocol::keys::FamilySecret,
    claimed: &StdMutex<HashSet<PhotoId>>,
    path: PathBuf,
) -> Staged {
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Staged::Skipped {
                path,
                reason: format!(
                    "too-large-file: the file is {} MiB, more than the {} MiB a photo may have; is it a video or a disk image?",
                    meta.len() >> 20,
                    MAX_FILE_BYTES >> 20
                ),
            };
        }
        _ => {}
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            return Staged::Skipped {
                path,
                reason: format!("unreadable: {e}"),
            };
        }
    };
    if bytes.is_empty() {
        return Staged::Skipped {
            path,
            reason: format!(
                "{}: {}",
                media::MediaError::Empty.code(),
                media::MediaError::Empty
            ),
        };
    }
    let id = secret.photo_id(&bytes);
    // Claim the id first so two copies of one file in the same import count once.
    let fresh = claimed
        .lock()
        .map(|mut set| set.insert(id))
        .unwrap_or(false);
    if !fresh {
        return Staged::Duplicate { path, id };
    }
    let release = |path: PathBuf, reason: String| {
        if let Ok(mut set) = claimed.lock() {
            set.remove(&id);
        }
        Staged::Skipped { path, reason }
    };
    // A decoder bug on a hostile file must cost that file, not the import.
    let analyzed = match std::panic::catch_unwind(|| media::analyze(&bytes)) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return release(path, format!("{}: {e}", e.code())),
        Err(_) => {
            tracing::error!(path = %path.display(), "the decoder panicked");
            return release(
                path,
                "internal-error: the decoder failed on this file (a kith bug; please report it)"
                    .into(),
            );
        }
    };
    let file_key = FileKey::from_bytes(rand::random());
    let original = blob::encrypt_blob(&file_key, Rendition::Original, rand::random(), &bytes);
    let preview = blob::encrypt_blob(
        &file_key,
        Rendition::Preview,
        rand::random(),
        &analyzed.preview.bytes,
    );
    let thumbnail = blob::encrypt_blob(
        &file_key,
        Rendition::Thumbnail,
        rand::random(),
        &analyzed.thumbnail.bytes,
    );
    let stored = rt.block_on(async {
        let t = library.blobs.put(thumbnail).await?;
        let p = library.blobs.put(preview).await?;
        let o = library.blobs.put(original).await?;
        // The bytes reach the disk here, in parallel; the committer syncs the metadata.
        library.blobs.flush_files(&[o, p, t])?;
        Ok::<_, Error>((o, p, t))
    });
    let (original, preview, thumbnail) = match stored {
        Ok(refs) => refs,
        Err(e) => return release(path, format!("store-failed: {e}")),
    };
    let meta = analyzed.meta;
    let entry = PhotoEntry {
        id,
        original,
        preview,
        thumbnail,
        file_key,
        file_name: file_name_of(&path),
        mime: meta.mime.to_owned(),
        size: bytes.len() as u64,
        width: meta.width,
        height: meta.height,
        display_width: meta.display_width,
        display_height: meta.display_height,
        orientation: meta.orientation,
        taken_at: meta.taken_at,
        make: meta.make,
        model: meta.model,
        gps: meta.gps,
        added_by: library.device_id(),
        added_at_ms: now_ms(),
        caption: None,
        favourite: false,
        tags: Vec::new(),
        trashed_at_ms: None,
        trashed_by: None,
    };
    Staged::Ready {
        path,
        entry: Box::new(entry),
    }
}

impl Library {
    /// Imports files and folders, sending one event per file once it is committed or skipped.
    pub async fn import(
        self: &Arc<Self>,
        request: ImportRequest,
        events: mpsc::UnboundedSender<ImportEvent>,
    ) -> Result<ImportSummary> {
        let (files, early_skips) = collect_files(&request.paths);
        let _ = events.send(ImportEvent::Started {
            files: files.len() + early_skips.len(),
        });
        let (secret, claimed, album) = {
            let mut state = self.state.lock().await;
            let album = match &request.album {
                Some(name) => Some(match state.find_album(name) {
                    Ok(id) => id,
                    Err(Error::NoSuchAlbum(_)) => {
                        self.create_album_locked(&mut state, name, None)?
                    }
                    Err(e) => return Err(e),
                }),
                None => None,
            };
            let claimed: HashSet<PhotoId> = state.photos.keys().copied().collect();
            (self.family_secret(&state), claimed, album)
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Staged>();
        for skip in early_skips {
            let _ = tx.send(skip);
        }
        let claimed = Arc::new(StdMutex::new(claimed));
        let cancelled = Arc::new(AtomicBool::new(false));
        let worker = {
            let library = Arc::clone(self);
            let rt = tokio::runtime::Handle::current();
            let claimed = Arc::clone(&claimed);
            let cancelled = Arc::clone(&cancelled);
            let secret = secret.clone();
            tokio::task::spawn_blocking(move || {
                files.into_par_iter().for_each(|path| {
                    if cancelled.load(Ordering::Relaxed) {
                        return;
                    }
                    let staged = stage_file(&library, &rt, &secret, &claimed, path);
                    let _ = tx.send(staged);
                });
            })
        };
        let mut summary = ImportSummary::default();
        let mut report = |outcomes: Vec<FileOutcome>| {
            for outcome in outcomes {
                match outcome.status {
                    FileStatus::Imported => summary.imported += 1,
                    FileStatus::Duplicate => summary.duplicates += 1,
                    FileStatus::Skipped => summary.skipped += 1,
                }
                let _ = events.send(ImportEvent::File(outcome));
            }
        };
        // Duplicates of a photo still in flight wait until that photo is committed: a file is
        // never reported as a duplicate of something that is not safely stored.
        let mut deferred: Vec<Staged> = Vec::new();
        let mut result = Ok(());
        while let Some(first) = rx.recv().await {
            let mut batch = std::mem::take(&mut deferred);
            batch.push(first);
            let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            match self.commit_batch(batch, album.as_ref()).await {
                Ok((outcomes, waiting)) => {
                    report(outcomes);
                    deferred = waiting;
                }
                Err(e) => {
                    cancelled.store(true, Ordering::Relaxed);
                    result = Err(e);
                    break;
                }
            }
        }
        drop(rx);
        worker
            .await
            .map_err(|e| Error::Invalid(format!("import worker failed: {e}")))?;
        result?;
        if !deferred.is_empty() {
            // What is still waiting lost its original (skipped, or failed to store): stage
            // those files afresh, now that their claims are released.
            let (ready, retry): (Vec<Staged>, Vec<Staged>) = {
                let state = self.state.lock().await;
                deferred.into_iter().partition(|s| match s {
                    Staged::Duplicate { id, .. } => state.photos.contains_key(id),
                    _ => true,
                })
            };
            let library = Arc::clone(self);
            let rt = tokio::runtime::Handle::current();
            let restaged = tokio::task::spawn_blocking(move || {
                retry
                    .into_iter()
                    .map(|s| match s {
                        Staged::Duplicate { path, .. } => {
                            stage_file(&library, &rt, &secret, &claimed, path)
                        }
                        other => other,
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| Error::Invalid(format!("import worker failed: {e}")))?;
            let mut batch = ready;
            batch.extend(restaged);
            let (outcomes, still_waiting) = self.commit_batch(batch, album.as_ref()).await?;
            report(outcomes);
            // Two copies of one file both failing to store leave the second here.
            report(
                still_waiting
                    .into_iter()
                    .filter_map(|s| match s {
                        Staged::Duplicate { path, .. } => Some(FileOutcome {
                            path: path.display().to_string(),
                            status: FileStatus::Skipped,
                            id: None,
                            reason: Some("store-failed: another copy of this file failed to import; run the import again".into()),
                        }),
                        _ => None,
                    })
                    .collect(),
            );
        }
        let _ = events.send(ImportEvent::Done(summary.clone()));
        Ok(summary)
    }

    /// Commits one batch durably. Returns the outcomes to report, and the duplicates whose
    /// original is not committed yet.
    async fn commit_batch(
        &self,
        batch: Vec<Staged>,
        album: Option<&DocId>,
    ) -> Result<(Vec<FileOutcome>, Vec<Staged>)> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut ready = Vec::new();
        let mut dups = Vec::new();
        for staged in batch {
            match staged {
                Staged::Ready { path, entry } => ready.push((path, entry)),
                Staged::Duplicate { path, id } => dups.push((path, id)),
                Staged::Skipped { path, reason } => outcomes.push(FileOutcome {
                    path: path.display().to_string(),
                    status: FileStatus::Skipped,
                    id: None,
                    reason: Some(reason),
                }),
            }
        }
        if !ready.is_empty() {
            // The blobs must be durable before the change that references them.
            self.blobs.sync().await?;
        }
        let mut state = self.state.lock().await;
        let ready_ids: HashSet<PhotoId> = ready.iter().map(|(_, e)| e.id).collect();
        let (dups, waiting): (Vec<_>, Vec<_>) = dups
            .into_iter()
            .partition(|(_, id)| state.photos.contains_key(id) || ready_ids.contains(id));
        if !ready.is_empty() || (album.is_some() && !dups.is_empty()) {
            self.commit_entries(
                &mut state,
                ready.iter().map(|(_, e)| e.as_ref()),
                album,
                &dups,
            )?;
        }
        drop(state);
        for (path, entry) in ready {
            outcomes.push(FileOutcome {
                path: path.display().to_string(),
                status: FileStatus::Imported,
                id: Some(entry.id.to_string()),
                reason: None,
            });
        }
        for (path, id) in dups {
            outcomes.push(FileOutcome {
                path: path.display().to_string(),
                status: FileStatus::Duplicate,
                id: Some(id.to_string()),
                reason: None,
            });
        }
        let waiting = waiting
            .into_iter()
            .map(|(path, id)| Staged::Duplicate { path, id })
            .collect();
        Ok((outcomes, waiting))
    }

    pub(crate) fn commit_entries<'a>(
        &self,
        state: &mut State,
        entries: impl Iterator<Item = &'a PhotoEntry>,
        album: Option<&DocId>,
        dups: &[(PathBuf, PhotoId)],
    ) -> Result<()> {
        let library_key = state.identity.library_key;
        let mut by_shard: BTreeMap<DocId, (String, Vec<&PhotoEntry>)> = BTreeMap::new();
        for entry in entries {
            let shard = shard_of(entry);
            let id = shard_doc_id(&library_key, &shard);
            by_shard
                .entry(id)
                .or_insert_with(|| (shard, Vec::new()))
                .1
                .push(entry);
        }
        let mut touched = Vec::new();
        let mut new_docs = Vec::new();
        for (doc_id, (shard, entries)) in &by_shard {
            if !state.docs.contains_key(doc_id) {
                let record = DocRecord::new(1, rand::random(), Some(shard.clone()));
                let genesis = Document::genesis_change(DocKind::Library, doc_id)
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                let mut doc = Document::new(&self.device_id());
                doc.apply_change(genesis.clone())
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                state
                    .docs
                    .insert(*doc_id, OpenDoc::new(record.clone(), doc));
                new_docs.push(NewDoc {
                    id: *doc_id,
                    record,
                    genesis: Some(genesis),
                    grants: Vec::new(),
                });
            }
            state
                .doc_mut(doc_id)?
                .put_photos(entries.iter().copied())
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            touched.push(*doc_id);
        }
        // A shard made before kinds were declared is declared before photos go into it.
        let existing: Vec<DocId> = touched
            .iter()
            .filter(|id| !new_docs.iter().any(|n: &NewDoc| n.id == **id))
            .copied()
            .collect();
        self.declare_own_shards(state, &existing)?;
        if let Some(album_id) = album {
            let mut add: Vec<PhotoEntry> = by_shard
                .values()
                .flat_map(|(_, es)| es.iter().map(|e| (*e).clone()))
                .collect();
            add.extend(
                dups.iter()
                    .filter_map(|(_, id)| state.photos.get(id).cloned()),
            );
            // Looked up in place: copying the album's ids would cost its size per batch.
            let in_album = state.albums.get(album_id).map(|(_, ids)| ids);
            add.retain(|e| !in_album.is_some_and(|ids| ids.contains(&e.id)));
            if !add.is_empty() {
                state
                    .doc_mut(album_id)?
                    .put_photos(&add)
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                touched.push(*album_id);
            }
        }
        self.commit_docs(state, &touched, new_docs)
    }
}
