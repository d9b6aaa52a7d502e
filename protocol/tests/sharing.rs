//! Sharing in the membership log: who may grant and rotate, epoch order, removal, and when a
//! document's key must be rotated again.

mod support;

use kith_protocol::envelope::SealedHistory;
use kith_protocol::keys::{DeviceSecret, DocId};
use kith_protocol::membership::{Access, FamilyState, OpBody, Role, SignedOp, evaluate};
use support::*;

const ALBUM: DocId = DocId([0xa1; 32]);
const OTHER: DocId = DocId([0xa2; 32]);

/// Ada (admin, device 0), Bob (member, device 1), Cleo (relative, devices 2 and 3), Dan
/// (member, device 4).
struct Family {
    ops: Vec<SignedOp>,
    d: Vec<DeviceSecret>,
}

impl Family {
    fn new() -> Family {
        let d: Vec<DeviceSecret> = (0..5).map(device).collect();
        let mut family = Family {
            ops: vec![create(&d[0])],
            d,
        };
        let ada = family.d[0].clone();
        for body in [
            add_person(1, Role::Member),
            add_person(2, Role::Relative),
            add_person(3, Role::Member),
            add_device(1, &family.d[1]),
            add_device(2, &family.d[2]),
            add_device(2, &family.d[3]),
            add_device(3, &family.d[4]),
        ] {
            family.push(&ada, body);
        }
        family
    }

    fn head(&self) -> SignedOp {
        self.ops[self.ops.len() - 1].clone()
    }

    /// Appends an op by `author` on the current head.
    fn push(&mut self, author: &DeviceSecret, body: OpBody) -> SignedOp {
        let next = op(author, &[&self.head()], body);
        self.ops.push(next.clone());
        next
    }

    /// Appends an op by device `n` on the current head.
    fn by(&mut self, n: usize, body: OpBody) -> SignedOp {
        let author = self.d[n].clone();
        self.push(&author, body)
    }

    fn state(&self) -> FamilyState {
        let state = evaluate(&self.ops).unwrap();
        let mut reversed = self.ops.clone();
        reversed.reverse();
        assert_eq!(evaluate(&reversed).unwrap(), state, "arrival order matters");
        state
    }
}

fn grant(album: DocId, p: u8, access: Access) -> OpBody {
    OpBody::GrantAlbum {
        album,
        person: person(p),
        access,
    }
}

fn revoke_album(album: DocId, p: u8) -> OpBody {
    OpBody::RevokeAlbum {
        album,
        person: person(p),
    }
}

fn remove(p: u8) -> OpBody {
    OpBody::RemovePerson { person: person(p) }
}

#[test]
fn members_share_what_they_own_and_relatives_never_share() {
    let mut f = Family::new();
    // Cleo (relative) may not grant, even to herself.
    f.by(2, grant(ALBUM, 2, Access::Contribute));
    assert_eq!(f.state().owner(&ALBUM), None);
    // Bob's grant names him the owner; Dan (another member) may then neither grant nor revoke,
    // and Cleo may not rotate it.
    f.by(1, grant(ALBUM, 2, Access::View));
    let cleo_rotates = rotate(ALBUM, 1, &[&f.d[2]]);
    f.by(2, cleo_rotates);
    assert_eq!(f.state().current_epoch(&ALBUM), 0);
    f.by(4, grant(ALBUM, 3, Access::View));
    f.by(4, revoke_album(ALBUM, 2));
    // A grant to someone the log does not know is refused.
    f.by(1, grant(ALBUM, 9, Access::View));
    let state = f.state();
    assert_eq!(state.owner(&ALBUM), Some(person(1)));
    assert_eq!(state.access(&person(2), &ALBUM), Some(Access::View));
    assert_eq!(state.access(&person(3), &ALBUM), None);
    assert_eq!(state.access(&person(9), &ALBUM), None);
    // An admin may change and revoke grants on any document; a member owns a new one.
    f.by(0, grant(ALBUM, 2, Access::Contribute));
    f.by(4, grant(OTHER, 2, Access::View));
    let state = f.state();
    assert_eq!(state.access(&person(2), &ALBUM), Some(Access::Contribute));
    assert_eq!(state.owner(&OTHER), Some(person(3)));
    f.by(0, revoke_album(ALBUM, 2));
    assert_eq!(f.state().access(&person(2), &ALBUM), None);
}

#[test]
fn rotations_advance_one_epoch_at_a_time() {
    let mut f = Family::new();
    assert_eq!(f.state().current_epoch(&ALBUM), 0);
    // Epoch 0 is the creator's own key; the log starts at 1, and never skips or repeats.
    let skip = rotate(ALBUM, 2, &[&f.d[1]]);
    f.by(1, skip);
    assert_eq!(f.state().current_epoch(&ALBUM), 0);
    let first = rotate(ALBUM, 1, &[&f.d[1], &f.d[2]]);
    f.by(1, first);
    let again = rotate(ALBUM, 1, &[&f.d[1]]);
    f.by(1, again);
    let state = f.state();
    assert_eq!(state.current_epoch(&ALBUM), 1);
    assert_eq!(state.owner(&ALBUM), Some(person(1)));
    // Cleo's device opens its envelope; Dan's device has none.
    let env = state.envelope_for(&ALBUM, &f.d[2].device_id()).unwrap();
    assert_eq!(env.open(&ALBUM, 1, &f.d[2]), Ok(doc_key(&ALBUM, 1)));
    assert!(state.envelope_for(&ALBUM, &f.d[4].device_id()).is_none());
    // Dan (a member who does not own it) may not rotate; an admin may.
    let dan_rotates = rotate(ALBUM, 2, &[&f.d[4]]);
    f.by(4, dan_rotates);
    assert_eq!(f.state().current_epoch(&ALBUM), 1);
    let ada_rotates = rotate(ALBUM, 2, &[&f.d[0], &f.d[1]]);
    f.by(0, ada_rotates);
    assert_eq!(f.state().current_epoch(&ALBUM), 2);
}

#[test]
fn rotations_wrap_once_to_known_devices() {
    let mut f = Family::new();
    let stranger = device(40);
    let to_stranger = rotate(ALBUM, 1, &[&f.d[1], &stranger]);
    f.by(1, to_stranger);
    let twice = rotate(ALBUM, 1, &[&f.d[1], &f.d[1]]);
    f.by(1, twice);
    assert_eq!(f.state().current_epoch(&ALBUM), 0);
}

#[test]
fn concurrent_rotations_to_one_epoch_are_decided_by_op_id() {
    let mut f = Family::new();
    let base = f.head();
    let by_bob = op(&f.d[1], &[&base], rotate(ALBUM, 1, &[&f.d[1]]));
    let by_ada = op(&f.d[0], &[&base], rotate(ALBUM, 1, &[&f.d[0]]));
    let winner = if by_bob.id() < by_ada.id() { 1 } else { 0 };
    f.ops.extend([by_bob, by_ada]);
    let state = f.state();
    assert_eq!(state.current_epoch(&ALBUM), 1);
    assert_eq!(
        state.current_keys(&ALBUM).unwrap().rotated_by,
        f.d[winner].device_id()
    );
}

#[test]
fn rotation_carries_the_history_of_earlier_epochs() {
    let mut f = Family::new();
    let history = SealedHistory::seal(
        &doc_key(&ALBUM, 1),
        &ALBUM,
        1,
        &[(0, doc_key(&ALBUM, 0))],
        [3; 24],
    )
    .unwrap();
    let OpBody::RotateKey {
        doc,
        epoch,
        envelopes,
        ..
    } = rotate(ALBUM, 1, &[&f.d[1], &f.d[2]])
    else {
        unreachable!("rotate builds a RotateKey");
    };
    let with_history = OpBody::RotateKey {
        doc,
        epoch,
        envelopes,
        history: Some(history),
    };
    let sent = f.by(1, with_history);
    // The op survives the wire, and a device granted later reads epoch 0 through it.
    assert_eq!(SignedOp::from_bytes(sent.as_bytes()).unwrap(), sent);
    let state = f.state();
    let keys = state.current_keys(&ALBUM).unwrap();
    let key = keys.envelopes[&f.d[2].device_id()]
        .open(&ALBUM, 1, &f.d[2])
        .unwrap();
    let earlier = keys
        .history
        .as_ref()
        .unwrap()
        .open(&key, &ALBUM, 1)
        .unwrap();
    assert_eq!(earlier, vec![(0, doc_key(&ALBUM, 0))]);
}

#[test]
fn removing_a_person_revokes_their_devices_and_grants() {
    let mut f = Family::new();
    f.by(1, grant(ALBUM, 2, Access::View));
    // Members may not remove anyone; the last admin may not be removed.
    f.by(1, remove(2));
    f.by(0, remove(0));
    let state = f.state();
    assert!(active(&state, &f.d[2]) && active(&state, &f.d[0]));
    f.by(0, remove(2));
    let state = f.state();
    assert!(!active(&state, &f.d[2]) && !active(&state, &f.d[3]));
    assert!(state.persons[&person(2)].removed);
    assert_eq!(state.access(&person(2), &ALBUM), None);
    // Nothing brings them back: no device, no grant, no role.
    let readd = add_device(2, &f.d[3]);
    f.by(0, readd);
    f.by(1, grant(ALBUM, 2, Access::View));
    f.by(
        0,
        OpBody::SetRole {
            person: person(2),
            role: Role::Admin,
        },
    );
    let state = f.state();
    assert!(!active(&state, &f.d[3]));
    assert_eq!(state.access(&person(2), &ALBUM), None);
    assert_eq!(state.persons[&person(2)].role, Role::Relative);
}

#[test]
fn removing_an_admin_leaves_the_others() {
    let mut f = Family::new();
    f.by(
        0,
        OpBody::SetRole {
            person: person(1),
            role: Role::Admin,
        },
    );
    f.by(1, remove(0));
    // Ada is gone, so Bob is the last admin and may not remove himself.
    f.by(1, remove(1));
    let state = f.state();
    assert!(!active(&state, &f.d[0]));
    assert_eq!(state.role_of(&f.d[1].device_id()), Some(Role::Admin));
}

#[test]
fn removal_wins_over_concurrent_grants_and_ops_of_the_removed() {
    let mut f = Family::new();
    f.by(
        0,
        OpBody::SetRole {
            person: person(3),
            role: Role::Admin,
        },
    );
    let base = f.head();
    // Concurrently: Ada removes Dan; Bob grants Dan an album; Dan (an admin) adds a person.
    let removal = op(&f.d[0], &[&base], remove(3));
    let grant_dan = op(&f.d[1], &[&base], grant(ALBUM, 3, Access::View));
    let by_dan = op(&f.d[4], &[&base], add_person(7, Role::Member));
    // A grant made after seeing the removal is refused too.
    let late_grant = op(&f.d[1], &[&removal], grant(OTHER, 3, Access::View));
    f.ops.extend([removal, grant_dan, by_dan, late_grant]);
    let state = f.state();
    assert_eq!(state.access(&person(3), &ALBUM), None);
    assert_eq!(state.access(&person(3), &OTHER), None);
    assert!(!state.persons.contains_key(&person(7)));
    assert!(!active(&state, &f.d[4]));
}

#[test]
fn keys_need_rotating_after_access_is_lost() {
    let mut f = Family::new();
    f.by(1, grant(ALBUM, 2, Access::View));
    let to_all = rotate(ALBUM, 1, &[&f.d[0], &f.d[1], &f.d[2], &f.d[3]]);
    f.by(1, to_all);
    assert!(!f.state().needs_rotation(&ALBUM));
    // One of Cleo's devices is revoked: the epoch-1 key went to it.
    f.by(
        0,
        OpBody::RevokeDevice {
            device: f.d[3].device_id(),
        },
    );
    let state = f.state();
    assert!(state.needs_rotation(&ALBUM));
    assert_eq!(state.docs_needing_rotation(), vec![ALBUM]);
    let without = rotate(ALBUM, 2, &[&f.d[0], &f.d[1], &f.d[2]]);
    f.by(1, without);
    assert!(!f.state().needs_rotation(&ALBUM));
    // Taking the album away from Cleo makes her remaining device's envelope stale too.
    f.by(1, revoke_album(ALBUM, 2));
    assert!(f.state().needs_rotation(&ALBUM));
    // So does demoting an admin who holds the key of a relative's own document.
    let cleo_and_ada = rotate(OTHER, 1, &[&f.d[0], &f.d[2]]);
    f.by(2, cleo_and_ada);
    assert_eq!(f.state().owner(&OTHER), Some(person(2)));
    assert!(!f.state().needs_rotation(&OTHER));
    f.by(
        0,
        OpBody::SetRole {
            person: person(1),
            role: Role::Admin,
        },
    );
    f.by(
        1,
        OpBody::SetRole {
            person: person(0),
            role: Role::Member,
        },
    );
    assert!(f.state().needs_rotation(&OTHER));
}

#[test]
fn members_read_the_household_and_relatives_what_is_shared() {
    let mut f = Family::new();
    let (ada, bob, cleo, dan) = (
        f.d[0].device_id(),
        f.d[1].device_id(),
        f.d[2].device_id(),
        f.d[4].device_id(),
    );
    // Bob's album: the household reads and writes it; Cleo nothing until shared.
    let to_bob = rotate(ALBUM, 1, &[&f.d[1]]);
    f.by(1, to_bob);
    let state = f.state();
    for d in [&ada, &bob, &dan] {
        assert_eq!(state.access_of(&ALBUM, d), Some(Access::Contribute));
    }
    assert_eq!(state.access_of(&ALBUM, &cleo), None);
    f.by(1, grant(ALBUM, 2, Access::View));
    let state = f.state();
    assert!(state.may_hold_key(&ALBUM, &cleo) && !state.may_write(&ALBUM, &cleo));
    f.by(1, grant(ALBUM, 2, Access::Contribute));
    assert!(f.state().may_write(&ALBUM, &cleo));
    // Cleo's own document (her library): she and the admins read it, the members do not.
    let hers = rotate(OTHER, 1, &[&f.d[2], &f.d[3], &f.d[0]]);
    f.by(2, hers);
    let state = f.state();
    assert_eq!(state.owner(&OTHER), Some(person(2)));
    assert!(state.may_write(&OTHER, &cleo) && state.may_write(&OTHER, &ada));
    assert_eq!(state.access_of(&OTHER, &dan), None);
    let mut recipients: Vec<_> = state
        .key_recipients(&OTHER, &person(2))
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    recipients.sort();
    let mut expected = vec![ada, cleo, f.d[3].device_id()];
    expected.sort();
    assert_eq!(recipients, expected);
    // A document nobody rotated yet: the claimant's devices and the household.
    let mut claimed: Vec<_> = state
        .key_recipients(&DocId([0xa3; 32]), &person(2))
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    claimed.sort();
    assert_eq!(claimed, expected);
    // A removed person reads nothing any more.
    f.by(0, remove(2));
    assert_eq!(f.state().access_of(&ALBUM, &cleo), None);
}

#[test]
fn a_rotation_racing_a_revocation_is_superseded() {
    let mut f = Family::new();
    f.by(1, grant(ALBUM, 2, Access::View));
    let base = f.head();
    let revoke = op(
        &f.d[0],
        &[&base],
        OpBody::RevokeDevice {
            device: f.d[3].device_id(),
        },
    );
    let racing = op(
        &f.d[1],
        &[&base],
        rotate(ALBUM, 1, &[&f.d[1], &f.d[2], &f.d[3]]),
    );
    f.ops.extend([revoke, racing]);
    let state = f.state();
    assert_eq!(state.current_epoch(&ALBUM), 1);
    assert!(state.needs_rotation(&ALBUM));
    let next = rotate(ALBUM, 2, &[&f.d[1], &f.d[2]]);
    let superseding = op(&f.d[1], &[&f.ops[f.ops.len() - 2], &f.head()], next);
    f.ops.push(superseding);
    let state = f.state();
    assert_eq!(state.current_epoch(&ALBUM), 2);
    assert!(!state.needs_rotation(&ALBUM));
}

#[test]
fn access_parses_and_prints() {
    for a in [Access::View, Access::Contribute] {
        assert_eq!(a.to_string().parse::<Access>(), Ok(a));
    }
    assert!("View".parse::<Access>().is_err());
}

#[test]
fn new_op_kinds_keep_old_encodings() {
    // postcard writes the variant index first; ops written before sharing existed keep their
    // bytes (RevokeDevice is 5) and the new kinds follow.
    let body_index = |body: OpBody| postcard::to_allocvec(&body).unwrap()[0];
    let d = device(1).device_id();
    assert_eq!(body_index(OpBody::RevokeDevice { device: d }), 5);
    assert_eq!(body_index(grant(ALBUM, 1, Access::View)), 6);
    assert_eq!(body_index(revoke_album(ALBUM, 1)), 7);
    assert_eq!(body_index(rotate(ALBUM, 1, &[])), 8);
    assert_eq!(body_index(remove(1)), 9);
}

#[test]
fn the_rotating_device_counts_as_a_key_holder() {
    let mut f = Family::new();
    // Ada's device rotates Bob's album to Bob alone, then is revoked: it still knows the key.
    f.by(1, grant(ALBUM, 2, Access::View));
    let to_bob = rotate(ALBUM, 1, &[&f.d[1]]);
    f.by(0, to_bob);
    assert!(!f.state().needs_rotation(&ALBUM));
    f.by(
        0,
        OpBody::SetRole {
            person: person(1),
            role: Role::Admin,
        },
    );
    f.by(
        1,
        OpBody::RevokeDevice {
            device: f.d[0].device_id(),
        },
    );
    assert!(f.state().needs_rotation(&ALBUM));
}

#[test]
fn new_grantees_and_devices_lack_the_key_until_a_rotation() {
    let mut f = Family::new();
    assert!(f.state().devices_lacking_key(&ALBUM).is_empty());
    f.by(1, grant(ALBUM, 2, Access::View));
    let lacking = |f: &Family| {
        let mut v = f.state().devices_lacking_key(&ALBUM);
        v.sort();
        v
    };
    let mut expected: Vec<_> = [0, 1, 2, 3, 4]
        .iter()
        .map(|&n| f.d[n].device_id())
        .collect();
    expected.sort();
    assert_eq!(lacking(&f), expected, "household and grantee devices");
    let to_all = rotate(ALBUM, 1, &[&f.d[0], &f.d[1], &f.d[2], &f.d[3], &f.d[4]]);
    f.by(1, to_all);
    assert!(lacking(&f).is_empty());
    let phone = device(30);
    f.by(0, add_device(2, &phone));
    assert_eq!(lacking(&f), vec![phone.device_id()]);
    assert!(!f.state().needs_rotation(&ALBUM));
}

#[test]
fn a_removed_devices_change_counts_only_when_a_current_device_vouched_for_it() {
    use kith_protocol::seal::ChangeId;
    let mut f = Family::new();
    let to_household = rotate(ALBUM, 1, &[&f.d[0], &f.d[1], &f.d[4]]);
    f.by(1, to_household);
    let (bob, dan, cleo) = (f.d[1].device_id(), f.d[4].device_id(), f.d[2].device_id());
    let (vouched, other) = (ChangeId([1; 32]), ChangeId([2; 32]));
    assert!(f.state().change_scope(&ALBUM, &dan, 1, &other).is_some());
    f.by(
        0,
        OpBody::RevokeDevice {
            device: f.d[4].device_id(),
        },
    );
    // A device that knows of the removal takes nothing from it unless vouched for.
    assert!(f.state().change_scope(&ALBUM, &dan, 1, &other).is_none());
    let without_dan = rotate(ALBUM, 2, &[&f.d[0], &f.d[1]]);
    f.by(1, without_dan);
    f.by(
        1,
        OpBody::Vouch {
            device: dan,
            changes: vec![vouched],
        },
    );
    let state = f.state();
    assert!(
        state.change_scope(&ALBUM, &dan, 1, &vouched).is_some(),
        "vouched for by a device that took it in before it knew"
    );
    assert!(
        state.change_scope(&ALBUM, &dan, 1, &other).is_none(),
        "not vouched for"
    );
    assert!(
        state.change_scope(&ALBUM, &dan, 2, &vouched).is_none(),
        "it never had the new key"
    );
    assert!(
        state.change_scope(&ALBUM, &bob, 2, &other).is_some()
            && state.change_scope(&ALBUM, &bob, 1, &other).is_some()
    );
    // A relative with no right to write never had one.
    assert!(state.change_scope(&ALBUM, &cleo, 1, &vouched).is_none());
}

#[test]
fn a_history_starts_over_only_by_its_rotator_without_earlier_keys_and_retires_older_changes() {
    use kith_protocol::seal::ChangeId;
    let fresh = |epoch| OpBody::FreshStart {
        doc: ALBUM,
        epoch,
        base: ChangeId([9; 32]),
        clock: vec![(device(0).device_id(), 3)],
    };
    let mut f = Family::new();
    f.by(0, grant(ALBUM, 2, Access::View));
    f.by(0, rotate(ALBUM, 1, &[&f.d[0], &f.d[2]]));
    // Not the device that made the current epoch: a relative it was granted to, a member.
    f.by(2, fresh(1));
    f.by(1, fresh(1));
    // Not an epoch other than the current one.
    f.by(0, fresh(2));
    assert_eq!(f.state().fresh_start(&ALBUM), None);

    // A rotation that carries earlier keys cannot start the history over: the new reader
    // would read the old history with them.
    let history = SealedHistory::seal(
        &doc_key(&ALBUM, 2),
        &ALBUM,
        2,
        &[(1, doc_key(&ALBUM, 1))],
        [4; 24],
    )
    .unwrap();
    let OpBody::RotateKey {
        doc,
        epoch,
        envelopes,
        ..
    } = rotate(ALBUM, 2, &[&f.d[0], &f.d[2]])
    else {
        unreachable!("rotate builds a RotateKey");
    };
    f.by(
        0,
        OpBody::RotateKey {
            doc,
            epoch,
            envelopes,
            history: Some(history),
        },
    );
    f.by(0, fresh(2));
    assert_eq!(f.state().fresh_start(&ALBUM), None);

    // Its rotator, right after a rotation without history: applied once.
    f.by(0, rotate(ALBUM, 3, &[&f.d[0], &f.d[2]]));
    f.by(0, fresh(3));
    let state = f.state();
    let start = state.fresh_start(&ALBUM).expect("started over");
    assert_eq!((start.epoch, start.by), (3, f.d[0].device_id()));
    // Nobody takes in a change of the old history any more, not even the admin's own.
    let admin = f.d[0].device_id();
    assert!(state.is_retired(&ALBUM, 2));
    assert_eq!(
        state.change_scope(&ALBUM, &admin, 2, &ChangeId([1; 32])),
        None
    );
    assert!(
        state
            .change_scope(&ALBUM, &admin, 3, &ChangeId([1; 32]))
            .is_some()
    );
    // Once per epoch.
    f.by(
        0,
        OpBody::FreshStart {
            doc: ALBUM,
            epoch: 3,
            base: ChangeId([8; 32]),
            clock: Vec::new(),
        },
    );
    assert_eq!(
        f.state().fresh_start(&ALBUM).map(|s| s.base),
        Some(ChangeId([9; 32]))
    );
}
