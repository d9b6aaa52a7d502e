//! A document whose history starts over: one change that writes its current state, so that a
//! person granted an album later reads the photos in it now, not the names, places, captions
//! or file keys of photos removed before (automerge keeps every change, and a document is
//! rebuilt from all of them).
//!
//! The change that starts a document over is its *base*. Entries are made by the base's
//! author, but they were added by others, and a contributor may still change the entries its
//! person added: for entries the base made, who made them is read from their `made_by` field
//! (the device that put the entry in the old history; bases cut before it was written name
//! the importer, `added_by`), which only a writer of the whole document (whom the log lets
//! start it over) wrote there.
//!
//! Changes the old history got after the base was cut (the base's author names the old
//! history's clock) are carried over by the device that wrote them, as a new change.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::Transactable;
use automerge::{ActorId, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::{
    DecodedChange, DocKind, Document, Edited, LibraryError, PhotoEdit, PhotoEntry, actor_device,
    actor_for, get_bytes32, kind_str,
};
use crate::keys::{DeviceId, PhotoId};

/// The ops of a document's base change: who wrote them and their counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BaseOps {
    actor: ActorId,
    start: u64,
    end: u64,
}

impl BaseOps {
    /// Whether the base made the object or value `id`.
    pub(super) fn made(&self, id: &automerge::ObjId) -> bool {
        matches!(id, automerge::ObjId::Id(counter, actor, _)
            if *actor == self.actor && (self.start..self.end).contains(counter))
    }
}

impl Document {
    /// Whether a photo entry ever left this document: an entry was made and since deleted or
    /// replaced (or the `photos` map itself was). Reads every change: made only when the
    /// document is granted to someone new.
    pub fn has_left_entries(&mut self) -> bool {
        use automerge::legacy::{Key, ObjectId, OpType};
        let photos = self.photos_obj().map(|p| p.to_string());
        let (mut photos_maps, mut entries_made) = (0usize, 0usize);
        for change in self.doc.get_changes(&[]) {
            for op in change.decode().operations {
                if !matches!(op.action, OpType::Make(ObjType::Map)) {
                    continue;
                }
                match &op.obj {
                    ObjectId::Root if matches!(&op.key, Key::Map(k) if k == "photos") => {
                        photos_maps += 1;
                    }
                    ObjectId::Id(id) if Some(format!("{}@{}", id.0, id.1)) == photos => {
                        entries_made += 1;
                    }
                    _ => {}
                }
            }
        }
        let now = self.photos_obj().map_or(0, |p| self.doc.keys(&p).count());
        // A second `photos` map hides the first one's entries.
        photos_maps > 1 || entries_made > now
    }

    /// This document's current state written as the one change of a new history by `device`
    /// (see the module docs), and that change's bytes. The kind field is written as `kind`.
    pub fn fresh_copy(
        &self,
        device: &DeviceId,
        kind: DocKind,
        time_ms: i64,
    ) -> Result<(Document, Vec<u8>), LibraryError> {
        let mut copy = Document::new(device);
        copy.doc.put(ROOT, "kind", kind_str(kind))?;
        copy.doc.put(ROOT, "schema", super::SCHEMA_VERSION)?;
        for field in ["title", "parent", "created_at"] {
            if let Some((Value::Scalar(v), _)) = self.doc.get(ROOT, field)? {
                copy.doc.put(ROOT, field, v.into_owned())?;
            }
        }
        copy.doc.put_object(ROOT, "photos", ObjType::Map)?;
        let entries = self.photos()?;
        copy.put_photos(&entries)?;
        // Whoever put an entry here stays its maker (a contributor's rights over it follow),
        // not the base's author, nor the photo's importer.
        if let (Some(from), Some(to)) = (self.photos_obj(), copy.photos_obj()) {
            for entry in &entries {
                let key = entry.id.to_string();
                let made = match self.doc.get(&from, key.as_str())? {
                    Some((Value::Object(ObjType::Map), obj)) => self.maker_of(&obj),
                    _ => None,
                };
                let Some((Value::Object(ObjType::Map), obj)) = copy.doc.get(&to, key.as_str())?
                else {
                    continue;
                };
                // Who trashed it too: the index trusts no trash of a removed device.
                for (field, device) in [("made_by", made), ("trashed_by", entry.trashed_by)] {
                    if let Some(device) = device {
                        copy.doc
                            .put(&obj, field, ScalarValue::Bytes(device.0.to_vec()))?;
                    }
                }
            }
        }
        let bytes = copy
            .commit(time_ms)
            .ok_or_else(|| LibraryError::BadChange("a fresh copy is empty".into()))?;
        let hash = DecodedChange::decode(bytes.clone())?.hash();
        copy.set_base(hash);
        // Whoever adopts the copy reads it in full.
        copy.edited = Edited::default();
        Ok((copy, bytes))
    }

    /// Marks the change `hash` as this document's base (see the module docs). Returns false
    /// when the document lacks it or it builds on other changes.
    pub fn set_base(&mut self, hash: [u8; 32]) -> bool {
        let Some(change) = self.doc.get_change_by_hash(&ChangeHash(hash)) else {
            return false;
        };
        if !change.deps().is_empty() {
            return false;
        }
        let start = change.start_op().get();
        self.base = Some(BaseOps {
            actor: change.actor_id().clone(),
            start,
            end: start.saturating_add(change.len() as u64),
        });
        true
    }

    /// Who made the entry map `obj`: the actor of the op that made it, or for an entry its
    /// base made, the `made_by` it carries (`added_by` in a base from before `made_by`).
    pub(super) fn maker_of(&self, obj: &automerge::ObjId) -> Option<DeviceId> {
        match &self.base {
            Some(b) if b.made(obj) => get_bytes32(&self.doc, obj, "made_by")
                .or_else(|| get_bytes32(&self.doc, obj, "added_by"))
                .map(DeviceId),
            _ => match obj {
                automerge::ObjId::Id(_, actor, _) => actor_device(actor),
                automerge::ObjId::Root => None,
            },
        }
    }

    /// The highest sequence number of each device's changes in this document: where a fresh
    /// copy of it was cut.
    pub fn clock(&mut self) -> Vec<(DeviceId, u64)> {
        let mut clock: BTreeMap<DeviceId, u64> = BTreeMap::new();
        for change in self.doc.get_changes(&[]) {
            if let Some(device) = actor_device(change.actor_id()) {
                let seq = clock.entry(device).or_default();
                *seq = (*seq).max(change.seq());
            }
        }
        clock.into_iter().collect()
    }

    /// `device`'s changes beyond `clock`: what it wrote here that a fresh copy cut at `clock`
    /// lacks, in the order it wrote them.
    pub fn changes_beyond(
        &mut self,
        clock: &[(DeviceId, u64)],
        device: &DeviceId,
    ) -> Vec<DecodedChange> {
        let cut = clock
            .iter()
            .find(|(d, _)| d == device)
            .map_or(0, |(_, seq)| *seq);
        let actor = actor_for(device);
        let mut mine: Vec<_> = self
            .doc
            .get_changes(&[])
            .into_iter()
            .filter(|c| *c.actor_id() == actor && c.seq() > cut)
            .collect();
        mine.sort_by_key(|c| c.seq());
        mine.into_iter().map(DecodedChange).collect()
    }

    /// `device`'s changes that are stored, in the order it wrote them: what a history cut
    /// again is sealed anew from. An edit automerge closed into a change of its own is not
    /// one: the commit that follows seals it (see [`Document::commit_all`]).
    pub fn sealed_changes_of(&mut self, device: &DeviceId) -> Vec<DecodedChange> {
        let sealed = self.sealed_seq;
        let mut mine = self.changes_beyond(&[], device);
        mine.retain(|c| c.0.seq() <= sealed);
        mine
    }

    /// Writes into `target` (this document's fresh copy) what each of `changes` did here, one
    /// after another: the entries it added (unless `target` holds them), the fields it changed
    /// of entries `target` still holds, the entries it removed, and the album's own fields it
    /// changed. Nothing else: an entry that left `target` is never brought back by an edit, and
    /// fields others changed in `target` stay as they are. Returns how many entries it touched.
    pub fn carry_over(
        &mut self,
        changes: &[DecodedChange],
        target: &mut Document,
    ) -> Result<usize, LibraryError> {
        let mut count = 0;
        for change in changes {
            let before = Document {
                doc: self.doc.fork_at(change.0.deps())?,
                base: self.base.clone(),
                edited: Edited::default(),
                sealed_seq: 0,
            };
            let after = Document {
                doc: self.doc.fork_at(&[change.0.hash()])?,
                base: self.base.clone(),
                edited: Edited::default(),
                sealed_seq: 0,
            };
            let effects = before.effects_of_decoded(change)?;
            if effects.touches_document {
                for field in ["title", "parent"] {
                    let was = before.doc.get(ROOT, field)?.map(|(v, _)| v.to_string());
                    if let Some((Value::Scalar(v), _)) = after.doc.get(ROOT, field)?
                        && Some(v.to_string()) != was
                    {
                        target.edited.whole = true;
                        target.doc.put(ROOT, field, v.into_owned())?;
                    }
                }
            }
            let photos: BTreeSet<&String> = effects
                .added
                .iter()
                .chain(&effects.edited)
                .chain(effects.removed.keys())
                .collect();
            for key in photos {
                let Ok(id) = key.parse::<PhotoId>() else {
                    continue;
                };
                let (was, now, there) = (before.entry(key)?, after.entry(key)?, target.entry(key)?);
                match (was, now, there) {
                    // Added by this change, and not in the new history yet.
                    (None, Some(now), None) => target.put_photos([&now])?,
                    // Removed by this change.
                    (Some(_), None, Some(_)) => {
                        target.remove_photo(&id)?;
                    }
                    // Replaced (new renditions or file key) by this change.
                    (Some(was), Some(now), Some(_))
                        if was.file_key != now.file_key || was.blobs() != now.blobs() =>
                    {
                        target.put_photos([&now])?
                    }
                    // Edited by this change: only the fields it changed.
                    (Some(was), Some(now), Some(_)) => {
                        target.edit_photo(&id, &edit_between(&was, &now))?;
                    }
                    _ => continue,
                }
                count += 1;
            }
        }
        Ok(count)
    }
}

/// The edit that makes `there`'s editable fields what they are in `now`: only those that differ.
fn edit_between(there: &PhotoEntry, now: &PhotoEntry) -> PhotoEdit {
    let add_tags = now
        .tags
        .iter()
        .filter(|t| !there.tags.contains(t))
        .cloned()
        .collect();
    let remove_tags = there
        .tags
        .iter()
        .filter(|t| !now.tags.contains(t))
        .cloned()
        .collect();
    PhotoEdit {
        caption: (there.caption != now.caption).then(|| now.caption.clone()),
        favourite: (there.favourite != now.favourite).then_some(now.favourite),
        add_tags,
        remove_tags,
        trashed_at_ms: (there.trashed_at_ms != now.trashed_at_ms).then_some(now.trashed_at_ms),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::keys::{DeviceId, PhotoId};
    use crate::library::tests::entry;
    use crate::library::{DocKind, Document, PhotoEdit};

    const OWNER: DeviceId = DeviceId([1; 32]);
    const CONTRIBUTOR: DeviceId = DeviceId([3; 32]);

    /// An album by its owner: entry 1 by the owner, entry 2 added by the contributor, entry 3
    /// added and removed again.
    fn album() -> Document {
        let mut doc = Document::new(&OWNER);
        doc.init(DocKind::Album).unwrap();
        let mut theirs = entry(2);
        theirs.added_by = CONTRIBUTOR;
        doc.put_photos(&[entry(1), entry(3)]).unwrap();
        doc.commit(1).unwrap();
        let mut c = Document::from_changes(&CONTRIBUTOR, doc_changes(&mut doc)).unwrap();
        c.put_photos(&[theirs]).unwrap();
        doc.apply_change(c.commit(2).unwrap()).unwrap();
        doc.remove_photo(&PhotoId([3; 32])).unwrap();
        doc.commit(3).unwrap();
        doc
    }

    fn doc_changes(doc: &mut Document) -> Vec<Vec<u8>> {
        doc.doc
            .get_changes(&[])
            .into_iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    #[test]
    fn a_fresh_copy_holds_what_the_album_holds_now_and_nothing_that_left_it() {
        let mut doc = album();
        assert!(doc.has_left_entries());
        let (mut copy, base) = doc.fresh_copy(&OWNER, DocKind::Album, 4).unwrap();
        assert!(!copy.has_left_entries());
        let ids = |d: &Document| -> BTreeSet<PhotoId> {
            d.photos().unwrap().into_iter().map(|e| e.id).collect()
        };
        assert_eq!(
            ids(&copy),
            BTreeSet::from([PhotoId([1; 32]), PhotoId([2; 32])])
        );
        // Nothing of entry 3 is in the one change a new reader gets.
        let gone = entry(3).file_name;
        assert!(!base.windows(gone.len()).any(|w| w == gone.as_bytes()));

        // Another device rebuilt from the base alone sees the same, and the contributor's
        // entry is still the contributor's to edit, the owner's not.
        let mut theirs = Document::from_changes(&CONTRIBUTOR, [base.clone()]).unwrap();
        let mut reader = {
            let mut d = Document::from_changes(&OWNER, [base.clone()]).unwrap();
            assert!(d.set_base(crate::library::DecodedChange::decode(base).unwrap().hash()));
            d
        };
        let caption = |text: &str| PhotoEdit {
            caption: Some(Some(text.into())),
            ..PhotoEdit::default()
        };
        let mine = BTreeSet::from([CONTRIBUTOR]);
        theirs
            .edit_photo(&PhotoId([2; 32]), &caption("mine"))
            .unwrap();
        let first = theirs.commit(5).unwrap();
        let own = reader.effects_of(&first).unwrap();
        assert!(own.only_entries_of(&mine), "{own:?}");
        reader.apply_change(first).unwrap();
        theirs
            .edit_photo(&PhotoId([1; 32]), &caption("not mine"))
            .unwrap();
        let other = reader.effects_of(&theirs.commit(6).unwrap()).unwrap();
        assert!(!other.only_entries_of(&mine), "{other:?}");
        assert!(!copy.set_base([0; 32]));
    }

    #[test]
    fn an_entry_stays_whoever_put_it_in_the_album_after_a_fresh_start() {
        // The contributor puts a photo another device imported into the album.
        const IMPORTER: DeviceId = DeviceId([4; 32]);
        let mut doc = album();
        let mut c = Document::from_changes(&CONTRIBUTOR, doc_changes(&mut doc)).unwrap();
        let mut five = entry(5);
        five.added_by = IMPORTER;
        c.put_photos(&[five]).unwrap();
        doc.apply_change(c.commit(4).unwrap()).unwrap();
        let (_, base) = doc.fresh_copy(&OWNER, DocKind::Album, 5).unwrap();
        let mut reader = Document::from_changes(&OWNER, [base.clone()]).unwrap();
        assert!(
            reader.set_base(
                crate::library::DecodedChange::decode(base.clone())
                    .unwrap()
                    .hash()
            )
        );
        let trash = PhotoEdit {
            trashed_at_ms: Some(Some(6)),
            ..PhotoEdit::default()
        };
        for (device, may) in [(CONTRIBUTOR, true), (IMPORTER, false)] {
            let mut d = Document::from_changes(&device, [base.clone()]).unwrap();
            d.edit_photo(&PhotoId([5; 32]), &trash).unwrap();
            let effects = reader.effects_of(&d.commit(6).unwrap()).unwrap();
            assert_eq!(
                effects.only_entries_of(&BTreeSet::from([device])),
                may,
                "{device:?}: {effects:?}"
            );
        }
    }

    #[test]
    fn who_trashed_a_photo_is_still_known_after_a_fresh_start() {
        let mut doc = album();
        let mut c = Document::from_changes(&CONTRIBUTOR, doc_changes(&mut doc)).unwrap();
        let trash = PhotoEdit {
            trashed_at_ms: Some(Some(4)),
            ..PhotoEdit::default()
        };
        c.edit_photo(&PhotoId([2; 32]), &trash).unwrap();
        doc.apply_change(c.commit(4).unwrap()).unwrap();
        let (_, base) = doc.fresh_copy(&OWNER, DocKind::Album, 5).unwrap();
        let mut reader = Document::from_changes(&OWNER, [base.clone()]).unwrap();
        assert!(reader.set_base(crate::library::DecodedChange::decode(base).unwrap().hash()));
        let by = |d: &Document, n: u8| {
            let entries = d.photos().unwrap();
            entries
                .into_iter()
                .find(|e| e.id == PhotoId([n; 32]))
                .unwrap()
                .trashed_by
        };
        assert_eq!(by(&reader, 2), Some(CONTRIBUTOR));
        assert_eq!(by(&reader, 1), None);
        // Trashed again in the new history: by whoever did it there.
        reader.edit_photo(&PhotoId([1; 32]), &trash).unwrap();
        reader.commit(6).unwrap();
        assert_eq!(by(&reader, 1), Some(OWNER));
    }

    #[test]
    fn changes_beyond_the_cut_are_carried_into_the_new_history() {
        let mut doc = album();
        let clock = doc.clock();
        let (mut copy, _) = doc.fresh_copy(&OWNER, DocKind::Album, 4).unwrap();
        // The contributor, apart since before entry 3 was removed, adds entry 4, captions its
        // entry 2 and captions entry 3: none of it is in the copy yet.
        let before_removal: Vec<Vec<u8>> = doc_changes(&mut doc).into_iter().take(2).collect();
        let mut c = Document::from_changes(&CONTRIBUTOR, before_removal).unwrap();
        let mut four = entry(4);
        four.added_by = CONTRIBUTOR;
        c.put_photos(&[four]).unwrap();
        c.commit(5).unwrap();
        for (n, text) in [(2, "late"), (3, "resurrected?")] {
            c.edit_photo(
                &PhotoId([n; 32]),
                &PhotoEdit {
                    caption: Some(Some(text.into())),
                    ..PhotoEdit::default()
                },
            )
            .unwrap();
            c.commit(6).unwrap();
        }
        let late = c.changes_beyond(&clock, &CONTRIBUTOR);
        assert_eq!(late.len(), 3);
        assert!(c.changes_beyond(&clock, &OWNER).is_empty());
        // The edit of entry 3, which left the new history, does not bring it back.
        assert_eq!(c.carry_over(&late, &mut copy).unwrap(), 2);
        let entries = copy.photos().unwrap();
        assert!(entries.iter().any(|e| e.id == PhotoId([4; 32])));
        let two = entries.iter().find(|e| e.id == PhotoId([2; 32])).unwrap();
        assert_eq!(two.caption.as_deref(), Some("late"));
        assert!(!entries.iter().any(|e| e.id == PhotoId([3; 32])));
    }
}
