//! `kith share` and `kith unshare`: an album (and the sub-albums under it) granted to a person
//! or taken back, as signed ops in the membership log, followed at once by a key rotation so
//! that the envelopes of the album's new epoch reach exactly the devices that may read it.
//!
//! Sub-albums follow their parent: sharing or unsharing an album does the same to every album
//! under it, and a sub-album created later inherits its parent's grants. Sharing or unsharing
//! a sub-album itself afterwards sets it otherwise.

use serde::{Deserialize, Serialize};

use kith_protocol::keys::{DocId, PersonId};
use kith_protocol::membership::{Access, OpBody, Role};

use crate::error::{Error, Result};
use crate::library::{Library, State};
use crate::people::find_person;

/// What a share or unshare did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareView {
    /// The albums it applied to: the one named, then those under it.
    pub albums: Vec<String>,
    pub person: String,
    /// `view` or `contribute`; `None` after an unshare.
    pub access: Option<String>,
}

/// One person an album is shared with, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub person: String,
    pub access: String,
}

impl Library {
    /// Shares `album` and its sub-albums with `person` (a name or id prefix).
    pub async fn share(&self, album: &str, person: &str, access: Access) -> Result<ShareView> {
        let mut state = self.state.lock().await;
        let (person_id, albums) = self.sharing_targets(&state, album, person)?;
        if state
            .family
            .persons
            .get(&person_id)
            .is_some_and(|p| p.removed)
        {
            return Err(Error::Invalid(format!(
                "{person:?} was removed from the family; a removal is not undone by sharing"
            )));
        }
        let bodies: Vec<OpBody> = albums
            .iter()
            .filter(|a| state.family.access(&person_id, a) != Some(access))
            .map(|a| OpBody::GrantAlbum {
                album: *a,
                person: person_id,
                access,
            })
            .collect();
        if let Some(a) = albums
            .iter()
            .find(|a| state.awaits_fresh_start(a, state.family.current_epoch(a)))
        {
            return Err(Error::NotAllowed(format!(
                "{} started a new history this device has not received yet: let it sync with \
                 the family (`kith run`), then try again",
                state.doc_name(a)
            )));
        }
        // A person who could not read an album gets it as it is now, not what left it before:
        // the rotation starts its history over (`crate::fresh_start`).
        if !bodies.is_empty() {
            self.append_ops(&mut state, bodies)?;
        }
        Ok(share_view(&state, &albums, &person_id, Some(access)))
    }

    /// Takes `album` and its sub-albums back from `person`.
    pub async fn unshare(&self, album: &str, person: &str) -> Result<ShareView> {
        let mut state = self.state.lock().await;
        let (person_id, albums) = self.sharing_targets(&state, album, person)?;
        let bodies: Vec<OpBody> = albums
            .iter()
            .filter(|a| state.family.access(&person_id, a).is_some())
            .map(|a| OpBody::RevokeAlbum {
                album: *a,
                person: person_id,
            })
            .collect();
        if bodies.is_empty() {
            return Err(Error::Invalid(format!(
                "album {album:?} is not shared with {person:?}; `kith albums` shows who it is shared with"
            )));
        }
        self.append_ops(&mut state, bodies)?;
        Ok(share_view(&state, &albums, &person_id, None))
    }

    /// The person and the albums (the named one first, then those under it) a share names,
    /// checked against what this device may do.
    fn sharing_targets(
        &self,
        state: &State,
        album: &str,
        person: &str,
    ) -> Result<(PersonId, Vec<DocId>)> {
        let me = self.device_id();
        let root = state.find_album(album)?;
        let person_id = find_person(&state.family, person)?;
        if !state.family.may_share_doc(&root, &me) {
            let why = match state.current_role(&me) {
                Some(Role::Relative) => "relatives cannot share albums",
                _ => "only its owner or an admin can share it",
            };
            return Err(Error::NotAllowed(format!(
                "album {album:?} cannot be shared from this device: {why}"
            )));
        }
        let mut albums = vec![root];
        albums.extend(state.albums_under(&root));
        Ok((person_id, albums))
    }
}

impl State {
    /// Every album under `root`, at any depth.
    pub(crate) fn albums_under(&self, root: &DocId) -> Vec<DocId> {
        let mut out = Vec::new();
        let mut frontier = vec![*root];
        while let Some(parent) = frontier.pop() {
            for (id, (meta, _)) in &self.albums {
                if meta.parent == Some(parent) && *id != *root && !out.contains(id) {
                    out.push(*id);
                    frontier.push(*id);
                }
            }
        }
        out
    }

    /// Who `album` is shared with beyond the household, by name.
    pub(crate) fn grants_of(&self, album: &DocId) -> Vec<GrantView> {
        let Some(sharing) = self.family.docs.get(album) else {
            return Vec::new();
        };
        let mut out: Vec<GrantView> = sharing
            .grants
            .iter()
            .filter_map(|(person, access)| {
                let p = self.family.persons.get(person)?;
                Some(GrantView {
                    person: p.name.clone(),
                    access: access.to_string(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.person.cmp(&b.person));
        out
    }
}

/// `view` or `contribute`, as the command line and the API take it.
pub fn parse_access(text: &str) -> Result<Access> {
    text.parse().map_err(|_| {
        Error::Invalid(format!(
            "{text:?} is not an access; give view or contribute"
        ))
    })
}

fn share_view(
    state: &State,
    albums: &[DocId],
    person: &PersonId,
    access: Option<Access>,
) -> ShareView {
    ShareView {
        albums: albums.iter().map(|a| state.album_path(a)).collect(),
        person: state
            .family
            .persons
            .get(person)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        access: access.map(|a| a.to_string()),
    }
}
