//! Identities, labelled signatures, key derivation and ids.

use kith_protocol::keys::{DeviceId, DeviceSecret, FamilySecret, KeyError, PhotoId, SymmetricKey};
use proptest::prelude::*;

fn device(n: u8) -> DeviceSecret {
    DeviceSecret::from_seeds([n; 32], [n.wrapping_add(1); 32])
}

#[test]
fn labelled_signatures() {
    let d = device(1);
    let sig = d.sign("kith test v1", b"message");
    assert_eq!(
        d.device_id().verify("kith test v1", b"message", &sig),
        Ok(())
    );
    assert_eq!(
        d.device_id().verify("kith other v1", b"message", &sig),
        Err(KeyError::BadSignature)
    );
    assert_eq!(
        d.device_id().verify("kith test v1", b"massage", &sig),
        Err(KeyError::BadSignature)
    );
    assert_eq!(
        device(2)
            .device_id()
            .verify("kith test v1", b"message", &sig),
        Err(KeyError::BadSignature)
    );
    // The separator keeps label and message apart.
    let moved = d.sign("kith test v", b"1\0message");
    assert!(
        d.device_id()
            .verify("kith test v1", b"message", &moved)
            .is_err()
    );
}

#[test]
fn small_order_key_is_rejected() {
    // The identity point: verify_strict refuses weak keys.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let r = DeviceId(identity).verify("kith test v1", b"m", &[0; 64]);
    assert!(r.is_err());
}

#[test]
fn seeds_round_trip() {
    let d = DeviceSecret::from_seeds([7; 32], [8; 32]);
    let again = DeviceSecret::from_seeds(d.ed25519_seed(), d.x25519_seed());
    assert_eq!(d.ed25519_seed(), [7; 32]);
    assert_eq!(again.device_id(), d.device_id());
    assert_eq!(again.x25519_public(), d.x25519_public());
    assert_eq!(again.storage_key(), d.storage_key());
    assert_ne!(device(1).storage_key(), device(2).storage_key());
}

#[test]
fn derived_keys_are_independent() {
    let k = SymmetricKey::from_bytes([1; 32]);
    assert_ne!(k.derive("kith a v1"), k.derive("kith b v1"));
    assert_eq!(k.derive("kith a v1"), k.derive("kith a v1"));
    assert_ne!(k.derive("kith a v1").as_bytes(), k.as_bytes());
    assert_eq!(
        *k.derive("kith a v1").as_bytes(),
        blake3::derive_key("kith a v1", &[1; 32])
    );
}

#[test]
fn photo_ids() {
    let fam = FamilySecret::from_bytes([3; 32]);
    let id = fam.photo_id(b"jpeg bytes");
    let mut h = fam.photo_hasher();
    h.update(b"jpeg ");
    h.update(b"bytes");
    assert_eq!(PhotoId(*h.finalize().as_bytes()), id);
    assert_ne!(
        FamilySecret::from_bytes([4; 32]).photo_id(b"jpeg bytes"),
        id
    );
    assert_ne!(id.0, *blake3::hash(b"jpeg bytes").as_bytes());
}

proptest! {
    #[test]
    fn hex_round_trip(bytes: [u8; 32]) {
        let id = DeviceId(bytes);
        let s = id.to_string();
        prop_assert_eq!(s.len(), 64);
        prop_assert!(s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        prop_assert_eq!(s.parse::<DeviceId>(), Ok(id));
    }

    #[test]
    fn hex_parse_never_panics(s in "\\PC{0,70}") {
        let _ = s.parse::<PhotoId>();
    }
}
