//! Chunked encryption of photo renditions (originals, previews, thumbnails).
//!
//! # Format v1
//!
//! ```text
//! header = "KBL" ‖ 0x01 ‖ rendition u8 ‖ nonce_prefix [19]
//! stream = plaintext_len u64 LE ‖ plaintext ‖ zeros up to padding::bucket_len(8 + len)
//! body   = for each CHUNK_LEN slice i of stream:
//!            XChaCha20-Poly1305(subkey, nonce = prefix ‖ i u32 BE ‖ last u8, AD = header)
//! blob   = header ‖ body
//! ```
//!
//! The subkey is `blake3::derive_key("kith blob v1 <rendition>", file_key)`, so one file key
//! serves all three renditions without one rendition's blob passing for another. The counter
//! and the last-chunk flag in the nonce (the STREAM construction) make truncation, reordering,
//! swapped chunks and appended data fail authentication. Padding to a bucket hides the exact size
//! from nodes that store blobs without the key.

use serde::{Deserialize, Serialize};

use crate::keys::{TAG_LEN, cipher, open_in_place, read_array, seal_in_place, secret_type, wipe};
use crate::padding::{bucket_len, is_bucket};

/// Plaintext bytes per chunk (the last chunk may be shorter).
pub const CHUNK_LEN: usize = 65536;
/// Bytes of one full chunk on the wire: plaintext plus tag.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Magic at the start of every blob.
pub const MAGIC: [u8; 3] = *b"KBL";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Length of the header, which is also the AEAD's associated data for every chunk.
pub const HEADER_LEN: usize = 3 + 1 + 1 + 19;

const LEN_PREFIX: usize = 8;

/// Which rendition of a photo a blob holds; each has its own subkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Rendition {
    Original = 0,
    Preview = 1,
    Thumbnail = 2,
}

impl Rendition {
    /// The rendition a header byte names, if any.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Original),
            1 => Some(Self::Preview),
            2 => Some(Self::Thumbnail),
            _ => None,
        }
    }

    fn subkey_context(self) -> &'static str {
        match self {
            Self::Original => "kith blob v1 original",
            Self::Preview => "kith blob v1 preview",
            Self::Thumbnail => "kith blob v1 thumbnail",
        }
    }
}

secret_type!(
    /// A photo's random file key; it travels inside the photo's (encrypted) entry.
    FileKey
);

/// Why a blob was rejected. All variants mean "do not use these bytes"; the distinctions are
/// diagnoses for logs (e.g. [`BlobError::Truncated`] is reported when the final chunk turns out
/// to be an authentic non-final one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    #[error("blob is shorter than its header")]
    TooShort,
    #[error("not a kith blob (bad magic)")]
    BadMagic,
    #[error("unsupported blob version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown rendition {0}")]
    UnknownRendition(u8),
    #[error("blob holds the {found:?} rendition, expected {expected:?}")]
    WrongRendition {
        expected: Rendition,
        found: Rendition,
    },
    #[error("blob is truncated")]
    Truncated,
    #[error("a chunk is too short to hold a tag")]
    PartialChunk,
    #[error("extra bytes after the final chunk")]
    TrailingData,
    #[error("chunk {index} does not authenticate (wrong key, tampered, reordered or swapped)")]
    ChunkAuth { index: usize },
    #[error("blob has more chunks than the format can count")]
    TooLarge,
    #[error("length field {len} exceeds the stream")]
    LengthTooLarge { len: u64 },
    #[error("padding is not all zero")]
    NonZeroPadding,
    #[error("stream is not padded to its bucket")]
    NonCanonicalPadding,
}

fn chunk_nonce(prefix: &[u8; 19], index: u32, last: bool) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..19].copy_from_slice(prefix);
    n[19..23].copy_from_slice(&index.to_be_bytes());
    n[23] = u8::from(last);
    n
}

fn rendition_cipher(key: &FileKey, rendition: Rendition) -> chacha20poly1305::XChaCha20Poly1305 {
    let mut subkey = blake3::derive_key(rendition.subkey_context(), key.as_bytes());
    let c = cipher(&subkey);
    wipe(&mut subkey);
    c
}

/// Appends `stream[start..end]` to `out`, where stream = `prefix ‖ plaintext ‖ zeros`,
/// without materializing the padded stream.
fn append_stream(out: &mut Vec<u8>, prefix: &[u8], plaintext: &[u8], start: usize, end: usize) {
    let pt_end = prefix.len() + plaintext.len();
    let mut p = start;
    while p < end {
        if p < prefix.len() {
            let e = end.min(prefix.len());
            out.extend_from_slice(&prefix[p..e]);
            p = e;
        } else if p < pt_end {
            let e = end.min(pt_end);
            out.extend_from_slice(&plaintext[p - prefix.len()..e - prefix.len()]);
            p = e;
        } else {
            out.resize(out.len() + (end - p), 0);
            p = end;
        }
    }
}

/// Encrypts one rendition under `key`. `nonce_prefix` must be fresh random bytes for every call
/// with the same key and rendition.
///
/// # Panics
/// Only for plaintexts over 256 TiB (more chunks than a u32 counter holds).
pub fn encrypt_blob(
    key: &FileKey,
    rendition: Rendition,
    nonce_prefix: [u8; 19],
    plaintext: &[u8],
) -> Vec<u8> {
    let stream_len = bucket_len(LEN_PREFIX + plaintext.len());
    let len_prefix = (plaintext.len() as u64).to_le_bytes();
    seal_stream(
        key,
        rendition,
        nonce_prefix,
        stream_len,
        |out, start, end| append_stream(out, &len_prefix, plaintext, start, end),
    )
}

/// Writes the header and seals a stream of `stream_len` bytes chunk by chunk; `fill` appends the
/// stream's bytes `start..end` to the output (which then encrypts them in place).
fn seal_stream(
    key: &FileKey,
    rendition: Rendition,
    nonce_prefix: [u8; 19],
    stream_len: usize,
    fill: impl Fn(&mut Vec<u8>, usize, usize),
) -> Vec<u8> {
    let chunks = stream_len.div_ceil(CHUNK_LEN);
    assert!(
        u32::try_from(chunks).is_ok(),
        "blob too large for a u32 chunk counter"
    );
    let cipher = rendition_cipher(key, rendition);

    let mut header = [0u8; HEADER_LEN];
    header[..3].copy_from_slice(&MAGIC);
    header[3] = VERSION;
    header[4] = rendition as u8;
    header[5..].copy_from_slice(&nonce_prefix);

    let mut out = Vec::with_capacity(HEADER_LEN + stream_len + chunks * TAG_LEN);
    out.extend_from_slice(&header);
    for (i, index) in (0..chunks).zip(0u32..) {
        let start = i * CHUNK_LEN;
        let end = stream_len.min(start + CHUNK_LEN);
        let at = out.len();
        fill(&mut out, start, end);
        let nonce = chunk_nonce(&nonce_prefix, index, i + 1 == chunks);
        let tag = seal_in_place(&cipher, nonce, &header, &mut out[at..]);
        out.extend_from_slice(&tag);
    }
    out
}

/// Decrypts and checks a blob made by [`encrypt_blob`] with the same key and rendition.
pub fn decrypt_blob(
    key: &FileKey,
    rendition: Rendition,
    blob: &[u8],
) -> Result<Vec<u8>, BlobError> {
    let header: [u8; HEADER_LEN] = read_array(blob, 0).ok_or(BlobError::TooShort)?;
    if header[..3] != MAGIC {
        return Err(BlobError::BadMagic);
    }
    if header[3] != VERSION {
        return Err(BlobError::UnsupportedVersion(header[3]));
    }
    let found = Rendition::from_u8(header[4]).ok_or(BlobError::UnknownRendition(header[4]))?;
    if found != rendition {
        return Err(BlobError::WrongRendition {
            expected: rendition,
            found,
        });
    }
    let prefix: [u8; 19] = read_array(&header, 5).ok_or(BlobError::TooShort)?;
    let body = &blob[HEADER_LEN..];
    if body.is_empty() {
        return Err(BlobError::Truncated);
    }

    let cipher = rendition_cipher(key, rendition);
    let chunks = body.len().div_ceil(SEALED_CHUNK_LEN);
    let mut stream = Vec::with_capacity(body.len());
    for (i, sealed) in body.chunks(SEALED_CHUNK_LEN).enumerate() {
        let index = u32::try_from(i).map_err(|_| BlobError::TooLarge)?;
        let last = i + 1 == chunks;
        let ct_len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&n| n > 0)
            .ok_or(BlobError::PartialChunk)?;
        let (ct, tag) = sealed.split_at(ct_len);
        let tag: [u8; TAG_LEN] = read_array(tag, 0).ok_or(BlobError::PartialChunk)?;
        let at = stream.len();
        stream.extend_from_slice(ct);
        if open_in_place(
            &cipher,
            chunk_nonce(&prefix, index, last),
            &header,
            &mut stream[at..],
            &tag,
        ) {
            continue;
        }
        // Diagnose: does the chunk authenticate with the opposite last-chunk flag?
        stream.truncate(at);
        stream.extend_from_slice(ct);
        let flipped = chunk_nonce(&prefix, index, !last);
        if open_in_place(&cipher, flipped, &header, &mut stream[at..], &tag) {
            return Err(if last {
                BlobError::Truncated
            } else {
                BlobError::TrailingData
            });
        }
        return Err(BlobError::ChunkAuth { index: i });
    }
    unpad(stream)
}

/// Checks the decrypted stream's length field and padding and returns the plaintext.
fn unpad(mut stream: Vec<u8>) -> Result<Vec<u8>, BlobError> {
    let len_bytes: [u8; LEN_PREFIX] = read_array(&stream, 0).ok_or(BlobError::Truncated)?;
    let len = u64::from_le_bytes(len_bytes);
    let room = stream.len() - LEN_PREFIX;
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= room)
        .ok_or(BlobError::LengthTooLarge { len })?;
    if stream[LEN_PREFIX + n..].iter().any(|&b| b != 0) {
        return Err(BlobError::NonZeroPadding);
    }
    if !is_bucket(stream.len()) || bucket_len(LEN_PREFIX + n) != stream.len() {
        return Err(BlobError::NonCanonicalPadding);
    }
    stream.truncate(LEN_PREFIX + n);
    stream.drain(..LEN_PREFIX);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bucketed() {
        let key = FileKey::from_bytes([7; 32]);
        for (n, chunks, stream) in [
            (0, 1, 4096),
            (4088, 1, 4096),
            (4089, 1, 4608),
            (70_000, 2, 73_728),
            (600_000, 10, 655_360),
        ] {
            let blob = encrypt_blob(&key, Rendition::Preview, [1; 19], &vec![3; n]);
            assert_eq!(
                blob.len(),
                HEADER_LEN + stream + chunks * TAG_LEN,
                "n = {n}"
            );
        }
    }

    /// A blob whose (authentic) stream is exactly `stream`, to test the checks after decryption.
    fn craft(key: &FileKey, stream: &[u8]) -> Vec<u8> {
        seal_stream(
            key,
            Rendition::Original,
            [0; 19],
            stream.len(),
            |out, a, b| out.extend_from_slice(&stream[a..b]),
        )
    }

    #[test]
    fn authentic_but_malformed_streams_are_rejected() {
        let key = FileKey::from_bytes([7; 32]);
        let open = |stream: &[u8]| decrypt_blob(&key, Rendition::Original, &craft(&key, stream));
        let mut stream = vec![0u8; 4096];
        stream[..8].copy_from_slice(&5u64.to_le_bytes());
        assert_eq!(open(&stream), Ok(vec![0; 5]));
        stream[..8].copy_from_slice(&4089u64.to_le_bytes());
        assert_eq!(open(&stream), Err(BlobError::LengthTooLarge { len: 4089 }));
        stream[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            open(&stream),
            Err(BlobError::LengthTooLarge { len: u64::MAX })
        );
        stream[..8].copy_from_slice(&5u64.to_le_bytes());
        stream[4000] = 1;
        assert_eq!(open(&stream), Err(BlobError::NonZeroPadding));
        // A 5-byte plaintext belongs in a 4 KiB stream, not an 8 KiB one.
        let mut big = vec![0u8; 8192];
        big[..8].copy_from_slice(&5u64.to_le_bytes());
        assert_eq!(open(&big), Err(BlobError::NonCanonicalPadding));
        assert_eq!(open(&big[..5000]), Err(BlobError::NonCanonicalPadding));
        assert_eq!(open(&big[..5]), Err(BlobError::Truncated));
    }

    #[test]
    fn appended_chunk_is_trailing_data() {
        let key = FileKey::from_bytes([7; 32]);
        let blob = encrypt_blob(&key, Rendition::Original, [1; 19], &vec![3; 250_000]); // a 256 KiB stream: 4 full chunks
        let mut longer = blob.clone();
        longer.extend_from_slice(&blob[HEADER_LEN..HEADER_LEN + SEALED_CHUNK_LEN]);
        assert_eq!(
            decrypt_blob(&key, Rendition::Original, &longer),
            Err(BlobError::TrailingData)
        );
        let shorter = &blob[..blob.len() - SEALED_CHUNK_LEN];
        assert_eq!(
            decrypt_blob(&key, Rendition::Original, shorter),
            Err(BlobError::Truncated)
        );
    }
}
