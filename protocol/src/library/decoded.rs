//! A change decoded once, within the bounds, then read and applied; and the order in which a
//! batch of one document's changes is applied.
//!
//! Peers send changes in the order they were asked for, which is the order of their ids, not
//! of their history. What a change does (see [`super::scope`]) can be read only once the
//! changes it builds on are in the document; a purge read before the trash it builds on would
//! look like an entry vanishing for no reason. So a batch is put in causal order first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Change, ChangeHash, ReadDoc};

use super::scope::REPLACING_FIELDS;
use super::{Document, Edited, LibraryError, PhotoEntry, guard};
use crate::keys::{DeviceId, DocId};

/// One automerge change, decoded after [`super::check_change_bounds`] passed.
#[derive(Debug, Clone)]
pub struct DecodedChange(pub(super) Change);

impl DecodedChange {
    pub fn decode(bytes: Vec<u8>) -> Result<DecodedChange, LibraryError> {
        guard::decode_change(bytes).map(DecodedChange)
    }

    /// The automerge hash that other changes name as a dependency.
    pub fn hash(&self) -> [u8; 32] {
        self.0.hash().0
    }

    pub fn deps(&self) -> Vec<[u8; 32]> {
        self.0.deps().iter().map(|h| h.0).collect()
    }

    /// The change's encoded bytes, as sealed.
    pub fn raw_bytes(&self) -> &[u8] {
        self.0.raw_bytes()
    }

    /// Whether the change is written under `author`'s own actor, as every device writes its
    /// changes, or is a document's first change by the fixed actor of its id (see
    /// [`Document::genesis_change`]). Who made an entry and who trashed a photo are read from
    /// actors, so a change under another device's actor would speak for that device.
    pub fn written_by(&self, author: &DeviceId, doc: &DocId) -> bool {
        let actor = self.0.actor_id().to_bytes();
        actor == author.0.as_slice() || (actor == doc.0.as_slice() && self.0.deps().is_empty())
    }
}

impl Document {
    /// Applies a decoded change (see [`Document::apply_change`]).
    pub fn apply_decoded(&mut self, change: DecodedChange) -> Result<(), LibraryError> {
        self.apply_parsed(change.0)
    }

    /// The entries `change` removed or replaced, as they were just before it: read against
    /// the document as it stood at the change's dependencies, so it works after the change
    /// was applied (for a device that learns later that its author was removed). A change
    /// that deletes no key and writes no rendition or file key is answered without that
    /// reconstruction, which replays the document's history.
    pub fn removed_by_change(
        &mut self,
        change: &DecodedChange,
    ) -> Result<Vec<PhotoEntry>, LibraryError> {
        // An op on the `photos` map that names ops it overwrites may name another key's
        // entry (automerge deletes every op named, wherever it sits in the map).
        let photos = self.photos_obj().map(|p| p.to_string());
        let may_remove = change.0.decode().operations.iter().any(|op| {
            matches!(op.action, OpType::Delete)
                || matches!(&op.key, Key::Map(k) if REPLACING_FIELDS.contains(&k.as_str()))
                || (!op.pred.is_empty()
                    && matches!(&op.obj, ObjectId::Id(id) if Some(format!("{}@{}", id.0, id.1)) == photos))
        });
        if !may_remove {
            return Ok(Vec::new());
        }
        let before = Document {
            doc: self.doc.fork_at(change.0.deps())?,
            base: self.base.clone(),
            edited: Edited::default(),
            sealed_seq: 0,
        };
        Ok(before
            .effects_of_decoded(change)?
            .removed
            .into_values()
            .collect())
    }

    /// Whether automerge holds changes here that wait for a dependency: applying the change
    /// they wait for applies them too, without their effects having been read.
    pub fn has_queued_changes(&self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// Whether the document holds every change `change` builds on.
    pub fn has_deps_of(&self, change: &DecodedChange) -> bool {
        self.missing_dep_of(&change.0).is_none()
    }

    /// The first change `change` builds on that this document has not applied, if any.
    ///
    /// Asks automerge's change graph (`get_missing_deps`, a hash lookup per dependency):
    /// `get_change_by_hash` rebuilds the whole change from the op set, and made reading what a
    /// change does cost a third as much as applying it. `get_missing_deps` counts a change
    /// automerge holds queued (waiting for its own dependencies) as present; a queued change
    /// always lacks one, so only while the queue is not empty is each dependency looked up
    /// the slow, exact way.
    pub(super) fn missing_dep_of(&self, change: &Change) -> Option<ChangeHash> {
        let deps = change.deps();
        if deps.is_empty() {
            return None;
        }
        if let Some(missing) = self
            .doc
            .get_missing_deps(deps)
            .into_iter()
            .find(|h| deps.contains(h))
        {
            return Some(missing);
        }
        if self.doc.get_missing_deps(&[]).is_empty() {
            return None;
        }
        deps.iter()
            .find(|d| self.doc.get_change_by_hash(d).is_none())
            .copied()
    }
}

/// Orders `items` so that each comes after the items it depends on (Kahn's algorithm over
/// change hashes), keeping the given order wherever it is free to. Items without a decoded
/// change (`change` gives `None`) and those in a dependency cycle keep their place at the end.
pub fn causal_order<T>(items: Vec<T>, change: impl Fn(&T) -> Option<&DecodedChange>) -> Vec<T> {
    let hashes: Vec<Option<ChangeHash>> = items
        .iter()
        .map(|t| change(t).map(|c| c.0.hash()))
        .collect();
    let index: BTreeMap<ChangeHash, usize> = hashes
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|h| (h, i)))
        .collect();
    // For each item, how many of its dependencies are in the batch, and who waits on it.
    let mut waiting_on = vec![0usize; items.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for (i, item) in items.iter().enumerate() {
        let Some(c) = change(item) else { continue };
        let deps: BTreeSet<usize> =
            c.0.deps()
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect();
        waiting_on[i] = deps.len();
        for d in deps {
            dependents[d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..items.len())
        .filter(|&i| hashes[i].is_some() && waiting_on[i] == 0)
        .collect();
    let mut order = Vec::with_capacity(items.len());
    let mut placed = vec![false; items.len()];
    while let Some(i) = ready.pop_front() {
        order.push(i);
        placed[i] = true;
        for &j in &dependents[i] {
            waiting_on[j] -= 1;
            if waiting_on[j] == 0 {
                ready.push_back(j);
            }
        }
    }
    order.extend((0..items.len()).filter(|&i| !placed[i]));
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::DocKind;
    use crate::library::tests::entry;

    #[test]
    fn a_batch_in_any_order_is_applied_after_what_it_builds_on() {
        let genesis = Document::genesis_change(DocKind::Library, &DocId([8; 32])).unwrap();
        let mut a = Document::new(&DeviceId([1; 32]));
        a.apply_change(genesis.clone()).unwrap();
        let mut chain = Vec::new();
        for n in 1..=5u8 {
            a.put_photos(&[entry(n)]).unwrap();
            chain.push(a.commit(i64::from(n)).unwrap());
        }
        let mut shuffled: Vec<DecodedChange> = [3, 0, 4, 2, 1]
            .iter()
            .map(|&i| DecodedChange::decode(chain[i].clone()).unwrap())
            .collect();
        shuffled.push(DecodedChange::decode(genesis).unwrap());
        let ordered = causal_order(shuffled, |c| Some(c));
        let mut b = Document::new(&DeviceId([2; 32]));
        for c in ordered {
            assert!(b.has_deps_of(&c), "a change came before what it builds on");
            b.apply_decoded(c).unwrap();
        }
        assert_eq!(b.photos().unwrap().len(), 5);
    }

    #[test]
    fn a_dependency_held_only_in_automerges_queue_is_missing() {
        let genesis = Document::genesis_change(DocKind::Library, &DocId([8; 32])).unwrap();
        let mut a = Document::new(&DeviceId([1; 32]));
        a.apply_change(genesis.clone()).unwrap();
        let mut chain = Vec::new();
        for n in 1..=3u8 {
            a.put_photos(&[entry(n)]).unwrap();
            chain.push(DecodedChange::decode(a.commit(i64::from(n)).unwrap()).unwrap());
        }
        let mut b = Document::new(&DeviceId([2; 32]));
        b.apply_change(genesis).unwrap();
        assert_eq!(b.missing_dep_of(&chain[0].0), None);
        // The second change without the first: automerge queues it.
        b.apply_decoded(chain[1].clone()).unwrap();
        assert_eq!(b.missing_dep_of(&chain[1].0), Some(chain[0].0.hash()));
        assert_eq!(b.missing_dep_of(&chain[2].0), Some(chain[1].0.hash()));
        assert!(b.effects_of_decoded(&chain[2]).is_err());
        // The first arrives: the queue empties and every dependency is held.
        b.apply_decoded(chain[0].clone()).unwrap();
        assert_eq!(b.missing_dep_of(&chain[2].0), None);
        assert!(b.has_deps_of(&chain[2]));
    }

    #[test]
    fn a_change_speaks_only_for_the_actor_it_is_written_under() {
        let doc = DocId([8; 32]);
        let genesis = Document::genesis_change(DocKind::Library, &doc).unwrap();
        let first = DecodedChange::decode(genesis.clone()).unwrap();
        assert!(first.written_by(&DeviceId([1; 32]), &doc));
        assert!(!first.written_by(&DeviceId([1; 32]), &DocId([9; 32])));
        let mut a = Document::new(&DeviceId([1; 32]));
        a.apply_change(genesis).unwrap();
        a.put_photos(&[entry(1)]).unwrap();
        let change = DecodedChange::decode(a.commit(1).unwrap()).unwrap();
        assert!(change.written_by(&DeviceId([1; 32]), &doc));
        // Sealed by another device, it would make device 1 the maker of the entry.
        assert!(!change.written_by(&DeviceId([2; 32]), &doc));
    }
}
