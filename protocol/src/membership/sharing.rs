//! Sharing in the membership log: who may read a document beyond its owner, which key epoch it
//! is at and which devices that epoch's key was wrapped to.
//!
//! A document that no `GrantAlbum` or `RotateKey` has named is unknown here: its creator made
//! its key for epoch 0 without the log, and the log cannot tell who holds it. The first applied
//! `GrantAlbum` or `RotateKey` for a document makes its author's person the document's owner.
//!
//! Who reads and writes a document (from the log alone; its kind comes from `DeclareDoc`):
//! - the document's owner and admins read and write all of it (admins manage sharing, and the
//!   recovery identity is enrolled like an admin device);
//! - members read every document of the household, that is every document not owned by a
//!   relative (a relative's own library and albums stay theirs unless shared), and write the
//!   household's albums, but not another person's library;
//! - persons it is granted to read it, and with `Contribute` add entries and change or remove
//!   the entries they added ([`WriteScope::OwnEntries`]);
//! - relatives: nothing else.
//!
//! A device *may hold* a document's key when it may read it. A removed device keeps every key
//! it was once given; rotation protects only what is written after it.
//!
//! Who may move a document to a new key epoch (`RotateKey`):
//! - admins: any document, at any time (they manage sharing and removals);
//! - anyone else: the first rotation of a document the log has not named yet, which makes
//!   them its owner (every device names the documents it creates with a `RotateKey` in the
//!   commit that creates them, and ops travel before changes, so a document's id reaches
//!   others only after it is named); and later rotations of a document they own, only while
//!   one is due ([`FamilyState::rotation_due`]: its current key reached a device that may no
//!   longer read it, a device that may read it lacks the key, or it was named by a grant and
//!   has no key in the log yet).
//!
//! So nobody below admin moves someone else's document to a new epoch, and an owner cannot
//! spend epochs on rotations nobody needs. Epochs are a `u32`; a rotation's sealed history
//! carries the newest earlier keys only (see `envelope::MAX_HISTORY_EPOCHS`), so a document
//! that went through many rotations can still be rotated.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Applied, FamilyState, MembershipError, Role};
use crate::envelope::{Envelope, SealedHistory};
use crate::keys::{DeviceId, DocId, PersonId};
use crate::library::DocKind;
use crate::seal::ChangeId;

/// What a grant lets a person do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read the document and its photos.
    View,
    /// Read it and add to it.
    Contribute,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::View => "view",
            Self::Contribute => "contribute",
        })
    }
}

impl FromStr for Access {
    type Err = MembershipError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "view" => Ok(Self::View),
            "contribute" => Ok(Self::Contribute),
            _ => Err(MembershipError::UnknownAccess(s.to_owned())),
        }
    }
}

/// A document's sharing state as the log describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocSharing {
    /// The person whose device first granted or rotated the document.
    pub owner: PersonId,
    pub grants: BTreeMap<PersonId, Access>,
    /// What the document is, as its `DeclareDoc` said; `None` for documents made before kinds
    /// were declared, which count as albums.
    #[serde(default)]
    pub kind: Option<DocKind>,
    /// The latest key epoch the log delivered; `None` while the document is at epoch 0.
    pub keys: Option<DocKeys>,
    /// Where the document's history last started over (`FreshStart`).
    #[serde(default)]
    pub fresh: Option<FreshStart>,
    /// The epoch of every fresh start the log applied, oldest first: a history that started
    /// at another epoch was cut by a `FreshStart` the log cancelled.
    #[serde(default)]
    pub cuts: Vec<u32>,
}

/// A document's history started over (see `OpBody::FreshStart`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshStart {
    /// Changes sealed at an earlier epoch belong to the old history: nobody takes them in.
    pub epoch: u32,
    /// The change the new history starts with, sealed by `by`.
    pub base: ChangeId,
    pub by: DeviceId,
    /// Each device's last change the base holds.
    pub clock: Vec<(DeviceId, u64)>,
}

/// How much of a document a device may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WriteScope {
    /// The entries its person added (a grant with `contribute`): add photos, edit and remove
    /// its own entries; not the document's own fields nor anybody else's entries.
    OwnEntries,
    /// Anything in it: its owner's devices, admins, and members for the household's albums.
    Document,
}

/// One key epoch of a document, as its `RotateKey` op delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocKeys {
    pub epoch: u32,
    /// The device that made the rotation, which the envelopes came from.
    pub rotated_by: DeviceId,
    pub envelopes: BTreeMap<DeviceId, Envelope>,
    /// The earlier epochs' keys, sealed under this epoch's key.
    pub history: Option<SealedHistory>,
}

impl FamilyState {
    /// What `person` was explicitly granted on `doc` (owners and admins need no grant).
    pub fn access(&self, person: &PersonId, doc: &DocId) -> Option<Access> {
        self.docs.get(doc)?.grants.get(person).copied()
    }

    /// The document's owner, once a grant or rotation has named it.
    pub fn owner(&self, doc: &DocId) -> Option<PersonId> {
        self.docs.get(doc).map(|d| d.owner)
    }

    /// The document's current key epoch: 0 until the log rotates it.
    pub fn current_epoch(&self, doc: &DocId) -> u32 {
        self.current_keys(doc).map_or(0, |k| k.epoch)
    }

    /// The envelope of the current epoch's key addressed to `device`, if any.
    pub fn envelope_for(&self, doc: &DocId, device: &DeviceId) -> Option<&Envelope> {
        self.current_keys(doc)?.envelopes.get(device)
    }

    /// The current epoch as its rotation delivered it (envelopes, history, sender).
    pub fn current_keys(&self, doc: &DocId) -> Option<&DocKeys> {
        self.docs.get(doc)?.keys.as_ref()
    }

    /// Whether `device` may hold `doc`'s key now, that is read it (see the module docs).
    pub fn may_hold_key(&self, doc: &DocId, device: &DeviceId) -> bool {
        self.access_of(doc, device).is_some()
    }

    /// Whether `device` may write `doc` now: seal changes to it that others apply (within
    /// [`FamilyState::write_scope`]).
    pub fn may_write(&self, doc: &DocId, device: &DeviceId) -> bool {
        self.write_scope(doc, device).is_some()
    }

    /// How much of `doc` a current device may change, or `None`.
    pub fn write_scope(&self, doc: &DocId, device: &DeviceId) -> Option<WriteScope> {
        let (person_id, person) = self.active_person(device)?;
        if person.removed {
            return None;
        }
        self.scope_of_person(doc, &person_id, person.role)
    }

    /// The kind the log declared for `doc`; `None` for documents never declared.
    pub fn doc_kind(&self, doc: &DocId) -> Option<DocKind> {
        self.docs.get(doc).and_then(|d| d.kind)
    }

    /// Whether a change to `doc` sealed at `epoch` by `device` is to be taken in, and how far
    /// it may reach. Never when the document's history started over after `epoch`
    /// ([`FamilyState::is_retired`]); else when its author may write the document now; or its author was removed, a
    /// current device vouched for this very change in the log (it took it in before it
    /// learned of the removal), and it was sealed at an epoch from before the rotation that
    /// followed the removal, with rights its person had. Every node decides this from the log
    /// alone, so devices that were apart converge; a device that knows of a removal takes
    /// nothing else from the removed device.
    pub fn change_scope(
        &self,
        doc: &DocId,
        device: &DeviceId,
        epoch: u32,
        change: &ChangeId,
    ) -> Option<WriteScope> {
        if self.is_retired(doc, epoch) {
            return None;
        }
        if let Some(scope) = self.write_scope(doc, device) {
            return Some(scope);
        }
        if !self.vouched.contains(change) || epoch >= self.current_epoch(doc) {
            return None;
        }
        let (person_id, _) = self.device(device)?;
        let person = self.persons.get(&person_id)?;
        self.scope_of_person(doc, &person_id, person.role)
    }

    /// The document's latest fresh start, if its history started over.
    pub fn fresh_start(&self, doc: &DocId) -> Option<&FreshStart> {
        self.docs.get(doc)?.fresh.as_ref()
    }

    /// Whether the log applied a fresh start of `doc` at `epoch` (0: the document's first
    /// history, which always counts).
    pub fn was_cut_at(&self, doc: &DocId, epoch: u32) -> bool {
        epoch == 0 || self.docs.get(doc).is_some_and(|d| d.cuts.contains(&epoch))
    }

    /// Whether a change to `doc` sealed at `epoch` belongs to a history that started over
    /// since: nobody takes it in (its author carries it over).
    pub fn is_retired(&self, doc: &DocId, epoch: u32) -> bool {
        self.fresh_start(doc).is_some_and(|f| epoch < f.epoch)
    }

    /// Whether `device` is a device the log knows and has revoked.
    pub fn is_revoked(&self, device: &DeviceId) -> bool {
        self.device(device).is_some_and(|(_, d)| d.revoked)
    }

    /// What `device` may do with `doc`, or `None` when it may not read it: `Contribute` when
    /// it may write it at all (see [`FamilyState::write_scope`]).
    pub fn access_of(&self, doc: &DocId, device: &DeviceId) -> Option<Access> {
        let (person_id, person) = self.active_person(device)?;
        if person.removed {
            return None;
        }
        if self.scope_of_person(doc, &person_id, person.role).is_some() {
            return Some(Access::Contribute);
        }
        let sharing = self.docs.get(doc);
        // Members read the whole household, other people's libraries too.
        if person.role == Role::Member && sharing.is_none_or(|d| !self.owned_by_relative(d)) {
            return Some(Access::View);
        }
        sharing.and_then(|d| d.grants.get(&person_id).copied())
    }

    /// The write scope of `person` on `doc` (see the module docs): owners and admins write
    /// all of it; members the household's albums (a person's library is theirs alone);
    /// contributors their own entries.
    fn scope_of_person(&self, doc: &DocId, person: &PersonId, role: Role) -> Option<WriteScope> {
        let sharing = self.docs.get(doc);
        if role == Role::Admin || sharing.is_some_and(|d| d.owner == *person) {
            return Some(WriteScope::Document);
        }
        let library = sharing.is_some_and(|d| d.kind == Some(DocKind::Library));
        if role == Role::Member && !library && sharing.is_none_or(|d| !self.owned_by_relative(d)) {
            return Some(WriteScope::Document);
        }
        match sharing.and_then(|d| d.grants.get(person)) {
            Some(Access::Contribute) => Some(WriteScope::OwnEntries),
            _ => None,
        }
    }

    /// The devices that may hold `doc`'s key if `claimant` is the person making a first
    /// rotation of it (which makes them its owner when nobody owns it yet), with the X25519
    /// keys to wrap to.
    pub fn key_recipients(&self, doc: &DocId, claimant: &PersonId) -> Vec<(DeviceId, [u8; 32])> {
        // Only a document the log has not named yet needs the claimant as its owner: copying
        // the whole state per document would grow with the square of the documents.
        let named;
        let view = if self.docs.contains_key(doc) {
            self
        } else {
            let mut copy = self.clone();
            copy.docs.insert(*doc, unowned(*claimant));
            named = copy;
            &named
        };
        view.persons
            .values()
            .flat_map(|p| p.devices.iter())
            .filter(|(id, d)| !d.revoked && view.may_hold_key(doc, id))
            .map(|(id, d)| (*id, d.x25519))
            .collect()
    }

    /// Whether `device` may make the next `RotateKey` of `doc` (see `may_rotate`).
    pub fn may_rotate_doc(&self, doc: &DocId, device: &DeviceId) -> bool {
        self.active_person(device)
            .is_some_and(|(id, p)| !p.removed && self.may_rotate(&id, p.role, doc))
    }

    /// Whether `device` may grant or revoke `doc` (see `may_share`).
    pub fn may_share_doc(&self, doc: &DocId, device: &DeviceId) -> bool {
        self.active_person(device)
            .is_some_and(|(id, p)| !p.removed && self.may_share(&id, p.role, doc))
    }

    fn owned_by_relative(&self, d: &DocSharing) -> bool {
        self.persons
            .get(&d.owner)
            .is_some_and(|p| p.role == Role::Relative)
    }

    /// Whether the current epoch's key reached a device that may no longer hold it (an envelope
    /// went to it, or it made the rotation), so a new `RotateKey` is due: e.g. a rotation that
    /// raced with a removal and still wrapped to the removed device.
    pub fn needs_rotation(&self, doc: &DocId) -> bool {
        self.current_keys(doc).is_some_and(|k| {
            k.envelopes
                .keys()
                .chain([&k.rotated_by])
                .any(|d| !self.may_hold_key(doc, d))
        })
    }

    /// Unrevoked devices that may hold `doc`'s key but have no envelope for its current epoch
    /// (a new grant or a new device): a `RotateKey` gives them one, and the history with it.
    /// Empty for documents no grant or rotation has named.
    pub fn devices_lacking_key(&self, doc: &DocId) -> Vec<DeviceId> {
        if !self.docs.contains_key(doc) {
            return Vec::new();
        }
        self.persons
            .values()
            .flat_map(|p| p.devices.keys())
            .filter(|d| self.may_hold_key(doc, d) && self.envelope_for(doc, d).is_none())
            .copied()
            .collect()
    }

    /// Every document [`FamilyState::needs_rotation`] is true for.
    pub fn docs_needing_rotation(&self) -> Vec<DocId> {
        self.docs
            .keys()
            .filter(|doc| self.needs_rotation(doc))
            .copied()
            .collect()
    }

    /// Whether `person` may grant or revoke `doc`: admins always, members for documents they
    /// own or nobody owns yet, relatives never.
    fn may_share(&self, person: &PersonId, role: Role, doc: &DocId) -> bool {
        match role {
            Role::Admin => true,
            Role::Member => self.docs.get(doc).is_none_or(|d| d.owner == *person),
            Role::Relative => false,
        }
    }

    /// Whether `person` may rotate `doc`'s key (see the module docs): admins always; anyone
    /// else the first rotation of a document nobody owns yet (which claims it), or a rotation
    /// of a document they own while one is due.
    fn may_rotate(&self, person: &PersonId, role: Role, doc: &DocId) -> bool {
        if role == Role::Admin {
            return true;
        }
        match self.docs.get(doc) {
            None => true,
            Some(d) => d.owner == *person && self.rotation_due(doc),
        }
    }

    /// Whether the log asks for a new epoch of `doc`: its current key reached a device that may
    /// no longer hold it ([`FamilyState::needs_rotation`]), a device that may hold it has none
    /// ([`FamilyState::devices_lacking_key`]), or a grant named it and no rotation has given it
    /// a key through the log yet.
    pub fn rotation_due(&self, doc: &DocId) -> bool {
        match self.docs.get(doc) {
            None => false,
            Some(d) if d.keys.is_none() => true,
            Some(_) => self.needs_rotation(doc) || !self.devices_lacking_key(doc).is_empty(),
        }
    }

    fn is_present(&self, person: &PersonId) -> bool {
        self.persons.get(person).is_some_and(|p| !p.removed)
    }
}

/// The author of an op being applied: its device, person and role.
pub(super) struct Author {
    pub device: DeviceId,
    pub person: PersonId,
    pub role: Role,
}

pub(super) fn grant(
    state: &mut FamilyState,
    author: &Author,
    doc: &DocId,
    person: &PersonId,
    access: Access,
) -> Applied {
    if !state.may_share(&author.person, author.role, doc) || !state.is_present(person) {
        return Applied::No;
    }
    state
        .docs
        .entry(*doc)
        .or_insert_with(|| unowned(author.person))
        .grants
        .insert(*person, access);
    Applied::Yes
}

pub(super) fn revoke(
    state: &mut FamilyState,
    author: &Author,
    doc: &DocId,
    person: &PersonId,
) -> Applied {
    if !state.may_share(&author.person, author.role, doc) {
        return Applied::No;
    }
    let removed = state
        .docs
        .get_mut(doc)
        .and_then(|d| d.grants.remove(person));
    if removed.is_some() {
        Applied::Yes
    } else {
        Applied::No
    }
}

pub(super) fn rotate(
    state: &mut FamilyState,
    author: &Author,
    doc: &DocId,
    epoch: u32,
    envelopes: &[(DeviceId, Envelope)],
    history: Option<&SealedHistory>,
) -> Applied {
    let next_epoch = state.current_epoch(doc).checked_add(1);
    let wrapped: BTreeMap<DeviceId, Envelope> = envelopes.iter().cloned().collect();
    // One envelope per device, each to a device the log knows (its X25519 key comes from here).
    let recipients_known =
        wrapped.len() == envelopes.len() && wrapped.keys().all(|d| state.device(d).is_some());
    if !state.may_rotate(&author.person, author.role, doc)
        || next_epoch != Some(epoch)
        || !recipients_known
    {
        return Applied::No;
    }
    let keys = DocKeys {
        epoch,
        rotated_by: author.device,
        envelopes: wrapped,
        history: history.cloned(),
    };
    state
        .docs
        .entry(*doc)
        .or_insert_with(|| unowned(author.person))
        .keys = Some(keys);
    Applied::Yes
}

/// Removes a person for good: revokes their devices and drops their grants.
pub(super) fn remove_person(
    state: &mut FamilyState,
    author: &Author,
    person: &PersonId,
) -> Applied {
    let removes_last_admin = state
        .persons
        .get(person)
        .is_some_and(|p| p.role == Role::Admin)
        && state.admin_count() == 1;
    if author.role != Role::Admin || removes_last_admin {
        return Applied::No;
    }
    let Some(target) = state.persons.get_mut(person).filter(|p| !p.removed) else {
        return Applied::No;
    };
    target.removed = true;
    let mut revoked = Vec::new();
    for (id, device) in &mut target.devices {
        if !device.revoked {
            device.revoked = true;
            revoked.push(*id);
        }
    }
    for d in state.docs.values_mut() {
        d.grants.remove(person);
    }
    Applied::Revoked(revoked)
}

/// Fixes a document's kind, once, by whoever may rotate it.
pub(super) fn declare(
    state: &mut FamilyState,
    author: &Author,
    doc: &DocId,
    kind: DocKind,
) -> Applied {
    if !state.may_rotate(&author.person, author.role, doc) {
        return Applied::No;
    }
    let sharing = state
        .docs
        .entry(*doc)
        .or_insert_with(|| unowned(author.person));
    if sharing.kind.is_some() {
        return Applied::No;
    }
    sharing.kind = Some(kind);
    Applied::Yes
}

/// Records changes of a revoked device that a current device took in (see
/// [`FamilyState::change_scope`]).
pub(super) fn vouch(state: &mut FamilyState, device: &DeviceId, changes: &[ChangeId]) -> Applied {
    if changes.is_empty() || !state.is_revoked(device) {
        return Applied::No;
    }
    state.vouched.extend(changes.iter().copied());
    Applied::Yes
}

fn unowned(owner: PersonId) -> DocSharing {
    DocSharing {
        owner,
        grants: BTreeMap::new(),
        kind: None,
        keys: None,
        fresh: None,
        cuts: Vec::new(),
    }
}

/// Starts an album's history over (see [`FreshStart`]): by the device that made its current
/// epoch, with no earlier keys sealed in it (a person granted the document now must not read
/// the old history), when that device may write all of the document; once per epoch.
pub(super) fn fresh_start(
    state: &mut FamilyState,
    author: &Author,
    doc: &DocId,
    epoch: u32,
    base: ChangeId,
    clock: &[(DeviceId, u64)],
) -> Applied {
    let whole =
        state.scope_of_person(doc, &author.person, author.role) == Some(WriteScope::Document);
    let Some(sharing) = state.docs.get_mut(doc) else {
        return Applied::No;
    };
    // Albums only: a library shard is never granted to anyone.
    if sharing.kind == Some(DocKind::Library) {
        return Applied::No;
    }
    let current = sharing
        .keys
        .as_ref()
        .is_some_and(|k| k.epoch == epoch && k.rotated_by == author.device && k.history.is_none());
    if !whole || !current || sharing.fresh.as_ref().is_some_and(|f| f.epoch >= epoch) {
        return Applied::No;
    }
    sharing.cuts.push(epoch);
    sharing.fresh = Some(FreshStart {
        epoch,
        base,
        by: author.device,
        clock: clock.to_vec(),
    });
    Applied::Yes
}
