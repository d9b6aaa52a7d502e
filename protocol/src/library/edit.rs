//! A person's edits of one photo: caption, favourite, tags, trash.
//!
//! An edit writes only the fields it changes, each into the photo entry's existing automerge
//! map, so two devices editing different fields of one photo at the same time both keep their
//! edit; the same field edited on both ends with one value (automerge's conflict rule). Tags
//! are the keys of a map, so adding and removing tags merges tag by tag.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};

use super::{Document, LibraryError};
use crate::keys::PhotoId;

/// What to change on one photo; `None` and empty lists leave a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhotoEdit {
    /// `Some(None)` removes the caption.
    pub caption: Option<Option<String>>,
    pub favourite: Option<bool>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    /// `Some(Some(ms))` moves the photo to the trash at that time, `Some(None)` restores it.
    pub trashed_at_ms: Option<Option<u64>>,
}

impl PhotoEdit {
    /// Whether the edit changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self == &PhotoEdit::default()
    }
}

impl Document {
    /// Applies `edit` to the photo's entry in this document. Returns `false`, changing
    /// nothing, when the document does not hold the photo.
    pub fn edit_photo(&mut self, id: &PhotoId, edit: &PhotoEdit) -> Result<bool, LibraryError> {
        let Some(entry) = self.entry_obj(id)? else {
            return Ok(false);
        };
        self.edited.entries.insert(*id);
        let doc = &mut self.doc;
        if let Some(caption) = &edit.caption {
            match caption {
                Some(text) => doc.put(&entry, "caption", text.as_str())?,
                None => doc.put(&entry, "caption", ScalarValue::Null)?,
            }
        }
        if let Some(favourite) = edit.favourite {
            doc.put(&entry, "favourite", favourite)?;
        }
        if !edit.add_tags.is_empty() || !edit.remove_tags.is_empty() {
            let tags = match doc.get(&entry, "tags")? {
                Some((Value::Object(ObjType::Map), tags)) => tags,
                _ => doc.put_object(&entry, "tags", ObjType::Map)?,
            };
            for tag in &edit.add_tags {
                doc.put(&tags, tag.as_str(), true)?;
            }
            for tag in &edit.remove_tags {
                if doc.get(&tags, tag.as_str())?.is_some() {
                    doc.delete(&tags, tag.as_str())?;
                }
            }
        }
        if let Some(trashed) = edit.trashed_at_ms {
            match trashed {
                Some(ms) => doc.put(&entry, "trashed_at", ms)?,
                None => doc.put(&entry, "trashed_at", ScalarValue::Null)?,
            }
        }
        Ok(true)
    }

    /// The automerge map of one photo's entry, if this document holds the photo.
    fn entry_obj(&self, id: &PhotoId) -> Result<Option<ObjId>, LibraryError> {
        let Some(photos) = self.photos_obj() else {
            return Ok(None);
        };
        match self.doc.get(&photos, id.to_string())? {
            Some((Value::Object(ObjType::Map), obj)) => Ok(Some(obj)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceId;
    use crate::library::DocKind;
    use crate::library::tests::entry;

    /// The first change of a document holding photo 1, which every device starts from.
    fn base() -> Vec<u8> {
        let mut doc = Document::new(&DeviceId([1; 32]));
        doc.init(DocKind::Library).unwrap();
        doc.put_photos(&[entry(1)]).unwrap();
        doc.commit(1).unwrap()
    }

    fn device(n: u8, changes: &[Vec<u8>]) -> Document {
        Document::from_changes(&DeviceId([n; 32]), changes.iter().cloned()).unwrap()
    }

    #[test]
    fn an_edit_changes_only_its_fields() {
        let first = base();
        let mut doc = device(2, std::slice::from_ref(&first));
        let edit = PhotoEdit {
            caption: Some(Some("Grandma's garden".into())),
            favourite: Some(true),
            add_tags: vec!["garden".into(), "family".into()],
            ..PhotoEdit::default()
        };
        assert!(doc.edit_photo(&entry(1).id, &edit).unwrap());
        let change = doc.commit(2).unwrap();
        let rebuilt = device(3, &[first, change]);
        let got = &rebuilt.photos().unwrap()[0];
        let mut want = entry(1);
        want.caption = Some("Grandma's garden".into());
        want.favourite = true;
        want.tags = vec!["family".into(), "garden".into()];
        assert_eq!(got, &want);
    }

    #[test]
    fn concurrent_edits_of_different_fields_both_survive() {
        let first = base();
        let mut a = device(2, std::slice::from_ref(&first));
        let mut b = device(3, std::slice::from_ref(&first));
        let id = entry(1).id;
        a.edit_photo(
            &id,
            &PhotoEdit {
                caption: Some(Some("at the beach".into())),
                add_tags: vec!["sea".into()],
                ..PhotoEdit::default()
            },
        )
        .unwrap();
        b.edit_photo(
            &id,
            &PhotoEdit {
                favourite: Some(true),
                add_tags: vec!["summer".into()],
                trashed_at_ms: Some(Some(77)),
                ..PhotoEdit::default()
            },
        )
        .unwrap();
        let (ca, cb) = (a.commit(5).unwrap(), b.commit(5).unwrap());
        let one = device(4, &[first.clone(), ca.clone(), cb.clone()]);
        let other = device(5, &[first, cb, ca]);
        let merged = &one.photos().unwrap()[0];
        assert_eq!(merged, &other.photos().unwrap()[0]);
        assert_eq!(merged.caption.as_deref(), Some("at the beach"));
        assert!(merged.favourite);
        assert_eq!(merged.tags, vec!["sea".to_owned(), "summer".to_owned()]);
        assert_eq!(merged.trashed_at_ms, Some(77));
    }

    #[test]
    fn removing_a_caption_a_tag_and_restoring_from_the_trash() {
        let first = base();
        let mut doc = device(2, std::slice::from_ref(&first));
        let id = entry(1).id;
        let set = PhotoEdit {
            caption: Some(Some("x".into())),
            add_tags: vec!["a".into(), "b".into()],
            trashed_at_ms: Some(Some(9)),
            ..PhotoEdit::default()
        };
        doc.edit_photo(&id, &set).unwrap();
        let unset = PhotoEdit {
            caption: Some(None),
            remove_tags: vec!["a".into(), "never there".into()],
            trashed_at_ms: Some(None),
            ..PhotoEdit::default()
        };
        doc.edit_photo(&id, &unset).unwrap();
        let got = &doc.photos().unwrap()[0];
        assert_eq!(got.caption, None);
        assert_eq!(got.tags, vec!["b".to_owned()]);
        assert_eq!(got.trashed_at_ms, None);
    }

    #[test]
    fn the_trash_names_the_device_that_trashed_and_a_restore_clears_it() {
        let first = base();
        let mut doc = device(2, std::slice::from_ref(&first));
        let id = entry(1).id;
        let trash = PhotoEdit {
            trashed_at_ms: Some(Some(9)),
            ..PhotoEdit::default()
        };
        doc.edit_photo(&id, &trash).unwrap();
        let trashed = doc.commit(2).unwrap();
        let mut other = device(3, &[first, trashed]);
        let got = &other.photos().unwrap()[0];
        assert_eq!(
            (got.trashed_at_ms, got.trashed_by),
            (Some(9), Some(DeviceId([2; 32])))
        );
        let restore = PhotoEdit {
            trashed_at_ms: Some(None),
            ..PhotoEdit::default()
        };
        other.edit_photo(&id, &restore).unwrap();
        let got = &other.photos().unwrap()[0];
        assert_eq!((got.trashed_at_ms, got.trashed_by), (None, None));
    }

    #[test]
    fn editing_a_photo_the_document_lacks_changes_nothing() {
        let first = base();
        let mut doc = device(2, &[first]);
        let edit = PhotoEdit {
            favourite: Some(true),
            ..PhotoEdit::default()
        };
        assert!(!doc.edit_photo(&entry(9).id, &edit).unwrap());
        assert!(doc.commit(3).is_none());
        assert!(PhotoEdit::default().is_empty() && !edit.is_empty());
    }
}
