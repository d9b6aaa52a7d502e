//! Export: every original back out, byte for byte, with a JSON sidecar of what kith knows.
//!
//! Layout: photos that are in no album go to the top of the export folder; each album is a
//! folder (nested albums nested), holding a copy of each of its photos. A photo keeps its
//! original file name; when two photos in one folder share a name, the later ones (by photo id)
//! get ` (2)`, ` (3)` … before the extension. Each photo `NAME` has a sidecar `NAME.kith.json`.
//! Re-running an export writes only what is missing: a file whose sidecar names the same photo
//! id and whose size matches is left alone.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_protocol::blob::{self, Rendition};
use kith_protocol::keys::{DocId, PhotoId};
use kith_protocol::library::PhotoEntry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::library::Library;
use crate::views::{ExportEvent, ExportOutcome, ExportStatus, ExportSummary, PhotoView};

/// Version of the sidecar format.
pub const SIDECAR_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    pub dir: PathBuf,
    pub album: Option<String>,
}

/// The JSON sidecar written next to each exported original (`NAME.kith.json`): what
/// `kith photos --json` shows of the photo, which includes what a person added to it (caption,
/// favourite, tags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub kith_sidecar: u32,
    #[serde(flatten)]
    pub photo: PhotoView,
}

struct Planned {
    target: PathBuf,
    entry: PhotoEntry,
    view: PhotoView,
}

fn sidecar_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".kith.json");
    PathBuf::from(name)
}

fn numbered(name: &str, n: usize) -> String {
    if n == 1 {
        return name.to_owned();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

/// A file name safe to create: no separators, not empty, not `.`/`..`.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "photo".to_owned(),
        _ => cleaned,
    }
}

/// Whether the sidecar beside `target` says it is this photo's export.
fn sidecar_names(target: &Path, id: &PhotoId) -> bool {
    std::fs::read(sidecar_path(target))
        .ok()
        .and_then(|text| serde_json::from_slice::<Sidecar>(&text).ok())
        .is_some_and(|sidecar| sidecar.photo.id == id.to_string())
}

/// An existing file counts as exported when its sidecar names this photo and its size matches.
fn already_exported(target: &Path, entry: &PhotoEntry) -> bool {
    let Ok(meta) = std::fs::metadata(target) else {
        return false;
    };
    let Ok(text) = std::fs::read(sidecar_path(target)) else {
        return false;
    };
    let Ok(sidecar) = serde_json::from_slice::<Sidecar>(&text) else {
        return false;
    };
    sidecar.photo.id == entry.id.to_string() && meta.len() == entry.size
}

/// Writes through a temporary file and renames, so an interrupted export leaves no half file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("cannot create folder", parent))?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(Error::io("cannot create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("cannot move into place", path))
}

impl Library {
    /// Plans where each photo goes; the same library state always gives the same plan.
    async fn plan_export(&self, request: &ExportRequest) -> Result<Vec<Planned>> {
        let state = self.state.lock().await;
        let mut folders: BTreeMap<PathBuf, Vec<PhotoId>> = BTreeMap::new();
        let album_dir = |id: &DocId| -> PathBuf {
            state
                .album_path(id)
                .split('/')
                .map(safe_name)
                .collect::<PathBuf>()
        };
        match &request.album {
            Some(name) => {
                let id = state.find_album(name)?;
                folders.insert(
                    album_dir(&id),
                    state.albums[&id].1.iter().copied().collect(),
                );
            }
            None => {
                let mut in_album = HashSet::new();
                // Two albums can map to one folder (titles that differ only in characters a
                // file name cannot hold): they share it rather than one hiding the other.
                for (id, (_, photos)) in &state.albums {
                    folders
                        .entry(album_dir(id))
                        .or_default()
                        .extend(photos.iter().copied());
                    in_album.extend(photos.iter().copied());
                }
                let loose: Vec<PhotoId> = state
                    .photos
                    .keys()
                    .filter(|id| !in_album.contains(id))
                    .copied()
                    .collect();
                folders.entry(PathBuf::new()).or_default().extend(loose);
            }
        }
        let mut planned = Vec::new();
        for (folder, mut ids) in folders {
            ids.sort();
            let mut used: HashSet<String> = HashSet::new();
            for id in ids {
                let Some(entry) = state.photos.get(&id) else {
                    continue;
                };
                if entry.trashed_at_ms.is_some() {
                    continue;
                }
                let base = safe_name(&entry.file_name);
                let dir = request.dir.join(&folder);
                // A name is free when no other photo of this folder has it and the file there,
                // if any, is this photo's earlier export: a user's own file is never overwritten.
                let name = (1..)
                    .map(|n| numbered(&base, n))
                    .find(|candidate| {
                        let target = dir.join(candidate);
                        !used.contains(&candidate.to_lowercase())
                            && (!target.exists() || sidecar_names(&target, &entry.id))
                    })
                    .unwrap_or(base);
                used.insert(name.to_lowercase());
                planned.push(Planned {
                    target: request.dir.join(&folder).join(name),
                    entry: entry.clone(),
                    view: state.photo_view(entry),
                });
            }
        }
        Ok(planned)
    }

    /// Decrypts a photo's original after checking the blob against its hash.
    pub async fn read_original(&self, entry: &PhotoEntry) -> Result<Vec<u8>> {
        if self
            .state
            .lock()
            .await
            .set_aside
            .contains(&entry.original.hash)
        {
            return Err(Error::SetAside(entry.id.to_string()));
        }
        let sealed = self.blobs.get(&entry.original).await?;
        blob::decrypt_blob(&entry.file_key, Rendition::Original, &sealed)
            .map_err(|e| Error::Corrupt(format!("original of photo {}: {e}", entry.id)))
    }

    pub async fn export(
        self: &Arc<Self>,
        request: ExportRequest,
        events: mpsc::UnboundedSender<ExportEvent>,
    ) -> Result<ExportSummary> {
        let planned = self.plan_export(&request).await?;
        let _ = events.send(ExportEvent::Started {
            files: planned.len(),
        });
        let mut summary = ExportSummary::default();
        for item in planned {
            let outcome = self.export_one(&item).await;
            let (status, reason) = match outcome {
                Ok(status) => (status, None),
                Err(e) => {
                    tracing::error!(photo = %item.entry.id, "export failed: {e}");
                    (ExportStatus::Failed, Some(e.to_string()))
                }
            };
            match status {
                ExportStatus::Written => summary.written += 1,
                ExportStatus::Present => summary.present += 1,
                ExportStatus::Failed => summary.failed += 1,
            }
            let _ = events.send(ExportEvent::File(ExportOutcome {
                path: item.target.display().to_string(),
                id: item.entry.id.to_string(),
                status,
                reason,
            }));
        }
        let _ = events.send(ExportEvent::Done(summary.clone()));
        Ok(summary)
    }

    async fn export_one(&self, item: &Planned) -> Result<ExportStatus> {
        if already_exported(&item.target, &item.entry) {
            return Ok(ExportStatus::Present);
        }
        let original = self.read_original(&item.entry).await?;
        let sidecar = Sidecar {
            kith_sidecar: SIDECAR_VERSION,
            photo: item.view.clone(),
        };
        let json =
            serde_json::to_vec_pretty(&sidecar).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&item.target, &original)?;
        write_atomic(&sidecar_path(&item.target), &json)?;
        Ok(ExportStatus::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered("IMG_1.jpg", 1), "IMG_1.jpg");
        assert_eq!(numbered("IMG_1.jpg", 2), "IMG_1 (2).jpg");
        assert_eq!(numbered("README", 3), "README (3)");
        assert_eq!(numbered(".hidden", 2), ".hidden (2)");
    }

    #[test]
    fn unsafe_names_are_neutralised() {
        assert_eq!(safe_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_name(".."), "photo");
        assert_eq!(safe_name(""), "photo");
    }
}
