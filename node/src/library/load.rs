//! Opening a library: the in-memory state built from the database. Each document is loaded
//! from its snapshot (`store::snapshots`) plus the stored changes the snapshot does not hold,
//! or, without a usable snapshot, from every stored change; documents load in parallel.
//! Damaged items are reported in `damaged` and left out; the rest of the library opens.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use kith_protocol::keys::{DeviceId, DeviceSecret, DocId, SymmetricKey};
use kith_protocol::library::{DecodedChange, Document};
use kith_protocol::membership::{self, FamilyState, OpId, SignedOp};
use kith_protocol::seal::{self, ChangeId, SealedChange};
use rayon::prelude::*;

use super::{OpenDoc, State};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::store::{ChangeHead, DocRecord, Readout, Snapshot, Store, key_fingerprints};

/// Builds the in-memory state from the database.
pub(super) fn load_state(
    store: &Arc<Store>,
    device: &DeviceSecret,
    data_dir: &DataDir,
) -> Result<State> {
    let loaded = store.load_records(data_dir.root())?;
    let mut damaged = loaded.damaged;
    let heads = store.change_heads(&mut damaged)?;
    let family = membership::evaluate_with_root(OpId(loaded.identity.root_op), &loaded.ops)
        .map_err(|e| Error::Corrupt(format!("the membership log does not evaluate: {e}")))?;
    for d in &damaged {
        tracing::error!("{d}");
    }
    let mut records: HashMap<DocId, DocRecord> = loaded.docs.into_iter().collect();
    let lineage = loaded_lineage(&family, &loaded.ops, &heads, &records);
    let mut snapshots = store.load_snapshots()?;
    let me = device.device_id();
    let mut revoked_authors: HashMap<DeviceId, BTreeSet<ChangeId>> = HashMap::new();
    let mut by_doc: HashMap<DocId, Vec<ChangeHead>> = HashMap::new();
    for (doc_id, head) in heads {
        if head.author != me {
            (revoked_authors.entry(head.author).or_default()).insert(head.id);
        }
        by_doc.entry(doc_id).or_default().push(head);
    }
    let mut ids: BTreeSet<DocId> = records.keys().copied().collect();
    ids.extend(by_doc.keys().copied());
    let jobs: Vec<DocJob> = ids
        .into_iter()
        .map(|id| DocJob {
            id,
            record: records.remove(&id),
            snapshot: snapshots.remove(&id),
            changes: by_doc.remove(&id).unwrap_or_default(),
        })
        .collect();
    let context = Context {
        store,
        family: &family,
        lineage: &lineage,
        me,
    };
    let loaded_docs: Vec<LoadedDoc> = jobs.into_par_iter().map(|j| context.load(j)).collect();
    let mut docs = BTreeMap::new();
    let mut change_ids = HashMap::new();
    let mut unopened = HashMap::new();
    let mut snapshotted = HashMap::new();
    let mut readouts = HashMap::new();
    for l in loaded_docs {
        if let Some(readout) = l.readout {
            readouts.insert(l.id, readout);
        }
        damaged.extend(l.damaged);
        if !l.change_ids.is_empty() {
            change_ids.insert(l.id, l.change_ids);
        }
        if !l.unopened.is_empty() {
            unopened.insert(l.id, l.unopened);
        }
        if l.snapshotted > 0 {
            snapshotted.insert(l.id, l.snapshotted);
        }
        if let Some(open) = l.open {
            docs.insert(l.id, open);
        }
    }
    let mut state = State {
        store: Arc::clone(store),
        identity: loaded.identity,
        me,
        ops: loaded.ops,
        family,
        docs,
        photos: HashMap::new(),
        photos_by_doc: HashMap::new(),
        albums: BTreeMap::new(),
        damaged,
        change_ids,
        blob_owner: HashMap::new(),
        set_aside: store.load_set_aside()?,
        purge_ok: HashSet::new(),
        removed_by: HashMap::new(),
        left_doc: HashMap::new(),
        unreadable: HashSet::new(),
        kept: HashMap::new(),
        kept_unsaved: Vec::new(),
        changes_by_author: revoked_authors,
        unopened,
        album_entries: HashMap::new(),
        library_of: HashMap::new(),
        dropped_blobs: HashSet::new(),
        lineage,
        snapshotted,
        memory_ahead: HashSet::new(),
    };
    for kept in store.load_kept(&mut state.damaged)? {
        state.kept.insert(kept.entry.id, kept);
    }
    state.reindex_with(readouts);
    Ok(state)
}

/// One document to load: its record (when this device holds its key), snapshot and the heads
/// of its stored changes.
struct DocJob {
    id: DocId,
    record: Option<DocRecord>,
    snapshot: Option<Snapshot>,
    changes: Vec<ChangeHead>,
}

/// What loading one document gives the state.
struct LoadedDoc {
    id: DocId,
    open: Option<OpenDoc>,
    change_ids: BTreeSet<ChangeId>,
    unopened: BTreeSet<ChangeId>,
    damaged: Vec<String>,
    /// How many stored changes the snapshot it loaded from holds (0: none was used).
    snapshotted: usize,
    /// What the index reads out of it, from a snapshot with no change after it.
    readout: Option<Readout>,
}

impl LoadedDoc {
    fn of(
        id: DocId,
        open: OpenDoc,
        opened: Opened,
        snapshotted: usize,
        readout: Option<Readout>,
    ) -> LoadedDoc {
        LoadedDoc {
            id,
            open: Some(open),
            change_ids: opened.change_ids,
            unopened: opened.unopened,
            damaged: opened.damaged,
            snapshotted,
            readout,
        }
    }
}

/// A loaded document, on the base of its history when it started over.
fn loaded_doc(record: DocRecord, mut doc: Document, base: Option<[u8; 32]>) -> OpenDoc {
    if let Some(base) = base {
        doc.set_base(base);
    }
    OpenDoc::new(record, doc)
}

/// The stored changes of one document, opened.
#[derive(Default)]
struct Opened {
    bytes: Vec<Vec<u8>>,
    change_ids: BTreeSet<ChangeId>,
    unopened: BTreeSet<ChangeId>,
    damaged: Vec<String>,
    /// The hash of the base its history starts over from, when it did.
    base: Option<[u8; 32]>,
}

/// What every document's load reads.
pub(super) struct Context<'a> {
    pub store: &'a Store,
    pub family: &'a FamilyState,
    pub lineage: &'a HashMap<DocId, (u32, ChangeId)>,
    pub me: DeviceId,
}

impl Context<'_> {
    fn load(&self, job: DocJob) -> LoadedDoc {
        let DocJob {
            id,
            record,
            snapshot,
            changes,
        } = job;
        let Some(record) = record else {
            // Held for others: nothing of it opens here.
            let change_ids: BTreeSet<ChangeId> = changes.iter().map(|c| c.id).collect();
            return LoadedDoc {
                id,
                open: None,
                unopened: change_ids.clone(),
                change_ids,
                damaged: Vec::new(),
                snapshotted: 0,
                readout: None,
            };
        };
        let snapshot = snapshot.filter(|s| self.snapshot_usable(&id, &record, &changes, s));
        if let Some(snapshot) = snapshot {
            let held: HashSet<ChangeId> = snapshot.changes.iter().copied().collect();
            let mut opened = self.open_changes(&id, &record, &changes, &held);
            let after = std::mem::take(&mut opened.bytes);
            let snapshotted = snapshot.changes.len();
            // With no change after it, what the snapshot read out is the document's: it is
            // indexed from that, and read into automerge when first used (`lazy`).
            if let Some(readout) = snapshot.readout.filter(|_| after.is_empty()) {
                let open = OpenDoc::saved(record, snapshot.doc, opened.base);
                return LoadedDoc::of(id, open, opened, snapshotted, Some(readout));
            }
            match Document::from_snapshot(&self.me, &snapshot.doc, after) {
                Ok(doc) => {
                    let open = loaded_doc(record, doc, opened.base);
                    return LoadedDoc::of(id, open, opened, snapshotted, None);
                }
                Err(e) => {
                    tracing::warn!(doc = %id, "rebuilding the document from its changes, its snapshot does not load: {e}");
                }
            }
        }
        let mut opened = self.open_changes(&id, &record, &changes, &HashSet::new());
        match Document::from_changes(&self.me, std::mem::take(&mut opened.bytes)) {
            Ok(doc) => {
                let open = loaded_doc(record, doc, opened.base);
                LoadedDoc::of(id, open, opened, 0, None)
            }
            Err(e) => {
                tracing::error!(doc = %id, "document does not load: {e}");
                let mut damaged = opened.damaged;
                damaged.push(format!("document {id}: {e}"));
                LoadedDoc {
                    id,
                    open: None,
                    change_ids: opened.change_ids,
                    unopened: opened.unopened,
                    damaged,
                    snapshotted: 0,
                    readout: None,
                }
            }
        }
    }

    /// A document rebuilt from its stored changes (its snapshot did not load when first
    /// used), with what opening them reported.
    pub(super) fn rebuild(
        &self,
        id: &DocId,
        record: &DocRecord,
        stored: &[ChangeHead],
    ) -> Result<(Document, Vec<String>)> {
        let mut opened = self.open_changes(id, record, stored, &HashSet::new());
        let mut doc = Document::from_changes(&self.me, std::mem::take(&mut opened.bytes))
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        if let Some(base) = opened.base {
            doc.set_base(base);
        }
        Ok((doc, opened.damaged))
    }

    /// Whether a snapshot holds only changes that loading would open: stored, of the history
    /// the document is at, under a key this device holds, made with keys it still holds. A snapshot written before a history
    /// started over, or before a change it holds was sealed again, is not used. Documents on a
    /// history the log cancelled ([`DocRecord::cancelled`]) are always rebuilt from changes.
    fn snapshot_usable(
        &self,
        doc: &DocId,
        record: &DocRecord,
        changes: &[ChangeHead],
        snapshot: &Snapshot,
    ) -> bool {
        let held_keys = key_fingerprints(record);
        if !record.cancelled.is_empty() || !snapshot.keys.iter().all(|k| held_keys.contains(k)) {
            return false;
        }
        let opens: HashSet<ChangeId> = changes
            .iter()
            .filter(|c| self.key_of(doc, record, c.epoch).is_some())
            .map(|c| c.id)
            .collect();
        snapshot.changes.iter().all(|id| opens.contains(id))
    }

    /// The key a stored change opens with, or `None` while it waits: for the key of its
    /// document and epoch, or because it belongs to another history than the one loaded.
    fn key_of(&self, doc: &DocId, record: &DocRecord, epoch: u32) -> Option<[u8; 32]> {
        // Of a history that started over, only the one the document is at is loaded.
        let start = self.lineage.get(doc).map_or(0, |(epoch, _)| *epoch);
        let fresh = self.family.fresh_start(doc);
        let other_history =
            epoch < start || fresh.is_some_and(|f| epoch >= f.epoch && start < f.epoch);
        record.key_for(epoch).filter(|_| !other_history)
    }

    /// Opens the stored changes of one document but those in `held` (a snapshot holds them),
    /// and reads the base of its history. Only the changes opened are read from the store.
    fn open_changes(
        &self,
        doc: &DocId,
        record: &DocRecord,
        changes: &[ChangeHead],
        held: &HashSet<ChangeId>,
    ) -> Opened {
        let mut out = Opened::default();
        let base_id = self.lineage.get(doc).map(|(_, base)| *base);
        let mut to_read = Vec::new();
        for head in changes {
            let id = head.id;
            if self.key_of(doc, record, head.epoch).is_none() {
                out.change_ids.insert(id);
                out.unopened.insert(id);
            } else if held.contains(&id) && base_id != Some(id) {
                out.change_ids.insert(id);
            } else {
                to_read.push(id);
            }
        }
        let read = match self.store.read_changes(doc, &to_read) {
            Ok(read) => read,
            Err(e) => {
                out.damaged
                    .push(format!("document {doc}: its changes do not read: {e}"));
                return out;
            }
        };
        out.damaged
            .extend(read.damaged.into_iter().map(|(_, reason)| reason));
        for sealed in &read.changes {
            self.open_one(doc, record, sealed, base_id, held, &mut out);
        }
        out
    }

    /// Opens one stored change into `out`.
    fn open_one(
        &self,
        doc: &DocId,
        record: &DocRecord,
        sealed: &SealedChange,
        base_id: Option<ChangeId>,
        held: &HashSet<ChangeId>,
        out: &mut Opened,
    ) {
        let id = sealed.id();
        let Some(key) = self.key_of(doc, record, sealed.header().epoch) else {
            return;
        };
        let is_base = base_id == Some(id);
        // On a history the log cancelled (see `DocRecord::cancelled`), this device's own
        // changes and the cut's base open with the key that lost. Another device's change
        // under that key waited unchecked while this device was orphaned, and still waits.
        let cancelled = record.cancelled_key_for(sealed.header().epoch);
        let opened = match (open_sealed(self.family, doc, key, sealed), cancelled) {
            (Err(reason), Some(cancelled)) => {
                if sealed.header().author != self.me && !is_base {
                    out.change_ids.insert(id);
                    out.unopened.insert(id);
                    return;
                }
                open_sealed(self.family, doc, cancelled, sealed).map_err(|_| reason)
            }
            (opened, _) => opened,
        };
        match opened {
            Ok(bytes) => {
                out.change_ids.insert(id);
                if is_base && let Ok(base) = DecodedChange::decode(bytes.clone()) {
                    out.base = Some(base.hash());
                }
                if !held.contains(&id) {
                    out.bytes.push(bytes);
                }
            }
            Err(reason) => {
                tracing::error!(change = %id, doc = %doc, "{reason}");
                out.damaged.push(format!("change {id}: {reason}"));
            }
        }
    }
}

/// The history each document that started over is loaded at, and that history's base: the
/// newest cut this device holds the base of (with its epoch's key) and no change from before,
/// that is one it followed or made; else the first history, and
/// [`super::Library::follow_fresh_starts`] follows the newest cut. A cut the log cancelled counts too
/// (`fresh_start::cancelled`): a device that moved to it stays there until it cuts it again or
/// follows another.
fn loaded_lineage(
    family: &FamilyState,
    ops: &[SignedOp],
    changes: &[(DocId, ChangeHead)],
    records: &HashMap<DocId, DocRecord>,
) -> HashMap<DocId, (u32, ChangeId)> {
    let mut cuts: HashMap<DocId, Vec<(u32, ChangeId)>> = HashMap::new();
    for cut in crate::fresh_start::cuts_in_log(ops, family) {
        cuts.entry(cut.doc).or_default().push((cut.epoch, cut.base));
    }
    let mut held: HashMap<DocId, (HashSet<ChangeId>, u32)> = HashMap::new();
    for (doc, head) in changes {
        if cuts.contains_key(doc) {
            let (ids, oldest) = held.entry(*doc).or_insert((HashSet::new(), u32::MAX));
            ids.insert(head.id);
            *oldest = (*oldest).min(head.epoch);
        }
    }
    cuts.into_iter()
        .filter_map(|(doc, candidates)| {
            let (ids, oldest) = held.get(&doc)?;
            let record = records.get(&doc)?;
            let newest = candidates
                .into_iter()
                .filter(|(epoch, base)| {
                    ids.contains(base) && *oldest >= *epoch && record.key_for(*epoch).is_some()
                })
                .max_by_key(|(epoch, _)| *epoch)?;
            Some((doc, newest))
        })
        .collect()
}

/// Opens one stored change with the key of its epoch: signature, author, decryption.
pub(crate) fn open_sealed(
    family: &FamilyState,
    doc_id: &DocId,
    key: [u8; 32],
    sealed: &seal::SealedChange,
) -> std::result::Result<Vec<u8>, String> {
    let header = sealed.header();
    if header.doc != *doc_id {
        return Err(format!(
            "sealed for document {}, stored under {doc_id}",
            header.doc
        ));
    }
    // A change stored here was checked when it was written or received. A device revoked
    // since then keeps its past changes: revocation must not delete photos.
    let author_known = family
        .persons
        .values()
        .any(|p| p.devices.contains_key(&header.author));
    if !author_known {
        return Err(format!(
            "author {} is not a device of this family",
            header.author
        ));
    }
    seal::open_change(&SymmetricKey::from_bytes(key), sealed).map_err(|e| e.to_string())
}
