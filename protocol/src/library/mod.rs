//! The photo and album schema over automerge.
//!
//! A person's library is sharded into one document per month of taken-at (DESIGN.md,
//! "Documents stay small"); each album is one document. Both hold a map `photos` from the
//! photo id (hex) to a photo entry: the blob references, the photo's file key and its metadata.
//! An album references a photo by carrying its entry (with the key), never a copy of the blob.
//!
//! Every field of an entry is its own automerge value, so concurrent edits of different fields
//! (a caption here, a favourite there) merge instead of one overwriting the other.

use std::collections::BTreeSet;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ReadDoc, ScalarValue, Value, transaction};
use automerge::{ObjId, ROOT};
use serde::{Deserialize, Serialize};

use crate::blob::FileKey;
use crate::keys::{DeviceId, DocId, PhotoId};

mod bounds;
mod decoded;
mod edit;
mod entry;
mod fresh;
mod guard;
mod scope;
pub use bounds::{BoundError, ChangeLimits, ChangeSize, check_change_bounds};
pub use decoded::{DecodedChange, causal_order};
pub use edit::PhotoEdit;
use entry::{get_bytes32, get_str, get_u64, read_entry, write_entry};
pub use scope::{ChangeEffects, actor_device};

/// Schema version written into every document's root.
pub const SCHEMA_VERSION: u64 = 1;

/// What a document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// One month of a person's own photos.
    Library,
    /// An album: title, parent, and the photos in it.
    Album,
}

/// A content-addressed encrypted blob: BLAKE3 of the ciphertext and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub hash: [u8; 32],
    pub len: u64,
}

/// Everything kith knows about one photo. Stored encrypted inside sealed changes only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoEntry {
    pub id: PhotoId,
    pub original: BlobRef,
    pub preview: BlobRef,
    pub thumbnail: BlobRef,
    pub file_key: FileKey,
    pub file_name: String,
    pub mime: String,
    /// Size of the original in bytes (plaintext).
    pub size: u64,
    pub width: u32,
    pub height: u32,
    pub display_width: u32,
    pub display_height: u32,
    pub orientation: Option<u16>,
    /// EXIF DateTimeOriginal as `YYYY-MM-DDTHH:MM:SS` (camera local time, no zone).
    pub taken_at: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// Latitude and longitude in signed decimal degrees.
    pub gps: Option<(f64, f64)>,
    pub added_by: DeviceId,
    pub added_at_ms: u64,
    pub caption: Option<String>,
    pub favourite: bool,
    pub tags: Vec<String>,
    pub trashed_at_ms: Option<u64>,
    /// The device whose change put the photo in the trash (the author of the winning
    /// `trashed_at` value); not written, read from the document's history.
    #[serde(default)]
    pub trashed_by: Option<DeviceId>,
}

impl PhotoEntry {
    /// The photo's renditions in the order a new device wants them: thumbnail, preview, original.
    pub fn blobs(&self) -> [BlobRef; 3] {
        [self.thumbnail, self.preview, self.original]
    }
}

/// An album's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlbumMeta {
    pub title: String,
    pub parent: Option<DocId>,
    pub created_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibraryError {
    #[error("automerge rejected the document: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("a change is not a valid automerge change: {0}")]
    BadChange(String),
    #[error("a change was refused before decoding: {0}")]
    OutOfBounds(#[from] BoundError),
    #[error("automerge cannot apply the change (its ops do not fit the document); it is refused")]
    Unapplicable,
    #[error("photo entry {key} is malformed: field `{field}` is missing or has the wrong type")]
    BadEntry { key: String, field: &'static str },
    #[error("the change builds on change {0}, which this document does not have yet")]
    MissingDependency(String),
    #[error("the document is not a kith {expected:?} document")]
    WrongKind { expected: DocKind },
}

/// One automerge document of the library or of an album.
pub struct Document {
    doc: AutoCommit,
    /// The change this document's history starts over from, if it did (see [`fresh`]).
    base: Option<fresh::BaseOps>,
    /// What this device's own edits wrote since [`Document::take_edited`] last asked.
    edited: Edited,
    /// The sequence number of this device's last change in the document that is stored as a
    /// sealed change (handed out by [`Document::commit_all`], loaded or applied). automerge
    /// closes pending edits into a change of their own whenever something reads the
    /// document's history, so there may be more of this device's changes than were handed
    /// out; [`Document::commit_all`] hands them out too, and no snapshot is made before.
    sealed_seq: u64,
}

/// What a device's own edits of a document wrote, so that its index re-reads just that after
/// they are committed: the photo entries it added, changed or removed, or more than entries
/// (the album's fields, the `photos` map itself), when it re-reads the whole document. Every
/// method that writes into a document records what it wrote here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edited {
    pub whole: bool,
    pub entries: BTreeSet<PhotoId>,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document").finish_non_exhaustive()
    }
}

fn actor_for(device: &DeviceId) -> ActorId {
    ActorId::from(device.0.as_slice())
}

impl Document {
    /// An empty document written by `device`. Call [`Document::init`] before the first commit.
    pub fn new(device: &DeviceId) -> Self {
        Document {
            doc: AutoCommit::new().with_actor(actor_for(device)),
            base: None,
            edited: Edited::default(),
            sealed_seq: 0,
        }
    }

    /// Rebuilds a document from its changes (any order: automerge queues missing dependencies).
    pub fn from_changes(
        device: &DeviceId,
        changes: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, LibraryError> {
        let mut doc = Document::new(device);
        let parsed = changes
            .into_iter()
            .map(guard::decode_change)
            .collect::<Result<Vec<_>, _>>()?;
        guard::apply_changes_to_new(&mut doc.doc, parsed)?;
        doc.sealed_seq = doc.own_seq();
        Ok(doc)
    }

    /// The document as one compact snapshot (automerge's `save`), or `None` while it holds
    /// edits not committed yet or changes that wait for a dependency: neither is in the
    /// document's history, so a snapshot would drop them (see [`Document::from_snapshot`]).
    pub fn snapshot(&mut self) -> Option<Vec<u8>> {
        if self.doc.pending_ops() > 0
            || self.own_seq() > self.sealed_seq
            || self.has_queued_changes()
        {
            return None;
        }
        Some(self.doc.save())
    }

    /// Rebuilds a document from a snapshot ([`Document::snapshot`]) and the changes made after
    /// it. The snapshot is this device's own (the caller opened it with its storage key), but
    /// it is loaded the way a change is applied: a snapshot automerge cannot load is an error,
    /// never a panic.
    pub fn from_snapshot(
        device: &DeviceId,
        snapshot: &[u8],
        changes: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, LibraryError> {
        let loaded = std::panic::catch_unwind(|| AutoCommit::load(snapshot))
            .map_err(|_| LibraryError::Unapplicable)??;
        let mut doc = Document {
            doc: loaded.with_actor(actor_for(device)),
            base: None,
            edited: Edited::default(),
            sealed_seq: 0,
        };
        let parsed = changes
            .into_iter()
            .map(guard::decode_change)
            .collect::<Result<Vec<_>, _>>()?;
        guard::apply_changes_to_new(&mut doc.doc, parsed)?;
        doc.sealed_seq = doc.own_seq();
        Ok(doc)
    }

    /// Applies one change received or read from disk.
    pub fn apply_change(&mut self, bytes: Vec<u8>) -> Result<(), LibraryError> {
        let change = guard::decode_change(bytes)?;
        self.apply_parsed(change)
    }

    /// Applies one decoded change; one of this device's own (stored before, read back or
    /// received again) counts as sealed.
    fn apply_parsed(&mut self, change: automerge::Change) -> Result<(), LibraryError> {
        let own =
            (*change.actor_id() == *self.doc.get_actor()).then(|| (change.seq(), change.hash()));
        guard::apply_changes(&mut self.doc, vec![change])?;
        // Only once applied: one automerge queues for a missing dependency is not in the
        // history yet, and an edit made meanwhile would take its sequence number.
        if let Some((seq, hash)) = own
            && self.doc.get_change_meta_by_hash(&hash).is_some()
        {
            self.sealed_seq = self.sealed_seq.max(seq);
        }
        Ok(())
    }

    /// The sequence number of this device's last change in the document (0: none).
    fn own_seq(&mut self) -> u64 {
        // automerge looks its actor up once, when set: one that first wrote through applied
        // changes is found only when set again.
        let actor = self.doc.get_actor().clone();
        self.doc.set_actor(actor);
        self.doc.get_last_local_change().map_or(0, |c| c.seq())
    }

    /// The first change of a document that several devices may create independently (a month
    /// shard of one person's library). It is written by a fixed actor at time 0, so every
    /// device makes the byte-identical change and automerge holds one `photos` map, instead of
    /// keeping one device's map and hiding the other's entries.
    pub fn genesis_change(kind: DocKind, doc: &DocId) -> Result<Vec<u8>, LibraryError> {
        let mut genesis = AutoCommit::new().with_actor(ActorId::from(doc.0.as_slice()));
        genesis.put(ROOT, "kind", kind_str(kind))?;
        genesis.put(ROOT, "schema", SCHEMA_VERSION)?;
        genesis.put_object(ROOT, "photos", ObjType::Map)?;
        genesis.commit_with(transaction::CommitOptions::default().with_time(0));
        genesis
            .get_last_local_change()
            .map(|c| c.raw_bytes().to_vec())
            .ok_or_else(|| LibraryError::BadChange("the genesis change is empty".into()))
    }

    /// Writes the root fields every document has. Idempotent.
    pub fn init(&mut self, kind: DocKind) -> Result<(), LibraryError> {
        if self.kind().is_none() || self.photos_obj().is_none() {
            self.edited.whole = true;
        }
        if self.kind().is_none() {
            self.doc.put(ROOT, "kind", kind_str(kind))?;
            self.doc.put(ROOT, "schema", SCHEMA_VERSION)?;
        }
        if self.photos_obj().is_none() {
            self.doc.put_object(ROOT, "photos", ObjType::Map)?;
        }
        Ok(())
    }

    pub fn kind(&self) -> Option<DocKind> {
        match self.doc.get(ROOT, "kind").ok().flatten() {
            Some((Value::Scalar(s), _)) => match s.as_str() {
                Some("library") => Some(DocKind::Library),
                Some("album") => Some(DocKind::Album),
                _ => None,
            },
            _ => None,
        }
    }

    fn photos_obj(&self) -> Option<ObjId> {
        match self.doc.get(ROOT, "photos").ok().flatten() {
            Some((Value::Object(ObjType::Map), id)) => Some(id),
            _ => None,
        }
    }

    fn photos_obj_mut(&mut self) -> Result<ObjId, LibraryError> {
        match self.photos_obj() {
            Some(id) => Ok(id),
            None => {
                self.edited.whole = true;
                Ok(self.doc.put_object(ROOT, "photos", ObjType::Map)?)
            }
        }
    }

    /// Adds or replaces photo entries.
    pub fn put_photos<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a PhotoEntry>,
    ) -> Result<(), LibraryError> {
        let photos = self.photos_obj_mut()?;
        for entry in entries {
            self.edited.entries.insert(entry.id);
            let obj = self
                .doc
                .put_object(&photos, entry.id.to_string(), ObjType::Map)?;
            write_entry(&mut self.doc, &obj, entry)?;
        }
        Ok(())
    }

    /// Removes a photo from this document (not from any other document, and no blob).
    pub fn remove_photo(&mut self, id: &PhotoId) -> Result<bool, LibraryError> {
        let Some(photos) = self.photos_obj() else {
            return Ok(false);
        };
        let key = id.to_string();
        if self.doc.get(&photos, key.as_str())?.is_none() {
            return Ok(false);
        }
        self.edited.entries.insert(*id);
        self.doc.delete(&photos, key.as_str())?;
        Ok(true)
    }

    pub fn contains(&self, id: &PhotoId) -> bool {
        self.photos_obj()
            .and_then(|p| self.doc.get(&p, id.to_string()).ok().flatten())
            .is_some()
    }

    /// Every photo entry in the document. A malformed entry is an error, not skipped silently:
    /// the change that wrote it passed signature and rights checks, so it is a bug worth seeing.
    pub fn photos(&self) -> Result<Vec<PhotoEntry>, LibraryError> {
        let Some(photos) = self.photos_obj() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for key in self.doc.keys(&photos) {
            let Some((Value::Object(ObjType::Map), obj)) = self.doc.get(&photos, key.as_str())?
            else {
                return Err(LibraryError::BadEntry {
                    key,
                    field: "entry",
                });
            };
            out.push(read_entry(&self.doc, &obj, &key, self.base.as_ref())?);
        }
        Ok(out)
    }

    /// Sets an album's title and parent (creating the album fields on first use).
    pub fn set_album(&mut self, meta: &AlbumMeta) -> Result<(), LibraryError> {
        self.edited.whole = true;
        self.doc.put(ROOT, "title", meta.title.as_str())?;
        match &meta.parent {
            Some(parent) => self.doc.put(ROOT, "parent", parent.to_string())?,
            None => self.doc.put(ROOT, "parent", ScalarValue::Null)?,
        }
        if self.doc.get(ROOT, "created_at")?.is_none() {
            self.doc.put(ROOT, "created_at", meta.created_at_ms)?;
        }
        Ok(())
    }

    /// The album's fields. Whether the document is an album is the log's to say
    /// (`DeclareDoc`), not the document's `kind` field, which any writer could set.
    pub fn album(&self) -> Result<AlbumMeta, LibraryError> {
        let title = get_str(&self.doc, &ROOT, "title").unwrap_or_default();
        let parent = get_str(&self.doc, &ROOT, "parent").and_then(|s| s.parse().ok());
        let created_at_ms = get_u64(&self.doc, &ROOT, "created_at").unwrap_or(0);
        Ok(AlbumMeta {
            title,
            parent,
            created_at_ms,
        })
    }

    /// What this device's edits wrote since the last call (see [`Edited`]), and forgets it.
    pub fn take_edited(&mut self) -> Edited {
        std::mem::take(&mut self.edited)
    }

    /// Closes the pending edits into one change and returns its bytes (None if nothing changed),
    /// counted as stored at once. For a document nothing reads the history of between edit
    /// and commit (a fresh copy, a test); the commit path uses [`Document::commit_all`].
    pub fn commit(&mut self, time_ms: i64) -> Option<Vec<u8>> {
        let (mut changes, seq) = self.commit_all(time_ms);
        debug_assert!(
            changes.len() <= 1,
            "more than one change of this device outstanding"
        );
        self.mark_sealed(seq);
        changes.pop()
    }

    /// Closes the pending edits into a change and returns every change of this device not
    /// stored yet, oldest first, with the sequence number they reach: usually that one
    /// change, but automerge may have closed earlier edits into changes of their own (reading
    /// the history does), and those are sealed too, never left in memory alone. Call
    /// [`Document::mark_sealed`] once they are stored; until then they are handed out again.
    pub fn commit_all(&mut self, time_ms: i64) -> (Vec<Vec<u8>>, u64) {
        self.doc
            .commit_with(transaction::CommitOptions::default().with_time(time_ms));
        let (sealed, last_seq) = (self.sealed_seq, self.own_seq());
        if last_seq <= sealed {
            return (Vec::new(), sealed);
        }
        if last_seq == sealed + 1 {
            let last = self.doc.get_last_local_change();
            let changes = last.map(|c| c.raw_bytes().to_vec()).into_iter().collect();
            return (changes, last_seq);
        }
        let actor = self.doc.get_actor().clone();
        let mut mine: Vec<automerge::Change> = (self.doc.get_changes(&[]).into_iter())
            .filter(|c| *c.actor_id() == actor && c.seq() > sealed)
            .collect();
        mine.sort_by_key(|c| c.seq());
        (
            mine.iter().map(|c| c.raw_bytes().to_vec()).collect(),
            last_seq,
        )
    }

    /// Counts this device's changes up to `seq` as stored (see [`Document::commit_all`]).
    pub fn mark_sealed(&mut self, seq: u64) {
        self.sealed_seq = self.sealed_seq.max(seq);
    }
}

fn kind_str(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Library => "library",
        DocKind::Album => "album",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(n: u8) -> PhotoEntry {
        PhotoEntry {
            id: PhotoId([n; 32]),
            original: BlobRef {
                hash: [1; 32],
                len: 10,
            },
            preview: BlobRef {
                hash: [2; 32],
                len: 20,
            },
            thumbnail: BlobRef {
                hash: [3; 32],
                len: 30,
            },
            file_key: FileKey::from_bytes([9; 32]),
            file_name: format!("IMG_{n}.jpg"),
            mime: "image/jpeg".into(),
            size: 1234,
            width: 4000,
            height: 3000,
            display_width: 3000,
            display_height: 4000,
            orientation: Some(6),
            taken_at: Some("2015-07-21T16:17:44".into()),
            make: Some("Canon".into()),
            model: None,
            gps: Some((-22.95, -43.21)),
            added_by: DeviceId([7; 32]),
            added_at_ms: 99,
            caption: None,
            favourite: false,
            tags: vec![],
            trashed_at_ms: None,
            trashed_by: None,
        }
    }

    #[test]
    fn entries_round_trip_through_changes() {
        let device = DeviceId([5; 32]);
        let mut doc = Document::new(&device);
        doc.init(DocKind::Library).unwrap();
        doc.put_photos(&[entry(1), entry(2)]).unwrap();
        let c1 = doc.commit(1).unwrap();
        assert!(doc.remove_photo(&PhotoId([1; 32])).unwrap());
        let c2 = doc.commit(2).unwrap();
        // Rebuilt from changes in reverse order, the document is the same.
        let rebuilt = Document::from_changes(&device, [c2, c1]).unwrap();
        assert_eq!(rebuilt.kind(), Some(DocKind::Library));
        assert_eq!(rebuilt.photos().unwrap(), vec![entry(2)]);
    }

    #[test]
    fn a_snapshot_and_the_changes_after_it_rebuild_the_document() {
        let device = DeviceId([5; 32]);
        let mut doc = Document::new(&device);
        doc.init(DocKind::Library).unwrap();
        doc.put_photos(&[entry(1), entry(2)]).unwrap();
        let c1 = doc.commit(1).unwrap();
        let snapshot = doc.snapshot().unwrap();
        assert!(doc.remove_photo(&PhotoId([1; 32])).unwrap());
        let c2 = doc.commit(2).unwrap();
        let rebuilt = Document::from_snapshot(&device, &snapshot, [c2.clone()]).unwrap();
        assert_eq!(rebuilt.photos().unwrap(), vec![entry(2)]);
        // The device goes on writing after the snapshot: its next change follows its last,
        // and another device that holds every change takes it.
        let mut again = Document::from_snapshot(&device, &snapshot, [c2.clone()]).unwrap();
        again.put_photos(&[entry(3)]).unwrap();
        let c3 = again.commit(3).unwrap();
        let elsewhere = Document::from_changes(&DeviceId([6; 32]), [c1, c2, c3]).unwrap();
        assert_eq!(elsewhere.photos().unwrap(), vec![entry(2), entry(3)]);
    }

    #[test]
    fn edits_automerge_closed_on_its_own_are_committed_and_never_snapshotted_before() {
        let device = DeviceId([5; 32]);
        let mut doc = Document::new(&device);
        doc.init(DocKind::Library).unwrap();
        let (mut stored, seq) = doc.commit_all(1);
        doc.mark_sealed(seq);
        doc.put_photos(&[entry(1)]).unwrap();
        // Reading the history closes the pending edit into a change of its own.
        doc.clock();
        assert!(
            doc.snapshot().is_none(),
            "a snapshot holding a change not stored"
        );
        doc.put_photos(&[entry(2)]).unwrap();
        let (closed, seq) = doc.commit_all(2);
        assert_eq!(
            closed.len(),
            2,
            "the change automerge closed is handed out too"
        );
        // Handed out again until they are stored.
        assert_eq!(doc.commit_all(2).0, closed);
        assert!(doc.snapshot().is_none());
        doc.mark_sealed(seq);
        stored.extend(closed);
        assert!(doc.snapshot().is_some());
        let elsewhere = Document::from_changes(&DeviceId([6; 32]), stored.clone()).unwrap();
        assert_eq!(elsewhere.photos().unwrap(), vec![entry(1), entry(2)]);
        // Nothing stored is handed out again, and its own changes read back count as stored.
        assert!(doc.commit_all(3).0.is_empty());
        let mut reloaded = Document::from_changes(&device, stored.clone()).unwrap();
        assert!(reloaded.commit_all(4).0.is_empty());
        let mut applied = Document::new(&device);
        for change in stored {
            applied.apply_change(change).unwrap();
        }
        assert!(applied.commit_all(5).0.is_empty());
        assert!(applied.snapshot().is_some());
    }

    #[test]
    fn no_snapshot_drops_what_is_not_in_the_history_yet() {
        let device = DeviceId([5; 32]);
        let mut doc = Document::new(&device);
        doc.init(DocKind::Library).unwrap();
        doc.put_photos(&[entry(1)]).unwrap();
        // Edits not committed: no snapshot.
        assert!(doc.snapshot().is_none());
        let c1 = doc.commit(1).unwrap();
        doc.put_photos(&[entry(2)]).unwrap();
        let c2 = doc.commit(2).unwrap();
        // A change waiting for the one it builds on: no snapshot either.
        let mut waiting = Document::new(&DeviceId([6; 32]));
        waiting.apply_change(c2).unwrap();
        assert!(waiting.snapshot().is_none());
        waiting.apply_change(c1).unwrap();
        assert!(waiting.snapshot().is_some());
        // A snapshot that is not one is an error, not a panic.
        assert!(Document::from_snapshot(&device, b"not a document", []).is_err());
    }

    #[test]
    fn shards_created_on_two_devices_keep_both_devices_photos() {
        let doc_id = DocId([8; 32]);
        let genesis = Document::genesis_change(DocKind::Library, &doc_id).unwrap();
        let mut changes = Vec::new();
        for (device, photo) in [(DeviceId([1; 32]), 1u8), (DeviceId([2; 32]), 2u8)] {
            let mut doc = Document::new(&device);
            doc.apply_change(genesis.clone()).unwrap();
            doc.put_photos(&[entry(photo)]).unwrap();
            changes.push(doc.commit(5).unwrap());
        }
        changes.push(genesis);
        let merged = Document::from_changes(&DeviceId([3; 32]), changes).unwrap();
        let mut ids: Vec<_> = merged.photos().unwrap().into_iter().map(|e| e.id).collect();
        ids.sort();
        assert_eq!(ids, vec![PhotoId([1; 32]), PhotoId([2; 32])]);
    }

    #[test]
    fn album_meta_round_trips() {
        let device = DeviceId([5; 32]);
        let mut doc = Document::new(&device);
        doc.init(DocKind::Album).unwrap();
        let meta = AlbumMeta {
            title: "Summer 2026".into(),
            parent: Some(DocId([3; 32])),
            created_at_ms: 5,
        };
        doc.set_album(&meta).unwrap();
        let change = doc.commit(1).unwrap();
        let rebuilt = Document::from_changes(&device, [change]).unwrap();
        assert_eq!(rebuilt.album().unwrap(), meta);
    }

    #[test]
    fn garbage_change_is_an_error() {
        let device = DeviceId([5; 32]);
        assert!(Document::from_changes(&device, [vec![1, 2, 3]]).is_err());
    }
}
