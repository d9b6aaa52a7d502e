//! Bad keys and epoch spending in the membership log: a device key that cannot keep wrapped keys
//! secret never enters the family, and nobody below admin moves a document to a new epoch
//! unless the log asks for one.

mod support;

use kith_protocol::envelope::Envelope;
use kith_protocol::keys::{DeviceId, DeviceSecret, DocId, FamilyId, x25519_public_key_is_valid};
use kith_protocol::membership::{
    Access, FamilyState, MembershipError, OpBody, Role, SignedOp, evaluate,
};
use support::*;

const ALBUM: DocId = DocId([0xb1; 32]);
const LIBRARY: DocId = DocId([0xb2; 32]);

/// X25519 public keys of low order, with non-canonical encodings of some (from the lists
/// libsodium and others refuse): each makes the shared secret all-zero.
fn low_order_keys() -> Vec<[u8; 32]> {
    let hex = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000080",
    ];
    hex.iter()
        .map(|h| {
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
            }
            out
        })
        .collect()
}

/// Ada (admin, device 0), Bob (member, device 1), Cleo (relative, device 2).
struct Family {
    ops: Vec<SignedOp>,
    d: Vec<DeviceSecret>,
}

impl Family {
    fn new() -> Family {
        let d: Vec<DeviceSecret> = (0..3).map(device).collect();
        let mut f = Family {
            ops: vec![create(&d[0])],
            d,
        };
        for body in [
            add_person(1, Role::Member),
            add_person(2, Role::Relative),
            add_device(1, &f.d[1].clone()),
            add_device(2, &f.d[2].clone()),
        ] {
            f.by(0, body);
        }
        f
    }

    fn by_device(&mut self, author: &DeviceSecret, body: OpBody) {
        let head = self.ops[self.ops.len() - 1].clone();
        self.ops.push(op(author, &[&head], body));
    }

    fn by(&mut self, n: usize, body: OpBody) {
        let author = self.d[n].clone();
        self.by_device(&author, body);
    }

    fn state(&self) -> FamilyState {
        evaluate(&self.ops).unwrap()
    }

    /// A rotation of `doc` to the next epoch by device `n`, wrapped to every device that may
    /// read it; returns whether the log applied it.
    fn rotate_by(&mut self, n: usize, doc: DocId) -> bool {
        let before = self.state();
        let epoch = before.current_epoch(&doc) + 1;
        let (claimant, _) = before.device(&self.d[n].device_id()).unwrap();
        let recipients: Vec<DeviceId> = before
            .key_recipients(&doc, &claimant)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let to: Vec<DeviceSecret> = self
            .d
            .iter()
            .filter(|d| recipients.contains(&d.device_id()))
            .cloned()
            .collect();
        let refs: Vec<&DeviceSecret> = to.iter().collect();
        self.by(n, rotate(doc, epoch, &refs));
        self.state().current_epoch(&doc) == epoch
    }
}

#[test]
fn low_order_x25519_keys_are_invalid_and_real_ones_valid() {
    for key in low_order_keys() {
        assert!(!x25519_public_key_is_valid(&key), "{key:02x?} passed");
        // The envelope code agrees: nothing can be wrapped to such a key.
        let sealed = Envelope::seal(
            &doc_key(&ALBUM, 1),
            &ALBUM,
            1,
            &DeviceId([1; 32]),
            &key,
            [7; 32],
        );
        assert!(sealed.is_err());
    }
    for n in 0..50 {
        assert!(x25519_public_key_is_valid(&device(n).x25519_public()));
    }
}

#[test]
fn an_add_device_with_a_low_order_key_is_not_applied() {
    for key in low_order_keys() {
        let mut f = Family::new();
        let phone = device(30);
        // Bob for himself, and the admin for Cleo: both refused, whoever signs.
        f.by(
            1,
            OpBody::AddDevice {
                person: person(1),
                device: phone.device_id(),
                device_x25519: key,
                device_name: "bad phone".into(),
            },
        );
        let tablet = device(31);
        f.by(
            0,
            OpBody::AddDevice {
                person: person(2),
                device: tablet.device_id(),
                device_x25519: key,
                device_name: "bad tablet".into(),
            },
        );
        let state = f.state();
        assert!(state.device(&phone.device_id()).is_none());
        assert!(state.device(&tablet.device_id()).is_none());
        // The same op with the device's real key is applied.
        f.by(1, add_device(1, &phone));
        assert!(active(&f.state(), &phone));
    }
}

#[test]
fn a_root_with_a_low_order_key_does_not_evaluate() {
    let founder = device(0);
    let root = op(
        &founder,
        &[],
        OpBody::CreateFamily {
            family: FamilyId([9; 32]),
            person: person(0),
            name: "Mallory".into(),
            device_x25519: [0; 32],
            device_name: "laptop".into(),
        },
    );
    assert_eq!(evaluate(&[root]), Err(MembershipError::BadRootKey));
}

#[test]
fn an_owner_below_admin_rotates_only_when_the_log_asks_for_it() {
    let mut f = Family::new();
    // Bob's first rotation names his album; with nothing due, his next ones are refused, so
    // he cannot spend its epochs.
    assert!(f.rotate_by(1, ALBUM));
    for _ in 0..3 {
        assert!(!f.rotate_by(1, ALBUM));
    }
    assert_eq!(f.state().current_epoch(&ALBUM), 1);
    // Sharing it with Cleo leaves her device without the key: one rotation is due, then none.
    f.by(
        1,
        OpBody::GrantAlbum {
            album: ALBUM,
            person: person(2),
            access: Access::View,
        },
    );
    assert!(f.state().rotation_due(&ALBUM));
    assert!(f.rotate_by(1, ALBUM));
    assert!(!f.state().rotation_due(&ALBUM));
    assert!(!f.rotate_by(1, ALBUM));
    // Unsharing makes one due again (her device holds the key).
    f.by(
        1,
        OpBody::RevokeAlbum {
            album: ALBUM,
            person: person(2),
        },
    );
    assert!(f.rotate_by(1, ALBUM));
    assert!(!f.rotate_by(1, ALBUM));
    assert_eq!(f.state().current_epoch(&ALBUM), 3);

    // Cleo (relative) the same for her own library.
    assert!(f.rotate_by(2, LIBRARY));
    assert!(!f.rotate_by(2, LIBRARY));
    assert_eq!(f.state().owner(&LIBRARY), Some(person(2)));

    // An admin may rotate any document at any time.
    assert!(f.rotate_by(0, ALBUM));
    assert!(f.rotate_by(0, LIBRARY));
}

#[test]
fn nobody_below_admin_rotates_someone_elses_document() {
    let mut f = Family::new();
    assert!(f.rotate_by(0, ALBUM));
    assert!(f.rotate_by(2, LIBRARY));
    // A new device of Bob's lacks both keys he may read: a rotation of Ada's album is due,
    // yet neither Bob nor Cleo may make it; Ada may. Cleo's library is hers to rotate.
    let phone = device(40);
    f.by(1, add_device(1, &phone));
    assert!(f.state().rotation_due(&ALBUM));
    assert!(!f.rotate_by(1, ALBUM));
    assert!(!f.rotate_by(2, ALBUM));
    assert!(f.rotate_by(0, ALBUM));
    assert!(!f.rotate_by(1, LIBRARY));
    // Bob cannot claim the relative's library either, even once a rotation of it is due.
    f.by(
        2,
        OpBody::GrantAlbum {
            album: LIBRARY,
            person: person(1),
            access: Access::View,
        },
    );
    assert!(!f.rotate_by(1, LIBRARY));
    assert_eq!(f.state().owner(&LIBRARY), Some(person(2)));
}

#[test]
fn a_removed_device_makes_one_rotation_due_for_its_owner() {
    let mut f = Family::new();
    let old_phone = device(50);
    f.by(1, add_device(1, &old_phone));
    f.d.push(old_phone.clone());
    assert!(f.rotate_by(1, ALBUM));
    assert!(!f.rotate_by(1, ALBUM));
    // Bob removes his old phone, which held the album's key: he may rotate once.
    f.by(
        1,
        OpBody::RevokeDevice {
            device: old_phone.device_id(),
        },
    );
    assert!(f.state().needs_rotation(&ALBUM));
    // The rotation wraps to the devices that may read it (the removed one is left out).
    assert!(f.rotate_by(1, ALBUM));
    let state = f.state();
    assert!(state.envelope_for(&ALBUM, &old_phone.device_id()).is_none());
    assert!(!state.needs_rotation(&ALBUM));
    assert!(!f.rotate_by(1, ALBUM));
}
