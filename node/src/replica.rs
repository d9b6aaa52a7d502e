//! The library as one replica among the family's devices: what it tells peers it holds, and
//! how it takes in ops, document keys and sealed changes from them.
//!
//! **Invariant:** a received change is stored, applied and forwarded only after its signature
//! verifies, its author is a current device allowed to write, and it decrypts under the
//! document's key; a rejected one is logged and dropped. Everything taken in is committed to
//! redb before it is applied in memory or pushed on.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rayon::prelude::*;

use kith_protocol::keys::{DeviceId, DocId, FamilyId};
use kith_protocol::membership::{self, OpId, Role, SignedOp, WriteScope};
use kith_protocol::seal::{self, ChangeId, SealedChange};
use kith_protocol::wire::{DocDigest, digest_ids};

use crate::error::{Error, Result};
use crate::index::Touched;
use crate::library::{Library, State};
use crate::store::WriteBatch;
use kith_protocol::keys::SymmetricKey;
use kith_protocol::library::{
    BlobRef, DecodedChange, Document, LibraryError, PhotoEntry, causal_order,
};

/// How a batch from a peer fared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub applied: usize,
    pub known: usize,
    pub rejected: usize,
}

/// What this replica holds of what a newly joined device has to receive by sync: its
/// documents, their sealed changes and the membership log, with sizes as they travel.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSize {
    pub documents: usize,
    pub changes: usize,
    /// Bytes of the sealed changes.
    pub change_bytes: u64,
    pub ops: usize,
    /// Bytes of the signed membership ops.
    pub op_bytes: u64,
}

impl State {
    /// The role of a current (not revoked) device of this family, or `None`.
    pub(crate) fn current_role(&self, device: &DeviceId) -> Option<Role> {
        self.family
            .active_person(device)
            .filter(|(_, p)| p.devices.get(device).is_some_and(|d| !d.revoked))
            .map(|(_, p)| p.role)
    }

    /// Documents held here (opened or not) that `device` may read.
    pub(crate) fn readable_by(&self, device: &DeviceId) -> Vec<DocId> {
        self.held_docs()
            .filter(|doc| self.family.may_hold_key(doc, device))
            .collect()
    }

    /// Every document this node holds changes or a key of.
    pub(crate) fn held_docs(&self) -> impl Iterator<Item = DocId> + '_ {
        let keyed = self.docs.keys().copied();
        let waiting = self
            .change_ids
            .keys()
            .filter(|d| !self.docs.contains_key(d))
            .copied();
        keyed.chain(waiting)
    }

    /// Whether `device` may read `doc`, by the log's rules (checked per pushed change, so it
    /// allocates nothing).
    fn may_read(&self, device: &DeviceId, doc: &DocId) -> bool {
        self.family.may_hold_key(doc, device)
    }

    /// Whether `device` may have blob `hash`: it may read a document carrying an entry that
    /// references it.
    fn may_read_blob(&self, device: &DeviceId, hash: &[u8; 32]) -> bool {
        self.blob_owner.get(hash).is_some_and(|photo| {
            self.docs_holding(photo)
                .iter()
                .any(|doc| self.family.may_hold_key(doc, device))
        })
    }
}

impl Library {
    pub(crate) async fn family_id(&self) -> FamilyId {
        self.state.lock().await.identity.family
    }

    /// The role `device` has now, if it is a current device of the family.
    pub async fn peer_role(&self, device: &DeviceId) -> Option<Role> {
        self.state.lock().await.current_role(device)
    }

    /// Current family devices other than this one.
    pub async fn family_devices(&self) -> Vec<DeviceId> {
        let state = self.state.lock().await;
        let me = self.device_id();
        state
            .family
            .persons
            .values()
            .flat_map(|p| p.devices.iter())
            .filter(|(id, d)| !d.revoked && **id != me)
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many documents, changes and ops this replica holds, and their sizes.
    pub async fn replica_size(&self) -> Result<ReplicaSize> {
        let state = self.state.lock().await;
        let mut size = ReplicaSize {
            documents: state.docs.len(),
            ops: state.ops.len(),
            op_bytes: state.ops.iter().map(|o| o.to_bytes().len() as u64).sum(),
            ..ReplicaSize::default()
        };
        for (doc, ids) in &state.change_ids {
            let ids: Vec<ChangeId> = ids.iter().copied().collect();
            for bytes in self.store.changes_by_id(doc, &ids)? {
                size.changes += 1;
                size.change_bytes += bytes.len() as u64;
            }
        }
        Ok(size)
    }

    pub(crate) async fn op_ids(&self) -> Vec<OpId> {
        self.state.lock().await.ops.iter().map(|o| o.id()).collect()
    }

    pub(crate) async fn ops_by_id(&self, ids: &[OpId]) -> Vec<Vec<u8>> {
        let wanted: BTreeSet<&OpId> = ids.iter().collect();
        let state = self.state.lock().await;
        state
            .ops
            .iter()
            .filter(|o| wanted.contains(&o.id()))
            .map(|o| o.to_bytes())
            .collect()
    }

    /// Digests of every document held here that `peer` may read. Keys are not offered: they
    /// travel only as envelopes in the membership log.
    pub(crate) async fn offer_for(&self, peer: &DeviceId) -> Vec<DocDigest> {
        let state = self.state.lock().await;
        let docs = state.readable_by(peer);
        docs.iter().map(|id| digest_of(&state, id)).collect()
    }

    pub(crate) async fn may_read(&self, peer: &DeviceId, doc: &DocId) -> bool {
        self.state.lock().await.may_read(peer, doc)
    }

    pub(crate) async fn may_read_blob(&self, peer: &DeviceId, hash: &[u8; 32]) -> bool {
        self.state.lock().await.may_read_blob(peer, hash)
    }

    /// Renditions of readable photos this node lacks: every thumbnail, then every preview,
    /// then every original. `complete` caches what was already found local.
    /// Also returns how many photos the answer covers.
    pub(crate) async fn wanted_blobs(
        &self,
        complete: &mut HashSet<[u8; 32]>,
    ) -> (Vec<BlobRef>, u64) {
        let (candidates, set_aside): (Vec<[BlobRef; 3]>, HashSet<[u8; 32]>) = {
            let state = self.state.lock().await;
            let blobs = state.photos.values().map(|e| e.blobs()).collect();
            (blobs, state.set_aside.clone())
        };
        let mut out = Vec::new();
        for rank in 0..3 {
            for blobs in &candidates {
                let blob = blobs[rank];
                if complete.contains(&blob.hash) || set_aside.contains(&blob.hash) {
                    continue;
                }
                match self.blobs.has(&blob).await {
                    Ok(true) => {
                        complete.insert(blob.hash);
                    }
                    Ok(false) => out.push(blob),
                    Err(e) => tracing::warn!("cannot check a blob: {e}"),
                }
            }
        }
        (out, candidates.len() as u64)
    }

    /// Renditions of all readable photos this device keeps (three per photo, less the
    /// originals set aside).
    pub(crate) async fn rendition_count(&self) -> u64 {
        let state = self.state.lock().await;
        let set_aside = state
            .photos
            .values()
            .filter(|e| state.set_aside.contains(&e.original.hash))
            .count();
        (state.photos.len() * 3 - set_aside) as u64
    }

    pub(crate) async fn digest(&self, doc: &DocId) -> DocDigest {
        digest_of(&*self.state.lock().await, doc)
    }

    pub(crate) async fn change_ids(&self, doc: &DocId) -> Vec<ChangeId> {
        let state = self.state.lock().await;
        state
            .change_ids
            .get(doc)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Of `ids`, those this node does not hold.
    pub(crate) async fn missing_changes(&self, doc: &DocId, ids: &[ChangeId]) -> Vec<ChangeId> {
        let state = self.state.lock().await;
        let have = state.change_ids.get(doc);
        ids.iter()
            .filter(|id| !have.is_some_and(|h| h.contains(id)))
            .copied()
            .collect()
    }

    pub(crate) fn changes_by_id(&self, doc: &DocId, ids: &[ChangeId]) -> Result<Vec<Vec<u8>>> {
        self.store.changes_by_id(doc, ids)
    }

    /// Takes in membership ops from a peer: each must verify; the log with them must evaluate;
    /// an op whose author is not a device of the family it builds is refused.
    pub(crate) async fn receive_ops(
        &self,
        from: &DeviceId,
        items: Vec<Vec<u8>>,
    ) -> Result<Received> {
        let mut state = self.state.lock().await;
        let mut out = Received::default();
        let known: BTreeSet<OpId> = state.ops.iter().map(|o| o.id()).collect();
        let mut fresh = Vec::new();
        for bytes in items {
            match SignedOp::from_bytes(&bytes) {
                Ok(op) if known.contains(&op.id()) => out.known += 1,
                Ok(op) => fresh.push(op),
                Err(e) => {
                    tracing::warn!(peer = %from, "rejected a membership op: {e}");
                    out.rejected += 1;
                }
            }
        }
        if fresh.is_empty() {
            return Ok(out);
        }
        let mut ops = state.ops.clone();
        ops.extend(fresh.iter().cloned());
        let family = match membership::evaluate_with_root(OpId(state.identity.root_op), &ops) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = %from, "rejected {} membership ops: {e}", fresh.len());
                out.rejected += fresh.len();
                return Ok(out);
            }
        };
        let (accepted, refused): (Vec<SignedOp>, Vec<SignedOp>) = fresh
            .into_iter()
            .partition(|op| family.device(&op.op().author).is_some());
        if !refused.is_empty() {
            tracing::warn!(peer = %from, "rejected {} ops by devices outside the family", refused.len());
            out.rejected += refused.len();
        }
        if accepted.is_empty() {
            return Ok(out);
        }
        // Only when some ops were left out does the log need evaluating again.
        let (ops, family) = if refused.is_empty() {
            (ops, family)
        } else {
            let mut ops = state.ops.clone();
            ops.extend(accepted.iter().cloned());
            let family = membership::evaluate_with_root(OpId(state.identity.root_op), &ops)
                .map_err(|e| {
                    Error::Corrupt(format!("the membership log does not evaluate: {e}"))
                })?;
            (ops, family)
        };
        out.applied = accepted.len();
        self.persist(WriteBatch {
            ops: accepted,
            ..WriteBatch::default()
        })?;
        let revoked_before = revoked_devices(&state.family);
        state.ops = ops;
        state.family = family;
        self.settle_keys(&mut state, false)?;
        let newly_revoked: Vec<DeviceId> = revoked_devices(&state.family)
            .difference(&revoked_before)
            .copied()
            .collect();
        if !newly_revoked.is_empty() {
            // A removal learned: keep what the removed device removed here, vouch for what
            // this device took in from it, and let its trash go (photos it trashed are back).
            self.vouch_for_revoked(&mut state, &newly_revoked)?;
            state.reindex();
        }
        Ok(out)
    }

    /// Takes in sealed changes from a peer: checked, committed, applied, then pushed on.
    pub(crate) async fn receive_changes(
        &self,
        from: &DeviceId,
        items: Vec<Vec<u8>>,
    ) -> Result<Received> {
        let mut state = self.state.lock().await;
        let mut out = Received::default();
        let mut fresh: Vec<SealedChange> = Vec::new();
        let mut seen = BTreeSet::new();
        for bytes in items {
            let sealed = match SealedChange::from_bytes(bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(peer = %from, "rejected a change: {e}");
                    out.rejected += 1;
                    continue;
                }
            };
            let id = sealed.id();
            let header = sealed.header();
            if !seen.insert(id)
                || state
                    .change_ids
                    .get(&header.doc)
                    .is_some_and(|s| s.contains(&id))
            {
                out.known += 1;
                continue;
            }
            fresh.push(sealed);
        }
        // Signatures and decryption are independent per change: checked on every core.
        let checked: Vec<Checked> = {
            let state: &State = &state;
            fresh.par_iter().map(|s| check_change(state, s)).collect()
        };
        // The accepted changes of each document, in the order they came; and those accepted
        // but kept sealed until this device holds their key.
        let mut by_doc: BTreeMap<DocId, Vec<Opened>> = BTreeMap::new();
        let mut waiting: Vec<(DocId, SealedChange)> = Vec::new();
        for (sealed, check) in fresh.into_iter().zip(checked) {
            let header = sealed.header();
            match check {
                Ok((scope, Some(plain))) => by_doc
                    .entry(header.doc)
                    .or_default()
                    .push((sealed, plain, scope)),
                Ok((_, None)) => waiting.push((header.doc, sealed)),
                Err(reason) => {
                    tracing::warn!(peer = %from, change = %sealed.id(), doc = %header.doc, "rejected a change: {reason}");
                    out.rejected += 1;
                }
            }
        }
        if by_doc.is_empty() && waiting.is_empty() {
            return Ok(out);
        }
        // A contributor's change may touch only entries its person made.
        let contributors: BTreeMap<DeviceId, BTreeSet<DeviceId>> = by_doc
            .values()
            .flatten()
            .filter(|(_, _, scope)| *scope == WriteScope::OwnEntries)
            .map(|(sealed, _, _)| {
                let author = sealed.header().author;
                (author, state.devices_of_person_of(&author))
            })
            .collect();
        // Apply in memory first so a change automerge refuses is never stored; if the commit
        // then fails, memory is rebuilt from disk. Documents are independent, so they are
        // applied in parallel, each one's changes in order.
        state.load_docs(by_doc.keys());
        let jobs: Vec<(DocId, &mut Document, Vec<Opened>)> = state
            .docs
            .iter_mut()
            .filter_map(|(id, open)| {
                let doc = open.doc_mut()?;
                by_doc.remove(id).map(|changes| (*id, doc, changes))
            })
            .collect();
        let applied: Vec<Applied> = jobs
            .into_par_iter()
            .flat_map_iter(|(id, open, changes)| {
                // Decoded once; applied after what each builds on, so that what each does
                // can be read (see `kith_protocol::library::causal_order`).
                let decoded: Vec<_> = changes
                    .into_iter()
                    .map(|(sealed, plain, scope)| (sealed, DecodedChange::decode(plain), scope))
                    .collect();
                // Changes automerge holds queued may be applied along with these, unread.
                let queued = open.has_queued_changes();
                causal_order(decoded, |(_, change, _)| change.as_ref().ok())
                    .into_iter()
                    .map(|(sealed, change, scope)| {
                        let mut applied =
                            apply_checked(id, open, sealed, change, scope, &contributors);
                        if queued {
                            applied.touched = Touched::Whole;
                        }
                        applied
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut batch = WriteBatch::default();
        let mut touched: BTreeMap<DocId, Touched> = BTreeMap::new();
        for mut applied in applied {
            match applied.refused {
                None => {
                    let this = std::mem::replace(&mut applied.touched, Touched::Whole);
                    let doc_touched = match touched.remove(&applied.doc) {
                        Some(before) => before.merge(this),
                        None => this,
                    };
                    touched.insert(applied.doc, doc_touched);
                    state.note_removals(&applied);
                    batch.changes.push((applied.doc, applied.sealed));
                }
                Some(e) => {
                    tracing::warn!(peer = %from, change = %applied.sealed.id(), doc = %applied.doc, "rejected a change: {e}");
                    out.rejected += 1;
                }
            }
        }
        let waiting_ids: Vec<(DocId, ChangeId)> =
            waiting.iter().map(|(d, c)| (*d, c.id())).collect();
        batch.changes.extend(waiting);
        let ids: Vec<(DocId, ChangeId)> = batch.changes.iter().map(|(d, c)| (*d, c.id())).collect();
        let batch_authors: Vec<(DeviceId, ChangeId)> = batch
            .changes
            .iter()
            .map(|(_, c)| (c.header().author, c.id()))
            .collect();
        out.applied = ids.len();
        if let Err(e) = self.persist(batch) {
            tracing::error!("commit of received changes failed, reloading from disk: {e}");
            match self.reload_state() {
                Ok(fresh) => *state = fresh,
                Err(_) => state.memory_ahead.extend(touched.keys().copied()),
            }
            return Err(e);
        }
        for (doc, id) in ids {
            state.change_ids.entry(doc).or_default().insert(id);
        }
        for (doc, id) in waiting_ids {
            state.unopened.entry(doc).or_default().insert(id);
        }
        let authors: Vec<(DeviceId, ChangeId)> = batch_authors;
        state.note_authors(authors);
        state.reindex_touched(touched);
        state.purge_ok.clear();
        state.removed_by.clear();
        self.save_kept(&mut state);
        self.follow_fresh_starts(&mut state)?;
        self.save_snapshots(&mut state, crate::library::Due::Growing);
        Ok(out)
    }
}

/// The outcome of [`check_change`].
type Checked = std::result::Result<(WriteScope, Option<Vec<u8>>), String>;

/// A received change that passed its checks, with its automerge bytes and how far its author
/// may write.
type Opened = (SealedChange, Vec<u8>, WriteScope);

/// A received change after it was applied in memory, or refused.
pub(crate) struct Applied {
    doc: DocId,
    sealed: SealedChange,
    refused: Option<String>,
    scope: WriteScope,
    /// The entries it removed or replaced, as they were.
    removed: Vec<PhotoEntry>,
    /// What of the document it may have changed, for the index.
    touched: Touched,
}

/// Applies one checked change to its open document, after reading what it does: a
/// contributor's change that reaches beyond its person's entries is refused.
fn apply_checked(
    doc: DocId,
    open: &mut Document,
    sealed: SealedChange,
    change: std::result::Result<DecodedChange, LibraryError>,
    scope: WriteScope,
    contributors: &BTreeMap<DeviceId, BTreeSet<DeviceId>>,
) -> Applied {
    let author = sealed.header().author;
    let refuse = |sealed, reason: String| Applied {
        doc,
        sealed,
        refused: Some(reason),
        scope,
        removed: Vec::new(),
        touched: Touched::Whole,
    };
    let change = match change {
        Ok(change) => change,
        Err(e) => return refuse(sealed, e.to_string()),
    };
    if !change.written_by(&author, &doc) {
        return refuse(
            sealed,
            "it is written under another device's automerge actor; a device writes its \
             changes under its own id"
                .into(),
        );
    }
    let effects = open.effects_of_decoded(&change);
    let refusal = match (&effects, scope) {
        (Err(e), WriteScope::OwnEntries) => Some(format!(
            "its author may change only its own entries, and what it does cannot be read: {e}"
        )),
        (Ok(effects), WriteScope::OwnEntries)
            if !contributors
                .get(&author)
                .is_some_and(|mine| effects.only_entries_of(mine)) =>
        {
            Some(
                "its author may only add photos and change the entries its person added, \
                 and it changes the album itself or someone else's entries"
                    .to_owned(),
            )
        }
        _ => None,
    };
    let touched = effects.as_ref().map_or(Touched::Whole, Touched::of);
    let removed = effects
        .map(|e| e.removed.into_values().collect())
        .unwrap_or_default();
    let refused = refusal.or_else(|| open.apply_decoded(change).err().map(|e| e.to_string()));
    Applied {
        doc,
        sealed,
        refused,
        scope,
        removed,
        touched,
    }
}

impl State {
    /// Notes who removed which entries, and which removals are purges of the trash by a
    /// device allowed to delete the photo now (see [`crate::keep`]).
    fn note_removals(&mut self, applied: &Applied) {
        let author = applied.sealed.header().author;
        let may_delete = applied.scope == WriteScope::Document
            && self.family.write_scope(&applied.doc, &author) == Some(WriteScope::Document);
        for entry in &applied.removed {
            self.removed_by.insert(entry.id, author);
            let trashed = entry.trashed_at_ms.is_some()
                && !entry.trashed_by.is_some_and(|d| self.family.is_revoked(&d));
            if may_delete && trashed {
                self.purge_ok.insert(entry.id);
            }
        }
    }

    /// Every device of `device`'s person.
    pub(crate) fn devices_of_person_of(&self, device: &DeviceId) -> BTreeSet<DeviceId> {
        self.family
            .device(device)
            .and_then(|(person, _)| self.family.persons.get(&person))
            .map(|p| p.devices.keys().copied().collect())
            .unwrap_or_default()
    }
}

fn revoked_devices(family: &membership::FamilyState) -> BTreeSet<DeviceId> {
    family
        .persons
        .values()
        .flat_map(|p| p.devices.iter())
        .filter(|(_, d)| d.revoked)
        .map(|(id, _)| *id)
        .collect()
}

fn digest_of(state: &State, doc: &DocId) -> DocDigest {
    let ids = state.change_ids.get(doc);
    DocDigest {
        doc: *doc,
        count: ids.map_or(0, |s| s.len() as u32),
        digest: digest_ids(ids.into_iter().flatten()),
    }
}

/// Checks a received change: its author is a current device the log lets write its document,
/// and the signature holds; then, if this device holds the key of its epoch, that it decrypts.
/// Returns the change's automerge bytes, or `None` for a valid change to keep sealed until the
/// key arrives (a device without the key stores and forwards it).
fn check_change(state: &State, sealed: &SealedChange) -> Checked {
    let header = sealed.header();
    let Some(scope) =
        state
            .family
            .change_scope(&header.doc, &header.author, header.epoch, &sealed.id())
    else {
        return Err(format!(
            "its author {} is not a current device allowed to write this document",
            header.author
        ));
    };
    if header.epoch > state.family.current_epoch(&header.doc).max(1) {
        return Err(format!(
            "sealed for epoch {}, beyond the document's current epoch in the log",
            header.epoch
        ));
    }
    sealed.verify_signature().map_err(|e| e.to_string())?;
    if state.awaits_fresh_start(&header.doc, header.epoch) {
        // Of a history that started over: stored until this device follows it.
        return Ok((scope, None));
    }
    let record = state.docs.get(&header.doc).map(|open| &open.record);
    match record.and_then(|r| r.key_for(header.epoch)) {
        Some(key) => seal::open_change(&SymmetricKey::from_bytes(key), sealed)
            .map(|plain| (scope, Some(plain)))
            .map_err(|e| e.to_string()),
        // Holding the current epoch's key means holding every earlier one (the history comes
        // with it): an epoch missing then is one the document never had.
        None if record.is_some_and(|r| r.epoch >= state.family.current_epoch(&header.doc)) => {
            Err(format!(
                "sealed for epoch {}, which this document never had",
                header.epoch
            ))
        }
        None => Ok((scope, None)),
    }
}
