//! Sealed changes: one automerge change, padded, encrypted under a document's key for an epoch
//! and signed by its author. The unit of document replication.
//!
//! # Format v1
//!
//! ```text
//! header = "KCH" ‖ 0x01 ‖ doc [32] ‖ epoch u32 BE ‖ author [32] ‖ nonce [24]  (96 B)
//! body   = XChaCha20-Poly1305(derive_key("kith change key v1", doc_key), nonce, AD = header,
//!                             change_len u32 LE ‖ change ‖ zeros up to bucket_len(4 + len))
//! sealed = header ‖ body ‖ ed25519 signature [64] by author over
//!          "kith sealed change v1" ‖ 0x00 ‖ header ‖ body
//! ```
//!
//! The signature covers the ciphertext, so a node without the document key (store-only) can
//! still check who made a change before storing and forwarding it. The id of a change is the
//! BLAKE3 hash of all its bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::keys::{
    DeviceId, DeviceSecret, DocId, KeyError, SymmetricKey, TAG_LEN, cipher, id_type, open_in_place,
    read_array, seal_in_place,
};
use crate::padding::{bucket_len, is_bucket};

/// Magic at the start of every sealed change.
pub const MAGIC: [u8; 3] = *b"KCH";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Signature label.
pub const SIGNATURE_LABEL: &str = "kith sealed change v1";
/// Derivation context of the encryption subkey.
pub const SUBKEY_CONTEXT: &str = "kith change key v1";
/// Length of the header, which is the associated data of the encryption.
pub const HEADER_LEN: usize = 3 + 1 + 32 + 4 + 32 + 24;
/// Length of the trailing signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest sealed change accepted; bounds what a peer can make a node buffer.
pub const MAX_SEALED_LEN: usize = 64 * 1024 * 1024;
/// Largest change that seals within [`MAX_SEALED_LEN`] (its bucket is 60 MiB; the next one,
/// 64 MiB, would not fit with the header, tag and signature).
pub const MAX_CHANGE_LEN: usize = 60 * 1024 * 1024 - LEN_PREFIX;

const LEN_PREFIX: usize = 4;
const MIN_SEALED_LEN: usize = HEADER_LEN + crate::padding::MIN_BUCKET + TAG_LEN + SIGNATURE_LEN;

id_type!(
    /// A sealed change: BLAKE3 of its bytes.
    ChangeId
);

/// The plaintext part of a sealed change: which document, which key epoch, who wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangeHeader {
    pub doc: DocId,
    pub epoch: u32,
    pub author: DeviceId,
}

/// Why a sealed change was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("sealed change is too short")]
    TooShort,
    #[error("sealed change of {len} bytes exceeds the limit")]
    TooLarge { len: usize },
    #[error("not a sealed change (bad magic)")]
    BadMagic,
    #[error("unsupported sealed change version {0}")]
    UnsupportedVersion(u8),
    #[error("ciphertext length is not a padding bucket")]
    BadLength,
    #[error("author signature: {0}")]
    Signature(KeyError),
    #[error("sealing device is not the header's author")]
    AuthorMismatch,
    #[error("change does not decrypt (wrong key or epoch, or tampered)")]
    Decrypt,
    #[error("length field {len} exceeds the padded change")]
    LengthTooLarge { len: u32 },
    #[error("padding is not all zero")]
    NonZeroPadding,
    #[error("change is not padded to its bucket")]
    NonCanonicalPadding,
}

/// A structurally valid sealed change (its signature and contents are checked separately, by
/// [`SealedChange::verify_signature`] and [`open_change`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedChange {
    bytes: Vec<u8>,
    header: ChangeHeader,
}

impl SealedChange {
    /// Parses bytes from the network or the store: magic, version, lengths and size limit. Does
    /// not check the signature.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SealError> {
        if bytes.len() > MAX_SEALED_LEN {
            return Err(SealError::TooLarge { len: bytes.len() });
        }
        let lead: [u8; 4] = read_array(&bytes, 0).ok_or(SealError::TooShort)?;
        if lead[..3] != MAGIC {
            return Err(SealError::BadMagic);
        }
        if lead[3] != VERSION {
            return Err(SealError::UnsupportedVersion(lead[3]));
        }
        if bytes.len() < MIN_SEALED_LEN {
            return Err(SealError::TooShort);
        }
        let padded_len = bytes.len() - HEADER_LEN - TAG_LEN - SIGNATURE_LEN;
        if !is_bucket(padded_len) {
            return Err(SealError::BadLength);
        }
        let header = parse_header(&bytes).ok_or(SealError::TooShort)?;
        Ok(Self { bytes, header })
    }

    /// The encoded bytes, as stored and sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded bytes, as stored and sent.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The content address of this change.
    pub fn id(&self) -> ChangeId {
        ChangeId(*blake3::hash(&self.bytes).as_bytes())
    }

    /// Document, epoch and author, readable without the key.
    pub fn header(&self) -> ChangeHeader {
        self.header
    }

    /// Checks the author's signature only (`verify_strict`). Enough for a node that stores and
    /// forwards without the key; whether the author may write the document is the membership
    /// log's call.
    pub fn verify_signature(&self) -> Result<(), SealError> {
        let (signed, sig) = self.bytes.split_at(self.bytes.len() - SIGNATURE_LEN);
        let sig: [u8; SIGNATURE_LEN] = read_array(sig, 0).ok_or(SealError::TooShort)?;
        self.header
            .author
            .verify(SIGNATURE_LABEL, signed, &sig)
            .map_err(SealError::Signature)
    }
}

impl fmt::Debug for SealedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedChange")
            .field("id", &self.id())
            .field("header", &self.header)
            .field("len", &self.bytes.len())
            .finish()
    }
}

fn parse_header(bytes: &[u8]) -> Option<ChangeHeader> {
    Some(ChangeHeader {
        doc: DocId(read_array(bytes, 4)?),
        epoch: u32::from_be_bytes(read_array(bytes, 36)?),
        author: DeviceId(read_array(bytes, 40)?),
    })
}

fn encode_header(header: &ChangeHeader, nonce: &[u8; 24]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..3].copy_from_slice(&MAGIC);
    h[3] = VERSION;
    h[4..36].copy_from_slice(&header.doc.0);
    h[36..40].copy_from_slice(&header.epoch.to_be_bytes());
    h[40..72].copy_from_slice(&header.author.0);
    h[72..].copy_from_slice(nonce);
    h
}

/// Seals `change` (the bytes of one automerge change) under the document key for
/// `header.epoch`. `nonce` must be fresh random bytes.
///
/// The author written into the change is always `author.device_id()`, so the result always
/// verifies; a `header.author` that differs is a caller bug (a debug assertion; use
/// [`try_seal_change`] to get an error instead). A change over [`MAX_CHANGE_LEN`] produces bytes
/// that [`SealedChange::from_bytes`] rejects; [`try_seal_change`] reports it up front.
pub fn seal_change(
    doc_key: &SymmetricKey,
    header: &ChangeHeader,
    nonce: [u8; 24],
    change: &[u8],
    author: &DeviceSecret,
) -> SealedChange {
    debug_assert_eq!(
        author.device_id(),
        header.author,
        "change sealed by a device that is not its author"
    );
    debug_assert!(change.len() <= MAX_CHANGE_LEN, "change too large to seal");
    let padded_len = bucket_len(LEN_PREFIX + change.len());
    let mut padded = Vec::with_capacity(padded_len + TAG_LEN);
    // Larger changes are rejected by `try_seal_change` and by every reader.
    let len = u32::try_from(change.len()).unwrap_or(u32::MAX);
    padded.extend_from_slice(&len.to_le_bytes());
    padded.extend_from_slice(change);
    padded.resize(padded_len, 0);
    seal_padded(doc_key, header, nonce, &padded, author)
}

/// Encrypts an already padded change and signs the result.
fn seal_padded(
    doc_key: &SymmetricKey,
    header: &ChangeHeader,
    nonce: [u8; 24],
    padded: &[u8],
    author: &DeviceSecret,
) -> SealedChange {
    let header = ChangeHeader {
        author: author.device_id(),
        ..*header
    };
    let head = encode_header(&header, &nonce);
    let mut bytes = Vec::with_capacity(HEADER_LEN + padded.len() + TAG_LEN + SIGNATURE_LEN);
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(padded);
    let cipher = cipher(doc_key.derive(SUBKEY_CONTEXT).as_bytes());
    let tag = seal_in_place(&cipher, nonce, &head, &mut bytes[HEADER_LEN..]);
    bytes.extend_from_slice(&tag);
    let sig = author.sign(SIGNATURE_LABEL, &bytes);
    bytes.extend_from_slice(&sig);
    SealedChange { bytes, header }
}

/// Like [`seal_change`], but returns an error when `author` is not `header.author` or the change
/// is too large, instead of asserting.
pub fn try_seal_change(
    doc_key: &SymmetricKey,
    header: &ChangeHeader,
    nonce: [u8; 24],
    change: &[u8],
    author: &DeviceSecret,
) -> Result<SealedChange, SealError> {
    if author.device_id() != header.author {
        return Err(SealError::AuthorMismatch);
    }
    if change.len() > MAX_CHANGE_LEN {
        return Err(SealError::TooLarge { len: change.len() });
    }
    Ok(seal_change(doc_key, header, nonce, change, author))
}

/// Verifies the author's signature, then decrypts with the document key for the header's epoch
/// and returns the change bytes. Whether the author may write this document at this epoch is
/// for the caller to check against the membership log.
pub fn open_change(doc_key: &SymmetricKey, sealed: &SealedChange) -> Result<Vec<u8>, SealError> {
    sealed.verify_signature()?;
    let bytes = sealed.as_bytes();
    let body_end = bytes.len() - SIGNATURE_LEN;
    let ct_end = body_end - TAG_LEN;
    let nonce: [u8; 24] = read_array(bytes, 72).ok_or(SealError::TooShort)?;
    let tag: [u8; TAG_LEN] = read_array(bytes, ct_end).ok_or(SealError::TooShort)?;
    let mut padded = bytes[HEADER_LEN..ct_end].to_vec();
    let cipher = cipher(doc_key.derive(SUBKEY_CONTEXT).as_bytes());
    if !open_in_place(&cipher, nonce, &bytes[..HEADER_LEN], &mut padded, &tag) {
        return Err(SealError::Decrypt);
    }
    let len = u32::from_le_bytes(read_array(&padded, 0).ok_or(SealError::TooShort)?);
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= padded.len() - LEN_PREFIX)
        .ok_or(SealError::LengthTooLarge { len })?;
    if padded[LEN_PREFIX + n..].iter().any(|&b| b != 0) {
        return Err(SealError::NonZeroPadding);
    }
    if bucket_len(LEN_PREFIX + n) != padded.len() {
        return Err(SealError::NonCanonicalPadding);
    }
    padded.truncate(LEN_PREFIX + n);
    padded.drain(..LEN_PREFIX);
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentic_but_malformed_padding_is_rejected() {
        let author = DeviceSecret::from_seeds([1; 32], [2; 32]);
        let key = SymmetricKey::from_bytes([3; 32]);
        let header = ChangeHeader {
            doc: DocId([4; 32]),
            epoch: 1,
            author: author.device_id(),
        };
        let open = |padded: &[u8]| {
            open_change(&key, &seal_padded(&key, &header, [0; 24], padded, &author))
        };
        let mut padded = vec![0u8; 4096];
        padded[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(open(&padded), Ok(vec![0; 3]));
        padded[..4].copy_from_slice(&4093u32.to_le_bytes());
        assert_eq!(open(&padded), Err(SealError::LengthTooLarge { len: 4093 }));
        padded[..4].copy_from_slice(&3u32.to_le_bytes());
        padded[100] = 1;
        assert_eq!(open(&padded), Err(SealError::NonZeroPadding));
        let mut big = vec![0u8; 8192];
        big[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(open(&big), Err(SealError::NonCanonicalPadding));
    }
}
