//! Blob encryption: round trips at chunk boundaries and rejection of every kind of tampering.

use kith_protocol::blob::{
    BlobError, CHUNK_LEN, FileKey, HEADER_LEN, Rendition, SEALED_CHUNK_LEN, decrypt_blob,
    encrypt_blob,
};
use proptest::prelude::*;
use std::collections::HashSet;

/// Pseudo-random bytes, so that plaintext runs are recognizable in the output.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn block(b: &[u8]) -> u128 {
    let mut a = [0; 16];
    a.copy_from_slice(b);
    u128::from_le_bytes(a)
}

fn key(seed: u8) -> FileKey {
    FileKey::from_bytes([seed; 32])
}

/// Lengths around the places where the padded stream (8-byte length ‖ plaintext) crosses a
/// chunk or bucket boundary, plus arbitrary ones.
fn interesting_len() -> impl Strategy<Value = usize> {
    let edges = [
        0,
        1,
        4088,
        4089,
        CHUNK_LEN - 9,
        CHUNK_LEN - 8,
        CHUNK_LEN - 7,
        CHUNK_LEN - 1,
    ]
    .into_iter()
    .chain([
        CHUNK_LEN,
        CHUNK_LEN + 1,
        2 * CHUNK_LEN - 8,
        2 * CHUNK_LEN + 1,
        3 * CHUNK_LEN,
    ])
    .map(Just)
    .collect::<Vec<_>>();
    prop_oneof![proptest::strategy::Union::new(edges), 0..140_000usize]
}

fn rendition() -> impl Strategy<Value = Rendition> {
    prop_oneof![
        Just(Rendition::Original),
        Just(Rendition::Preview),
        Just(Rendition::Thumbnail)
    ]
}

proptest! {
    // The AEAD is monomorphized in this crate, so at opt-level 0 it runs at a few MB/s; the
    // sizes and case counts keep this file fast at any opt-level.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn round_trip(len in interesting_len(), seed: u64, prefix: [u8; 19], r in rendition()) {
        let plain = payload(seed, len);
        let blob = encrypt_blob(&key(1), r, prefix, &plain);
        let stream = kith_protocol::padding::bucket_len(8 + len);
        prop_assert_eq!(blob.len(), HEADER_LEN + stream + stream.div_ceil(CHUNK_LEN) * 16);
        prop_assert_eq!(decrypt_blob(&key(1), r, &blob), Ok(plain));
    }

    #[test]
    fn any_flipped_bit_is_rejected(
        len in 0..70_000usize, seed: u64, at: prop::sample::Index, bit in 0..8u8,
    ) {
        let mut blob = encrypt_blob(&key(1), Rendition::Original, [5; 19], &payload(seed, len));
        let i = at.index(blob.len());
        blob[i] ^= 1 << bit;
        prop_assert!(decrypt_blob(&key(1), Rendition::Original, &blob).is_err());
    }

    #[test]
    fn any_truncation_is_rejected(len in 0..70_000usize, seed: u64, cut: prop::sample::Index) {
        let blob = encrypt_blob(&key(1), Rendition::Preview, [5; 19], &payload(seed, len));
        let keep = cut.index(blob.len());
        prop_assert!(decrypt_blob(&key(1), Rendition::Preview, &blob[..keep]).is_err());
    }

    #[test]
    fn no_plaintext_run_in_output(len in 32..70_000usize, seed: u64) {
        let plain = payload(seed, len);
        let blob = encrypt_blob(&key(1), Rendition::Thumbnail, [0; 19], &plain);
        // Any 32-byte run of the plaintext contains one of its 16-byte aligned blocks.
        let blocks: HashSet<u128> = plain.chunks_exact(16).map(block).collect();
        prop_assert!(blob.windows(16).all(|w| !blocks.contains(&block(w))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400), r in rendition(),
    ) {
        let _ = decrypt_blob(&key(1), r, &bytes);
        let mut with_header = b"KBL\x01".to_vec();
        with_header.push(r as u8);
        with_header.extend_from_slice(&bytes);
        let _ = decrypt_blob(&key(1), r, &with_header);
    }
}

#[test]
fn power_of_two_bucket_round_trips() {
    // 8 + len = 1 MiB exactly: a bucket, 16 full chunks.
    let plain = payload(7, (1 << 20) - 8);
    let blob = encrypt_blob(&key(1), Rendition::Original, [3; 19], &plain);
    assert_eq!(blob.len(), HEADER_LEN + 16 * SEALED_CHUNK_LEN);
    assert_eq!(decrypt_blob(&key(1), Rendition::Original, &blob), Ok(plain));
}

#[test]
fn swapped_or_repeated_chunks_are_rejected() {
    let blob = encrypt_blob(&key(2), Rendition::Original, [9; 19], &payload(1, 250_000));
    let chunks: Vec<&[u8]> = blob[HEADER_LEN..].chunks(SEALED_CHUNK_LEN).collect();
    assert_eq!(chunks.len(), 4);
    let rebuild = |order: &[usize]| {
        let mut b = blob[..HEADER_LEN].to_vec();
        for &i in order {
            b.extend_from_slice(chunks[i]);
        }
        b
    };
    assert!(decrypt_blob(&key(2), Rendition::Original, &rebuild(&[0, 1, 2, 3])).is_ok());
    for order in [
        [1, 0, 2, 3],
        [0, 2, 1, 3],
        [0, 1, 3, 2],
        [0, 0, 2, 3],
        [3, 1, 2, 0],
    ] {
        let err = decrypt_blob(&key(2), Rendition::Original, &rebuild(&order)).unwrap_err();
        assert!(
            matches!(err, BlobError::ChunkAuth { .. }),
            "{order:?}: {err:?}"
        );
    }
    assert_eq!(
        decrypt_blob(&key(2), Rendition::Original, &rebuild(&[0, 1, 2])),
        Err(BlobError::Truncated)
    );
    assert_eq!(
        decrypt_blob(&key(2), Rendition::Original, &rebuild(&[0, 1, 2, 3, 3])),
        Err(BlobError::TrailingData)
    );
}

#[test]
fn chunks_from_another_blob_are_rejected() {
    let a = encrypt_blob(&key(2), Rendition::Original, [1; 19], &payload(1, 150_000));
    let b = encrypt_blob(&key(2), Rendition::Original, [2; 19], &payload(1, 150_000));
    let mut mixed = a[..HEADER_LEN + SEALED_CHUNK_LEN].to_vec();
    mixed.extend_from_slice(&b[HEADER_LEN + SEALED_CHUNK_LEN..]);
    assert!(matches!(
        decrypt_blob(&key(2), Rendition::Original, &mixed),
        Err(BlobError::ChunkAuth { index: 1 })
    ));
}

#[test]
fn wrong_key_or_rendition_is_rejected() {
    let blob = encrypt_blob(&key(3), Rendition::Preview, [0; 19], b"a preview");
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Preview, &blob).as_deref(),
        Ok(&b"a preview"[..])
    );
    assert_eq!(
        decrypt_blob(&key(4), Rendition::Preview, &blob),
        Err(BlobError::ChunkAuth { index: 0 })
    );
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Thumbnail, &blob),
        Err(BlobError::WrongRendition {
            expected: Rendition::Thumbnail,
            found: Rendition::Preview
        })
    );
    // Relabelling the header does not help: the rendition picks the subkey and is in the AD.
    let mut relabelled = blob.clone();
    relabelled[4] = Rendition::Thumbnail as u8;
    assert!(decrypt_blob(&key(3), Rendition::Thumbnail, &relabelled).is_err());
}

#[test]
fn header_errors_name_the_problem() {
    let blob = encrypt_blob(&key(3), Rendition::Original, [0; 19], b"x");
    let mut bad = blob.clone();
    bad[0] = b'X';
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Original, &bad),
        Err(BlobError::BadMagic)
    );
    let mut bad = blob.clone();
    bad[3] = 2;
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Original, &bad),
        Err(BlobError::UnsupportedVersion(2))
    );
    let mut bad = blob.clone();
    bad[4] = 7;
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Original, &bad),
        Err(BlobError::UnknownRendition(7))
    );
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Original, &blob[..10]),
        Err(BlobError::TooShort)
    );
    assert_eq!(
        decrypt_blob(&key(3), Rendition::Original, &blob[..HEADER_LEN]),
        Err(BlobError::Truncated)
    );
}
