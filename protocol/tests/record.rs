//! Records at rest: bound to their key and their place.

use kith_protocol::keys::SymmetricKey;
use kith_protocol::record::{OVERHEAD, RecordError, open_record, seal_record};
use proptest::prelude::*;
use std::collections::HashSet;

fn key(n: u8) -> SymmetricKey {
    SymmetricKey::from_bytes([n; 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(
        plain in prop::collection::vec(any::<u8>(), 0..2000),
        ctx in prop::collection::vec(any::<u8>(), 0..40),
        nonce: [u8; 24],
    ) {
        let sealed = seal_record(&key(1), &ctx, nonce, &plain);
        prop_assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        prop_assert_eq!(open_record(&key(1), &ctx, &sealed), Ok(plain));
    }

    #[test]
    fn any_flipped_bit_is_rejected(
        plain in prop::collection::vec(any::<u8>(), 0..500), at: prop::sample::Index, bit in 0..8u8,
    ) {
        let mut sealed = seal_record(&key(1), b"settings/x", [3; 24], &plain);
        let i = at.index(sealed.len());
        sealed[i] ^= 1 << bit;
        prop_assert!(open_record(&key(1), b"settings/x", &sealed).is_err());
    }

    #[test]
    fn any_truncation_is_rejected(
        plain in prop::collection::vec(any::<u8>(), 0..500), cut: prop::sample::Index,
    ) {
        let sealed = seal_record(&key(1), b"k", [3; 24], &plain);
        prop_assert!(open_record(&key(1), b"k", &sealed[..cut.index(sealed.len())]).is_err());
    }

    #[test]
    fn no_plaintext_run_in_output(plain in prop::collection::vec(any::<u8>(), 32..2000)) {
        let sealed = seal_record(&key(1), b"k", [0; 24], &plain);
        let windows: HashSet<&[u8]> = sealed.windows(32).collect();
        prop_assert!(plain.windows(32).all(|w| !windows.contains(w)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = open_record(&key(1), b"k", &bytes);
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&bytes);
        prop_assert!(open_record(&key(1), b"k", &v1).is_err());
    }
}

#[test]
fn wrong_key_or_context_is_rejected() {
    let sealed = seal_record(&key(1), b"keys/doc-a", [9; 24], b"secret");
    assert_eq!(
        open_record(&key(1), b"keys/doc-a", &sealed).as_deref(),
        Ok(&b"secret"[..])
    );
    assert_eq!(
        open_record(&key(2), b"keys/doc-a", &sealed),
        Err(RecordError::Decrypt)
    );
    assert_eq!(
        open_record(&key(1), b"keys/doc-b", &sealed),
        Err(RecordError::Decrypt)
    );
    let mut v2 = sealed.clone();
    v2[0] = 2;
    assert_eq!(
        open_record(&key(1), b"keys/doc-a", &v2),
        Err(RecordError::UnsupportedVersion(2))
    );
    assert_eq!(
        open_record(&key(1), b"keys/doc-a", &[]),
        Err(RecordError::TooShort)
    );
    assert_eq!(
        open_record(&key(1), b"keys/doc-a", &sealed[..20]),
        Err(RecordError::TooShort)
    );
}
