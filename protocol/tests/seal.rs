//! Sealed changes: round trips, signatures without the key, and rejection of tampering.

use kith_protocol::keys::{DeviceSecret, DocId, SymmetricKey};
use kith_protocol::seal::{
    ChangeHeader, ChangeId, HEADER_LEN, SealError, SealedChange, open_change, seal_change,
    try_seal_change,
};
use proptest::prelude::*;
use std::collections::HashSet;

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn device(n: u8) -> DeviceSecret {
    DeviceSecret::from_seeds([n; 32], [n.wrapping_add(100); 32])
}

fn header(author: &DeviceSecret, epoch: u32) -> ChangeHeader {
    ChangeHeader {
        doc: DocId([4; 32]),
        epoch,
        author: author.device_id(),
    }
}

fn doc_key(n: u8) -> SymmetricKey {
    SymmetricKey::from_bytes([n; 32])
}

/// Parses and opens; any failure on the way is a rejection.
fn receive(key: &SymmetricKey, bytes: Vec<u8>) -> Result<Vec<u8>, SealError> {
    open_change(key, &SealedChange::from_bytes(bytes)?)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn round_trip(len in 0..20_000usize, seed: u64, epoch: u32, nonce: [u8; 24]) {
        let author = device(1);
        let change = payload(seed, len);
        let sealed = seal_change(&doc_key(1), &header(&author, epoch), nonce, &change, &author);
        prop_assert_eq!(sealed.header(), header(&author, epoch));
        prop_assert_eq!(sealed.id(), ChangeId(*blake3::hash(sealed.as_bytes()).as_bytes()));
        let padded = kith_protocol::padding::bucket_len(4 + len);
        prop_assert_eq!(sealed.as_bytes().len(), HEADER_LEN + padded + 16 + 64);
        let parsed = SealedChange::from_bytes(sealed.clone().into_bytes()).unwrap();
        prop_assert_eq!(&parsed, &sealed);
        prop_assert_eq!(parsed.verify_signature(), Ok(()));
        prop_assert_eq!(open_change(&doc_key(1), &parsed), Ok(change));
    }

    #[test]
    fn any_flipped_bit_is_rejected(
        len in 0..10_000usize, seed: u64, at: prop::sample::Index, bit in 0..8u8,
    ) {
        let author = device(1);
        let change = payload(seed, len);
        let sealed = seal_change(&doc_key(1), &header(&author, 3), [7; 24], &change, &author);
        let mut bytes = sealed.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(receive(&doc_key(1), bytes).is_err());
    }

    #[test]
    fn any_truncation_is_rejected(len in 0..10_000usize, seed: u64, cut: prop::sample::Index) {
        let author = device(1);
        let change = payload(seed, len);
        let sealed = seal_change(&doc_key(1), &header(&author, 3), [7; 24], &change, &author);
        let mut bytes = sealed.into_bytes();
        bytes.truncate(cut.index(bytes.len()));
        prop_assert!(receive(&doc_key(1), bytes).is_err());
    }

    #[test]
    fn no_plaintext_run_in_output(len in 32..20_000usize, seed: u64) {
        let author = device(1);
        let change = payload(seed, len);
        let sealed = seal_change(&doc_key(1), &header(&author, 0), [0; 24], &change, &author);
        let windows: HashSet<&[u8]> = sealed.as_bytes().windows(32).collect();
        prop_assert!(change.windows(32).all(|w| !windows.contains(w)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300), extra in 0..2usize,
    ) {
        let _ = SealedChange::from_bytes(bytes.clone());
        // Also with a valid magic and version and a plausible length, to get past the first checks.
        let mut framed = b"KCH\x01".to_vec();
        framed.extend_from_slice(&bytes);
        framed.resize(HEADER_LEN + 4096 + 16 + 64 + extra, 0);
        if let Ok(sealed) = SealedChange::from_bytes(framed) {
            let _ = sealed.header();
            prop_assert!(sealed.verify_signature().is_err());
            prop_assert!(open_change(&doc_key(1), &sealed).is_err());
        }
    }
}

#[test]
fn wrong_key_is_rejected_but_signature_still_verifies() {
    let author = device(1);
    let sealed = seal_change(
        &doc_key(1),
        &header(&author, 2),
        [1; 24],
        b"change",
        &author,
    );
    assert_eq!(sealed.verify_signature(), Ok(()));
    assert_eq!(open_change(&doc_key(2), &sealed), Err(SealError::Decrypt));
}

#[test]
fn forged_author_is_rejected() {
    // Device 2 seals a change but claims device 1 wrote it: the header says 1, the signature
    // is 2's.
    let (claimed, forger) = (device(1), device(2));
    let honest = seal_change(
        &doc_key(1),
        &header(&claimed, 2),
        [1; 24],
        b"change",
        &claimed,
    );
    let mut bytes = honest.into_bytes();
    let body_end = bytes.len() - 64;
    let sig = forger.sign("kith sealed change v1", &bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&sig);
    let forged = SealedChange::from_bytes(bytes).unwrap();
    assert!(matches!(
        forged.verify_signature(),
        Err(SealError::Signature(_))
    ));
    assert!(open_change(&doc_key(1), &forged).is_err());
}

#[test]
fn author_mismatch() {
    let (a, b) = (device(1), device(2));
    let h = header(&a, 0);
    assert_eq!(
        try_seal_change(&doc_key(1), &h, [0; 24], b"x", &b).unwrap_err(),
        SealError::AuthorMismatch
    );
    assert!(try_seal_change(&doc_key(1), &h, [0; 24], b"x", &a).is_ok());
}

#[test]
fn structural_errors_name_the_problem() {
    let author = device(1);
    let bytes = seal_change(&doc_key(1), &header(&author, 0), [0; 24], b"x", &author).into_bytes();
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(SealedChange::from_bytes(bad), Err(SealError::BadMagic));
    let mut bad = bytes.clone();
    bad[3] = 9;
    assert_eq!(
        SealedChange::from_bytes(bad),
        Err(SealError::UnsupportedVersion(9))
    );
    let mut bad = bytes.clone();
    bad.push(0);
    assert_eq!(SealedChange::from_bytes(bad), Err(SealError::BadLength));
    assert_eq!(
        SealedChange::from_bytes(bytes[..100].to_vec()),
        Err(SealError::TooShort)
    );
    let huge = vec![0; 64 * 1024 * 1024 + 1];
    assert!(matches!(
        SealedChange::from_bytes(huge),
        Err(SealError::TooLarge { .. })
    ));
}
