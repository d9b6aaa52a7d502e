//! An opened data dir: the stores, the decrypted documents and the in-memory index over them.
//!
//! The index (photos, albums, which photo is in which album) is rebuilt from the sealed changes
//! when the library opens and kept current as changes are committed; nothing of it is written
//! to disk in plaintext.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kith_protocol::keys::{
    DeviceId, DeviceSecret, DocId, FamilyId, FamilySecret, PersonId, PhotoId, SymmetricKey,
};
use kith_protocol::library::{AlbumMeta, DocKind, Document, PhotoEntry};
use kith_protocol::membership::{self, Access, FamilyState, MembershipOp, OpBody, SignedOp};
use kith_protocol::seal::{self, ChangeHeader, ChangeId, SealedChange};
use tokio::sync::Mutex;

use crate::blobs::Blobs;
use crate::datadir::DataDir;
use crate::doc_keys::{OpChain, Rotation};
use crate::error::{Error, Result};
use crate::index::Touched;
use crate::store::{DocRecord, Identity, Store, WriteBatch};
use crate::views::{AlbumView, InitView, PhotoView, StatusView};

mod check;
mod lazy;
mod load;
mod snapshots;
pub(crate) use lazy::OpenDoc;
use load::load_state;
pub(crate) use load::open_sealed;
pub(crate) use snapshots::Due;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) struct State {
    /// The database, to rebuild a document whose snapshot does not load ([`lazy`]).
    pub store: Arc<Store>,
    pub identity: Identity,
    /// This device.
    pub me: DeviceId,
    /// The membership log's ops, and what they evaluate to.
    pub ops: Vec<SignedOp>,
    pub family: FamilyState,
    pub docs: BTreeMap<DocId, OpenDoc>,
    /// Photos of this person's library, by id.
    pub photos: HashMap<PhotoId, PhotoEntry>,
    /// Which photos each library document holds, to re-index one document alone.
    pub photos_by_doc: HashMap<DocId, HashSet<PhotoId>>,
    /// Album id → its metadata and photo ids.
    pub albums: BTreeMap<DocId, (AlbumMeta, BTreeSet<PhotoId>)>,
    pub damaged: Vec<String>,
    /// The sealed changes held of each document, for set reconciliation with peers.
    pub change_ids: HashMap<DocId, BTreeSet<ChangeId>>,
    /// Blob hash → the photo that references it, so a peer's request is checked in O(1).
    pub blob_owner: HashMap<[u8; 32], PhotoId>,
    /// Originals this device set aside because another device holds them (`kith free-space`):
    /// not fetched, not counted as wanted, fetched again on demand.
    pub set_aside: HashSet<[u8; 32]>,
    /// Stored changes this device cannot open yet (no key for their document or epoch): kept,
    /// offered and forwarded as ciphertext, opened when the key arrives.
    pub unopened: HashMap<DocId, BTreeSet<ChangeId>>,
    /// The photo entries each album carries, for photos no library shard here holds (a
    /// relative reads a shared album, not the library behind it).
    pub album_entries: HashMap<DocId, HashMap<PhotoId, PhotoEntry>>,
    /// The library shard that holds each photo this device reads the library of.
    pub library_of: HashMap<PhotoId, DocId>,
    /// Blobs of entries that left the index since the last garbage collection (`purge`).
    pub dropped_blobs: HashSet<[u8; 32]>,
    /// Photos whose entry the changes being applied purge from the trash with the right to:
    /// their blobs may go (see [`crate::keep`]).
    pub purge_ok: HashSet<PhotoId>,
    /// Who removed a photo's entry, as the changes being applied say.
    pub removed_by: HashMap<PhotoId, DeviceId>,
    /// The library shard a photo's entry just left.
    pub left_doc: HashMap<PhotoId, DocId>,
    /// Documents whose last full read failed (listed in `damaged`): their index is stale.
    pub unreadable: HashSet<DocId>,
    /// Entries kept restorable ([`crate::keep`]), and those not written to disk yet.
    pub kept: HashMap<PhotoId, crate::store::Kept>,
    pub kept_unsaved: Vec<PhotoId>,
    /// The stored changes of other devices by author, to vouch for those of revoked ones ([`crate::vouch`]).
    pub changes_by_author: HashMap<DeviceId, BTreeSet<ChangeId>>,
    /// The epoch each open document's history starts at, when it started over
    /// ([`crate::fresh_start`]), and that history's base.
    pub lineage: HashMap<DocId, (u32, ChangeId)>,
    /// How many stored changes each document's snapshot holds, as loaded or last written
    /// (see [`snapshots`]).
    pub snapshotted: HashMap<DocId, usize>,
    /// Documents whose memory holds what no stored change holds (a history cut again as it
    /// was, over changes of others that went; a commit that failed and could not be undone
    /// by reading the disk again): never snapshotted until the library opens again.
    pub memory_ahead: HashSet<DocId>,
}

/// What a commit added, as other devices need it: pushed live to connected peers.
#[derive(Clone, Debug)]
pub enum Update {
    Ops(Vec<SignedOp>),
    Changes(Vec<SealedChange>),
}

/// An opened kith data dir.
pub struct Library {
    pub(crate) data_dir: DataDir,
    pub(crate) device: DeviceSecret,
    pub(crate) store: Arc<Store>,
    pub(crate) blobs: Blobs,
    pub(crate) state: Mutex<State>,
    /// Every committed op, document and change, for the sync sessions to push.
    pub(crate) updates: tokio::sync::broadcast::Sender<Update>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Creates a device identity and a new family in which `person_name` is admin.
    pub async fn init(
        data_dir: &DataDir,
        person_name: &str,
        device_name: &str,
    ) -> Result<InitView> {
        let person_name = person_name.trim();
        if person_name.is_empty() {
            return Err(Error::Invalid("the person's name must not be empty".into()));
        }
        crate::people::check_new_names(person_name, device_name)?;
        data_dir.create()?;
        // An existing database whose identity was never written (init interrupted) keeps its
        // device key; one with an identity, or without a readable key, is left untouched.
        let device = if data_dir.db_file().exists() {
            let secret = data_dir.read_device_secret().map_err(|e| {
                Error::Corrupt(format!(
                    "{} holds a database but its device key cannot be read ({e}); nothing was changed",
                    data_dir.root().display()
                ))
            })?;
            if Store::peek_has_identity(&data_dir.db_file())? {
                return Err(Error::AlreadyInitialised {
                    path: data_dir.root().to_path_buf(),
                    device: secret.device_id().to_string(),
                });
            }
            secret
        } else {
            let secret = DeviceSecret::from_seeds(rand::random(), rand::random());
            data_dir.write_device_secret(&secret)?;
            secret
        };
        let store = Store::open(&data_dir.db_file(), device.storage_key())?;
        let family = FamilyId(rand::random());
        let person = PersonId(rand::random());
        let genesis = membership::SignedOp::sign(
            MembershipOp {
                version: 1,
                parents: Vec::new(),
                author: device.device_id(),
                time_ms: now_ms(),
                body: OpBody::CreateFamily {
                    family,
                    person,
                    name: person_name.to_owned(),
                    device_x25519: device.x25519_public(),
                    device_name: device_name.to_owned(),
                },
            },
            &device,
        );
        let identity = Identity {
            family,
            family_secret: rand::random(),
            person,
            device_name: device_name.to_owned(),
            library_key: rand::random(),
            root_op: genesis.id().0,
        };
        store.commit(&WriteBatch {
            identity: Some(identity.clone()),
            ops: vec![genesis],
            ..WriteBatch::default()
        })?;
        Ok(InitView {
            data_dir: data_dir.root().display().to_string(),
            device_id: device.device_id().to_string(),
            person: person_name.to_owned(),
            family_id: identity.family.to_string(),
            kept: None,
        })
    }

    /// Opens an initialised data dir: stores, membership, documents, index.
    pub async fn open(data_dir: &DataDir) -> Result<Arc<Library>> {
        if !data_dir.db_file().exists() {
            return Err(Error::NotInitialised(data_dir.root().to_path_buf()));
        }
        let device = data_dir.read_device_secret()?;
        let store = Arc::new(Store::open(&data_dir.db_file(), device.storage_key())?);
        let state = load_state(&store, &device, data_dir)?;
        let blobs = Blobs::open(&data_dir.blobs_dir()).await?;
        let library = Arc::new(Library {
            data_dir: data_dir.clone(),
            device,
            store,
            blobs,
            state: Mutex::new(state),
            updates: tokio::sync::broadcast::channel(1024).0,
        });
        // A history that started over, whose base arrived before a crash or a restart.
        {
            let mut state = library.state.lock().await;
            library.follow_fresh_starts(&mut state)?;
            library.declare_legacy_shards(&mut state)?;
        }
        Ok(library)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    pub fn device_id(&self) -> DeviceId {
        self.device.device_id()
    }

    pub(crate) fn family_secret(&self, state: &State) -> FamilySecret {
        FamilySecret::from_bytes(state.identity.family_secret)
    }

    /// Snapshots the documents a restart would replay much of, and stops the blob store
    /// cleanly.
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        self.save_snapshots(&mut state, snapshots::Due::Closing);
        drop(state);
        self.blobs.shutdown().await;
    }

    pub async fn status(&self, running: bool, api: Option<String>) -> Result<StatusView> {
        let mut view = self.status_of_state(running, api).await?;
        // Sizes on disk are read with the library's lock let go, off the async threads:
        // walking the blob directory costs what it holds (a file per large rendition).
        let (db, blobs) = (self.data_dir.db_file(), self.data_dir.blobs_dir());
        let sizes = tokio::task::spawn_blocking(move || (file_size(&db), dir_size(&blobs))).await;
        (view.db_bytes, view.blob_bytes) = sizes.unwrap_or_default();
        Ok(view)
    }

    async fn status_of_state(&self, running: bool, api: Option<String>) -> Result<StatusView> {
        let state = self.state.lock().await;
        let me = self.device.device_id();
        let (person, role) = state
            .family
            .persons
            .values()
            .find(|p| p.devices.contains_key(&me))
            .map(|p| (p.name.clone(), p.role.to_string()))
            .unwrap_or_default();
        Ok(StatusView {
            running,
            data_dir: self.data_dir.root().display().to_string(),
            device_id: me.to_string(),
            device_name: state.identity.device_name.clone(),
            person,
            role,
            family_id: state.identity.family.to_string(),
            photos: state
                .photos
                .values()
                .filter(|p| p.trashed_at_ms.is_none())
                .count(),
            kept: state
                .kept
                .values()
                .filter(|k| !state.photos.contains_key(&k.entry.id))
                .count(),
            albums: state.albums.len(),
            documents: state.docs.len(),
            changes: self.store.change_count()?,
            db_bytes: 0,
            blob_bytes: 0,
            damaged: state.damaged.clone(),
            api,
            sync: None,
        })
    }

    /// Photos that are not in the trash, newest first; only those of `album` when given.
    pub async fn photos(&self, album: Option<&str>) -> Result<Vec<PhotoView>> {
        let filter = crate::edit::PhotoFilter {
            album: album.map(str::to_owned),
            ..Default::default()
        };
        self.photos_matching(&filter).await
    }

    pub async fn albums(&self) -> Result<Vec<AlbumView>> {
        let state = self.state.lock().await;
        let mut out: Vec<AlbumView> = state.albums.keys().map(|id| state.album_view(id)).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub async fn create_album(&self, title: &str, parent: Option<&str>) -> Result<AlbumView> {
        let mut state = self.state.lock().await;
        let id = self.create_album_locked(&mut state, title, parent)?;
        Ok(state.album_view(&id))
    }

    pub(crate) fn create_album_locked(
        &self,
        state: &mut State,
        title: &str,
        parent: Option<&str>,
    ) -> Result<DocId> {
        let parent = parent.map(|p| state.find_album(p)).transpose()?;
        self.create_album_under(state, title, parent)
    }

    /// Creates an album under `parent` (an album id), refusing a title its siblings have.
    pub(crate) fn create_album_under(
        &self,
        state: &mut State,
        title: &str,
        parent: Option<DocId>,
    ) -> Result<DocId> {
        let title = validate_title(title)?;
        if state
            .albums
            .values()
            .any(|(meta, _)| meta.title == title && meta.parent == parent)
        {
            return Err(Error::AlbumExists(title));
        }
        let id = DocId(rand::random());
        let record = DocRecord::new(1, rand::random(), None);
        // Sub-albums follow their parent's sharing until set otherwise.
        let grants = parent
            .and_then(|p| state.family.docs.get(&p))
            .map(|d| d.grants.iter().map(|(p, a)| (*p, *a)).collect())
            .unwrap_or_default();
        let mut doc = Document::new(&self.device.device_id());
        doc.init(DocKind::Album).map_err(corrupt)?;
        doc.set_album(&AlbumMeta {
            title,
            parent,
            created_at_ms: now_ms(),
        })
        .map_err(corrupt)?;
        state.docs.insert(id, OpenDoc::new(record.clone(), doc));
        let new = NewDoc {
            id,
            record,
            genesis: None,
            grants,
        };
        self.commit_docs(state, &[id], vec![new])?;
        Ok(id)
    }

    pub async fn rename_album(&self, album: &str, new_title: &str) -> Result<AlbumView> {
        let mut state = self.state.lock().await;
        let id = state.find_album(album)?;
        state.require_writable(&id)?;
        let title = validate_title(new_title)?;
        let mut meta = state.albums[&id].0.clone();
        if state
            .albums
            .iter()
            .any(|(other, (m, _))| *other != id && m.title == title && m.parent == meta.parent)
        {
            return Err(Error::AlbumExists(title));
        }
        meta.title = title;
        state.doc_mut(&id)?.set_album(&meta).map_err(corrupt)?;
        self.commit_docs(&mut state, &[id], Vec::new())?;
        Ok(state.album_view(&id))
    }

    /// Adds photos (by id or unique id prefix) to an album; returns how many were new there.
    pub async fn add_to_album(&self, album: &str, photos: &[String]) -> Result<usize> {
        let mut state = self.state.lock().await;
        let (id, ids) = state.resolve_album_photos(album, photos)?;
        state.require_writable(&id)?;
        let added = self.add_to_album_locked(&mut state, &id, &ids)?;
        Ok(added)
    }

    pub(crate) fn add_to_album_locked(
        &self,
        state: &mut State,
        album: &DocId,
        ids: &[PhotoId],
    ) -> Result<usize> {
        let entries: Vec<PhotoEntry> = ids
            .iter()
            .filter(|id| {
                !state
                    .albums
                    .get(album)
                    .is_some_and(|(_, set)| set.contains(id))
            })
            .filter_map(|id| state.photos.get(id).cloned())
            .collect();
        if entries.is_empty() {
            return Ok(0);
        }
        state
            .doc_mut(album)?
            .put_photos(&entries)
            .map_err(corrupt)?;
        self.commit_docs(state, &[*album], Vec::new())?;
        Ok(entries.len())
    }

    pub async fn remove_from_album(&self, album: &str, photos: &[String]) -> Result<usize> {
        let mut state = self.state.lock().await;
        let (id, ids) = state.resolve_album_photos(album, photos)?;
        state.require_writable(&id)?;
        let doc = state.doc_mut(&id)?;
        let mut removed = 0;
        for photo in &ids {
            if doc.remove_photo(photo).map_err(corrupt)? {
                removed += 1;
            }
        }
        if removed > 0 {
            self.commit_docs(&mut state, &[id], Vec::new())?;
        }
        Ok(removed)
    }

    /// Seals the pending edits of `docs` into changes and commits them, with `new_docs`'
    /// records (and their genesis changes), in one durable transaction; then refreshes the index.
    /// If the commit fails, the in-memory state is rebuilt from the database, so memory never
    /// runs ahead of disk.
    pub(crate) fn commit_docs(
        &self,
        state: &mut State,
        docs: &[DocId],
        new_docs: Vec<NewDoc>,
    ) -> Result<()> {
        let new: HashSet<DocId> = new_docs.iter().map(|n| n.id).collect();
        let result = self.seal_and_commit(state, docs, new_docs);
        if let Err(e) = &result {
            tracing::error!("commit failed, reloading the library from disk: {e}");
            match load_state(&self.store, &self.device, &self.data_dir) {
                Ok(fresh) => *state = fresh,
                Err(reload) => {
                    tracing::error!("reload failed too: {reload}");
                    state.memory_ahead.extend(docs.iter().copied());
                }
            }
            return result;
        }
        // The index re-reads what these edits wrote, not the documents they wrote into.
        let touched = (docs.iter())
            .filter_map(|id| {
                let edited = state.docs.get_mut(id)?.doc_mut()?.take_edited();
                let touched = if new.contains(id) || edited.whole {
                    Touched::Whole
                } else {
                    Touched::Entries(edited.entries)
                };
                Some((*id, touched))
            })
            .collect();
        state.reindex_touched(touched);
        self.save_kept(state);
        self.save_snapshots(state, snapshots::Due::Growing);
        Ok(())
    }

    fn seal_and_commit(
        &self,
        state: &mut State,
        docs: &[DocId],
        new_docs: Vec<NewDoc>,
    ) -> Result<()> {
        // Nothing is sealed under a key that reached a removed device (see `doc_keys`).
        self.rekey_before_sealing(state, docs)?;
        let time = now_ms() as i64;
        let me = self.device.device_id();
        let seal = |id: &DocId, record: &DocRecord, change: &[u8]| {
            let header = ChangeHeader {
                doc: *id,
                epoch: record.epoch,
                author: me,
            };
            let key = SymmetricKey::from_bytes(record.key);
            seal::seal_change(&key, &header, rand::random(), change, &self.device)
        };
        let mut batch = WriteBatch::default();
        let mut chain = OpChain::new(state);
        for new in &new_docs {
            for (person, access) in &new.grants {
                chain.push(
                    &self.device,
                    OpBody::GrantAlbum {
                        album: new.id,
                        person: *person,
                        access: *access,
                    },
                )?;
            }
            // Declared in the log, so no writer of the document can change what it is.
            let kind = state
                .docs
                .get(&new.id)
                .and_then(|open| open.doc()?.kind())
                .ok_or_else(|| Error::Corrupt(format!("new document {} has no kind", new.id)))?;
            chain.push(&self.device, OpBody::DeclareDoc { doc: new.id, kind })?;
            let first = Rotation {
                doc: new.id,
                epoch: new.record.epoch,
                key: new.record.key,
                earlier: Vec::new(),
            };
            if !chain.rotate(&self.device, &state.my_person(), &first)? {
                return Err(Error::Corrupt(format!(
                    "the family's log refused the key of new document {}",
                    new.id
                )));
            }
        }
        for id in docs {
            if !new_docs.iter().any(|n| n.id == *id) {
                state.require_writable(id)?;
            }
        }
        batch.ops = std::mem::take(&mut chain.fresh);
        for new in new_docs {
            if let Some(genesis) = &new.genesis {
                batch
                    .changes
                    .push((new.id, seal(&new.id, &new.record, genesis)));
            }
            batch.docs.push((new.id, new.record));
        }
        let mut sealed = Vec::new();
        for id in docs {
            let open = state
                .docs
                .get_mut(id)
                .ok_or_else(|| Error::Corrupt(format!("document {id} is not open")))?;
            // Not loaded since the library opened: nothing was edited in it.
            let (record, Some(doc)) = open.split_mut() else {
                continue;
            };
            let (changes, seq) = doc.commit_all(time);
            for change in changes {
                batch.changes.push((*id, seal(id, record, &change)));
            }
            sealed.push((*id, seq));
        }
        let changes: Vec<(DocId, ChangeId)> =
            batch.changes.iter().map(|(d, c)| (*d, c.id())).collect();
        self.persist(batch)?;
        // Stored: not handed out again (a failed commit hands them out to the next).
        for (id, seq) in sealed {
            if let Some(doc) = state.docs.get_mut(&id).and_then(OpenDoc::doc_mut) {
                doc.mark_sealed(seq);
            }
        }
        state.ops = chain.ops;
        state.family = chain.family;
        for (doc, id) in changes {
            state.change_ids.entry(doc).or_default().insert(id);
        }
        Ok(())
    }

    /// Commits a batch durably, then hands what other devices need to the sync sessions.
    pub(crate) fn persist(&self, batch: WriteBatch) -> Result<()> {
        self.store.commit(&batch)?;
        // Nobody listening (no peers connected) is not an error.
        if !batch.ops.is_empty() {
            let _ = self.updates.send(Update::Ops(batch.ops));
        }
        if !batch.changes.is_empty() {
            let changes = batch.changes.into_iter().map(|(_, c)| c).collect();
            let _ = self.updates.send(Update::Changes(changes));
        }
        Ok(())
    }

    /// Brings the document keys up to date with the log (see [`crate::doc_keys`]); the running
    /// node calls it when it starts.
    pub async fn settle_keys_now(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        self.settle_keys(&mut state, false)
    }

    pub(crate) fn reload_state(&self) -> Result<State> {
        load_state(&self.store, &self.device, &self.data_dir)
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Update> {
        self.updates.subscribe()
    }
}

/// A document created by this commit: its record and, for shared-genesis documents, the
/// genesis change (already applied to the open document). Its key reaches the devices that
/// may read it through a `RotateKey` made in the same commit, after `grants`.
pub(crate) struct NewDoc {
    pub id: DocId,
    pub record: DocRecord,
    pub genesis: Option<Vec<u8>>,
    pub grants: Vec<(PersonId, Access)>,
}

fn corrupt(e: kith_protocol::library::LibraryError) -> Error {
    Error::Corrupt(e.to_string())
}

fn validate_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() {
        return Err(Error::Invalid("an album title must not be empty".into()));
    }
    if title.contains('/') {
        return Err(Error::Invalid(format!(
            "album title {title:?} contains '/', which separates nested albums; use --parent"
        )));
    }
    Ok(title.to_owned())
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn dir_size(path: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The library shard a photo belongs to: its month of taken-at, else `undated`.
pub(crate) fn shard_of(entry: &PhotoEntry) -> String {
    entry
        .taken_at
        .as_deref()
        .and_then(|t| t.get(..7))
        .filter(|m| m.len() == 7 && m.as_bytes()[4] == b'-')
        .unwrap_or("undated")
        .to_owned()
}

/// The id of a person's library shard, keyed by their library key: only those who can read
/// the library can tell which month a shard holds.
pub(crate) fn shard_doc_id(library_key: &[u8; 32], shard: &str) -> DocId {
    let key = blake3::derive_key("kith library shard id v1", library_key);
    DocId(*blake3::keyed_hash(&key, shard.as_bytes()).as_bytes())
}
