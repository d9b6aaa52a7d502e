//! A document's history starting over (`FreshStart` in the log; see
//! `kith_protocol::library::fresh`): when a rotation gives an album's key to a person who could
//! not read it (a share, a relative made a member) and photos have left it before, the device
//! that rotates writes the album as it is now as the one change of a new history, sealed under
//! the new key given without the earlier keys. The new reader gets that key only, so it reads
//! the album's photos now and nothing that left it before.
//!
//! Every device follows once it holds the new history's first change (the base): it rebuilds
//! the document from the base and the changes sealed since, carries over the changes it wrote
//! itself that the base lacks (the log names where the old history was cut), and deletes the
//! old history's changes. Until then it keeps the document it has. Nobody takes in a change
//! of the old history after the log started it over.

use std::collections::BTreeSet;

use kith_protocol::keys::{DeviceId, DocId, PersonId, SymmetricKey};
use kith_protocol::library::{DecodedChange, DocKind, Document, causal_order};
use kith_protocol::membership::{FreshStart, OpBody, WriteScope};
use kith_protocol::seal::{self, ChangeHeader, ChangeId, SealedChange};

use crate::doc_keys::OpChain;
use crate::error::{Error, Result};
use crate::library::{Library, State, now_ms};
use crate::store::{DocRecord, WriteBatch};

mod cancelled;
pub(crate) use cancelled::cuts_in_log;

/// A history this device started over, to commit with the rotation that made its key.
pub(crate) struct Started {
    pub doc: DocId,
    /// The new history's changes: its base first.
    pub changes: Vec<SealedChange>,
    /// The document from now on; `None` when it stays as it is (a cut made again).
    pub copy: Option<Document>,
    /// The old history's changes, deleted in the same commit.
    pub retired: Vec<ChangeId>,
    pub epoch: u32,
}

impl State {
    /// The ids of every sealed change held of `doc`.
    pub(crate) fn change_ids_of(&self, doc: &DocId) -> Vec<ChangeId> {
        self.change_ids
            .get(doc)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether a change to `doc` sealed at `epoch` belongs to a history that started over and
    /// this device has not followed yet: it is stored and waits, not applied to the old one.
    /// So does every change while the open history is one the log cancelled
    /// ([`State::is_orphaned`]).
    pub(crate) fn awaits_fresh_start(&self, doc: &DocId, epoch: u32) -> bool {
        self.is_orphaned(doc)
            || self
                .family
                .fresh_start(doc)
                .is_some_and(|f| epoch >= f.epoch && self.lineage_of(doc) < f.epoch)
    }

    /// The epoch the history of the open document `doc` starts at (0: its first history).
    pub(crate) fn lineage_of(&self, doc: &DocId) -> u32 {
        self.lineage.get(doc).map_or(0, |(epoch, _)| *epoch)
    }

    /// The base of the open history of `doc`, when it started over.
    pub(crate) fn lineage_base(&self, doc: &DocId) -> Option<ChangeId> {
        self.lineage.get(doc).map(|(_, base)| *base)
    }

    /// Whether rotating `doc` now gives its key to a person none of whose devices held the
    /// current one (a grant, a promotion, a person whose access ended and came back; for a
    /// document the log has given no key yet, anyone but this device's person). When photos
    /// left the document before, such a rotation starts its history over, so that person does
    /// not read their details. Never for library shards, which do not start over.
    pub(crate) fn gives_key_to_newcomer(&self, doc: &DocId) -> bool {
        let family = &self.family;
        if family.doc_kind(doc) == Some(DocKind::Library) {
            return false;
        }
        let person_of = |d: &DeviceId| family.device(d).map(|(p, _)| p);
        let readers: BTreeSet<PersonId> = match family.current_keys(doc) {
            Some(keys) => (keys.envelopes.keys().chain([&keys.rotated_by]))
                .filter_map(person_of)
                .collect(),
            None => BTreeSet::from([self.identity.person]),
        };
        family
            .key_recipients(doc, &self.identity.person)
            .iter()
            .any(|(d, _)| person_of(d).is_some_and(|p| !readers.contains(&p)))
    }

    /// Whether a photo entry ever left the open document `doc` (see
    /// `Document::has_left_entries`; reads its whole history).
    pub(crate) fn has_left_entries(&mut self, doc: &DocId) -> bool {
        self.doc_mut(doc).is_ok_and(|doc| doc.has_left_entries())
    }
}

impl Library {
    /// Cuts a new history of `doc` under `record`'s key (just rotated to, with no earlier keys)
    /// and adds the `FreshStart` naming it to `chain`.
    pub(crate) fn start_over(
        &self,
        state: &mut State,
        chain: &mut OpChain,
        doc: &DocId,
        record: &DocRecord,
    ) -> Result<Started> {
        let me = self.device_id();
        let kind = state.family.doc_kind(doc).unwrap_or(DocKind::Album);
        let Some((_, open)) = state.loaded_mut(doc) else {
            return Err(Error::Invalid(format!("document {doc} is not open here")));
        };
        let clock = open.clock();
        let (copy, bytes) = open
            .fresh_copy(&me, kind, now_ms() as i64)
            .map_err(|e| Error::Corrupt(format!("document {doc} cannot be copied: {e}")))?;
        let header = ChangeHeader {
            doc: *doc,
            epoch: record.epoch,
            author: me,
        };
        let base = seal::seal_change(
            &SymmetricKey::from_bytes(record.key),
            &header,
            rand::random(),
            &bytes,
            &self.device,
        );
        let applied = chain.push(
            &self.device,
            OpBody::FreshStart {
                doc: *doc,
                epoch: record.epoch,
                base: base.id(),
                clock,
            },
        )?;
        if !applied {
            return Err(Error::NotAllowed(format!(
                "the log does not let this device start {} over",
                state.doc_name(doc)
            )));
        }
        let retired = state
            .change_ids
            .get(doc)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        Ok(Started {
            doc: *doc,
            changes: vec![base],
            copy: Some(copy),
            retired,
            epoch: record.epoch,
        })
    }

    /// After `started` was committed: the document is its new history from now on.
    pub(crate) fn adopt_started(&self, state: &mut State, started: Vec<Started>) {
        let mut docs = Vec::new();
        for s in started {
            state.forget_changes(&s.doc, &s.retired);
            let held = state.change_ids.entry(s.doc).or_default();
            held.extend(s.changes.iter().map(SealedChange::id));
            match (state.docs.get_mut(&s.doc), s.copy) {
                (Some(open), Some(copy)) => open.set_doc(copy),
                // Cut again as it is (`cut_again`): the document still holds what others
                // wrote on the history that went, which no stored change holds any more.
                _ => {
                    state.memory_ahead.insert(s.doc);
                }
            }
            if let Some(base) = s.changes.first() {
                state.lineage.insert(s.doc, (s.epoch, base.id()));
            }
            docs.push(s.doc);
            tracing::info!(doc = %s.doc, "started the history of {} over", state.doc_name(&s.doc));
        }
        state.reindex_docs(&docs);
    }

    /// Follows every history the log started over whose base this device holds (see the module
    /// docs). A document it cannot follow yet stays as it is.
    pub(crate) fn follow_fresh_starts(&self, state: &mut State) -> Result<()> {
        let due: Vec<(DocId, FreshStart)> = state
            .docs
            .keys()
            .filter_map(|doc| {
                let f = state.family.fresh_start(doc)?;
                // A newer history, or the one the log kept where this device's cut lost.
                let behind = state.lineage_of(doc) < f.epoch || state.lost_to_kept_cut(doc);
                (behind
                    && state
                        .change_ids
                        .get(doc)
                        .is_some_and(|ids| ids.contains(&f.base)))
                .then(|| (*doc, f.clone()))
            })
            .collect();
        let followed = !due.is_empty();
        for (doc, fresh) in due {
            if let Err(e) = self.follow(state, &doc, &fresh) {
                tracing::warn!(%doc, "cannot follow the new history of {} yet: {e}", state.doc_name(&doc));
            }
        }
        if followed {
            // Entries that left the index on the way are kept restorable, on disk.
            self.save_kept(state);
        }
        Ok(())
    }

    fn follow(&self, state: &mut State, doc: &DocId, fresh: &FreshStart) -> Result<()> {
        let me = self.device_id();
        let ids = state.change_ids_of(doc);
        let Some(open) = state.docs.get(doc) else {
            return Ok(());
        };
        let record = open.record.clone();
        let orphaned = state.is_orphaned(doc);
        let mut base = None;
        let mut newer = Vec::new();
        // Changes of the old history, and of the new one that fail their checks: deleted.
        let mut retired = Vec::new();
        for bytes in self.store.changes_by_id(doc, &ids)? {
            let Ok(sealed) = SealedChange::from_bytes(bytes) else {
                continue;
            };
            let header = sealed.header();
            // An orphaned device never wrote into the history it follows: what it sealed
            // at that epoch belongs to its cancelled one, and is carried over below.
            if header.epoch < fresh.epoch || (orphaned && header.author == me) {
                retired.push(sealed.id());
                continue;
            }
            let opened = record
                .key_for(header.epoch)
                .ok_or_else(|| format!("no key of epoch {}", header.epoch))
                .and_then(|key| {
                    seal::open_change(&SymmetricKey::from_bytes(key), &sealed)
                        .map_err(|e| e.to_string())
                })
                .and_then(|plain| DecodedChange::decode(plain).map_err(|e| e.to_string()));
            match opened {
                Ok(change) if sealed.id() == fresh.base => base = Some((sealed, change)),
                Ok(change) => newer.push((sealed, change)),
                Err(e) => {
                    tracing::warn!(%doc, change = %sealed.id(), "left out of the new history: {e}");
                    retired.push(sealed.id());
                }
            }
        }
        let Some((base_sealed, base)) = base else {
            return Ok(());
        };
        if base_sealed.header().author != fresh.by || !base.deps().is_empty() {
            return Err(Error::Corrupt(format!(
                "the base change {} is not the first change of the device that started the \
                 history over",
                fresh.base
            )));
        }
        let base_hash = base.hash();
        let mut copy = Document::new(&me);
        copy.apply_decoded(base).map_err(corrupt)?;
        copy.set_base(base_hash);
        // The rest as `replica::apply_checked` takes a received change: in causal order, by a
        // device allowed to write it, under its own actor, a contributor's within its entries.
        for (sealed, change) in causal_order(newer, |(_, c)| Some(c)) {
            let header = sealed.header();
            let scope = state
                .family
                .change_scope(doc, &header.author, header.epoch, &sealed.id());
            let fits = match scope {
                None => false,
                Some(_) if !change.written_by(&header.author, doc) => false,
                Some(WriteScope::Document) => true,
                Some(WriteScope::OwnEntries) => copy
                    .effects_of_decoded(&change)
                    .is_ok_and(|e| e.only_entries_of(&state.devices_of_person_of(&header.author))),
            };
            if !fits || copy.apply_decoded(change).is_err() {
                tracing::warn!(%doc, change = %sealed.id(), "left out of the new history: not a change its author may make");
                retired.push(sealed.id());
            }
        }
        // What this device wrote that the new history lacks goes into it as a new change.
        let mut batch = WriteBatch::default();
        if let Some(change) = self.carry_into(state, doc, fresh, &record, &mut copy)? {
            batch.changes.push((*doc, change));
        }
        batch.superseded = retired.iter().map(|id| (*doc, *id)).collect();
        let carried: Vec<SealedChange> = batch.changes.iter().map(|(_, c)| c.clone()).collect();
        self.persist(batch)?;
        state.forget_changes(doc, &retired);
        if let Some(open) = state.docs.get_mut(doc) {
            open.set_doc(copy);
        }
        for c in &carried {
            state.change_ids.entry(*doc).or_default().insert(c.id());
        }
        // Every change of the new history was opened above; none waits any more.
        state.unopened.remove(doc);
        state.lineage.insert(*doc, (fresh.epoch, fresh.base));
        state.reindex_docs(&[*doc]);
        tracing::info!(%doc, "followed the new history of {}", state.doc_name(doc));
        Ok(())
    }

    /// The change that carries into `copy` (the new history of `doc`, not committed yet) what
    /// this device wrote that it lacks; `None` when there is nothing to carry.
    fn carry_into(
        &self,
        state: &mut State,
        doc: &DocId,
        fresh: &FreshStart,
        record: &DocRecord,
        copy: &mut Document,
    ) -> Result<Option<SealedChange>> {
        let me = self.device_id();
        let orphaned = state.is_orphaned(doc);
        // Sequence numbers count within one history: a device that missed a cut (away through
        // two fresh starts) compares its changes with the clock of the first cut after its
        // own history, which is where that history was cut, not with the newest one's.
        let lineage = state.lineage_of(doc);
        let clock = (cuts_in_log(&state.ops, &state.family).into_iter())
            .filter(|c| c.doc == *doc && c.epoch > lineage && state.family.was_cut_at(doc, c.epoch))
            .min_by_key(|c| c.epoch)
            .map_or_else(|| fresh.clock.clone(), |c| c.clock.to_vec());
        let (_, open) = state
            .loaded_mut(doc)
            .ok_or_else(|| Error::Invalid(format!("document {doc} is not open here")))?;
        // On a history whose cut the log cancelled, everything this device wrote came after
        // that cut, and the new history's clock counts another history's changes: all of it
        // is carried over, but for a base of its own.
        let mine: Vec<DecodedChange> = if orphaned {
            (open.changes_beyond(&[], &me).into_iter())
                .filter(|c| !c.deps().is_empty())
                .collect()
        } else {
            open.changes_beyond(&clock, &me)
        };
        if mine.is_empty() {
            return Ok(None);
        }
        let carried = open.carry_over(&mine, copy).map_err(corrupt)?;
        // Whatever was carried, entries or the album's own fields, is committed.
        let Some(bytes) = copy.commit(now_ms() as i64) else {
            return Ok(None);
        };
        let header = ChangeHeader {
            doc: *doc,
            epoch: record.epoch,
            author: me,
        };
        tracing::info!(%doc, "carried {carried} entries this device changed into the new history");
        Ok(Some(seal::seal_change(
            &SymmetricKey::from_bytes(record.key),
            &header,
            rand::random(),
            &bytes,
            &self.device,
        )))
    }
}

fn corrupt(e: kith_protocol::library::LibraryError) -> Error {
    Error::Corrupt(e.to_string())
}

impl State {
    /// Drops `ids` of `doc` from what this device holds and offers.
    pub(crate) fn forget_changes(&mut self, doc: &DocId, ids: &[ChangeId]) {
        if !ids.is_empty() {
            // Its snapshot went with them (`Store::commit`).
            self.snapshotted.remove(doc);
        }
        if let Some(held) = self.change_ids.get_mut(doc) {
            for id in ids {
                held.remove(id);
            }
        }
        if let Some(waiting) = self.unopened.get_mut(doc) {
            for id in ids {
                waiting.remove(id);
            }
            if waiting.is_empty() {
                self.unopened.remove(doc);
            }
        }
        for authored in self.changes_by_author.values_mut() {
            for id in ids {
                authored.remove(id);
            }
        }
    }
}
