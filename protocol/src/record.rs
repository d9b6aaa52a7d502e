//! Small encrypted records a node keeps at rest (settings, keys, document keys in redb values).
//!
//! # Format v1
//!
//! ```text
//! record = 0x01 ‖ nonce [24] ‖ XChaCha20-Poly1305(subkey, nonce, AD = 0x01 ‖ context,
//!                                                   plaintext)
//! ```
//!
//! The subkey is `derive_key("kith record v1", key)`. The caller's `context` names where the
//! record is stored (table and key), so a record copied to another slot does not open there.
//! The version byte is authenticated too (it leads the associated data). Records are not padded:
//! they never leave the device.

use crate::keys::{SymmetricKey, TAG_LEN, cipher, open_in_place, read_array, seal_in_place};

/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Derivation context of the record subkey.
pub const SUBKEY_CONTEXT: &str = "kith record v1";
/// Bytes a sealed record adds to its plaintext.
pub const OVERHEAD: usize = 1 + 24 + TAG_LEN;

/// Why a record did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record is too short")]
    TooShort,
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    #[error("record does not authenticate (wrong key or context, or tampered)")]
    Decrypt,
}

fn associated_data(context: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(1 + context.len());
    ad.push(VERSION);
    ad.extend_from_slice(context);
    ad
}

/// Encrypts `plaintext` for storage at the place `context` names. `nonce` must be fresh random
/// bytes for every call with the same key.
///
/// # Panics
/// Only for plaintexts over 256 GiB.
pub fn seal_record(
    key: &SymmetricKey,
    context: &[u8],
    nonce: [u8; 24],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = cipher(key.derive(SUBKEY_CONTEXT).as_bytes());
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = seal_in_place(&cipher, nonce, &associated_data(context), &mut out[25..]);
    out.extend_from_slice(&tag);
    out
}

/// Opens a record sealed by [`seal_record`] with the same key and context.
pub fn open_record(
    key: &SymmetricKey,
    context: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, RecordError> {
    let version = *sealed.first().ok_or(RecordError::TooShort)?;
    if version != VERSION {
        return Err(RecordError::UnsupportedVersion(version));
    }
    if sealed.len() < OVERHEAD {
        return Err(RecordError::TooShort);
    }
    let nonce: [u8; 24] = read_array(sealed, 1).ok_or(RecordError::TooShort)?;
    let (ct, tag) = sealed[25..].split_at(sealed.len() - OVERHEAD);
    let tag: [u8; TAG_LEN] = read_array(tag, 0).ok_or(RecordError::TooShort)?;
    let cipher = cipher(key.derive(SUBKEY_CONTEXT).as_bytes());
    let mut plaintext = ct.to_vec();
    if open_in_place(
        &cipher,
        nonce,
        &associated_data(context),
        &mut plaintext,
        &tag,
    ) {
        Ok(plaintext)
    } else {
        Err(RecordError::Decrypt)
    }
}
