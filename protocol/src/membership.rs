//! The family's membership log: signed operations linked into a DAG by their parents, and the
//! pure function that evaluates a set of them into the family's state.
//!
//! # Encoding v1
//!
//! ```text
//! signed op = postcard(MembershipOp) ‖ ed25519 signature [64]
//! signature = by op.author over "kith membership op v1" ‖ 0x00 ‖ postcard(MembershipOp)
//! ```
//!
//! `MembershipOp::version` is its first field, so the encoding starts with the version byte.
//! Decoding insists on the canonical encoding (re-encoding gives the same bytes), so an op has
//! exactly one id: the BLAKE3 hash of its signed bytes.
//!
//! # Evaluation rules
//!
//! [`evaluate`] is a pure function of the *set* of ops (duplicates and arrival order do not
//! matter):
//!
//! 1. The root is the one `CreateFamily` op without parents. Its author device becomes the first
//!    device of the founding person, who is an admin. Any other op without parents, any
//!    `CreateFamily` that is not the root, and any op with a parent missing from the set (or
//!    descending from one) is ignored.
//! 2. The remaining ops are ordered topologically by their parents; ops that are ready at the same
//!    time go in ascending op id order. `time_ms` is informational and never used for ordering.
//! 3. Ops are applied in that order. An op is applied only if its author is a known, unrevoked
//!    device at that point and its person may make it:
//!    - `AddPerson`, `SetRole`: admins. `SetRole` may not remove the last admin.
//!    - `AddDevice`: admins for anyone, anyone for themselves. A device belongs to one person; a
//!      revoked device comes back only by an admin's `AddDevice` for the same person.
//!    - `RenamePerson`: admins for anyone, anyone for themselves.
//!    - Names in `AddPerson`, `AddDevice` and `RenamePerson` pass `names::check_name` (no name
//!      that looks like an id or id prefix, no control characters).
//!    - `RevokeDevice`: admins for any device, anyone for their own devices.
//!    - `GrantAlbum`, `RevokeAlbum`: admins for any document; members for documents they own or
//!      nobody owns yet (the first applied `GrantAlbum`, `DeclareDoc` or `RotateKey` for a
//!      document makes its author's person the owner); relatives never. A grant goes to a person
//!      who has not been removed.
//!    - `RotateKey`: admins for any document at any time; anyone else the first rotation of a
//!      document nobody owns yet (which makes them its owner), or a rotation of a document they
//!      own while `FamilyState::rotation_due` holds. `AddDevice` and the root `CreateFamily`
//!      must carry an X25519 key `keys::x25519_public_key_is_valid` accepts (a root that does
//!      not makes the log fail to evaluate). A `RotateKey` has `epoch` exactly one more than the document's current
//!      epoch (0 before its first rotation: the creator makes the first key without the log) and
//!      at most one envelope per device, each to a device the log knows (revoked ones too: rule 5
//!      then asks for another rotation).
//!    - `RemovePerson`: admins, not for the last admin. It revokes all the person's devices and
//!      drops their grants; a removed person never gets a device, a role or a grant again.
//!    - `DeclareDoc`: whoever may rotate the document, once: the first applied one fixes its
//!      kind (and, like a first rotation, claims its owner).
//!    - `Vouch`: any current device, for changes by a device the log has revoked.
//!    - `FreshStart`: the device that made the document's current epoch, with no earlier keys,
//!      if it may write all of the document; once per epoch.
//!
//!    Ops that are not allowed are skipped but stay in the DAG, so ops built on them still count.
//! 4. A revocation wins over what its target did concurrently or after: when `RevokeDevice(d)`
//!    is applied, every op by `d` applied so far that is not a causal ancestor of the revocation
//!    is excluded and evaluation starts again without it (exclusions are permanent for the rest
//!    of the evaluation, which therefore restarts at most once per op). Ops by `d` ordered after
//!    the revocation fail rule 3. `RemovePerson(p)` counts as a revocation of each of `p`'s
//!    devices; it also wins over a concurrent grant to `p`, which is dropped if ordered before it
//!    and refused if ordered after. Other concurrent ops (e.g. two admins demoting each other, or
//!    two rotations to the same epoch) are decided by the order of rule 2, i.e. by op id.
//! 5. Keys follow access: [`FamilyState::needs_rotation`] is true when a document's current epoch
//!    key reached a device (by envelope, or as the rotating device) that may no longer hold it
//!    (see [`sharing`]), e.g. a rotation that raced with a removal; a new `RotateKey` supersedes
//!    it. Nothing is applied or refused because of this: it tells the node what to do next.
//!
//! Authorization is judged against the state in that order, not against each op's own causal
//! past; the two differ only for concurrent ops, and the result is deterministic either way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, SealedHistory};
use crate::keys::{
    DeviceId, DeviceSecret, DocId, FamilyId, KeyError, PersonId, id_type, read_array,
};
use crate::library::DocKind;
use crate::seal::ChangeId;

pub mod sharing;
mod state;
pub use sharing::{Access, DocKeys, DocSharing, FreshStart, WriteScope};
pub use state::{Device, FamilyState, Person};

/// Signature label of membership ops.
pub const SIGNATURE_LABEL: &str = "kith membership op v1";
/// The op format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Largest encoded op accepted; bounds what a peer can make a node decode.
pub const MAX_OP_LEN: usize = 64 * 1024;

const SIGNATURE_LEN: usize = 64;

id_type!(
    /// A membership op: BLAKE3 of its signed bytes.
    OpId
);

/// Why an op or a log was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    #[error("op is too short")]
    TooShort,
    #[error("op of {len} bytes exceeds the limit")]
    TooLarge { len: usize },
    #[error("unsupported op version {0}")]
    UnsupportedVersion(u8),
    #[error("op does not decode: {0}")]
    Decode(String),
    #[error("op is not canonically encoded")]
    NonCanonical,
    #[error("op signature: {0}")]
    Signature(KeyError),
    #[error("the log has no root (CreateFamily without parents)")]
    NoRoot,
    #[error("the log has more than one root")]
    MultipleRoots,
    #[error("the given root is not a CreateFamily op without parents in the log")]
    RootNotFound,
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("unknown access {0:?}")]
    UnknownAccess(String),
    #[error(
        "the root op gives the founding device a low-order X25519 key, which cannot receive keys"
    )]
    BadRootKey,
}

/// What a person may do (DESIGN.md, "Identities and the family").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Invites, revokes, manages sharing.
    Admin,
    /// Owns albums and shares them.
    Member,
    /// Sees only albums shared with them.
    Relative,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Relative => "relative",
        })
    }
}

impl FromStr for Role {
    type Err = MembershipError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            "relative" => Ok(Self::Relative),
            _ => Err(MembershipError::UnknownRole(s.to_owned())),
        }
    }
}

/// What an op does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpBody {
    /// The root: founds the family with its first person (an admin) and the authoring device.
    CreateFamily {
        family: FamilyId,
        person: PersonId,
        name: String,
        device_x25519: [u8; 32],
        device_name: String,
    },
    AddPerson {
        person: PersonId,
        name: String,
        role: Role,
    },
    AddDevice {
        person: PersonId,
        device: DeviceId,
        device_x25519: [u8; 32],
        device_name: String,
    },
    SetRole {
        person: PersonId,
        role: Role,
    },
    RenamePerson {
        person: PersonId,
        name: String,
    },
    RevokeDevice {
        device: DeviceId,
    },
    // New variants go at the end: postcard encodes the variant index, so existing ops keep
    // their bytes and ids.
    GrantAlbum {
        album: DocId,
        person: PersonId,
        access: Access,
    },
    RevokeAlbum {
        album: DocId,
        person: PersonId,
    },
    /// Moves `doc` to a new key epoch: its key wrapped to each device that may hold it, and the
    /// earlier epochs' keys sealed under it.
    RotateKey {
        doc: DocId,
        epoch: u32,
        envelopes: Vec<(DeviceId, Envelope)>,
        history: Option<SealedHistory>,
    },
    RemovePerson {
        person: PersonId,
    },
    /// Says what a document is, made in the commit of its first `RotateKey`: a document's kind
    /// comes from here, never from a field its writers can set.
    DeclareDoc {
        doc: DocId,
        kind: DocKind,
    },
    /// Changes by `device`, since removed, that the author took in before it learned of the
    /// removal (or held when it made it). Every device takes in exactly these of a removed
    /// device's changes, so devices that were apart converge from the log alone.
    Vouch {
        device: DeviceId,
        changes: Vec<ChangeId>,
    },
    /// Starts `doc`'s history over at `epoch` (the epoch its author just rotated to, with no
    /// earlier keys): from now on the document is `base` and the changes sealed at `epoch` or
    /// later, so a person granted it reads what it holds, not what left it before. `clock` is
    /// where the old history was cut: each device carries over its changes beyond it.
    FreshStart {
        doc: DocId,
        epoch: u32,
        base: ChangeId,
        clock: Vec<(DeviceId, u64)>,
    },
}

/// One entry of the log, before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipOp {
    /// Format version; [`VERSION`].
    pub version: u8,
    /// The heads of the log its author had seen (empty only for the root).
    pub parents: Vec<OpId>,
    pub author: DeviceId,
    /// The author's clock, for display only.
    pub time_ms: u64,
    pub body: OpBody,
}

/// An op with a verified signature by its author.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedOp {
    /// `postcard(op) ‖ signature`.
    bytes: Vec<u8>,
    op: MembershipOp,
}

impl SignedOp {
    /// Signs `op` with its author's key. `op.author` is set to `author.device_id()` (a different
    /// value is a caller bug and fails a debug assertion).
    pub fn sign(mut op: MembershipOp, author: &DeviceSecret) -> SignedOp {
        debug_assert_eq!(
            op.author,
            author.device_id(),
            "op signed by a device that is not its author"
        );
        debug_assert_eq!(op.version, VERSION);
        op.author = author.device_id();
        // Serializing plain data into a Vec cannot fail.
        let mut bytes = postcard::to_allocvec(&op).unwrap_or_default();
        let sig = author.sign(SIGNATURE_LABEL, &bytes);
        bytes.extend_from_slice(&sig);
        SignedOp { bytes, op }
    }

    /// Decodes an op from the network or the store and verifies its signature
    /// (`verify_strict`). Says nothing about whether the author was allowed to make it; that is
    /// [`evaluate`]'s job.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedOp, MembershipError> {
        if bytes.len() > MAX_OP_LEN {
            return Err(MembershipError::TooLarge { len: bytes.len() });
        }
        let version = *bytes.first().ok_or(MembershipError::TooShort)?;
        if version != VERSION {
            return Err(MembershipError::UnsupportedVersion(version));
        }
        let body_len = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .ok_or(MembershipError::TooShort)?;
        let (body, sig) = bytes.split_at(body_len);
        let sig: [u8; SIGNATURE_LEN] = read_array(sig, 0).ok_or(MembershipError::TooShort)?;
        let (op, rest) = postcard::take_from_bytes::<MembershipOp>(body)
            .map_err(|e| MembershipError::Decode(e.to_string()))?;
        if !rest.is_empty() || postcard::to_allocvec(&op).ok().as_deref() != Some(body) {
            return Err(MembershipError::NonCanonical);
        }
        op.author
            .verify(SIGNATURE_LABEL, body, &sig)
            .map_err(MembershipError::Signature)?;
        Ok(SignedOp {
            bytes: bytes.to_vec(),
            op,
        })
    }

    /// The encoded, signed op.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The encoded, signed op, without copying.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The op's content address.
    pub fn id(&self) -> OpId {
        OpId(*blake3::hash(&self.bytes).as_bytes())
    }

    /// The decoded op.
    pub fn op(&self) -> &MembershipOp {
        &self.op
    }

    fn is_root(&self) -> bool {
        self.op.parents.is_empty() && matches!(self.op.body, OpBody::CreateFamily { .. })
    }
}

impl fmt::Debug for SignedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOp")
            .field("id", &self.id())
            .field("op", &self.op)
            .finish()
    }
}

/// Evaluates a log with exactly one root (see the module docs for the rules).
///
/// Any device can sign a parentless `CreateFamily`, so a node that knows its family's root
/// should prefer [`evaluate_with_root`], which ignores foreign roots instead of failing.
pub fn evaluate(ops: &[SignedOp]) -> Result<FamilyState, MembershipError> {
    let by_id = index(ops);
    let mut roots = by_id
        .iter()
        .filter(|(_, op)| op.is_root())
        .map(|(id, _)| *id);
    let root = roots.next().ok_or(MembershipError::NoRoot)?;
    if roots.next().is_some() {
        return Err(MembershipError::MultipleRoots);
    }
    evaluate_from(root, &by_id)
}

/// Evaluates the log that grows from `root`; other roots and what descends from them are ignored.
pub fn evaluate_with_root(root: OpId, ops: &[SignedOp]) -> Result<FamilyState, MembershipError> {
    let by_id = index(ops);
    match by_id.get(&root) {
        Some(op) if op.is_root() => evaluate_from(root, &by_id),
        _ => Err(MembershipError::RootNotFound),
    }
}

/// The ops no other op in the set names as a parent: the parents of the next op.
pub fn heads(ops: &[SignedOp]) -> Vec<OpId> {
    let by_id = index(ops);
    let named: BTreeSet<OpId> = by_id
        .values()
        .flat_map(|op| op.op.parents.iter().copied())
        .collect();
    by_id.into_keys().filter(|id| !named.contains(id)).collect()
}

type Index<'a> = BTreeMap<OpId, &'a SignedOp>;

fn index(ops: &[SignedOp]) -> Index<'_> {
    ops.iter().map(|op| (op.id(), op)).collect()
}

/// Kahn's algorithm from the root, taking the smallest ready id first. Ops that never become
/// ready (missing or unplaceable ancestors) are left out.
fn topo_order(root: OpId, by_id: &Index<'_>) -> Vec<OpId> {
    let mut pending: BTreeMap<OpId, usize> = BTreeMap::new();
    let mut children: BTreeMap<OpId, Vec<OpId>> = BTreeMap::new();
    for (id, op) in by_id {
        let parents: BTreeSet<OpId> = op.op.parents.iter().copied().collect();
        if *id == root || parents.is_empty() || !parents.iter().all(|p| by_id.contains_key(p)) {
            continue;
        }
        pending.insert(*id, parents.len());
        for p in parents {
            children.entry(p).or_default().push(*id);
        }
    }
    let mut ready = BTreeSet::from([root]);
    let mut order = Vec::new();
    while let Some(id) = ready.pop_first() {
        order.push(id);
        for child in children.get(&id).into_iter().flatten() {
            if let Some(n) = pending.get_mut(child) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(*child);
                }
            }
        }
    }
    order
}

/// Every op `id` causally follows (not including itself).
fn ancestors(id: OpId, by_id: &Index<'_>) -> BTreeSet<OpId> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<OpId> = by_id
        .get(&id)
        .map(|op| op.op.parents.clone())
        .unwrap_or_default();
    while let Some(p) = stack.pop() {
        if seen.insert(p)
            && let Some(op) = by_id.get(&p)
        {
            stack.extend_from_slice(&op.op.parents);
        }
    }
    seen
}

fn evaluate_from(root: OpId, by_id: &Index<'_>) -> Result<FamilyState, MembershipError> {
    let order = topo_order(root, by_id);
    let mut excluded = BTreeSet::new();
    loop {
        match run(&order, by_id, &excluded)? {
            Run::Done(state) => return Ok(state),
            Run::Exclude(ops) => excluded.extend(ops),
        }
    }
}

enum Run {
    Done(FamilyState),
    /// Ops a revocation overrides; evaluate again without them.
    Exclude(Vec<OpId>),
}

fn run(
    order: &[OpId],
    by_id: &Index<'_>,
    excluded: &BTreeSet<OpId>,
) -> Result<Run, MembershipError> {
    let (root, rest) = order.split_first().ok_or(MembershipError::NoRoot)?;
    let root_op = by_id.get(root).ok_or(MembershipError::RootNotFound)?.op();
    let OpBody::CreateFamily {
        family,
        person,
        name,
        device_x25519,
        device_name,
    } = &root_op.body
    else {
        return Err(MembershipError::RootNotFound);
    };
    if !crate::keys::x25519_public_key_is_valid(device_x25519) {
        return Err(MembershipError::BadRootKey);
    }
    let first_device = Device {
        name: device_name.clone(),
        x25519: *device_x25519,
        revoked: false,
    };
    let founder = Person {
        name: name.clone(),
        role: Role::Admin,
        devices: BTreeMap::from([(root_op.author, first_device)]),
        removed: false,
    };
    let mut state = FamilyState {
        family: *family,
        persons: BTreeMap::from([(*person, founder)]),
        docs: BTreeMap::new(),
        vouched: BTreeSet::new(),
    };
    let mut applied_by: BTreeMap<DeviceId, Vec<OpId>> = BTreeMap::new();

    for id in rest {
        if excluded.contains(id) {
            continue;
        }
        let Some(signed) = by_id.get(id) else {
            continue;
        };
        let op = signed.op();
        match apply(&mut state, op) {
            Applied::No => continue,
            Applied::Yes => {}
            Applied::Revoked(devices) => {
                let before = ancestors(*id, by_id);
                let overridden: Vec<OpId> = devices
                    .iter()
                    .filter_map(|d| applied_by.get(d))
                    .flatten()
                    .filter(|o| !before.contains(o))
                    .copied()
                    .collect();
                if !overridden.is_empty() {
                    return Ok(Run::Exclude(overridden));
                }
            }
        }
        applied_by.entry(op.author).or_default().push(*id);
    }
    Ok(Run::Done(state))
}

enum Applied {
    No,
    Yes,
    /// Devices were revoked (rule 4).
    Revoked(Vec<DeviceId>),
}

/// Applies one op to the state if its author may make it (rule 3 of the module docs).
fn apply(state: &mut FamilyState, op: &MembershipOp) -> Applied {
    let Some((author_person, author)) = state.active_person(&op.author) else {
        return Applied::No;
    };
    // Names from every device are held to the rule of names (`names::check_op_names`).
    if crate::names::check_op_names(&op.body).is_err() {
        return Applied::No;
    }
    let admin = author.role == Role::Admin;
    let by = sharing::Author {
        device: op.author,
        person: author_person,
        role: author.role,
    };
    match &op.body {
        OpBody::CreateFamily { .. } => Applied::No,
        OpBody::AddPerson { person, name, role } => {
            if !admin || state.persons.contains_key(person) {
                return Applied::No;
            }
            let p = Person {
                name: name.clone(),
                role: *role,
                devices: BTreeMap::new(),
                removed: false,
            };
            state.persons.insert(*person, p);
            Applied::Yes
        }
        OpBody::AddDevice {
            person,
            device,
            device_x25519,
            device_name,
        } => {
            let owner = state.device(device).map(|(p, d)| (p, d.revoked));
            let allowed = match owner {
                None => admin || *person == author_person,
                Some((p, true)) => admin && p == *person,
                Some((_, false)) => false,
            };
            // A low-order key would make every envelope to the device readable by anyone.
            let key_valid = crate::keys::x25519_public_key_is_valid(device_x25519);
            match state.persons.get_mut(person) {
                Some(target) if allowed && key_valid && !target.removed => {
                    let d = Device {
                        name: device_name.clone(),
                        x25519: *device_x25519,
                        revoked: false,
                    };
                    target.devices.insert(*device, d);
                    Applied::Yes
                }
                _ => Applied::No,
            }
        }
        OpBody::SetRole { person, role } => {
            let demotes_last_admin = *role != Role::Admin
                && state
                    .persons
                    .get(person)
                    .is_some_and(|p| p.role == Role::Admin)
                && state.admin_count() == 1;
            match state.persons.get_mut(person) {
                Some(target) if admin && !demotes_last_admin && !target.removed => {
                    target.role = *role;
                    Applied::Yes
                }
                _ => Applied::No,
            }
        }
        OpBody::RenamePerson { person, name } => match state.persons.get_mut(person) {
            Some(target) if admin || *person == author_person => {
                target.name = name.clone();
                Applied::Yes
            }
            _ => Applied::No,
        },
        OpBody::RevokeDevice { device } => {
            let Some((owner, _)) = state.device(device) else {
                return Applied::No;
            };
            if !(admin || owner == author_person) {
                return Applied::No;
            }
            match state
                .persons
                .get_mut(&owner)
                .and_then(|p| p.devices.get_mut(device))
            {
                Some(d) if !d.revoked => {
                    d.revoked = true;
                    Applied::Revoked(vec![*device])
                }
                _ => Applied::No,
            }
        }
        OpBody::GrantAlbum {
            album,
            person,
            access,
        } => sharing::grant(state, &by, album, person, *access),
        OpBody::RevokeAlbum { album, person } => sharing::revoke(state, &by, album, person),
        OpBody::RotateKey {
            doc,
            epoch,
            envelopes,
            history,
        } => sharing::rotate(state, &by, doc, *epoch, envelopes, history.as_ref()),
        OpBody::RemovePerson { person } => sharing::remove_person(state, &by, person),
        OpBody::DeclareDoc { doc, kind } => sharing::declare(state, &by, doc, *kind),
        OpBody::Vouch { device, changes } => sharing::vouch(state, device, changes),
        OpBody::FreshStart {
            doc,
            epoch,
            base,
            clock,
        } => sharing::fresh_start(state, &by, doc, *epoch, *base, clock),
    }
}
