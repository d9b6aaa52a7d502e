//! What a change does to a document, read from its operations before it is applied: whether it
//! writes the document's own fields, which existing photo entries it touches and which devices
//! made them, and which entries it removes or replaces (with the entry as it was).
//!
//! Who made an entry is not a field anybody can write: an entry is an automerge map, and the
//! id of the operation that made the map names the device (actor) that made it. So a
//! contributor's change can be held to the entries its person made, on every node alike, from
//! the change and the document it builds on.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{ActorId, ObjType, Prop, ReadDoc, Value};

use super::{DecodedChange, Document, LibraryError, PhotoEntry, read_entry};
use crate::keys::DeviceId;

/// What one change does (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeEffects {
    /// It writes the document's own fields (kind, title, parent, the `photos` map itself) or
    /// something outside the schema.
    pub touches_document: bool,
    /// The devices that made the existing entries it edits, removes or replaces.
    pub entry_makers: BTreeSet<DeviceId>,
    /// Entries it removes or replaces, keyed by photo id (hex), as they were before it.
    pub removed: BTreeMap<String, PhotoEntry>,
    /// Photo ids (hex) of the entries it makes.
    pub added: BTreeSet<String>,
    /// Photo ids (hex) of existing entries whose fields it writes.
    pub edited: BTreeSet<String>,
    /// Keys of the `photos` map it deletes, whatever they held (an entry that does not read
    /// as one is in no other set).
    pub deleted: BTreeSet<String>,
}

impl ChangeEffects {
    /// Whether every existing entry it touches was made by one of `devices` and it writes
    /// nothing but entries: what a contributor may do.
    pub fn only_entries_of(&self, devices: &BTreeSet<DeviceId>) -> bool {
        !self.touches_document && self.entry_makers.is_subset(devices)
    }
}

/// The fields of an entry whose overwrite replaces the photo (its renditions or file key): the
/// entry as it was is noted as removed.
pub(super) const REPLACING_FIELDS: [&str; 4] = ["original", "preview", "thumbnail", "key"];

/// Where an object sits in the schema.
#[derive(Debug, Clone)]
enum Place {
    Root,
    Photos,
    /// A photo entry's map, and the device that made it.
    Entry(String, DeviceId),
    /// The tags map of an entry.
    Tags(String, DeviceId),
    Elsewhere,
}

/// The device an automerge actor stands for (kith writes each device's changes as the actor of
/// its id); `None` for actors that are not 32 bytes, e.g. a shared genesis' fixed actor.
pub fn actor_device(actor: &ActorId) -> Option<DeviceId> {
    <[u8; 32]>::try_from(actor.to_bytes()).ok().map(DeviceId)
}

impl Document {
    /// Reads what `change` would do to this document, without applying it. Fails when the
    /// change does not decode or builds on changes this document lacks (its effects cannot be
    /// known before those arrive).
    pub fn effects_of(&self, change: &[u8]) -> Result<ChangeEffects, LibraryError> {
        // Bounded and guarded like every change that enters automerge.
        self.effects_of_decoded(&DecodedChange::decode(change.to_vec())?)
    }

    /// [`Document::effects_of`] for a change already decoded.
    pub fn effects_of_decoded(
        &self,
        change: &DecodedChange,
    ) -> Result<ChangeEffects, LibraryError> {
        let change = &change.0;
        if let Some(missing) = self.missing_dep_of(change) {
            return Err(LibraryError::MissingDependency(missing.to_string()));
        }
        let expanded = change.decode();
        let actor = expanded.actor_id.clone();
        let start = expanded.start_op.get();
        let mut effects = ChangeEffects::default();
        // Objects this change makes: op counter → their place.
        let mut made: BTreeMap<u64, Place> = BTreeMap::new();
        // Existing objects it writes, looked up once each: a change adding a thousand photos
        // writes the `photos` map a thousand times, and finding an object's path is a walk.
        let mut existing: HashMap<&automerge::legacy::OpId, Place> = HashMap::new();
        let photos = self.photos_obj();
        // Ops of this change under each key of the `photos` map, by counter.
        let mut under_key: HashMap<String, Vec<u64>> = HashMap::new();
        // Which key each entry's op sits under, read once, for a change that claims to
        // overwrite an op under another key than its own.
        let mut keys_by_op: Option<HashMap<(u64, ActorId), String>> = None;
        for (i, op) in expanded.operations.iter().enumerate() {
            let counter = start.saturating_add(i as u64);
            let place = match &op.obj {
                ObjectId::Root => Place::Root,
                ObjectId::Id(id) if id.1 == actor && made.contains_key(&id.0) => {
                    made.get(&id.0).cloned().unwrap_or(Place::Elsewhere)
                }
                ObjectId::Id(id) => existing
                    .entry(id)
                    .or_insert_with(|| self.place_of(&format!("{}@{}", id.0, id.1)))
                    .clone(),
            };
            let key = match &op.key {
                Key::Map(k) => Some(k.to_string()),
                Key::Seq(_) => None,
            };
            match (&place, key) {
                (Place::Root, Some(k)) if k == "photos" => {
                    effects.touches_document = true;
                    if matches!(op.action, OpType::Make(ObjType::Map)) {
                        made.insert(counter, Place::Photos);
                    }
                }
                (Place::Photos, Some(photo)) => {
                    // What is under the key now: read once, for both checks below.
                    let there = match &photos {
                        Some(photos) => self.doc.get_all(photos, photo.as_str())?,
                        None => Vec::new(),
                    };
                    let earlier = under_key.entry(photo.clone()).or_default();
                    let elsewhere = self.overwritten_elsewhere(
                        photos.as_ref(),
                        &photo,
                        op,
                        &actor,
                        (earlier, &there),
                        change.deps(),
                    );
                    earlier.push(counter);
                    if !elsewhere.is_empty() {
                        // automerge deletes every op a change says it overwrites, wherever
                        // it sits in the map: under another key, that is another entry, which
                        // this change removes (and is named for, so it can be undone).
                        effects.touches_document = true;
                        if let Some(photos) = &photos {
                            let by_op = keys_by_op.get_or_insert_with(|| self.keys_by_op(photos));
                            for pred in elsewhere {
                                if let Some(other) = by_op.get(&(pred.0, pred.1.clone())) {
                                    let there = self.doc.get_all(photos, other.as_str())?;
                                    self.note_entry_op(&mut effects, there, other);
                                    effects.deleted.insert(other.clone());
                                }
                            }
                        }
                    }
                    self.note_entry_op(&mut effects, there, &photo);
                    match op.action {
                        OpType::Make(ObjType::Map) => {
                            let maker = actor_device(&actor);
                            match maker {
                                Some(d) => {
                                    made.insert(counter, Place::Entry(photo.clone(), d));
                                    effects.added.insert(photo);
                                }
                                None => effects.touches_document = true,
                            }
                        }
                        OpType::Delete => {
                            effects.deleted.insert(photo);
                        }
                        _ => effects.touches_document = true,
                    }
                }
                (Place::Entry(photo, maker), Some(field)) => {
                    if !effects.added.contains(photo) {
                        effects.entry_makers.insert(*maker);
                        effects.edited.insert(photo.clone());
                    }
                    if field == "tags" && matches!(op.action, OpType::Make(ObjType::Map)) {
                        made.insert(counter, Place::Tags(photo.clone(), *maker));
                    }
                    if REPLACING_FIELDS.contains(&field.as_str()) && !effects.added.contains(photo)
                    {
                        // Replacing a rendition or the file key is replacing the photo.
                        if let Some(was) = self.entry(photo)? {
                            effects.removed.entry(photo.clone()).or_insert(was);
                        }
                    }
                }
                (Place::Tags(photo, maker), Some(_)) => {
                    if !effects.added.contains(photo) {
                        effects.entry_makers.insert(*maker);
                        effects.edited.insert(photo.clone());
                    }
                }
                _ => effects.touches_document = true,
            }
        }
        Ok(effects)
    }

    /// The ops that `op` (on `photos[photo]`) says it overwrites which are not under that key:
    /// not an earlier op of the same change there (`earlier`), nor one there now (`there`) or
    /// when the change was made.
    fn overwritten_elsewhere(
        &self,
        photos: Option<&automerge::ObjId>,
        photo: &str,
        op: &automerge::legacy::Op,
        actor: &ActorId,
        (earlier, there): (&[u64], &[(Value<'_>, automerge::ObjId)]),
        deps: &[automerge::ChangeHash],
    ) -> Vec<automerge::legacy::OpId> {
        let holds = |ids: &[(Value<'_>, automerge::ObjId)], pred: &automerge::legacy::OpId| {
            ids.iter().any(|(_, id)| {
                matches!(id, automerge::ObjId::Id(counter, by, _) if *counter == pred.0 && *by == pred.1)
            })
        };
        let under_its_key = |pred: &automerge::legacy::OpId| {
            if (pred.1 == *actor && earlier.contains(&pred.0)) || holds(there, pred) {
                return true;
            }
            // Overwritten since by a change this one did not know of.
            photos.is_some_and(|photos| {
                holds(
                    &self.doc.get_all_at(photos, photo, deps).unwrap_or_default(),
                    pred,
                )
            })
        };
        op.pred
            .iter()
            .filter(|p| !under_its_key(p))
            .cloned()
            .collect()
    }

    /// The key of the `photos` map each op there now sits under, by op id.
    fn keys_by_op(&self, photos: &automerge::ObjId) -> HashMap<(u64, ActorId), String> {
        let mut out = HashMap::new();
        for key in self.doc.keys(photos) {
            for (_, id) in self.doc.get_all(photos, key.as_str()).unwrap_or_default() {
                if let automerge::ObjId::Id(counter, actor, _) = id {
                    out.insert((counter, actor), key.clone());
                }
            }
        }
        out
    }

    /// Records an op on `photos[photo]` that replaces or deletes `there`, what is under the key.
    fn note_entry_op(
        &self,
        effects: &mut ChangeEffects,
        there: Vec<(Value<'_>, automerge::ObjId)>,
        photo: &str,
    ) {
        for (value, id) in there {
            match (value, &id) {
                (Value::Object(ObjType::Map), automerge::ObjId::Id(..)) => {
                    match self.maker_of(&id) {
                        Some(d) => {
                            effects.entry_makers.insert(d);
                        }
                        None => effects.touches_document = true,
                    }
                    if let Ok(was) = read_entry(&self.doc, &id, photo, self.base.as_ref()) {
                        effects.removed.entry(photo.to_owned()).or_insert(was);
                    }
                }
                _ => effects.touches_document = true,
            }
        }
    }

    /// The visible entry for `photo` (its id in hex), if any: what [`Document::photos`] reads
    /// for that key alone.
    pub fn entry(&self, photo: &str) -> Result<Option<PhotoEntry>, LibraryError> {
        let Some(photos) = self.photos_obj() else {
            return Ok(None);
        };
        match self.doc.get(&photos, photo)? {
            Some((Value::Object(ObjType::Map), obj)) => {
                read_entry(&self.doc, &obj, photo, self.base.as_ref()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Where the object `id` ("counter@actor") sits in the schema.
    fn place_of(&self, id: &str) -> Place {
        let Ok(obj) = self.doc.import_obj(id) else {
            return Place::Elsewhere;
        };
        let Ok(parents) = self.doc.parents(&obj) else {
            return Place::Elsewhere;
        };
        let path = parents.path();
        let maker = self.maker_of(&obj);
        let keys: Vec<Option<String>> = path
            .iter()
            .map(|(_, prop)| match prop {
                Prop::Map(k) => Some(k.clone()),
                Prop::Seq(_) => None,
            })
            .collect();
        match (keys.as_slice(), maker) {
            ([Some(p)], _) if p == "photos" => Place::Photos,
            ([Some(p), Some(photo)], Some(maker)) if p == "photos" => {
                Place::Entry(photo.clone(), maker)
            }
            ([Some(p), Some(photo), Some(t)], _) if p == "photos" && t == "tags" => {
                match path.get(2).and_then(|(obj, _)| self.maker_of(obj)) {
                    Some(entry_maker) => Place::Tags(photo.clone(), entry_maker),
                    None => Place::Elsewhere,
                }
            }
            _ => Place::Elsewhere,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use automerge::legacy::{Key, OpType};
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT, ReadDoc};

    use crate::keys::{DeviceId, DocId, PhotoId};
    use crate::library::tests::entry;
    use crate::library::{DocKind, Document, PhotoEdit};

    const OWNER: DeviceId = DeviceId([1; 32]);
    const CONTRIBUTOR: DeviceId = DeviceId([3; 32]);

    /// An album by its owner holding entry 1, and the contributor's replica of it.
    fn album() -> (Document, Document) {
        let genesis = Document::genesis_change(DocKind::Album, &DocId([8; 32])).unwrap();
        let mut owner = Document::new(&OWNER);
        owner.apply_change(genesis.clone()).unwrap();
        owner.put_photos(&[entry(1)]).unwrap();
        let first = owner.commit(1).unwrap();
        let contributor = Document::from_changes(&CONTRIBUTOR, [genesis, first]).unwrap();
        (owner, contributor)
    }

    #[test]
    fn deleting_an_entry_that_does_not_read_is_still_named() {
        let (mut owner, _) = album();
        let key = PhotoId([1; 32]).to_string();
        let photos = owner.photos_obj().unwrap();
        let (_, entry) = owner.doc.get(&photos, key.as_str()).unwrap().unwrap();
        owner.doc.put(&entry, "width", "not a number").unwrap();
        owner.commit(2).unwrap();
        let mut replica = Document::from_changes(
            &CONTRIBUTOR,
            owner
                .doc
                .get_changes(&[])
                .into_iter()
                .map(|c| c.raw_bytes().to_vec()),
        )
        .unwrap();
        owner.doc.delete(&photos, key.as_str()).unwrap();
        let delete = owner.commit(3).unwrap();
        let effects = replica.effects_of(&delete).unwrap();
        assert!(effects.removed.is_empty(), "it does not read: {effects:?}");
        assert!(effects.deleted.contains(&key), "{effects:?}");
        replica.apply_change(delete).unwrap();
        assert!(replica.photos().unwrap().is_empty());
    }

    /// A contributor's new entry whose op names, as what it overwrites, the op that made the
    /// owner's entry under another key: automerge deletes whatever op a change names, wherever
    /// it sits in the object.
    #[test]
    fn a_new_entry_claiming_to_overwrite_another_entry_touches_the_document() {
        let (owner, mut c) = album();
        let photos = c.photos_obj().unwrap();
        let owners_key = PhotoId([1; 32]).to_string();
        let Some((_, automerge::ObjId::Id(counter, actor, _))) =
            c.doc.get(&photos, owners_key.as_str()).unwrap()
        else {
            panic!("the owner's entry is there")
        };
        c.put_photos(&[entry(2)]).unwrap();
        let mut expanded = automerge::Change::from_bytes(c.commit(2).unwrap())
            .unwrap()
            .decode();
        let mine = PhotoId([2; 32]).to_string();
        let Some(make) = expanded.operations.iter_mut().find(|op| {
            matches!(op.action, OpType::Make(ObjType::Map))
                && matches!(&op.key, Key::Map(k) if *k == mine)
        }) else {
            panic!("the change makes entry 2")
        };
        make.pred = vec![automerge::legacy::OpId::new(counter, &actor)].into();
        // The same with no other op: it writes no field a removal is looked for in.
        let mut bare = expanded.clone();
        bare.operations
            .retain(|op| matches!(op.action, OpType::Make(ObjType::Map)));
        let bare = automerge::Change::from(bare).raw_bytes().to_vec();
        let forged = automerge::Change::from(expanded).raw_bytes().to_vec();

        // Applied, it takes the owner's entry away.
        let mut applied = Document::from_changes(
            &OWNER,
            owner
                .doc
                .clone()
                .get_changes(&[])
                .into_iter()
                .map(|c| c.raw_bytes().to_vec()),
        )
        .unwrap();
        applied.apply_change(forged.clone()).unwrap();
        let left: Vec<PhotoId> = applied
            .photos()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, vec![PhotoId([2; 32])]);
        // Read again after it was applied (a device learning later that its author was
        // removed), each names the entry it took away.
        for (what, change) in [("forged", &forged), ("bare", &bare)] {
            let mut applied = Document::from_changes(
                &OWNER,
                (owner.doc.clone().get_changes(&[]).into_iter()).map(|c| c.raw_bytes().to_vec()),
            )
            .unwrap();
            applied.apply_change(change.clone()).unwrap();
            let decoded = crate::library::DecodedChange::decode(change.clone()).unwrap();
            let removed: Vec<PhotoId> = (applied.removed_by_change(&decoded).unwrap())
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(removed, vec![PhotoId([1; 32])], "{what}");
        }

        let effects = owner.effects_of(&forged).unwrap();
        assert!(
            !effects.only_entries_of(&BTreeSet::from([CONTRIBUTOR])),
            "it removes the owner's entry: {effects:?}"
        );
        assert!(effects.touches_document);
        // And it is named as removing it, so the removal can be attributed and undone.
        assert!(effects.removed.contains_key(&owners_key), "{effects:?}");
        assert!(effects.deleted.contains(&owners_key), "{effects:?}");
    }

    /// What the contributor's next change does, read by the owner's replica.
    fn effects(owner: &Document, contributor: &mut Document) -> super::ChangeEffects {
        let change = contributor.commit(2).unwrap();
        owner.effects_of(&change).unwrap()
    }

    #[test]
    fn a_contributor_may_add_and_edit_its_own_entries_only() {
        let mine = BTreeSet::from([CONTRIBUTOR]);
        let (owner, mut c) = album();

        c.put_photos(&[entry(2)]).unwrap();
        let added = effects(&owner, &mut c);
        assert!(added.only_entries_of(&mine), "{added:?}");
        assert!(added.added.contains(&PhotoId([2; 32]).to_string()));

        let (owner, mut c) = album();
        let caption = PhotoEdit {
            caption: Some(Some("mine now".into())),
            ..PhotoEdit::default()
        };
        c.edit_photo(&PhotoId([1; 32]), &caption).unwrap();
        let edited = effects(&owner, &mut c);
        assert!(
            !edited.only_entries_of(&mine),
            "edited the owner's entry: {edited:?}"
        );
        assert!(edited.entry_makers.contains(&OWNER));

        let (owner, mut c) = album();
        c.remove_photo(&PhotoId([1; 32])).unwrap();
        let removed = effects(&owner, &mut c);
        assert!(
            !removed.only_entries_of(&mine),
            "removed the owner's entry: {removed:?}"
        );
        assert!(removed.removed.contains_key(&PhotoId([1; 32]).to_string()));

        let (owner, mut c) = album();
        c.doc.put(ROOT, "kind", "library").unwrap();
        let kind = effects(&owner, &mut c);
        assert!(!kind.only_entries_of(&mine), "changed the kind: {kind:?}");
        assert!(kind.touches_document);
    }
}
