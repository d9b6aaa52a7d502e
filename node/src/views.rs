//! The shapes the CLI prints and the local API returns. One set of types serves both paths, so a
//! command prints the same whether it ran in-process or through the running node.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gps {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoView {
    pub id: String,
    pub file_name: String,
    pub taken_at: Option<String>,
    /// Pixel size as stored in the file.
    pub width: u32,
    pub height: u32,
    /// Pixel size as shown, after EXIF orientation.
    pub display_width: u32,
    pub display_height: u32,
    pub orientation: Option<u16>,
    pub mime: String,
    pub size: u64,
    pub camera: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub gps: Option<Gps>,
    /// Album paths (`Parent/Child`) the photo is in.
    pub albums: Vec<String>,
    pub added_at_ms: u64,
    pub caption: Option<String>,
    pub favourite: bool,
    /// Sorted.
    pub tags: Vec<String>,
    /// When the photo went to the trash (unix ms); absent when it is not there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trashed_at_ms: Option<u64>,
    /// The person whose device added the photo.
    #[serde(default)]
    pub added_by: Option<String>,
}

/// A photo in the trash, as `kith trash` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrashedView {
    #[serde(flatten)]
    pub photo: PhotoView,
    /// When it is purged from every device (unix ms): 30 days after it was trashed.
    pub purge_at_ms: u64,
    /// Set for a photo that left the library other than by the trash (a change removed or
    /// replaced it, or a removed device purged it): kept with its blobs, restorable with
    /// `kith trash restore` until `purge_at_ms`. The device that removed it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumView {
    pub id: String,
    pub title: String,
    /// `Parent/Child` path of titles.
    pub path: String,
    pub parent: Option<String>,
    pub photos: usize,
    pub created_at_ms: u64,
    /// Who the album is shared with beyond the household.
    #[serde(default)]
    pub shared_with: Vec<crate::sharing::GrantView>,
    /// What this device may do with it: `contribute` or `view`.
    #[serde(default)]
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub running: bool,
    pub data_dir: String,
    pub device_id: String,
    pub device_name: String,
    pub person: String,
    pub role: String,
    pub family_id: String,
    pub photos: usize,
    /// Entries that left the library other than by the trash, kept restorable (`crate::keep`).
    #[serde(default)]
    pub kept: usize,
    pub albums: usize,
    pub documents: usize,
    pub changes: u64,
    pub db_bytes: u64,
    pub blob_bytes: u64,
    /// Sealed changes or records that failed their checks when the node opened.
    pub damaged: Vec<String>,
    pub api: Option<String>,
    /// Sync progress, when the node is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Imported,
    Duplicate,
    Skipped,
}

/// One file's outcome, printed as soon as it is committed (imported, duplicate) or skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileOutcome {
    pub path: String,
    pub status: FileStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub imported: usize,
    pub duplicates: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImportEvent {
    Started {
        files: usize,
    },
    File(FileOutcome),
    Done(ImportSummary),
    /// The import stopped early; files reported before this were committed.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Written,
    Present,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportOutcome {
    pub path: String,
    pub id: String,
    pub status: ExportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub written: usize,
    pub present: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExportEvent {
    Started {
        files: usize,
    },
    File(ExportOutcome),
    Done(ExportSummary),
    /// The export stopped early; files reported before this were written.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitView {
    pub data_dir: String,
    pub device_id: String,
    pub person: String,
    pub family_id: String,
    /// When a device that had a library of its own joined a family: what it brought along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<KeptLibraryView>,
}

/// The library a device held before it joined a family, now part of that family.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeptLibraryView {
    pub photos: usize,
    /// Photos the family already had (the same original): kept once.
    pub already_there: usize,
    pub albums: usize,
    /// Photos that could not be carried over (damaged on disk), with why.
    pub skipped: Vec<String>,
    /// Where the data dir as it was before the join is kept until the user deletes it.
    pub previous_data_dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub revoked: bool,
    /// The device this command ran on.
    pub this: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonView {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Removed from the family (`kith people remove`); listed so their past is explained.
    pub removed: bool,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteView {
    pub id: String,
    pub role: String,
    /// The existing person this invite adds a device to; `None` when it invites a new person.
    pub person: Option<String>,
    /// `pending`, `used`, `cancelled` or `expired`.
    pub state: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub used_by: Option<String>,
    /// The ticket text, only in the answer that created the invite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// One device of the family as `kith devices` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyDeviceView {
    pub id: String,
    pub person: String,
    pub name: String,
    pub revoked: bool,
    pub online: bool,
    /// Unix ms; `None` when never seen (or for this device).
    pub last_seen_ms: Option<u64>,
    pub this: bool,
    /// For a removed device: photos its changes removed or replaced that are kept restorable
    /// here (`kith devices undo` puts them back).
    #[serde(default)]
    pub undoable: usize,
}

/// What `kith devices undo` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndoView {
    pub device: String,
    /// Photos put back in the library.
    pub restored: usize,
}

/// Sync progress with one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSyncView {
    pub device: String,
    pub name: String,
    pub online: bool,
    pub caught_up: bool,
    pub changes_received: u64,
    pub changes_rejected: u64,
    pub blobs_fetched: u64,
    pub bytes_fetched: u64,
}

/// Sync progress of this node: documents and blobs wanted and held, per peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncView {
    pub listen: Vec<String>,
    /// Renditions this device may hold and lacks.
    pub blobs_wanted: u64,
    /// Renditions it holds.
    pub blobs_have: u64,
    pub blobs_fetched: u64,
    pub blobs_failed: u64,
    /// Digest over every document's change set: equal on two devices when their documents match.
    pub docs_digest: String,
    pub peers: Vec<PeerSyncView>,
}
