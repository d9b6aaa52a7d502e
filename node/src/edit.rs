//! What a person changes on photos after import: caption, favourite, tags, and the trash.
//!
//! **Which document is edited.** The library month shard that holds a photo is authoritative:
//! the index, every listing and export read the photo's entry from there. An album carries a
//! copy of the entry (DESIGN.md: an album references a photo by carrying its entry, so that a
//! device that reads the album but not the library sees it), so an edit is also written into
//! each album copy, in the same durable commit, and the copies never go stale. Each document
//! gets one small sealed change per edit, written field by field into the entry's existing
//! map: concurrent edits of different fields on two devices both survive (automerge).
//!
//! Captions and tags exist only inside those sealed changes and in memory.

use serde::{Deserialize, Serialize};

use kith_protocol::keys::{DocId, PhotoId};
use kith_protocol::library::{PhotoEdit, PhotoEntry};

use crate::error::{Error, Result};
use crate::library::{Library, State, now_ms};
use crate::views::{PhotoView, TrashedView};

/// How long a photo stays in the trash before it is purged (see [`crate::purge`]).
pub const TRASH_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Longest caption, in characters.
pub const MAX_CAPTION_CHARS: usize = 2000;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// Which photos a listing shows. Trashed photos are never in it (`kith trash` lists them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoFilter {
    /// Only the photos of this album (title, `Parent/Child` path or id prefix).
    pub album: Option<String>,
    /// Only favourites.
    #[serde(default)]
    pub favourites: bool,
    /// Only photos with this tag.
    pub tag: Option<String>,
}

/// An edit of one photo as the command line and the API take it, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditRequest {
    /// The photo's id or a unique prefix of it.
    pub photo: String,
    pub caption: Option<String>,
    #[serde(default)]
    pub no_caption: bool,
    pub favourite: Option<bool>,
    #[serde(default)]
    pub tag: Vec<String>,
    #[serde(default)]
    pub untag: Vec<String>,
}

impl EditRequest {
    /// The checked edit, or an error that says what to give instead.
    pub fn validate(&self) -> Result<PhotoEdit> {
        let caption = match (&self.caption, self.no_caption) {
            (Some(_), true) => {
                return Err(Error::Invalid(
                    "give either --caption TEXT or --no-caption, not both".into(),
                ));
            }
            (Some(text), false) => Some(Some(check_caption(text)?)),
            (None, true) => Some(None),
            (None, false) => None,
        };
        let add_tags = check_tags(&self.tag)?;
        let remove_tags = check_tags(&self.untag)?;
        if let Some(both) = add_tags.iter().find(|t| remove_tags.contains(t)) {
            return Err(Error::Invalid(format!(
                "tag {both:?} is both added (--tag) and removed (--untag); give it once"
            )));
        }
        let edit = PhotoEdit {
            caption,
            favourite: self.favourite,
            add_tags,
            remove_tags,
            trashed_at_ms: None,
        };
        if edit.is_empty() {
            return Err(Error::Invalid(
                "nothing to change: give --caption TEXT, --no-caption, --favourite, \
                 --no-favourite, --tag TAG or --untag TAG"
                    .into(),
            ));
        }
        Ok(edit)
    }
}

fn check_caption(text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Invalid(
            "the caption is empty; to remove a caption use --no-caption".into(),
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_CAPTION_CHARS {
        return Err(Error::Invalid(format!(
            "the caption has {chars} characters; at most {MAX_CAPTION_CHARS} fit"
        )));
    }
    Ok(text.to_owned())
}

fn check_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() {
            return Err(Error::Invalid("a tag must not be empty".into()));
        }
        if tag.chars().any(char::is_control) {
            return Err(Error::Invalid(format!(
                "tag {tag:?} holds a control character; use letters, digits, spaces or punctuation"
            )));
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(Error::Invalid(format!(
                "tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
            )));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    Ok(out)
}

impl Library {
    /// Photos that are not in the trash, newest first, narrowed by `filter`.
    pub async fn photos_matching(&self, filter: &PhotoFilter) -> Result<Vec<PhotoView>> {
        let state = self.state.lock().await;
        let ids: Vec<PhotoId> = match &filter.album {
            Some(name) => {
                let album_id = state.find_album(name)?;
                state.albums[&album_id].1.iter().copied().collect()
            }
            None => state.photos.keys().copied().collect(),
        };
        let mut entries: Vec<&PhotoEntry> = ids
            .iter()
            .filter_map(|id| state.photos.get(id))
            .filter(|e| e.trashed_at_ms.is_none())
            .filter(|e| !filter.favourites || e.favourite)
            .filter(|e| {
                filter
                    .tag
                    .as_deref()
                    .is_none_or(|tag| e.tags.iter().any(|t| t == tag.trim()))
            })
            .collect();
        entries.sort_by(|a, b| {
            b.taken_at
                .cmp(&a.taken_at)
                .then(b.added_at_ms.cmp(&a.added_at_ms))
                .then(a.id.cmp(&b.id))
        });
        Ok(entries.into_iter().map(|e| state.photo_view(e)).collect())
    }

    /// One photo (by id or unique id prefix), in the trash or not.
    pub async fn photo(&self, photo: &str) -> Result<PhotoView> {
        let state = self.state.lock().await;
        let id = state.resolve_photo(photo)?;
        state.view_of(&id)
    }

    /// Changes a photo's caption, favourite mark or tags; returns the photo as it now is.
    pub async fn edit_photo(&self, request: &EditRequest) -> Result<PhotoView> {
        let edit = request.validate()?;
        let mut state = self.state.lock().await;
        let id = state.resolve_photo(&request.photo)?;
        self.commit_edits(&mut state, &[(id, edit)])?;
        state.view_of(&id)
    }

    /// Moves photos to the trash on every device. A photo already there keeps its time.
    pub async fn trash(&self, photos: &[String]) -> Result<Vec<TrashedView>> {
        let mut state = self.state.lock().await;
        let ids = state.resolve_photos(photos)?;
        let now = now_ms();
        let edits: Vec<(PhotoId, PhotoEdit)> = ids
            .iter()
            .filter(|id| {
                state
                    .photos
                    .get(id)
                    .is_some_and(|e| e.trashed_at_ms.is_none())
            })
            .map(|id| {
                let edit = PhotoEdit {
                    trashed_at_ms: Some(Some(now)),
                    ..PhotoEdit::default()
                };
                (*id, edit)
            })
            .collect();
        self.commit_edits(&mut state, &edits)?;
        ids.iter().map(|id| state.trashed_view_of(id)).collect()
    }

    /// Takes photos out of the trash on every device. Refuses, changing nothing, if one of them
    /// is not in the trash.
    pub async fn restore(&self, photos: &[String]) -> Result<Vec<PhotoView>> {
        let mut state = self.state.lock().await;
        // Kept photos (removed other than by the trash) come back into their library shard.
        let (kept, photos): (Vec<&String>, Vec<&String>) = photos
            .iter()
            .partition(|text| state.kept_match(text).is_some());
        let kept: Vec<PhotoId> = kept.iter().filter_map(|t| state.kept_match(t)).collect();
        let photos: Vec<String> = photos.into_iter().cloned().collect();
        if !kept.is_empty() {
            self.restore_kept_locked(&mut state, &kept)?;
        }
        let mut ids = state.resolve_photos(&photos)?;
        state.require_trashed(&ids)?;
        let edits: Vec<(PhotoId, PhotoEdit)> = ids
            .iter()
            .map(|id| {
                let edit = PhotoEdit {
                    trashed_at_ms: Some(None),
                    ..PhotoEdit::default()
                };
                (*id, edit)
            })
            .collect();
        self.commit_edits(&mut state, &edits)?;
        ids.extend(kept);
        ids.iter().map(|id| state.view_of(id)).collect()
    }

    /// Photos in the trash, most recently trashed first, with when each is purged.
    pub async fn trashed(&self) -> Result<Vec<TrashedView>> {
        let state = self.state.lock().await;
        let mut ids: Vec<(u64, PhotoId)> = state
            .photos
            .values()
            .filter_map(|e| e.trashed_at_ms.map(|t| (t, e.id)))
            .collect();
        ids.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out = ids
            .iter()
            .map(|(_, id)| state.trashed_view_of(id))
            .collect::<Result<Vec<_>>>()?;
        let mut kept: Vec<&crate::store::Kept> = state
            .kept
            .values()
            .filter(|k| !state.photos.contains_key(&k.entry.id))
            .collect();
        kept.sort_by(|a, b| {
            b.kept_at_ms
                .cmp(&a.kept_at_ms)
                .then(a.entry.id.cmp(&b.entry.id))
        });
        out.extend(kept.into_iter().map(|k| {
            TrashedView {
                photo: state.photo_view(&k.entry),
                purge_at_ms: k.kept_at_ms.saturating_add(TRASH_RETENTION_MS),
                kept_from: Some(
                    k.removed_by
                        .map_or_else(|| "unknown device".to_owned(), |d| d.to_string()),
                ),
            }
        }));
        Ok(out)
    }

    /// Writes each edit into every document that holds its photo (the library shard, and the
    /// album copies) and commits them all in one durable transaction.
    fn commit_edits(&self, state: &mut State, edits: &[(PhotoId, PhotoEdit)]) -> Result<()> {
        let mut touched: Vec<DocId> = Vec::new();
        for (id, edit) in edits {
            let mut docs = state.docs_holding(id);
            if docs.is_empty() {
                return Err(Error::NoSuchPhoto(id.to_string()));
            }
            for doc in docs.drain(..) {
                if state.doc_mut(&doc)?.edit_photo(id, edit).map_err(corrupt)?
                    && !touched.contains(&doc)
                {
                    touched.push(doc);
                }
            }
        }
        if touched.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            photos = edits.len(),
            documents = touched.len(),
            "photo edit"
        );
        self.commit_docs(state, &touched, Vec::new())
    }
}

impl State {
    /// Photos named on a command line, all resolved or none; each once.
    pub(crate) fn resolve_photos(&self, photos: &[String]) -> Result<Vec<PhotoId>> {
        let mut ids = Vec::new();
        for text in photos {
            let id = self.resolve_photo(text)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The kept photo (see [`crate::keep`]) `text` names by id or unique id prefix, when it is
    /// not in the index.
    pub(crate) fn kept_match(&self, text: &str) -> Option<PhotoId> {
        let text = text.trim().to_ascii_lowercase();
        if text.len() < 4 {
            return None;
        }
        let mut found = self
            .kept
            .keys()
            .filter(|id| !self.photos.contains_key(id) && id.to_string().starts_with(&text));
        match (found.next(), found.next()) {
            (Some(id), None) => Some(*id),
            _ => None,
        }
    }

    /// Refuses, naming it, the first of `ids` that is not in the trash.
    pub(crate) fn require_trashed(&self, ids: &[PhotoId]) -> Result<()> {
        match ids.iter().find(|id| {
            self.photos
                .get(id)
                .is_some_and(|e| e.trashed_at_ms.is_none())
        }) {
            Some(id) => Err(Error::NotInTrash(id.to_string())),
            None => Ok(()),
        }
    }

    pub(crate) fn view_of(&self, id: &PhotoId) -> Result<PhotoView> {
        self.photos
            .get(id)
            .map(|e| self.photo_view(e))
            .ok_or_else(|| Error::NoSuchPhoto(id.to_string()))
    }

    fn trashed_view_of(&self, id: &PhotoId) -> Result<TrashedView> {
        let photo = self.view_of(id)?;
        let trashed = photo
            .trashed_at_ms
            .ok_or_else(|| Error::NotInTrash(id.to_string()))?;
        Ok(TrashedView {
            photo,
            purge_at_ms: trashed.saturating_add(TRASH_RETENTION_MS),
            kept_from: None,
        })
    }
}

fn corrupt(e: kith_protocol::library::LibraryError) -> Error {
    Error::Corrupt(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> EditRequest {
        EditRequest {
            photo: "abcdef".into(),
            ..EditRequest::default()
        }
    }

    #[test]
    fn a_valid_edit_is_trimmed_and_deduplicated() {
        let edit = EditRequest {
            caption: Some("  At the lake ".into()),
            favourite: Some(true),
            tag: vec!["lake".into(), " lake".into(), "summer".into()],
            untag: vec!["winter".into()],
            ..request()
        }
        .validate()
        .unwrap();
        assert_eq!(edit.caption, Some(Some("At the lake".into())));
        assert_eq!(edit.favourite, Some(true));
        assert_eq!(edit.add_tags, vec!["lake".to_owned(), "summer".to_owned()]);
        assert_eq!(edit.remove_tags, vec!["winter".to_owned()]);
        assert_eq!(edit.trashed_at_ms, None);
    }

    #[test]
    fn bad_edits_are_refused_with_what_to_do() {
        let cases = [
            (request(), "nothing to change"),
            (
                EditRequest {
                    caption: Some("x".into()),
                    no_caption: true,
                    ..request()
                },
                "not both",
            ),
            (
                EditRequest {
                    caption: Some("   ".into()),
                    ..request()
                },
                "--no-caption",
            ),
            (
                EditRequest {
                    caption: Some("x".repeat(MAX_CAPTION_CHARS + 1)),
                    ..request()
                },
                "at most",
            ),
            (
                EditRequest {
                    tag: vec![String::new()],
                    ..request()
                },
                "must not be empty",
            ),
            (
                EditRequest {
                    tag: vec!["a\u{7}".into()],
                    ..request()
                },
                "control character",
            ),
            (
                EditRequest {
                    tag: vec!["t".repeat(MAX_TAG_CHARS + 1)],
                    ..request()
                },
                "longer than",
            ),
            (
                EditRequest {
                    tag: vec!["sea".into()],
                    untag: vec!["sea".into()],
                    ..request()
                },
                "both added",
            ),
        ];
        for (req, expected) in cases {
            let err = req.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{req:?}: {err}");
        }
    }
}
