//! Document keys through the membership log.
//!
//! A document's key for each epoch reaches devices only as X25519 envelopes inside signed
//! `RotateKey` ops (DESIGN.md, "Album keys"). A new document starts at epoch 1 with a
//! `RotateKey` made in the same commit; a later rotation wraps a fresh key to every device that
//! may read the document then, with the earlier epochs' keys sealed under it.
//!
//! Whenever the log changes, [`Library::settle_keys`] takes in the keys wrapped to this device
//! (and opens the changes that were waiting for them), then rotates the documents whose current
//! key reached a device that may no longer read them, or misses one that may. One device is
//! responsible for each such rotation — the one that made the current epoch, while it may
//! still rotate, else the admin device with the lowest id — so that two devices seeing the same
//! log do not both rotate. The device that makes a sharing or removal change rotates at once
//! (`eager`), in the same commit.
//!
//! A removal (or any op) and the rotations it makes due are committed in one transaction, so no
//! crash leaves a removal without its re-keying. Before sealing changes to a document whose
//! current key reached a device that may no longer read it (a removal learned from a peer
//! before its rotation), the commit path rotates it first, or refuses when this device may not:
//! nothing new is sealed under a key a removed device holds. Bad data in the log never stops
//! rotation: a recipient whose key takes no envelope is left out and logged, an envelope that
//! does not open is logged and skipped.
//!
//! Two rotations can still race (two admins acting while apart). The log keeps one; the loser
//! re-seals the changes it sealed under its own key with the key that won, so nothing it wrote
//! is lost to the others.

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::envelope::{Envelope, MAX_HISTORY_EPOCHS, SealedHistory};
use kith_protocol::keys::{DeviceId, DeviceSecret, DocId, PersonId, SymmetricKey};
use kith_protocol::library::Document;
use kith_protocol::membership::{self, FamilyState, MembershipOp, OpBody, OpId, Role, SignedOp};
use kith_protocol::seal::{self, ChangeHeader, ChangeId, SealedChange};

use crate::error::{Error, Result};
use crate::library::{Library, OpenDoc, State, now_ms};
use crate::store::{DocRecord, WriteBatch};

/// Ops signed one after another on top of the log, each evaluated before the next is made.
pub(crate) struct OpChain {
    root: OpId,
    pub ops: Vec<SignedOp>,
    pub family: FamilyState,
    pub fresh: Vec<SignedOp>,
}

impl OpChain {
    pub fn new(state: &State) -> OpChain {
        OpChain {
            root: OpId(state.identity.root_op),
            ops: state.ops.clone(),
            family: state.family.clone(),
            fresh: Vec::new(),
        }
    }

    /// Signs `body` on the current heads and applies it. Returns whether the rules applied it;
    /// an op they skip is dropped.
    pub fn push(&mut self, device: &DeviceSecret, body: OpBody) -> Result<bool> {
        let op = SignedOp::sign(
            MembershipOp {
                version: membership::VERSION,
                parents: membership::heads(&self.ops),
                author: device.device_id(),
                time_ms: now_ms(),
                body,
            },
            device,
        );
        let mut ops = self.ops.clone();
        ops.push(op.clone());
        let family = membership::evaluate_with_root(self.root, &ops)
            .map_err(|e| Error::Corrupt(format!("the membership log does not evaluate: {e}")))?;
        if family == self.family {
            return Ok(false);
        }
        self.ops = ops;
        self.family = family;
        self.fresh.push(op);
        Ok(true)
    }

    /// Commits the ops this chain made, alone, and makes its log `state`'s.
    pub fn commit_alone(self, library: &Library, state: &mut State) -> Result<()> {
        if self.fresh.is_empty() {
            return Ok(());
        }
        library.persist(WriteBatch {
            ops: self.fresh,
            ..WriteBatch::default()
        })?;
        state.ops = self.ops;
        state.family = self.family;
        Ok(())
    }

    /// Adds a `RotateKey` moving a document to a new epoch and key, wrapped to every device that
    /// may read it, with the earlier epochs' keys sealed under it.
    pub fn rotate(
        &mut self,
        device: &DeviceSecret,
        claimant: &PersonId,
        rotation: &Rotation,
    ) -> Result<bool> {
        let body = self.rotation(claimant, rotation);
        self.push(device, body)
    }

    /// Rotates several documents in one go. Their rotations are independent of each other, so
    /// they are signed one after another and the log is evaluated once, not once per document
    /// (which grows with the square of the documents when a device joins a large family).
    /// Returns, per rotation, whether the log applied it.
    pub fn rotate_all(
        &mut self,
        device: &DeviceSecret,
        claimant: &PersonId,
        rotations: &[Rotation],
    ) -> Result<Vec<bool>> {
        if rotations.is_empty() {
            return Ok(Vec::new());
        }
        let mut signed = Vec::new();
        let mut parents = membership::heads(&self.ops);
        for r in rotations {
            let body = self.rotation(claimant, r);
            let op = SignedOp::sign(
                MembershipOp {
                    version: membership::VERSION,
                    parents: std::mem::take(&mut parents),
                    author: device.device_id(),
                    time_ms: now_ms(),
                    body,
                },
                device,
            );
            parents = vec![op.id()];
            signed.push(op);
        }
        let mut ops = self.ops.clone();
        ops.extend(signed.iter().cloned());
        let family = membership::evaluate_with_root(self.root, &ops)
            .map_err(|e| Error::Corrupt(format!("the membership log does not evaluate: {e}")))?;
        let me = device.device_id();
        let applied: Vec<bool> = rotations
            .iter()
            .map(|r| {
                family
                    .current_keys(&r.doc)
                    .is_some_and(|k| k.epoch == r.epoch && k.rotated_by == me)
            })
            .collect();
        if applied.iter().any(|a| !a) {
            // Not expected (each was checked as due); make them one by one, keeping only those
            // the rules apply, so no skipped op is stored.
            return rotations
                .iter()
                .map(|r| self.rotate(device, claimant, r))
                .collect();
        }
        self.ops = ops;
        self.family = family;
        self.fresh.extend(signed);
        Ok(applied)
    }

    /// The body of a `RotateKey` (see [`OpChain::rotate`]).
    fn rotation(&self, claimant: &PersonId, rotation: &Rotation) -> OpBody {
        let Rotation {
            doc,
            epoch,
            key,
            earlier,
        } = rotation;
        let (epoch, key_sym) = (*epoch, SymmetricKey::from_bytes(*key));
        let mut envelopes = Vec::new();
        for (recipient, x25519) in self.family.key_recipients(doc, claimant) {
            // One recipient whose key cannot take an envelope (the log refuses low-order keys,
            // so only a log from before that rule has one) never keeps the key from the others.
            match Envelope::seal(&key_sym, doc, epoch, &recipient, &x25519, rand::random()) {
                Ok(envelope) => envelopes.push((recipient, envelope)),
                Err(e) => {
                    tracing::warn!(%doc, epoch, device = %recipient, "left a device out of a key rotation: its key cannot receive one: {e}")
                }
            }
        }
        // The newest earlier keys only: a history is bounded, and a document that went
        // through more rotations than it holds must still be rotated.
        let mut earlier: Vec<(u32, SymmetricKey)> = earlier
            .iter()
            .filter(|(e, _)| *e < epoch)
            .map(|(e, k)| (*e, SymmetricKey::from_bytes(*k)))
            .collect();
        if earlier.len() > MAX_HISTORY_EPOCHS {
            tracing::warn!(%doc, epoch, "the key history carries the newest {MAX_HISTORY_EPOCHS} of {} earlier epochs", earlier.len());
            earlier.drain(..earlier.len() - MAX_HISTORY_EPOCHS);
        }
        let history = if earlier.is_empty() {
            None
        } else {
            match SealedHistory::seal(&key_sym, doc, epoch, &earlier, rand::random()) {
                Ok(history) => Some(history),
                Err(e) => {
                    tracing::warn!(%doc, epoch, "rotating without the earlier keys: {e}");
                    None
                }
            }
        };
        OpBody::RotateKey {
            doc: *doc,
            epoch,
            envelopes,
            history,
        }
    }
}

/// One document's move to a new key epoch.
pub(crate) struct Rotation {
    pub doc: DocId,
    pub epoch: u32,
    pub key: [u8; 32],
    /// The keys this device holds of earlier epochs, sealed under the new one.
    pub earlier: Vec<(u32, [u8; 32])>,
}

impl State {
    /// The person this device belongs to.
    pub(crate) fn my_person(&self) -> PersonId {
        self.identity.person
    }

    /// Whether this device should make the next rotation of `doc` when one is due (see the
    /// module docs).
    fn responsible_for(&self, me: &DeviceId, doc: &DocId) -> bool {
        // The author of a cut the log cancelled makes it again with the next rotation; another
        // device rotating meanwhile would race it once more.
        if let Some(author) = self.pending_cut_by(doc) {
            return author == *me;
        }
        if let Some(keys) = self.family.current_keys(doc)
            && self.family.may_rotate_doc(doc, &keys.rotated_by)
        {
            return keys.rotated_by == *me;
        }
        let lowest_admin = self
            .family
            .persons
            .values()
            .filter(|p| p.role == Role::Admin && !p.removed)
            .flat_map(|p| p.devices.iter())
            .filter(|(_, d)| !d.revoked)
            .map(|(id, _)| *id)
            .min();
        lowest_admin == Some(*me)
    }

    /// Documents whose key must move to a new epoch now: the current key reached a device that
    /// may no longer read the document, or a device that may lacks it; and documents still at
    /// the epoch-0 key their creator made before keys came through the log.
    fn rotations_due(&self, me: &DeviceId, scope: Scope<'_>) -> Vec<DocId> {
        self.docs
            .iter()
            .filter(|(doc, _)| match scope {
                Scope::Docs(docs) => docs.contains(doc),
                _ => true,
            })
            .filter(|(doc, open)| {
                let family = &self.family;
                let due = match family.current_keys(doc) {
                    Some(_) => {
                        family.rotation_due(doc) || self.cut_to_make_again(me, doc).is_some()
                    }
                    None => open.record.epoch == 0,
                };
                // Only a device holding the current epoch's key can seal the history under it.
                due && open.record.epoch == family.current_epoch(doc)
                    && family.may_rotate_doc(doc, me)
                    && (scope != Scope::Responsible || self.responsible_for(me, doc))
            })
            .map(|(doc, _)| *doc)
            .collect()
    }
}

/// Which due rotations a device makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    /// Those the log names this device responsible for.
    Responsible,
    /// All it may make (it made the change that made them due).
    Eager,
    /// Those of these documents it may make (it is about to seal changes to them).
    Docs(&'a [DocId]),
}

/// What taking in wrapped keys produced, to be committed.
#[derive(Default)]
struct KeysTaken {
    records: Vec<(DocId, DocRecord)>,
    resealed: Vec<(DocId, SealedChange)>,
    /// The copies the resealed changes replace.
    superseded: Vec<(DocId, ChangeId)>,
}

impl Library {
    /// After the membership log changed: takes in the keys wrapped to this device, opens the
    /// changes that waited for them, and makes the rotations that are due (all of them this
    /// device may make when `eager`, else those it is responsible for). Commits what it did in
    /// one transaction.
    pub(crate) fn settle_keys(&self, state: &mut State, eager: bool) -> Result<()> {
        let scope = if eager {
            Scope::Eager
        } else {
            Scope::Responsible
        };
        self.settle(state, OpChain::new(state), scope)
    }

    /// [`Library::settle_keys`] on top of `chain`, whose fresh ops (if any) are committed in the
    /// same transaction as the rotations they make due. `state`'s log is `chain`'s already.
    fn settle(&self, state: &mut State, mut chain: OpChain, scope: Scope<'_>) -> Result<()> {
        let taken = self.take_keys(state)?;
        let me = self.device_id();
        // A rotation that gives the key to a person who could not read the document starts
        // its history over when photos left it before (`crate::fresh_start`).
        let mut start_over = BTreeSet::new();
        let mut cut_again = BTreeMap::new();
        let mut rotations = Vec::new();
        for doc in state.rotations_due(&me, scope) {
            let cut = state.cut_to_make_again(&me, &doc);
            let newcomer = cut.is_none() && state.gives_key_to_newcomer(&doc);
            if newcomer && state.awaits_fresh_start(&doc, state.family.current_epoch(&doc)) {
                // Its open history is not the one the family is on: whether photos left
                // that one cannot be told here, and a new reader must not get its keys.
                tracing::info!(%doc, "not rotating {} yet: it gives the key to someone new, and this device has not followed the album's history", state.doc_name(&doc));
                continue;
            }
            if let Some(cut) = cut {
                start_over.insert(doc);
                cut_again.insert(doc, cut);
            } else if newcomer && state.has_left_entries(&doc) {
                start_over.insert(doc);
            }
            let Some(open) = state.docs.get(&doc) else {
                continue;
            };
            // A history that starts over gets no earlier keys; one that started over before
            // gets none from before that.
            let since = state.family.fresh_start(&doc).map_or(0, |f| f.epoch);
            let earlier = if start_over.contains(&doc) {
                Vec::new()
            } else {
                (open.record.all_keys().into_iter())
                    .filter(|(e, _)| *e >= since)
                    .collect()
            };
            rotations.push(Rotation {
                doc,
                epoch: open.record.epoch + 1,
                key: rand::random(),
                earlier,
            });
        }
        // The log evaluated before; if it does not with the rotations, they are left for the
        // next time the log changes and the keys taken in are still committed.
        let applied = match chain.rotate_all(&self.device, &state.my_person(), &rotations) {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!("cannot rotate document keys now: {e}");
                vec![false; rotations.len()]
            }
        };
        let mut rotated = Vec::new();
        for (r, applied) in rotations.into_iter().zip(applied) {
            let Some(open) = state.docs.get(&r.doc).filter(|_| applied) else {
                continue;
            };
            let mut record = open.record.clone();
            // The record keeps every key this device held, whatever the rotation carried.
            record.older = record.all_keys();
            record.epoch = r.epoch;
            record.key = r.key;
            rotated.push((r.doc, record));
        }
        let mut started = Vec::new();
        for (doc, record) in &rotated {
            // Without its fresh start the new reader would get the old history at the next
            // rotation: nothing of the change that made it due is committed.
            if let Some(cut) = cut_again.get(doc) {
                started.push(self.cut_again(state, &mut chain, doc, record, cut)?);
            } else if start_over.contains(doc) {
                started.push(self.start_over(state, &mut chain, doc, record)?);
            }
        }
        if taken.records.is_empty() && rotated.is_empty() && chain.fresh.is_empty() {
            return self.follow_fresh_starts(state);
        }
        if !rotated.is_empty() {
            tracing::info!("rotated the keys of {} documents", rotated.len());
        }
        let mut records = taken.records;
        records.extend(rotated);
        let opened: Vec<DocId> = records.iter().map(|(d, _)| *d).collect();
        let mut changes = taken.resealed.clone();
        let mut superseded = taken.superseded.clone();
        for s in &started {
            changes.extend(s.changes.iter().map(|c| (s.doc, c.clone())));
            superseded.extend(s.retired.iter().map(|id| (s.doc, *id)));
        }
        self.persist(WriteBatch {
            ops: chain.fresh,
            docs: records.clone(),
            changes,
            superseded,
            ..WriteBatch::default()
        })?;
        state.ops = chain.ops;
        state.family = chain.family;
        for (doc, id) in &taken.superseded {
            if let Some(ids) = state.change_ids.get_mut(doc) {
                ids.remove(id);
            }
            // Its snapshot went with it (`Store::commit`).
            state.snapshotted.remove(doc);
        }
        for (doc, change) in &taken.resealed {
            state
                .change_ids
                .entry(*doc)
                .or_default()
                .insert(change.id());
        }
        for (doc, record) in records {
            match state.docs.get_mut(&doc) {
                Some(open) => open.record = record,
                None => {
                    state
                        .docs
                        .insert(doc, OpenDoc::new(record, Document::new(&me)));
                }
            }
        }
        self.adopt_started(state, started);
        self.open_waiting(state, &opened)?;
        self.follow_fresh_starts(state)
    }

    /// Signs `bodies` as this device on top of the log and commits those the rules apply
    /// together with the rotations they make due (a removal, a role, a grant changes who may
    /// read what), in one transaction: no crash leaves a removal without its re-keying.
    /// `Error::NotAllowed` when the rules apply none of them.
    pub(crate) fn append_ops(&self, state: &mut State, bodies: Vec<OpBody>) -> Result<()> {
        let mut chain = OpChain::new(state);
        for body in bodies {
            chain.push(&self.device, body)?;
        }
        if chain.fresh.is_empty() {
            return Err(Error::NotAllowed(
                "the family's rules do not allow this change".into(),
            ));
        }
        state.ops = chain.ops.clone();
        state.family = chain.family.clone();
        let settled = self.settle(state, chain, Scope::Eager);
        if let Err(e) = &settled {
            // Memory follows disk, whether or not the transaction went through.
            tracing::error!("appending to the membership log failed, reloading the library: {e}");
            *state = self.reload_state()?;
        }
        settled
    }

    /// Before this device seals changes to `docs`: rotates those whose current key reached a
    /// device that may no longer read them (a removal this device learned of before the
    /// rotation it makes due, or a crash between the two on an older version), and refuses to
    /// seal to a document still in that state, or whose newest key this device lacks, so
    /// nothing new is sealed under a key a removed device holds.
    pub(crate) fn rekey_before_sealing(&self, state: &mut State, docs: &[DocId]) -> Result<()> {
        let stale = |state: &State| -> Vec<DocId> {
            docs.iter()
                .filter(|doc| {
                    let held = state.docs.get(doc).map(|o| o.record.epoch);
                    state.family.needs_rotation(doc)
                        || held.is_some_and(|e| e < state.family.current_epoch(doc))
                        || state.awaits_fresh_start(doc, state.family.current_epoch(doc))
                })
                .copied()
                .collect()
        };
        let due = stale(state);
        if due.is_empty() {
            return Ok(());
        }
        self.settle(state, OpChain::new(state), Scope::Docs(&due))?;
        match stale(state).first() {
            None => Ok(()),
            Some(doc) if state.family.needs_rotation(doc) => Err(Error::NotAllowed(format!(
                "{} still has the key a removed device or person holds, and this device may not \
                 rotate it: start `kith run` on its owner's or an admin's device, then try again",
                state.doc_name(doc)
            ))),
            Some(doc) => Err(Error::NotAllowed(format!(
                "this device lacks the newest key of {}: let it sync with the family (`kith run`), \
                 then try again",
                state.doc_name(doc)
            ))),
        }
    }

    /// Opens the envelopes addressed to this device for epochs it does not hold yet.
    fn take_keys(&self, state: &State) -> Result<KeysTaken> {
        let me = self.device_id();
        let mut taken = KeysTaken::default();
        for (doc, sharing) in &state.family.docs {
            let Some(keys) = &sharing.keys else { continue };
            let Some(envelope) = keys.envelopes.get(&me) else {
                continue;
            };
            let held = state.docs.get(doc).map(|o| &o.record);
            if held.is_some_and(|r| r.epoch > keys.epoch) {
                continue;
            }
            let key = match envelope.open(doc, keys.epoch, &self.device) {
                Ok(key) => *key.as_bytes(),
                Err(e) => {
                    tracing::warn!(%doc, epoch = keys.epoch, "an envelope to this device does not open: {e}");
                    continue;
                }
            };
            if held.is_some_and(|r| r.epoch == keys.epoch && r.key == key) {
                continue;
            }
            let history = match &keys.history {
                Some(h) => match h.open(&SymmetricKey::from_bytes(key), doc, keys.epoch) {
                    Ok(earlier) => earlier,
                    Err(e) => {
                        tracing::warn!(%doc, epoch = keys.epoch, "a key history does not open: {e}");
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            let mut by_epoch: BTreeMap<u32, [u8; 32]> = history
                .into_iter()
                .map(|(e, k)| (e, *k.as_bytes()))
                .collect();
            // Keys this device made that the log did not keep (a rotation that lost a race):
            // what was sealed under them is sealed again under the winning key.
            let mut lost = BTreeMap::new();
            for (epoch, mine) in held.map(DocRecord::all_keys).unwrap_or_default() {
                let winner = if epoch == keys.epoch {
                    Some(key)
                } else {
                    by_epoch.get(&epoch).copied()
                };
                match winner {
                    Some(w) if w != mine => {
                        lost.insert(epoch, mine);
                    }
                    Some(_) => {}
                    None => {
                        by_epoch.insert(epoch, mine);
                    }
                }
            }
            by_epoch.remove(&keys.epoch);
            let orphaned = state.is_orphaned(doc);
            // A history whose fresh start lost with that rotation is cut again instead
            // (`Library::cut_again`): its changes never go into the history it was cut from,
            // and the keys they were sealed under are kept to open them until then.
            let mut cancelled: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
            if orphaned {
                cancelled.extend(held.map(|r| r.cancelled.clone()).unwrap_or_default());
                cancelled.extend(lost.iter().map(|(e, k)| (*e, *k)));
            }
            let record = DocRecord {
                older: by_epoch.into_iter().collect(),
                cancelled: cancelled.into_iter().collect(),
                ..DocRecord::new(keys.epoch, key, held.and_then(|r| r.shard.clone()))
            };
            if !lost.is_empty() && !orphaned {
                for (old, new) in self.reseal_lost(state, doc, &lost, &record)? {
                    taken.superseded.push((*doc, old));
                    taken.resealed.push((*doc, new));
                }
            }
            taken.records.push((*doc, record));
        }
        Ok(taken)
    }

    /// Seals again, under `record`'s current key, the changes this device sealed under keys
    /// that lost a rotation race.
    fn reseal_lost(
        &self,
        state: &State,
        doc: &DocId,
        lost: &BTreeMap<u32, [u8; 32]>,
        record: &DocRecord,
    ) -> Result<Vec<(ChangeId, SealedChange)>> {
        let me = self.device_id();
        let ids = state.change_ids_of(doc);
        let mut out = Vec::new();
        for bytes in self.store.changes_by_id(doc, &ids)? {
            let Ok(sealed) = SealedChange::from_bytes(bytes) else {
                continue;
            };
            let header = sealed.header();
            let Some(old_key) = lost.get(&header.epoch) else {
                continue;
            };
            if header.author != me {
                continue;
            }
            let Ok(plain) = seal::open_change(&SymmetricKey::from_bytes(*old_key), &sealed) else {
                continue;
            };
            let header = ChangeHeader {
                doc: *doc,
                epoch: record.epoch,
                author: me,
            };
            let key = SymmetricKey::from_bytes(record.key);
            out.push((
                sealed.id(),
                seal::seal_change(&key, &header, rand::random(), &plain, &self.device),
            ));
        }
        if !out.is_empty() {
            tracing::warn!(%doc, "a key rotation made here lost a race; sealed {} changes again under the key that won", out.len());
        }
        Ok(out)
    }

    /// Opens and applies the stored changes of `docs` that waited for a key this device now
    /// holds, then re-indexes those documents.
    pub(crate) fn open_waiting(&self, state: &mut State, docs: &[DocId]) -> Result<()> {
        let mut touched = Vec::new();
        for doc in docs {
            let Some(waiting) = state.unopened.get(doc).cloned() else {
                continue;
            };
            let ids: Vec<ChangeId> = waiting.iter().copied().collect();
            // A change of another history than the open one waits: `follow_fresh_starts`
            // takes it.
            let this_history: Vec<SealedChange> = (self.store.changes_by_id(doc, &ids)?)
                .into_iter()
                .filter_map(|bytes| SealedChange::from_bytes(bytes).ok())
                .filter(|sealed| {
                    let epoch = sealed.header().epoch;
                    !state.awaits_fresh_start(doc, epoch) && epoch >= state.lineage_of(doc)
                })
                .collect();
            let Some((record, open)) = state.loaded_mut(doc) else {
                continue;
            };
            let mut opened = BTreeSet::new();
            for sealed in this_history {
                let Some(key) = record.key_for(sealed.header().epoch) else {
                    continue;
                };
                match seal::open_change(&SymmetricKey::from_bytes(key), &sealed) {
                    Ok(plain) => match open.apply_change(plain) {
                        Ok(()) => {
                            opened.insert(sealed.id());
                        }
                        Err(e) => {
                            tracing::warn!(change = %sealed.id(), "a stored change does not apply: {e}")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(change = %sealed.id(), "a stored change does not open: {e}")
                    }
                }
            }
            if let Some(set) = state.unopened.get_mut(doc) {
                set.retain(|id| !opened.contains(id));
                if set.is_empty() {
                    state.unopened.remove(doc);
                }
            }
            touched.push(*doc);
        }
        state.reindex_docs(&touched);
        Ok(())
    }
}
