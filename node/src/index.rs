//! The in-memory index over the open documents: photos, albums, which document carries which
//! photo, and the views listings are made of. Rebuilt when the library opens and kept current,
//! document by document, as changes are committed. What a document says for the index is
//! written to disk only inside its sealed snapshot (`store::Readout`), and taken from there
//! at open when no change came after the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kith_protocol::keys::{DocId, PhotoId};
use kith_protocol::library::{AlbumMeta, ChangeEffects, DocKind, LibraryError, PhotoEntry};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::library::State;
use crate::store::Readout;
use crate::views::{AlbumView, Gps, PhotoView};

impl State {
    /// Rebuilds the whole index from the open documents.
    pub(crate) fn reindex(&mut self) {
        self.reindex_with(HashMap::new());
    }

    /// Rebuilds the whole index, taking what `readouts` say of their documents (read out
    /// when they were snapshotted, with no change since) instead of reading them again.
    pub(crate) fn reindex_with(&mut self, readouts: HashMap<DocId, Readout>) {
        self.photos.clear();
        self.albums.clear();
        self.photos_by_doc.clear();
        self.blob_owner.clear();
        self.album_entries.clear();
        self.library_of.clear();
        let ids: Vec<DocId> = self.docs.keys().copied().collect();
        self.reindex_docs_from(&ids, readouts);
    }

    /// Re-reads the index entries of `docs` only: a commit touches a few documents, and
    /// re-reading every document after each batch would make large imports quadratic. A
    /// document that does not read as what it says it is, is reported in `damaged` and left
    /// out of the index; one with no change yet (its key came before its changes) is skipped.
    pub(crate) fn reindex_docs(&mut self, docs: &[DocId]) {
        self.reindex_docs_from(docs, HashMap::new());
    }

    fn reindex_docs_from(&mut self, docs: &[DocId], mut readouts: HashMap<DocId, Readout>) {
        let kind_of = |id: &DocId| self.family.doc_kind(id).unwrap_or(DocKind::Album);
        let given: Vec<(DocId, Option<Indexed>)> = (docs.iter())
            .map(|id| {
                let readout = readouts.remove(id);
                (
                    *id,
                    readout.and_then(|r| Indexed::from_readout(r, kind_of(id))),
                )
            })
            .collect();
        let family = &self.family;
        let me = self.me;
        // Reading the entries out of automerge is what costs; documents are independent, so
        // they are read on every core, then merged into the index in the order given. One not
        // loaded is read from its snapshot and not kept: re-reading the whole library (after a
        // revocation) must not leave every document in automerge.
        let outcomes: Vec<Outcome> = {
            let open_docs = &self.docs;
            given
                .into_par_iter()
                .filter_map(|(id, given)| {
                    if let Some(given) = given {
                        return Some(Outcome::Read(id, Ok(given)));
                    }
                    let open = open_docs.get(&id)?;
                    let kind = family.doc_kind(&id).unwrap_or(DocKind::Album);
                    match open.read(&me, |doc| read_indexed(doc, kind)) {
                        Ok(read) => read.map(|read| Outcome::Read(id, read)),
                        Err(_) => Some(Outcome::Unloadable(id)),
                    }
                })
                .collect()
        };
        let mut read = Vec::new();
        let mut unloadable = Vec::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Read(id, result) => read.push((id, result)),
                Outcome::Unloadable(id) => unloadable.push(id),
            }
        }
        // Rebuilt from their changes, and indexed from them (`library::lazy`).
        self.load_docs(&unloadable);
        // Photos whose entry may have changed: settled once all documents are read.
        let mut affected: HashSet<PhotoId> = HashSet::new();
        for (id, read) in read {
            if read.is_ok() {
                self.unreadable.remove(&id);
                self.unindex_doc(id, &mut affected);
            } else {
                self.unreadable.insert(id);
            }
            match read {
                Ok(Indexed::Library(entries)) => {
                    let ids: HashSet<PhotoId> = entries.iter().map(|e| e.id).collect();
                    for mut entry in entries {
                        self.trust_trash(&mut entry);
                        self.library_of.insert(entry.id, id);
                        affected.insert(entry.id);
                        self.set_photo(entry);
                    }
                    self.photos_by_doc.insert(id, ids);
                }
                Ok(Indexed::Album(meta, entries)) => {
                    let ids = entries.iter().map(|e| e.id).collect();
                    let entries: HashMap<PhotoId, PhotoEntry> = entries
                        .into_iter()
                        .map(|mut e| {
                            self.trust_trash(&mut e);
                            (e.id, e)
                        })
                        .collect();
                    affected.extend(entries.keys().copied());
                    self.album_entries.insert(id, entries);
                    self.albums.insert(id, (meta, ids));
                }
                Err(e) => {
                    let note = format!("document {id}: {e}");
                    if !self.damaged.contains(&note) {
                        tracing::error!("{note}");
                        self.damaged.push(note);
                    }
                }
            }
        }
        for photo in affected {
            self.settle_photo(photo);
        }
    }

    /// Brings the index up to date with received changes: a document whose changes wrote only
    /// photo entries has just those entries re-read; any other is re-read in full. So a batch
    /// costs what it changed, not the size of the documents it touched.
    pub(crate) fn reindex_touched(&mut self, touched: BTreeMap<DocId, Touched>) {
        let mut whole = Vec::new();
        let mut some = Vec::new();
        for (doc, touched) in touched {
            match touched {
                Touched::Entries(keys) if self.indexed_as_logged(&doc) => some.push((doc, keys)),
                _ => whole.push(doc),
            }
        }
        self.load_docs(some.iter().map(|(id, _)| id));
        let read: Vec<(DocId, ReadEntries)> = {
            let open_docs = &self.docs;
            some.par_iter()
                .filter_map(|(id, keys)| {
                    let doc = open_docs.get(id)?.doc()?;
                    let entries = keys
                        .iter()
                        .map(|photo| Ok((*photo, doc.entry(&photo.to_string())?)))
                        .collect();
                    Some((*id, entries))
                })
                .collect()
        };
        let mut affected: HashSet<PhotoId> = HashSet::new();
        for (doc, read) in read {
            match read {
                Ok(entries) => {
                    for (photo, entry) in entries {
                        affected.insert(photo);
                        self.reindex_entry(doc, photo, entry);
                    }
                }
                // Read in full, which reports the document as damaged if it is.
                Err(_) => whole.push(doc),
            }
        }
        self.reindex_docs(&whole);
        for photo in affected {
            self.settle_photo(photo);
        }
    }

    /// Whether `doc` is in the index as what the log says it is, so that some of its entries
    /// can be re-read alone.
    fn indexed_as_logged(&self, doc: &DocId) -> bool {
        if self.unreadable.contains(doc) {
            // Its index is what it was before it stopped reading: re-read it in full.
            return false;
        }
        match self.family.doc_kind(doc).unwrap_or(DocKind::Album) {
            DocKind::Library => {
                self.photos_by_doc.contains_key(doc) && !self.albums.contains_key(doc)
            }
            DocKind::Album => {
                self.albums.contains_key(doc) && !self.photos_by_doc.contains_key(doc)
            }
        }
    }

    /// Puts one re-read entry of `doc` in the index, or takes it out when `doc` no longer
    /// holds it; the photo is settled by the caller.
    fn reindex_entry(&mut self, doc: DocId, photo: PhotoId, entry: Option<PhotoEntry>) {
        let entry = entry.map(|mut entry| {
            self.trust_trash(&mut entry);
            entry
        });
        if let Some(album) = self.album_entries.get_mut(&doc) {
            let ids = self.albums.get_mut(&doc).map(|(_, ids)| ids);
            match entry {
                Some(entry) => {
                    album.insert(photo, entry);
                    if let Some(ids) = ids {
                        ids.insert(photo);
                    }
                }
                None => {
                    album.remove(&photo);
                    if let Some(ids) = ids {
                        ids.remove(&photo);
                    }
                }
            }
            return;
        }
        match entry {
            Some(entry) => {
                self.library_of.insert(photo, doc);
                self.photos_by_doc.entry(doc).or_default().insert(photo);
                self.set_photo(entry);
            }
            None => {
                let held = self
                    .photos_by_doc
                    .get_mut(&doc)
                    .is_some_and(|ids| ids.remove(&photo));
                if held && self.library_of.get(&photo) == Some(&doc) {
                    self.library_of.remove(&photo);
                    self.left_doc.insert(photo, doc);
                }
            }
        }
    }

    /// Takes `doc` out of the index, as a library shard and as an album (what it is can change:
    /// see `legacy_kinds`), noting the photos it held as `affected`.
    fn unindex_doc(&mut self, doc: DocId, affected: &mut HashSet<PhotoId>) {
        for old in self.photos_by_doc.remove(&doc).unwrap_or_default() {
            if self.library_of.get(&old) == Some(&doc) {
                self.library_of.remove(&old);
                self.left_doc.insert(old, doc);
            }
            affected.insert(old);
        }
        if let Some(old) = self.album_entries.remove(&doc) {
            affected.extend(old.into_keys());
        }
        self.albums.remove(&doc);
    }

    /// A photo put in the trash by a device the log has since removed is not in the trash:
    /// a removed device deletes nothing, and the trash ends in a purge.
    fn trust_trash(&self, entry: &mut PhotoEntry) {
        if entry.trashed_by.is_some_and(|d| self.family.is_revoked(&d)) {
            entry.trashed_at_ms = None;
        }
    }

    /// Puts `entry` in the index, replacing the blobs of what it replaces. An entry whose
    /// renditions or file key are replaced is kept restorable (see [`crate::keep`]).
    fn set_photo(&mut self, entry: PhotoEntry) {
        if let Some(old) = self.photos.remove(&entry.id) {
            for blob in old.blobs() {
                self.blob_owner.remove(&blob.hash);
            }
            if old.blobs() != entry.blobs() || old.file_key != entry.file_key {
                let doc = self.library_of.get(&old.id).copied();
                self.keep(old, doc);
            }
        }
        for blob in entry.blobs() {
            self.blob_owner.insert(blob.hash, entry.id);
        }
        self.photos.insert(entry.id, entry);
    }

    /// Decides where a photo's entry comes from: its library shard when this device reads it,
    /// else a copy an album carries, else the photo is not here.
    fn settle_photo(&mut self, photo: PhotoId) {
        if self.library_of.contains_key(&photo) {
            // Back in a shard (a document re-read in full takes its photos out first).
            self.left_doc.remove(&photo);
            return;
        }
        let copy = self
            .album_entries
            .values()
            .find_map(|entries| entries.get(&photo))
            .cloned();
        match copy {
            Some(entry) => self.set_photo(entry),
            None => {
                if let Some(old) = self.photos.remove(&photo) {
                    for blob in old.blobs() {
                        self.blob_owner.remove(&blob.hash);
                    }
                    // Left every document here: purged from the trash by a device allowed
                    // to, its blobs are candidates for collection; any other way, it is kept.
                    let doc = self.left_doc.remove(&photo);
                    if self.purge_ok.remove(&photo) {
                        self.note_dropped(vec![old]);
                    } else {
                        self.keep(old, doc);
                    }
                }
            }
        }
    }

    /// Documents that carry photo `id`'s entry: its library shard and the albums holding it.
    pub(crate) fn docs_holding(&self, id: &PhotoId) -> Vec<DocId> {
        let mut out: Vec<DocId> = self.library_of.get(id).copied().into_iter().collect();
        out.extend(
            self.album_entries
                .iter()
                .filter(|(_, entries)| entries.contains_key(id))
                .map(|(doc, _)| *doc),
        );
        out
    }

    /// Refuses a change to a document this device may only view, saying what to do.
    pub(crate) fn require_writable(&self, id: &DocId) -> Result<()> {
        if self.family.may_write(id, &self.me) {
            return Ok(());
        }
        Err(Error::NotAllowed(format!(
            "{} can only be viewed from this device; ask its owner to share it with --can contribute",
            self.doc_name(id)
        )))
    }

    /// How a document is named in messages: an album's path, else its id.
    pub(crate) fn doc_name(&self, id: &DocId) -> String {
        if self.albums.contains_key(id) {
            format!("album {:?}", self.album_path(id))
        } else {
            format!("document {id}")
        }
    }

    pub(crate) fn album_path(&self, id: &DocId) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(*id);
        let mut seen = BTreeSet::new();
        while let Some(c) = cur {
            if !seen.insert(c) {
                break;
            }
            match self.albums.get(&c) {
                Some((meta, _)) => {
                    parts.push(meta.title.clone());
                    cur = meta.parent;
                }
                None => break,
            }
        }
        parts.reverse();
        parts.join("/")
    }

    /// Finds an album by id, id prefix, title, or `Parent/Child` path. Text that is both an
    /// album's title or path and a prefix of another album's id is refused, naming both.
    pub(crate) fn find_album(&self, name: &str) -> Result<DocId> {
        let found = self.find_album_by_title_or_id(name)?;
        if kith_protocol::names::is_id_prefix(name) {
            let prefix = name.trim().to_ascii_lowercase();
            let others: Vec<String> = self
                .albums
                .keys()
                .filter(|id| **id != found && id.to_string().starts_with(&prefix))
                .map(|id| format!("{:?} ({id})", self.album_path(id)))
                .collect();
            if !others.is_empty() {
                return Err(Error::Invalid(format!(
                    "{name:?} is ambiguous: it names album {:?} ({found}) and is a prefix of the id of album {}; give more characters of the id you mean",
                    self.album_path(&found),
                    others.join(", ")
                )));
            }
        }
        Ok(found)
    }

    fn find_album_by_title_or_id(&self, name: &str) -> Result<DocId> {
        let by_path: Vec<DocId> = self
            .albums
            .keys()
            .filter(|id| self.album_path(id) == name)
            .copied()
            .collect();
        if by_path.len() == 1 {
            return Ok(by_path[0]);
        }
        let by_title: Vec<DocId> = self
            .albums
            .iter()
            .filter(|(_, (meta, _))| meta.title == name)
            .map(|(id, _)| *id)
            .collect();
        match by_title.len() {
            1 => return Ok(by_title[0]),
            0 => {}
            count => {
                return Err(Error::AmbiguousAlbum {
                    name: name.to_owned(),
                    count,
                });
            }
        }
        if name.len() >= 6 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            let by_id: Vec<DocId> = self
                .albums
                .keys()
                .filter(|id| id.to_string().starts_with(&name.to_ascii_lowercase()))
                .copied()
                .collect();
            if by_id.len() == 1 {
                return Ok(by_id[0]);
            }
        }
        Err(Error::NoSuchAlbum(name.to_owned()))
    }

    /// An album and photos named on a command line, all resolved or none.
    pub(crate) fn resolve_album_photos(
        &self,
        album: &str,
        photos: &[String],
    ) -> Result<(DocId, Vec<PhotoId>)> {
        let id = self.find_album(album)?;
        let ids = photos
            .iter()
            .map(|p| self.resolve_photo(p))
            .collect::<Result<Vec<_>>>()?;
        Ok((id, ids))
    }

    /// Resolves a photo id or a unique prefix of one (at least 6 hex characters).
    pub(crate) fn resolve_photo(&self, text: &str) -> Result<PhotoId> {
        let prefix = text.trim().to_ascii_lowercase();
        if prefix.len() < 6 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::NoSuchPhoto(text.to_owned()));
        }
        let matches: Vec<PhotoId> = self
            .photos
            .keys()
            .filter(|id| id.to_string().starts_with(&prefix))
            .copied()
            .collect();
        match matches.len() {
            1 => Ok(matches[0]),
            0 => Err(Error::NoSuchPhoto(text.to_owned())),
            count => Err(Error::AmbiguousPhoto { prefix, count }),
        }
    }

    pub(crate) fn albums_of(&self, id: &PhotoId) -> Vec<DocId> {
        self.albums
            .iter()
            .filter(|(_, (_, set))| set.contains(id))
            .map(|(aid, _)| *aid)
            .collect()
    }

    pub(crate) fn photo_view(&self, e: &PhotoEntry) -> PhotoView {
        let camera = match (&e.make, &e.model) {
            (Some(make), Some(model)) if model.starts_with(make.as_str()) => Some(model.clone()),
            (Some(make), Some(model)) => Some(format!("{make} {model}")),
            (Some(only), None) | (None, Some(only)) => Some(only.clone()),
            (None, None) => None,
        };
        let mut albums: Vec<String> = self
            .albums_of(&e.id)
            .iter()
            .map(|a| self.album_path(a))
            .collect();
        albums.sort();
        PhotoView {
            id: e.id.to_string(),
            file_name: e.file_name.clone(),
            taken_at: e.taken_at.clone(),
            width: e.width,
            height: e.height,
            display_width: e.display_width,
            display_height: e.display_height,
            orientation: e.orientation,
            mime: e.mime.clone(),
            size: e.size,
            camera,
            make: e.make.clone(),
            model: e.model.clone(),
            gps: e.gps.map(|(lat, lon)| Gps { lat, lon }),
            albums,
            added_at_ms: e.added_at_ms,
            caption: e.caption.clone(),
            favourite: e.favourite,
            tags: {
                let mut tags = e.tags.clone();
                tags.sort();
                tags
            },
            trashed_at_ms: e.trashed_at_ms,
            added_by: self
                .family
                .device(&e.added_by)
                .and_then(|(person, _)| self.family.persons.get(&person))
                .map(|p| p.name.clone()),
        }
    }

    pub(crate) fn album_view(&self, id: &DocId) -> AlbumView {
        let (meta, photos) = &self.albums[id];
        AlbumView {
            id: id.to_string(),
            title: meta.title.clone(),
            path: self.album_path(id),
            parent: meta.parent.map(|p| p.to_string()),
            photos: photos
                .iter()
                .filter(|id| {
                    self.photos
                        .get(id)
                        .is_none_or(|e| e.trashed_at_ms.is_none())
                })
                .count(),
            created_at_ms: meta.created_at_ms,
            shared_with: self.grants_of(id),
            access: self
                .family
                .access_of(id, &self.me)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        }
    }
}

/// Entries of one document re-read by key: each photo with its entry, or `None` where the
/// document no longer holds it.
type ReadEntries = std::result::Result<Vec<(PhotoId, Option<PhotoEntry>)>, LibraryError>;

/// What received changes may have changed in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Touched {
    /// Anything: the document is re-read in full.
    Whole,
    /// These photo entries only (keyed in the document by the id in hex).
    Entries(BTreeSet<PhotoId>),
}

impl Touched {
    /// What a change with these effects may have changed: the entries it adds, edits or
    /// removes, or the whole document when it writes anything else or names an entry by a
    /// key that is not a photo id in canonical form.
    pub(crate) fn of(effects: &ChangeEffects) -> Touched {
        if effects.touches_document {
            return Touched::Whole;
        }
        let keys = effects
            .added
            .iter()
            .chain(&effects.edited)
            .chain(&effects.deleted)
            .chain(effects.removed.keys());
        let mut entries = BTreeSet::new();
        for key in keys {
            match key.parse::<PhotoId>() {
                Ok(photo) if photo.to_string() == *key => {
                    entries.insert(photo);
                }
                _ => return Touched::Whole,
            }
        }
        Touched::Entries(entries)
    }

    /// What two sets of changes to one document may have changed together.
    pub(crate) fn merge(self, other: Touched) -> Touched {
        match (self, other) {
            (Touched::Entries(mut a), Touched::Entries(b)) => {
                a.extend(b);
                Touched::Entries(a)
            }
            _ => Touched::Whole,
        }
    }
}

/// What reading one document for the index gave; `Unloadable`: its snapshot does not load.
enum Outcome {
    Read(DocId, std::result::Result<Indexed, LibraryError>),
    Unloadable(DocId),
}

/// Reads what the index holds of one document, as the log says it is. One with no change yet
/// has no fields (`None`). The kind comes from the log, never from the document's own field:
/// one the log never declared (made before kinds were declared) counts as an album (see
/// `legacy_kinds`).
fn read_indexed(
    doc: &kith_protocol::library::Document,
    kind: DocKind,
) -> Option<std::result::Result<Indexed, LibraryError>> {
    doc.kind()?;
    Some(match kind {
        DocKind::Library => doc.photos().map(Indexed::Library),
        DocKind::Album => doc
            .album()
            .and_then(|meta| Ok(Indexed::Album(meta, doc.photos()?))),
    })
}

/// What one document contributes to the index.
enum Indexed {
    Library(Vec<PhotoEntry>),
    Album(AlbumMeta, Vec<PhotoEntry>),
}

impl Indexed {
    /// What a readout says of a document the log says is `kind`; `None` when it does not
    /// say enough (an album whose fields did not read), and the document is read instead.
    fn from_readout(readout: Readout, kind: DocKind) -> Option<Indexed> {
        match kind {
            DocKind::Library => Some(Indexed::Library(readout.entries)),
            DocKind::Album => readout
                .album
                .map(|meta| Indexed::Album(meta, readout.entries)),
        }
    }
}
