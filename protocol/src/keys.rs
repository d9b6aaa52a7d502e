//! Device identity (ed25519 for signatures, X25519 for receiving wrapped keys), symmetric keys,
//! the family secret and the 32-byte ids everything else is named by.
//!
//! Every signature made here covers `label ‖ 0x00 ‖ message`, so a signature made for one
//! purpose can never be replayed as another; every label carries a version (`"kith ... v1"`).

use std::fmt;

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use x25519_dalek::StaticSecret;

/// Derivation context for the key that seals a device's own records at rest.
pub const STORAGE_KEY_CONTEXT: &str = "kith local storage key v1";
/// Derivation context for the key of the keyed hash that names photos.
pub const PHOTO_ID_CONTEXT: &str = "kith photo id v1";

/// Length of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// Why a key, id or signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("bytes are not a valid ed25519 public key")]
    BadPublicKey,
    #[error("expected {expected} hex characters, got {got}")]
    BadLength { expected: usize, got: usize },
    #[error("not a lowercase hex string")]
    BadHex,
}

/// Declares a 32-byte id: ordered, hashable, serde as bytes, hex `Display`/`FromStr`, short
/// `Debug` (full ids make logs unreadable; the first bytes are enough to tell them apart).
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::keys::write_hex(f, &self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                $crate::keys::write_hex(f, &self.0[..5])?;
                f.write_str("…)")
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::keys::KeyError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::keys::parse_hex32(s).map($name)
            }
        }
    };
}
pub(crate) use id_type;

id_type!(
    /// A device: the bytes of its ed25519 public key (also its libp2p peer id).
    DeviceId
);
id_type!(
    /// A photo: keyed BLAKE3 of the original's plaintext, so the same file is the same photo on
    /// every device without revealing a plain hash.
    PhotoId
);
id_type!(
    /// An automerge document (a library month or an album).
    DocId
);
id_type!(
    /// A family: the trust group one membership log describes.
    FamilyId
);
id_type!(
    /// A person in the family; owns devices and holds a role.
    PersonId
);

pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        let pair = [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]];
        // Both bytes are ASCII hex digits.
        f.write_str(std::str::from_utf8(&pair).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

fn hex_val(c: u8) -> Result<u8, KeyError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(KeyError::BadHex),
    }
}

/// Parses exactly 64 lowercase hex characters. Uppercase is rejected so that every id has one
/// spelling (ids are used as map keys in documents).
pub(crate) fn parse_hex32(s: &str) -> Result<[u8; 32], KeyError> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err(KeyError::BadLength {
            expected: 64,
            got: bytes.len(),
        });
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Ok(out)
}

/// The bytes a labelled signature covers. Labels are fixed strings; the 0x00 separator keeps
/// label and message apart.
fn labelled(label: &str, msg: &[u8]) -> Vec<u8> {
    debug_assert!(
        !label.as_bytes().contains(&0),
        "signature labels must not contain NUL"
    );
    let mut m = Vec::with_capacity(label.len() + 1 + msg.len());
    m.extend_from_slice(label.as_bytes());
    m.push(0);
    m.extend_from_slice(msg);
    m
}

impl DeviceId {
    /// Checks a signature this device made with [`DeviceSecret::sign`] under `label`.
    /// Uses `verify_strict`, which rejects small-order keys and non-canonical signatures.
    pub fn verify(&self, label: &str, msg: &[u8], sig: &[u8; 64]) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadPublicKey)?;
        let sig = Signature::from_bytes(sig);
        key.verify_strict(&labelled(label, msg), &sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// A device's secret keys. The seeds come from the caller (this crate has no randomness).
#[derive(Clone)]
pub struct DeviceSecret {
    signing: SigningKey,
    x25519: StaticSecret,
}

impl DeviceSecret {
    /// Rebuilds the keys from their 32-byte seeds (fresh random ones at `kith init`).
    pub fn from_seeds(ed25519_seed: [u8; 32], x25519_seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&ed25519_seed),
            x25519: StaticSecret::from(x25519_seed),
        }
    }

    /// The ed25519 seed, for writing the secret to the data dir.
    pub fn ed25519_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The X25519 secret, for writing the secret to the data dir.
    pub fn x25519_seed(&self) -> [u8; 32] {
        self.x25519.to_bytes()
    }

    /// This device's public identity.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    /// The public key other devices wrap album keys to.
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519).to_bytes()
    }

    /// The X25519 secret itself, for opening key envelopes addressed to this device.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }

    /// Signs `label ‖ 0x00 ‖ msg`. Each kind of signed thing has its own versioned label.
    pub fn sign(&self, label: &str, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(&labelled(label, msg)).to_bytes()
    }

    /// The key that seals this device's records at rest; derived so that nothing but the seed
    /// file needs protecting.
    pub fn storage_key(&self) -> SymmetricKey {
        SymmetricKey(blake3::derive_key(
            STORAGE_KEY_CONTEXT,
            self.signing.as_bytes(),
        ))
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSecret")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

/// A fixed scalar for testing X25519 public keys (any scalar not a multiple of the prime-order
/// subgroup's order would do; clamping makes it a multiple of the cofactor 8).
const X25519_PROBE: [u8; 32] = *b"kith x25519 public key probe v1.";

/// Whether `public` can receive wrapped keys: an X25519 exchange with it gives a secret the
/// sender contributes to. A low-order point (all-zero among them, and every non-canonical
/// encoding of one) forces the shared secret to zero whatever the sender's scalar, so anyone
/// could open an envelope "wrapped" to it; such a key is refused wherever it would enter the
/// family's log. Multiplying by a clamped scalar (a multiple of the cofactor 8) sends exactly
/// the points of order dividing 8 to zero, which `was_contributory` detects in constant time.
pub fn x25519_public_key_is_valid(public: &[u8; 32]) -> bool {
    StaticSecret::from(X25519_PROBE)
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .was_contributory()
}

/// Overwrites a secret on drop. Best effort: without the `zeroize` crate as a direct
/// dependency, `black_box` is what keeps the compiler from dropping the dead store.
pub(crate) fn wipe(bytes: &mut [u8; 32]) {
    *bytes = [0; 32];
    std::hint::black_box(bytes);
}

/// Compares secrets without an early exit, so timing does not reveal a common prefix.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Declares a 32-byte secret: redacted `Debug`, wiped on drop, constant-time `PartialEq`,
/// serde as its bytes (it is only ever serialized inside encrypted payloads).
macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps key material (random bytes from the caller, or a stored key).
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The key material, for storing it sealed.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                $crate::keys::wipe(&mut self.0);
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                $crate::keys::ct_eq(&self.0, &other.0)
            }
        }
        impl Eq for $name {}

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}
pub(crate) use secret_type;

secret_type!(
    /// A 32-byte symmetric key: a device's storage key, a document's key for an epoch.
    SymmetricKey
);
secret_type!(
    /// The family's shared secret; photo ids are keyed by it.
    FamilySecret
);

impl SymmetricKey {
    /// A subkey for one purpose; `context` is a fixed, versioned label such as
    /// `"kith record v1"`, so keys for different purposes are independent.
    pub fn derive(&self, context: &str) -> SymmetricKey {
        SymmetricKey(blake3::derive_key(context, &self.0))
    }
}

impl FamilySecret {
    fn photo_key(&self) -> [u8; 32] {
        blake3::derive_key(PHOTO_ID_CONTEXT, &self.0)
    }

    /// The id of a photo whose original has these bytes.
    pub fn photo_id(&self, original: &[u8]) -> PhotoId {
        let mut h = self.photo_hasher();
        h.update(original);
        PhotoId(*h.finalize().as_bytes())
    }

    /// The keyed hasher behind [`FamilySecret::photo_id`], for hashing a file while streaming
    /// it; wrap the result's bytes in [`PhotoId`].
    pub fn photo_hasher(&self) -> blake3::Hasher {
        let mut key = self.photo_key();
        let h = blake3::Hasher::new_keyed(&key);
        wipe(&mut key);
        h
    }
}

/// The XChaCha20-Poly1305 instance for a raw 32-byte key.
pub(crate) fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key))
}

/// Encrypts `buf` in place and returns its tag.
///
/// # Panics
/// Only if `buf` exceeds XChaCha20-Poly1305's limit of 256 GiB, which no caller can hold in
/// memory.
pub(crate) fn seal_in_place(
    cipher: &XChaCha20Poly1305,
    nonce: [u8; 24],
    ad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    #[allow(clippy::expect_used)]
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), ad, buf.into())
        .expect("XChaCha20-Poly1305 message under 256 GiB");
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&tag);
    out
}

/// Decrypts `buf` in place; `false` if the tag does not authenticate it (then `buf` holds
/// garbage and must be discarded).
pub(crate) fn open_in_place(
    cipher: &XChaCha20Poly1305,
    nonce: [u8; 24],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let tag = chacha20poly1305::Tag::from(*tag);
    cipher
        .decrypt_inout_detached(&XNonce::from(nonce), ad, buf.into(), &tag)
        .is_ok()
}

/// Reads `N` bytes at `at`, or `None` if the input is too short.
pub(crate) fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let id = DeviceId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s, "ab".repeat(32));
        assert_eq!(s.parse::<DeviceId>(), Ok(id));
        assert_eq!("AB".repeat(32).parse::<DeviceId>(), Err(KeyError::BadHex));
        assert!(matches!(
            "ab".parse::<DeviceId>(),
            Err(KeyError::BadLength { .. })
        ));
        assert_eq!(format!("{id:?}"), "DeviceId(ababababab…)");
    }

    #[test]
    fn secrets_are_redacted() {
        let s = DeviceSecret::from_seeds([1; 32], [2; 32]);
        let dbg = format!(
            "{s:?} {:?} {:?}",
            s.storage_key(),
            FamilySecret::from_bytes([3; 32])
        );
        assert!(!dbg.contains("0101") && !dbg.contains("[1,"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }
}
