//! Album key envelopes: a document's key for one epoch, wrapped to one device's X25519 key, and
//! the history of a document's earlier keys sealed under its newest one.
//!
//! A document key is a random 32-byte [`SymmetricKey`] per document per epoch (the caller draws
//! it). Envelopes travel inside signed `RotateKey` ops of the membership log, so their sender is
//! known; nothing here signs.
//!
//! # Format v1
//!
//! ```text
//! envelope = ephemeral X25519 public [32] ‖ sealed key [32] ‖ tag [16]   (postcard: fixed arrays)
//! shared   = X25519(ephemeral secret, recipient X25519 public); all-zero is rejected
//! okm[56]  = HKDF-SHA256(salt = ephemeral public ‖ recipient X25519 public, ikm = shared,
//!                        info = "kith album key v1" ‖ 0x00 ‖ doc [32] ‖ epoch u32 BE ‖ recipient [32])
//! sealed key, tag = XChaCha20-Poly1305(key = okm[..32], nonce = okm[32..],
//!                                      AD = doc ‖ epoch u32 BE ‖ recipient, document key)
//!
//! history  = nonce [24] ‖ ciphertext (postcard: the nonce, then a length-prefixed byte string)
//! ciphertext = XChaCha20-Poly1305(key = BLAKE3 derive_key("kith album key history v1", new key),
//!                                 nonce, AD = doc ‖ epoch u32 BE of the new key,
//!                                 postcard(Vec<(epoch u32, key [32])>)) ‖ tag [16]
//! ```
//!
//! The HKDF salt binds both public keys, so an envelope re-addressed to another key does not
//! open; the info and the AD bind document, epoch and recipient device, so an envelope moved to
//! another document, epoch or device does not open either. Each envelope has a fresh ephemeral
//! key, so its derived key and nonce are used once.
//!
//! A history lists the earlier epochs in ascending order, so a person granted a document later
//! can read its past. Rotation protects only what comes after it: a device keeps every key it
//! was once given.

use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::keys::{
    DeviceId, DeviceSecret, DocId, SymmetricKey, TAG_LEN, cipher, open_in_place, read_array,
    seal_in_place,
};

/// Label of envelope key derivation.
pub const ENVELOPE_LABEL: &str = "kith album key v1";
/// Derivation context of the key that seals a key history.
pub const HISTORY_LABEL: &str = "kith album key history v1";
/// Most earlier epochs one history carries; with the envelopes it must fit in one membership op.
pub const MAX_HISTORY_EPOCHS: usize = 512;
/// Largest history ciphertext accepted: every entry at its longest (a 5-byte varint epoch and a
/// 32-byte key), the length prefix and the tag.
pub const MAX_HISTORY_LEN: usize = 5 + MAX_HISTORY_EPOCHS * (5 + 32) + TAG_LEN;

const AD_LEN: usize = 32 + 4 + 32;
const OKM_LEN: usize = 32 + 24;

/// Why an envelope or a history was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("the X25519 exchange gave an all-zero secret (low-order public key)")]
    ZeroSharedSecret,
    #[error("does not decrypt (wrong recipient, document or epoch, or tampered)")]
    Decrypt,
    #[error("history of {len} epochs exceeds the limit")]
    HistoryTooLong { len: usize },
    #[error("history ciphertext of {len} bytes exceeds the limit")]
    HistoryTooLarge { len: usize },
    #[error("history epochs must be ascending and below the new epoch {epoch}")]
    HistoryOrder { epoch: u32 },
    #[error("history does not decode: {0}")]
    HistoryDecode(String),
}

/// A document key for one epoch, wrapped to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's one-time X25519 public key.
    pub ephemeral: [u8; 32],
    /// The document key, encrypted.
    pub sealed_key: [u8; 32],
    pub tag: [u8; TAG_LEN],
}

impl Envelope {
    /// Wraps `key` (the key of `doc` at `epoch`) to device `recipient`, whose X25519 public key
    /// is `recipient_x25519` (from the membership log). `ephemeral_seed` must be fresh random
    /// bytes for every envelope.
    pub fn seal(
        key: &SymmetricKey,
        doc: &DocId,
        epoch: u32,
        recipient: &DeviceId,
        recipient_x25519: &[u8; 32],
        ephemeral_seed: [u8; 32],
    ) -> Result<Envelope, EnvelopeError> {
        let ephemeral_secret = StaticSecret::from(ephemeral_seed);
        let ephemeral = PublicKey::from(&ephemeral_secret).to_bytes();
        let shared = ephemeral_secret.diffie_hellman(&PublicKey::from(*recipient_x25519));
        let (wrap_key, nonce) = derive(
            shared.as_bytes(),
            shared.was_contributory(),
            &ephemeral,
            recipient_x25519,
            doc,
            epoch,
            recipient,
        )?;
        let mut sealed_key = *key.as_bytes();
        let tag = seal_in_place(
            &cipher(wrap_key.as_bytes()),
            nonce,
            &associated_data(doc, epoch, recipient),
            &mut sealed_key,
        );
        Ok(Envelope {
            ephemeral,
            sealed_key,
            tag,
        })
    }

    /// Opens an envelope addressed to `recipient` for `doc` at `epoch`.
    pub fn open(
        &self,
        doc: &DocId,
        epoch: u32,
        recipient: &DeviceSecret,
    ) -> Result<SymmetricKey, EnvelopeError> {
        let shared = recipient
            .x25519_secret()
            .diffie_hellman(&PublicKey::from(self.ephemeral));
        let device = recipient.device_id();
        let (wrap_key, nonce) = derive(
            shared.as_bytes(),
            shared.was_contributory(),
            &self.ephemeral,
            &recipient.x25519_public(),
            doc,
            epoch,
            &device,
        )?;
        let mut key = self.sealed_key;
        let opened = open_in_place(
            &cipher(wrap_key.as_bytes()),
            nonce,
            &associated_data(doc, epoch, &device),
            &mut key,
            &self.tag,
        );
        // Wrapping the bytes first means they are wiped on drop whether or not they opened.
        let key = SymmetricKey::from_bytes(key);
        if opened {
            Ok(key)
        } else {
            Err(EnvelopeError::Decrypt)
        }
    }
}

/// The wrapping key and nonce of one envelope (see the format in the module docs).
fn derive(
    shared: &[u8; 32],
    contributory: bool,
    ephemeral: &[u8; 32],
    recipient_x25519: &[u8; 32],
    doc: &DocId,
    epoch: u32,
    recipient: &DeviceId,
) -> Result<(SymmetricKey, [u8; 24]), EnvelopeError> {
    // A low-order public key forces the shared secret to zero, which anyone could compute.
    if !contributory {
        return Err(EnvelopeError::ZeroSharedSecret);
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient_x25519);
    let mut info = Vec::with_capacity(ENVELOPE_LABEL.len() + 1 + AD_LEN);
    info.extend_from_slice(ENVELOPE_LABEL.as_bytes());
    info.push(0);
    info.extend_from_slice(&associated_data(doc, epoch, recipient));
    let mut okm = [0u8; OKM_LEN];
    // 56 bytes is far below HKDF-SHA256's limit of 255 × 32, so expand cannot fail.
    let expanded = hkdf::Hkdf::<Sha256>::new(Some(&salt), shared).expand(&info, &mut okm);
    let result = match (expanded, read_array(&okm, 0), read_array(&okm, 32)) {
        (Ok(()), Some(key), Some(nonce)) => Ok((SymmetricKey::from_bytes(key), nonce)),
        _ => Err(EnvelopeError::Decrypt),
    };
    okm.fill(0);
    std::hint::black_box(&okm);
    result
}

/// `doc ‖ epoch u32 BE ‖ recipient`.
fn associated_data(doc: &DocId, epoch: u32, recipient: &DeviceId) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    ad[..32].copy_from_slice(doc.as_bytes());
    ad[32..36].copy_from_slice(&epoch.to_be_bytes());
    ad[36..].copy_from_slice(recipient.as_bytes());
    ad
}

/// A document's earlier keys, sealed under the key of a newer epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHistory {
    pub nonce: [u8; 24],
    /// Encrypted `postcard(Vec<(epoch, key)>)` followed by its tag.
    pub ciphertext: Vec<u8>,
}

impl SealedHistory {
    /// Seals `earlier` (epochs ascending, all below `epoch`) under `new_key`, the key of `doc`
    /// at `epoch`. `nonce` must be fresh random bytes.
    pub fn seal(
        new_key: &SymmetricKey,
        doc: &DocId,
        epoch: u32,
        earlier: &[(u32, SymmetricKey)],
        nonce: [u8; 24],
    ) -> Result<SealedHistory, EnvelopeError> {
        check_history(earlier, epoch)?;
        // Serializing plain data into a Vec cannot fail.
        let mut ciphertext = postcard::to_allocvec(earlier).unwrap_or_default();
        let tag = seal_in_place(
            &cipher(new_key.derive(HISTORY_LABEL).as_bytes()),
            nonce,
            &history_ad(doc, epoch),
            &mut ciphertext,
        );
        ciphertext.extend_from_slice(&tag);
        Ok(SealedHistory { nonce, ciphertext })
    }

    /// Opens a history sealed under `new_key`, the key of `doc` at `epoch`.
    pub fn open(
        &self,
        new_key: &SymmetricKey,
        doc: &DocId,
        epoch: u32,
    ) -> Result<Vec<(u32, SymmetricKey)>, EnvelopeError> {
        let len = self.ciphertext.len();
        if len > MAX_HISTORY_LEN {
            return Err(EnvelopeError::HistoryTooLarge { len });
        }
        let body_len = len.checked_sub(TAG_LEN).ok_or(EnvelopeError::Decrypt)?;
        let tag: [u8; TAG_LEN] =
            read_array(&self.ciphertext, body_len).ok_or(EnvelopeError::Decrypt)?;
        let mut plain = self.ciphertext[..body_len].to_vec();
        let opened = open_in_place(
            &cipher(new_key.derive(HISTORY_LABEL).as_bytes()),
            self.nonce,
            &history_ad(doc, epoch),
            &mut plain,
            &tag,
        );
        let decoded = if opened {
            match postcard::from_bytes::<Vec<(u32, SymmetricKey)>>(&plain) {
                Ok(keys) => check_history(&keys, epoch).map(|()| keys),
                Err(e) => Err(EnvelopeError::HistoryDecode(e.to_string())),
            }
        } else {
            Err(EnvelopeError::Decrypt)
        };
        plain.fill(0);
        std::hint::black_box(&plain);
        decoded
    }
}

fn check_history(earlier: &[(u32, SymmetricKey)], epoch: u32) -> Result<(), EnvelopeError> {
    if earlier.len() > MAX_HISTORY_EPOCHS {
        return Err(EnvelopeError::HistoryTooLong { len: earlier.len() });
    }
    let ascending = earlier.windows(2).all(|w| w[0].0 < w[1].0);
    if !ascending || earlier.last().is_some_and(|(e, _)| *e >= epoch) {
        return Err(EnvelopeError::HistoryOrder { epoch });
    }
    Ok(())
}

/// `doc ‖ epoch u32 BE` of the key the history is sealed under.
fn history_ad(doc: &DocId, epoch: u32) -> [u8; 36] {
    let mut ad = [0u8; 36];
    ad[..32].copy_from_slice(doc.as_bytes());
    ad[32..].copy_from_slice(&epoch.to_be_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u8) -> DeviceSecret {
        DeviceSecret::from_seeds([n; 32], [n.wrapping_add(100); 32])
    }

    const DOC: DocId = DocId([7; 32]);

    fn sealed_to(to: &DeviceSecret, key: &SymmetricKey) -> Envelope {
        Envelope::seal(key, &DOC, 3, &to.device_id(), &to.x25519_public(), [42; 32]).unwrap()
    }

    #[test]
    fn envelope_round_trips_through_postcard() {
        let (to, key) = (device(1), SymmetricKey::from_bytes([5; 32]));
        let env = sealed_to(&to, &key);
        assert_ne!(env.sealed_key, [5; 32]);
        let bytes = postcard::to_allocvec(&env).unwrap();
        assert_eq!(bytes.len(), 32 + 32 + TAG_LEN);
        let back: Envelope = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.open(&DOC, 3, &to), Ok(key));
    }

    #[test]
    fn envelope_opens_only_for_its_recipient_doc_and_epoch() {
        let (to, other, key) = (device(1), device(2), SymmetricKey::from_bytes([5; 32]));
        let env = sealed_to(&to, &key);
        assert_eq!(env.open(&DOC, 3, &other), Err(EnvelopeError::Decrypt));
        assert_eq!(env.open(&DOC, 4, &to), Err(EnvelopeError::Decrypt));
        assert_eq!(
            env.open(&DocId([8; 32]), 3, &to),
            Err(EnvelopeError::Decrypt)
        );
        // Addressed to `to`'s X25519 key but to `other`'s device id: the device binding fails.
        let misaddressed = Envelope::seal(
            &key,
            &DOC,
            3,
            &other.device_id(),
            &to.x25519_public(),
            [42; 32],
        )
        .unwrap();
        assert_eq!(misaddressed.open(&DOC, 3, &to), Err(EnvelopeError::Decrypt));
        let mut tampered = env.clone();
        tampered.sealed_key[0] ^= 1;
        assert_eq!(tampered.open(&DOC, 3, &to), Err(EnvelopeError::Decrypt));
        let mut tampered = env.clone();
        tampered.tag[15] ^= 1;
        assert_eq!(tampered.open(&DOC, 3, &to), Err(EnvelopeError::Decrypt));
        let mut tampered = env;
        tampered.ephemeral = device(3).x25519_public();
        assert_eq!(tampered.open(&DOC, 3, &to), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn low_order_public_keys_are_refused() {
        let (to, key) = (device(1), SymmetricKey::from_bytes([5; 32]));
        for low_order in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                Envelope::seal(&key, &DOC, 3, &to.device_id(), &low_order, [42; 32]),
                Err(EnvelopeError::ZeroSharedSecret)
            );
            let mut env = sealed_to(&to, &key);
            env.ephemeral = low_order;
            assert_eq!(env.open(&DOC, 3, &to), Err(EnvelopeError::ZeroSharedSecret));
        }
    }

    fn history() -> Vec<(u32, SymmetricKey)> {
        (0..3u8)
            .map(|e| (u32::from(e), SymmetricKey::from_bytes([e; 32])))
            .collect()
    }

    #[test]
    fn history_round_trips_and_is_bound_to_its_key() {
        let new_key = SymmetricKey::from_bytes([9; 32]);
        let sealed = SealedHistory::seal(&new_key, &DOC, 3, &history(), [1; 24]).unwrap();
        let bytes = postcard::to_allocvec(&sealed).unwrap();
        let back: SealedHistory = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.open(&new_key, &DOC, 3), Ok(history()));
        let empty = SealedHistory::seal(&new_key, &DOC, 1, &[], [1; 24]).unwrap();
        assert_eq!(empty.open(&new_key, &DOC, 1), Ok(vec![]));

        let wrong_key = SymmetricKey::from_bytes([8; 32]);
        assert_eq!(
            sealed.open(&wrong_key, &DOC, 3),
            Err(EnvelopeError::Decrypt)
        );
        assert_eq!(sealed.open(&new_key, &DOC, 4), Err(EnvelopeError::Decrypt));
        assert_eq!(
            sealed.open(&new_key, &DocId([8; 32]), 3),
            Err(EnvelopeError::Decrypt)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            tampered.open(&new_key, &DOC, 3),
            Err(EnvelopeError::Decrypt)
        );
        let mut short = sealed;
        short.ciphertext.truncate(TAG_LEN - 1);
        assert_eq!(short.open(&new_key, &DOC, 3), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn history_must_be_ascending_bounded_and_earlier() {
        let new_key = SymmetricKey::from_bytes([9; 32]);
        let mut reversed = history();
        reversed.reverse();
        assert_eq!(
            SealedHistory::seal(&new_key, &DOC, 3, &reversed, [1; 24]),
            Err(EnvelopeError::HistoryOrder { epoch: 3 })
        );
        assert_eq!(
            SealedHistory::seal(&new_key, &DOC, 2, &history(), [1; 24]),
            Err(EnvelopeError::HistoryOrder { epoch: 2 })
        );
        let long: Vec<(u32, SymmetricKey)> = (0..=MAX_HISTORY_EPOCHS as u32)
            .map(|e| (e, SymmetricKey::from_bytes([1; 32])))
            .collect();
        assert_eq!(
            SealedHistory::seal(&new_key, &DOC, u32::MAX, &long, [1; 24]),
            Err(EnvelopeError::HistoryTooLong { len: long.len() })
        );
        // The longest allowed history, at the largest epochs, fits the ciphertext bound.
        let longest: Vec<(u32, SymmetricKey)> = (0..MAX_HISTORY_EPOCHS as u32)
            .map(|e| (u32::MAX - 1 - e, SymmetricKey::from_bytes([1; 32])))
            .rev()
            .collect();
        let sealed = SealedHistory::seal(&new_key, &DOC, u32::MAX, &longest, [1; 24]).unwrap();
        assert!(sealed.ciphertext.len() <= MAX_HISTORY_LEN);
        assert_eq!(
            sealed.open(&new_key, &DOC, u32::MAX).unwrap().len(),
            MAX_HISTORY_EPOCHS
        );
        let oversized = SealedHistory {
            nonce: [1; 24],
            ciphertext: vec![0; MAX_HISTORY_LEN + 1],
        };
        assert!(matches!(
            oversized.open(&new_key, &DOC, 3),
            Err(EnvelopeError::HistoryTooLarge { .. })
        ));
    }
}
