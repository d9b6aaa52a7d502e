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
use kith_protocol::membership::{self, OpId, Role, SignedOp};
use kith_protocol::seal::{self, ChangeId, SealedChange};
use kith_protocol::wire::{DocDigest, DocGrant, digest_ids};

use crate::error::{Error, Result};
use crate::library::{Library, OpenDoc, State};
use crate::store::{DocRecord, WriteBatch};
use kith_protocol::keys::SymmetricKey;
use kith_protocol::library::{BlobRef, Document};

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

    /// Documents `device` may read. Until sharing (albums for relatives) exists, members and
    /// admins read everything and relatives nothing.
    pub(crate) fn readable_by(&self, device: &DeviceId) -> Vec<DocId> {
        self.docs
            .keys()
            .filter(|doc| self.may_read(device, doc))
            .copied()
            .collect()
    }

    /// Whether `device` may read `doc` (checked per pushed change, so it allocates nothing).
    fn may_read(&self, device: &DeviceId, doc: &DocId) -> bool {
        self.docs.contains_key(doc)
            && matches!(self.current_role(device), Some(Role::Admin | Role::Member))
    }

    fn may_write(&self, device: &DeviceId) -> bool {
        matches!(self.current_role(device), Some(Role::Admin | Role::Member))
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

    /// Keys and digests of every document `peer` may read.
    pub(crate) async fn offer_for(&self, peer: &DeviceId) -> (Vec<DocGrant>, Vec<DocDigest>) {
        let state = self.state.lock().await;
        let docs = state.readable_by(peer);
        let grants = docs
            .iter()
            .filter_map(|id| state.docs.get(id).map(|d| grant(id, &d.record)))
            .collect();
        let digests = docs.iter().map(|id| digest_of(&state, id)).collect();
        (grants, digests)
    }

    pub(crate) async fn may_read(&self, peer: &DeviceId, doc: &DocId) -> bool {
        self.state.lock().await.may_read(peer, doc)
    }

    pub(crate) async fn may_read_blob(&self, peer: &DeviceId, hash: &[u8; 32]) -> bool {
        let state = self.state.lock().await;
        matches!(state.current_role(peer), Some(Role::Admin | Role::Member))
            && state.blob_owner.contains_key(hash)
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
        state.ops = ops;
        state.family = family;
        Ok(out)
    }

    /// Records document keys a peer handed over. A key for a document already known is kept
    /// as it is.
    pub(crate) async fn receive_docs(
        &self,
        from: &DeviceId,
        grants: Vec<DocGrant>,
    ) -> Result<Received> {
        let mut state = self.state.lock().await;
        let mut out = Received::default();
        let mut batch = WriteBatch::default();
        for g in grants {
            if state.docs.contains_key(&g.doc) || batch.docs.iter().any(|(id, _)| *id == g.doc) {
                out.known += 1;
                continue;
            }
            let record = DocRecord {
                kind: g.kind,
                epoch: g.epoch,
                key: g.key,
                shard: None,
            };
            batch.docs.push((g.doc, record));
        }
        if batch.docs.is_empty() {
            return Ok(out);
        }
        tracing::debug!(peer = %from, "received keys of {} documents", batch.docs.len());
        let new = batch.docs.clone();
        self.persist(batch)?;
        let me = self.device_id();
        for (id, record) in new {
            state.docs.insert(
                id,
                OpenDoc {
                    record,
                    doc: Document::new(&me),
                },
            );
            out.applied += 1;
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
        let checked: Vec<std::result::Result<Vec<u8>, String>> = {
            let state: &State = &state;
            fresh.par_iter().map(|s| check_change(state, s)).collect()
        };
        // The accepted changes of each document, in the order they came.
        let mut by_doc: BTreeMap<DocId, Vec<Opened>> = BTreeMap::new();
        for (sealed, check) in fresh.into_iter().zip(checked) {
            let header = sealed.header();
            match check {
                Ok(plain) => by_doc.entry(header.doc).or_default().push((sealed, plain)),
                Err(reason) => {
                    tracing::warn!(peer = %from, change = %sealed.id(), doc = %header.doc, "rejected a change: {reason}");
                    out.rejected += 1;
                }
            }
        }
        if by_doc.is_empty() {
            return Ok(out);
        }
        // Apply in memory first so a change automerge refuses is never stored; if the commit
        // then fails, memory is rebuilt from disk. Documents are independent, so they are
        // applied in parallel, each one's changes in order.
        let jobs: Vec<(DocId, &mut OpenDoc, Vec<Opened>)> = state
            .docs
            .iter_mut()
            .filter_map(|(id, open)| by_doc.remove(id).map(|changes| (*id, open, changes)))
            .collect();
        let applied: Vec<(DocId, SealedChange, Option<String>)> = jobs
            .into_par_iter()
            .flat_map_iter(|(id, open, changes)| {
                changes
                    .into_iter()
                    .map(|(sealed, plain)| {
                        let refused = open.doc.apply_change(plain).err().map(|e| e.to_string());
                        (id, sealed, refused)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut batch = WriteBatch::default();
        let mut touched = BTreeSet::new();
        for (doc, sealed, refused) in applied {
            match refused {
                None => {
                    touched.insert(doc);
                    batch.changes.push((doc, sealed));
                }
                Some(e) => {
                    tracing::warn!(peer = %from, change = %sealed.id(), "rejected a change automerge refuses: {e}");
                    out.rejected += 1;
                }
            }
        }
        let ids: Vec<(DocId, ChangeId)> = batch.changes.iter().map(|(d, c)| (*d, c.id())).collect();
        out.applied = ids.len();
        if let Err(e) = self.persist(batch) {
            tracing::error!("commit of received changes failed, reloading from disk: {e}");
            if let Ok(fresh) = self.reload_state() {
                *state = fresh;
            }
            return Err(e);
        }
        for (doc, id) in ids {
            state.change_ids.entry(doc).or_default().insert(id);
        }
        let touched: Vec<DocId> = touched.into_iter().collect();
        state.reindex_docs(&touched);
        Ok(out)
    }
}

/// A received change that passed its checks, with its automerge bytes.
type Opened = (SealedChange, Vec<u8>);

pub(crate) fn grant(id: &DocId, record: &DocRecord) -> DocGrant {
    DocGrant {
        doc: *id,
        kind: record.kind,
        epoch: record.epoch,
        key: record.key,
    }
}

fn digest_of(state: &State, doc: &DocId) -> DocDigest {
    let ids = state.change_ids.get(doc);
    DocDigest {
        doc: *doc,
        count: ids.map_or(0, |s| s.len() as u32),
        digest: digest_ids(ids.into_iter().flatten()),
    }
}

/// Checks a received change: a known document, a current author allowed to write, the key's
/// epoch, the signature and the decryption. Returns the change's automerge bytes.
fn check_change(state: &State, sealed: &SealedChange) -> std::result::Result<Vec<u8>, String> {
    let header = sealed.header();
    let Some(open) = state.docs.get(&header.doc) else {
        return Err("its document is unknown here (no key was granted)".into());
    };
    if !state.may_write(&header.author) {
        return Err(format!(
            "its author {} is not a current device allowed to write",
            header.author
        ));
    }
    if header.epoch != open.record.epoch {
        return Err(format!(
            "sealed for epoch {}, the document is at {}",
            header.epoch, open.record.epoch
        ));
    }
    seal::open_change(&SymmetricKey::from_bytes(open.record.key), sealed).map_err(|e| e.to_string())
}
