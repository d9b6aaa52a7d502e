//! A photo entry as an automerge map: writing every field of one, and reading one back in a
//! single pass over its map. What the fields mean is [`PhotoEntry`]'s; a field that is missing
//! or of the wrong type makes the entry [`LibraryError::BadEntry`].

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value};

use super::fresh::BaseOps;
use super::{BlobRef, LibraryError, PhotoEntry, scope};
use crate::blob::FileKey;
use crate::keys::DeviceId;

fn put_opt_str(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    v: &Option<String>,
) -> Result<(), LibraryError> {
    match v {
        Some(s) => doc.put(obj, key, s.as_str())?,
        None => doc.put(obj, key, ScalarValue::Null)?,
    }
    Ok(())
}

fn put_blob(doc: &mut AutoCommit, obj: &ObjId, key: &str, b: &BlobRef) -> Result<(), LibraryError> {
    doc.put(obj, key, ScalarValue::Bytes(b.hash.to_vec()))?;
    doc.put(obj, format!("{key}_len"), b.len)?;
    Ok(())
}

pub(super) fn write_entry(
    doc: &mut AutoCommit,
    obj: &ObjId,
    e: &PhotoEntry,
) -> Result<(), LibraryError> {
    put_blob(doc, obj, "original", &e.original)?;
    put_blob(doc, obj, "preview", &e.preview)?;
    put_blob(doc, obj, "thumbnail", &e.thumbnail)?;
    doc.put(
        obj,
        "key",
        ScalarValue::Bytes(e.file_key.as_bytes().to_vec()),
    )?;
    doc.put(obj, "name", e.file_name.as_str())?;
    doc.put(obj, "mime", e.mime.as_str())?;
    doc.put(obj, "size", e.size)?;
    doc.put(obj, "width", u64::from(e.width))?;
    doc.put(obj, "height", u64::from(e.height))?;
    doc.put(obj, "display_width", u64::from(e.display_width))?;
    doc.put(obj, "display_height", u64::from(e.display_height))?;
    match e.orientation {
        Some(o) => doc.put(obj, "orientation", u64::from(o))?,
        None => doc.put(obj, "orientation", ScalarValue::Null)?,
    }
    put_opt_str(doc, obj, "taken_at", &e.taken_at)?;
    put_opt_str(doc, obj, "make", &e.make)?;
    put_opt_str(doc, obj, "model", &e.model)?;
    match e.gps {
        Some((lat, lon)) => {
            doc.put(obj, "lat", lat)?;
            doc.put(obj, "lon", lon)?;
        }
        None => {
            doc.put(obj, "lat", ScalarValue::Null)?;
            doc.put(obj, "lon", ScalarValue::Null)?;
        }
    }
    doc.put(obj, "added_by", ScalarValue::Bytes(e.added_by.0.to_vec()))?;
    doc.put(obj, "added_at", e.added_at_ms)?;
    put_opt_str(doc, obj, "caption", &e.caption)?;
    doc.put(obj, "favourite", e.favourite)?;
    let tags = doc.put_object(obj, "tags", ObjType::Map)?;
    for tag in &e.tags {
        doc.put(&tags, tag.as_str(), true)?;
    }
    match e.trashed_at_ms {
        Some(t) => doc.put(obj, "trashed_at", t)?,
        None => doc.put(obj, "trashed_at", ScalarValue::Null)?,
    }
    Ok(())
}

fn scalar<'a>(
    doc: &'a AutoCommit,
    obj: &ObjId,
    key: &str,
) -> Option<std::borrow::Cow<'a, ScalarValue>> {
    match doc.get(obj, key).ok().flatten() {
        Some((Value::Scalar(s), _)) => Some(s),
        _ => None,
    }
}

pub(super) fn get_str(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<String> {
    scalar(doc, obj, key).and_then(|s| s.as_str().map(str::to_owned))
}

pub(super) fn get_u64(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<u64> {
    scalar(doc, obj, key).and_then(|s| {
        s.as_u64()
            .or_else(|| s.as_i64().and_then(|i| u64::try_from(i).ok()))
    })
}

pub(super) fn get_bytes32(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<[u8; 32]> {
    scalar(doc, obj, key).and_then(|s| s.as_bytes().and_then(|b| <[u8; 32]>::try_from(b).ok()))
}

/// The fields of one entry, read in one pass over its map: a `get` per field seeks through the
/// document's op set each time, and reading entries is most of what opening a library, taking
/// in changes and indexing cost.
struct EntryFields<'a>(Vec<automerge::iter::MapRangeItem<'a>>);

impl<'a> EntryFields<'a> {
    fn read(doc: &'a AutoCommit, obj: &ObjId) -> EntryFields<'a> {
        EntryFields(doc.map_range(obj, ..).collect())
    }

    fn item(&self, key: &str) -> Option<&automerge::iter::MapRangeItem<'a>> {
        self.0.iter().find(|item| item.key == key)
    }

    fn scalar(&self, key: &str) -> Option<ScalarValue> {
        match self.item(key)?.value.clone().into_value() {
            Value::Scalar(s) => Some(s.into_owned()),
            Value::Object(_) => None,
        }
    }

    fn str(&self, key: &str) -> Option<String> {
        self.scalar(key).and_then(|s| s.as_str().map(str::to_owned))
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.scalar(key).and_then(|s| {
            s.as_u64()
                .or_else(|| s.as_i64().and_then(|i| u64::try_from(i).ok()))
        })
    }

    fn f64(&self, key: &str) -> Option<f64> {
        self.scalar(key).and_then(|s| s.as_f64())
    }

    fn bytes32(&self, key: &str) -> Option<[u8; 32]> {
        self.scalar(key)
            .and_then(|s| s.as_bytes().and_then(|b| <[u8; 32]>::try_from(b).ok()))
    }

    /// The device whose change wrote `key`'s value, when that is a scalar other than null.
    fn written_by(&self, key: &str) -> Option<DeviceId> {
        let item = self.item(key)?;
        match &item.value {
            automerge::ValueRef::Scalar(s) if *s != automerge::ScalarValueRef::Null => {}
            _ => return None,
        }
        match item.id() {
            automerge::ObjId::Id(_, actor, _) => scope::actor_device(&actor),
            automerge::ObjId::Root => None,
        }
    }

    /// The map object at `key`, if that is what it holds.
    fn map(&self, key: &str) -> Option<ObjId> {
        let item = self.item(key)?;
        matches!(item.value, automerge::ValueRef::Object(ObjType::Map)).then(|| item.id())
    }
}

/// Reads the entry `obj` at `key`. `base` is the document's base, when its history started
/// over: who trashed an entry the base trashed is the `trashed_by` the base wrote, not the
/// base's author.
pub(super) fn read_entry(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
    base: Option<&BaseOps>,
) -> Result<PhotoEntry, LibraryError> {
    let fields = EntryFields::read(doc, obj);
    let bad = |field: &'static str| LibraryError::BadEntry {
        key: key.to_owned(),
        field,
    };
    let blob = |name: &'static str, len_name: &'static str| -> Result<BlobRef, LibraryError> {
        Ok(BlobRef {
            hash: fields.bytes32(name).ok_or_else(|| bad(name))?,
            len: fields.u64(len_name).ok_or_else(|| bad(len_name))?,
        })
    };
    let dim = |name: &'static str| -> Result<u32, LibraryError> {
        fields
            .u64(name)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad(name))
    };
    let tags = match fields.map("tags") {
        Some(tags) => doc.keys(&tags).collect(),
        None => Vec::new(),
    };
    let gps = match (fields.f64("lat"), fields.f64("lon")) {
        (Some(lat), Some(lon)) => Some((lat, lon)),
        _ => None,
    };
    Ok(PhotoEntry {
        id: key.parse().map_err(|_| bad("id"))?,
        original: blob("original", "original_len")?,
        preview: blob("preview", "preview_len")?,
        thumbnail: blob("thumbnail", "thumbnail_len")?,
        file_key: FileKey::from_bytes(fields.bytes32("key").ok_or_else(|| bad("key"))?),
        file_name: fields.str("name").ok_or_else(|| bad("name"))?,
        mime: fields.str("mime").ok_or_else(|| bad("mime"))?,
        size: fields.u64("size").ok_or_else(|| bad("size"))?,
        width: dim("width")?,
        height: dim("height")?,
        display_width: dim("display_width")?,
        display_height: dim("display_height")?,
        orientation: fields
            .u64("orientation")
            .and_then(|o| u16::try_from(o).ok()),
        taken_at: fields.str("taken_at"),
        make: fields.str("make"),
        model: fields.str("model"),
        gps,
        added_by: DeviceId(fields.bytes32("added_by").ok_or_else(|| bad("added_by"))?),
        added_at_ms: fields.u64("added_at").unwrap_or(0),
        caption: fields.str("caption"),
        favourite: fields
            .scalar("favourite")
            .and_then(|s| s.as_bool())
            .unwrap_or(false),
        tags,
        trashed_at_ms: fields.u64("trashed_at"),
        trashed_by: match fields.written_by("trashed_at") {
            Some(_)
                if fields
                    .item("trashed_at")
                    .is_some_and(|i| base.is_some_and(|b| b.made(&i.id()))) =>
            {
                fields.bytes32("trashed_by").map(DeviceId)
            }
            by => by,
        },
    })
}
