//! Messages of kith's own libp2p protocols (`/kith/invite/2`, `/kith/sync/1`, `/kith/have/2`)
//! and their framing.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of postcard; every frame
//! is bounded by [`MAX_FRAME`] and every list in a message by the `MAX_*` constants, so a peer
//! cannot make a node allocate more than a frame's worth by lying about sizes. Decoding never
//! panics: a bad frame is an error the caller logs before dropping the stream.
//!
//! Document keys never travel in these messages: they are envelopes inside signed membership
//! ops. Sealed changes and signed ops are opaque bytes here; the node checks signatures and
//! rights before it applies or forwards them.

use serde::{Deserialize, Serialize};

use crate::keys::{DeviceId, DocId, FamilyId};
use crate::membership::OpId;
use crate::seal::ChangeId;
use crate::ticket::InviteId;

/// Protocol names, versioned.
pub const SYNC_PROTOCOL: &str = "/kith/sync/1";
/// Version 2 sends the membership log in pages after the welcome, and the joiner confirms.
pub const INVITE_PROTOCOL: &str = "/kith/invite/2";
pub const BLOBS_PROTOCOL: &str = "/kith/blobs/1";
pub const HAVE_PROTOCOL: &str = "/kith/have/2";

/// Largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Largest number of ids in one list message; longer lists are split over several frames.
pub const MAX_IDS: usize = 16 * 1024;
/// Target payload of one `Changes` or `Ops` frame; one item may exceed it up to [`MAX_FRAME`].
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Largest frame an inviter reads from a joiner (a `Join` or a `Confirm`): a request is small,
/// so an outsider cannot make the inviter buffer more than this per stream.
pub const MAX_REQUEST_FRAME: usize = 16 * 1024;
/// Most ops a welcome may announce. A family's log is far smaller; the bound keeps a joiner
/// from waiting on (or collecting) an endless log.
pub const MAX_WELCOME_OPS: u32 = 1 << 20;
/// Version of the sync protocol's messages.
pub const SYNC_VERSION: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("frame is not a valid message: {0}")]
    Malformed(String),
    #[error("message holds {0} ids, more than the limit of {MAX_IDS}")]
    TooManyIds(usize),
    #[error("frame of {len} bytes is larger than the limit of {limit} for this message")]
    OverLimit { len: usize, limit: usize },
}

/// A summary of the changes one side holds for a document: count and a digest of the sorted
/// change ids, so equal sets are recognised without listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDigest {
    pub doc: DocId,
    pub count: u32,
    pub digest: [u8; 32],
}

/// Digest of a set of change ids (order-independent: the ids are hashed in sorted order).
pub fn digest_ids<'a>(ids: impl IntoIterator<Item = &'a ChangeId>) -> [u8; 32] {
    let mut sorted: Vec<&ChangeId> = ids.into_iter().collect();
    sorted.sort();
    let mut hasher = blake3::Hasher::new_derive_key("kith change set digest v1");
    for id in sorted {
        hasher.update(&id.0);
    }
    *hasher.finalize().as_bytes()
}

/// The pull side of a sync stream sends `Hello`, then asks; the serving side answers and, once
/// the client has caught up, pushes what is new as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// Both sides, first: which family and protocol version they speak.
    Hello { version: u8, family: FamilyId },
    /// Server: the ids of every membership op it holds.
    OpIds(Vec<OpId>),
    /// Client: the ops it lacks.
    WantOps(Vec<OpId>),
    /// Server: signed ops, as their bytes.
    Ops(Vec<Vec<u8>>),
    /// Server: what it holds of each document the client may read.
    Digests(Vec<DocDigest>),
    /// Client: list the change ids of these documents.
    WantIds(Vec<DocId>),
    /// Server: change ids of one document (possibly one of several frames).
    Ids { doc: DocId, ids: Vec<ChangeId> },
    /// Client: send these changes of one document.
    Want { doc: DocId, ids: Vec<ChangeId> },
    /// Server: sealed changes, as their bytes (each names its document in its header).
    Changes(Vec<Vec<u8>>),
    /// Server: everything asked for so far has been sent.
    CaughtUp,
}

// ---- `/kith/have/2`: proof that another device holds a blob --------------------------------

/// Bytes of one challenged chunk (BLAKE3's chunk size).
pub const PROOF_CHUNK_BYTES: u64 = 1024;
/// Chunks challenged per blob. A device missing a fraction `m` of a blob's chunks answers
/// correctly with probability at most `(1 - m)^64`: below 10^-19 for half a blob, 0.12 % for a
/// tenth. Reading them costs 64 KiB per blob on each side; the answer is 32 bytes.
pub const PROOF_CHUNKS: usize = 64;
/// Most blobs challenged in one question.
pub const MAX_CHALLENGES: usize = 256;

/// One blob to prove: its BLAKE3 hash and the chunk indices asked for, strictly ascending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub hash: [u8; 32],
    pub chunks: Vec<u64>,
}

/// Messages of `/kith/have/2`. A device about to set its copy of an original aside asks
/// another to prove it holds it: one question (a fresh random nonce and, per blob, random
/// chunks), one answer (per blob in the same order, [`holding_proof`] over those chunks, or
/// `None` for a blob not held in full). Asker and prover compute the proof over their own
/// copies; equal proofs mean the prover read those bytes now. The proof names the prover, so a
/// device cannot pass on the answer of another it relays the question to (not even of the
/// asker itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaveMessage {
    Prove {
        nonce: [u8; 32],
        blobs: Vec<Challenge>,
    },
    Proofs(Vec<Option<[u8; 32]>>),
}

/// Decodes a have message body and checks its limits: at most [`MAX_CHALLENGES`] blobs, at
/// most [`PROOF_CHUNKS`] chunks each, strictly ascending (so none is read twice).
pub fn decode_have(body: &[u8]) -> Result<HaveMessage, WireError> {
    let message: HaveMessage =
        postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    let n = match &message {
        HaveMessage::Prove { blobs, .. } => {
            for blob in blobs {
                if blob.chunks.len() > PROOF_CHUNKS {
                    return Err(WireError::TooManyIds(blob.chunks.len()));
                }
                if blob.chunks.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(WireError::Malformed(
                        "challenged chunks are not strictly ascending".into(),
                    ));
                }
            }
            blobs.len()
        }
        HaveMessage::Proofs(proofs) => proofs.len(),
    };
    if n > MAX_CHALLENGES {
        return Err(WireError::TooManyIds(n));
    }
    Ok(message)
}

/// Picks the chunks to challenge of a blob of `len` bytes: every chunk of a blob of at most
/// [`PROOF_CHUNKS`] chunks, otherwise that many distinct ones uniformly at random (Floyd's
/// algorithm; `random` gives uniform `u64`s). Strictly ascending.
pub fn pick_chunks(len: u64, mut random: impl FnMut() -> u64) -> Vec<u64> {
    let n = len.div_ceil(PROOF_CHUNK_BYTES);
    let k = PROOF_CHUNKS as u64;
    if n <= k {
        return (0..n).collect();
    }
    let mut picked = std::collections::BTreeSet::new();
    for j in n - k..n {
        let t = random() % (j + 1);
        if !picked.insert(t) {
            picked.insert(j);
        }
    }
    picked.into_iter().collect()
}

/// The byte range of chunk `index` of a blob of `len` bytes, or `None` past its end.
pub fn chunk_range(index: u64, len: u64) -> Option<std::ops::Range<u64>> {
    let start = index.checked_mul(PROOF_CHUNK_BYTES)?;
    (start < len).then(|| start..len.min(start.saturating_add(PROOF_CHUNK_BYTES)))
}

/// The answer to one challenge: BLAKE3 keyed by the question's nonce over the blob's hash, the
/// prover's device id and the challenged chunks' bytes (in the order asked, concatenated).
pub fn holding_proof(
    nonce: &[u8; 32],
    hash: &[u8; 32],
    prover: &DeviceId,
    chunks: &[u8],
) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(nonce);
    hasher.update(b"kith have proof v2");
    hasher.update(hash);
    hasher.update(prover.as_bytes());
    hasher.update(chunks);
    *hasher.finalize().as_bytes()
}

// ---- end of `/kith/have/2` ------------------------------------------------------------------

/// Messages of `/kith/invite/2`. The joiner sends `Join`; the inviter answers `Refused`, or
/// `Welcome` followed by the membership log in `Ops` pages (each within [`BATCH_BYTES`] but
/// for one large op) until the welcome's `ops` count is reached; the joiner then records it all
/// and sends `Confirm`, which consumes the invite, and the inviter answers `Confirmed`.
///
/// A joiner whose answer was lost asks again with the same ticket and device key, and gets the
/// same welcome: the invite admits that one device until it confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InviteMessage {
    /// Joiner: proof of the ticket's secret (see [`crate::ticket::invite_proof`]), its X25519
    /// key, and the names to record.
    Join {
        invite: InviteId,
        family: FamilyId,
        joiner_x25519: [u8; 32],
        person_name: String,
        device_name: String,
        proof: [u8; 32],
    },
    /// Inviter: the joiner is recorded; here is what it needs to start; the log follows.
    Welcome(Box<Welcome>),
    /// Inviter: the next signed ops of the membership log, as their bytes.
    Ops(Vec<Vec<u8>>),
    /// Joiner: everything is recorded here; the invite may be consumed.
    Confirm,
    /// Inviter: the invite is consumed.
    Confirmed,
    /// Inviter: refused, and why.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub family: FamilyId,
    pub root_op: OpId,
    /// Keys photo ids with the family's secret, so one photo has one id on every device.
    pub family_secret: [u8; 32],
    /// How many ops of the membership log (including the ops that added the joiner) follow in
    /// `Ops` pages; at most [`MAX_WELCOME_OPS`].
    pub ops: u32,
    /// Where the inviter last reached the family's other devices, so the joiner can connect
    /// to them too (at most [`MAX_WELCOME_PEERS`], each with at most [`MAX_PEER_ADDRS`]
    /// multiaddrs).
    pub peers: Vec<DeviceAddrs>,
}

/// A device and the multiaddrs (binary form) it was reachable at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAddrs {
    pub device: DeviceId,
    pub addrs: Vec<Vec<u8>>,
}

pub const MAX_WELCOME_PEERS: usize = 64;
pub const MAX_PEER_ADDRS: usize = 8;

/// Why an invite was refused. The joiner shows [`Refusal::explain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    UnknownInvite,
    AlreadyUsed,
    Expired,
    Cancelled,
    WrongSecret,
    WrongFamily,
    TooManyAttempts,
    /// The inviting device may no longer add people (its role changed or it was removed).
    NotAllowed,
    Busy,
}

impl Refusal {
    pub fn explain(self) -> &'static str {
        match self {
            Self::UnknownInvite => {
                "the inviting device does not know this invite: ask for a new one"
            }
            Self::AlreadyUsed => {
                "this invite was already used: each invite admits one device; ask for a new one"
            }
            Self::Expired => "this invite has expired: ask for a new one",
            Self::Cancelled => "this invite was cancelled by the person who made it",
            Self::WrongSecret => {
                "the ticket's secret does not match (was it altered?): copy the whole ticket again"
            }
            Self::WrongFamily => "this ticket belongs to another family than its inviting device",
            Self::TooManyAttempts => {
                "too many failed attempts with this invite or from this device: wait a minute and try again"
            }
            Self::NotAllowed => "the inviting device may no longer add people to the family",
            Self::Busy => "the inviting device could not record the join: try again",
        }
    }
}

/// Encodes a message as one frame (length prefix included).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    let body = postcard::to_extend(message, Vec::new())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    out[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a frame's length prefix, refusing lengths over [`MAX_FRAME`] before anything is read.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    Ok(len)
}

/// [`frame_len`] for a message known to be smaller: refuses lengths over `limit` too.
pub fn frame_len_within(prefix: [u8; 4], limit: usize) -> Result<usize, WireError> {
    let len = frame_len(prefix)?;
    if len > limit {
        return Err(WireError::OverLimit { len, limit });
    }
    Ok(len)
}

/// Decodes a sync message body and checks its list limits.
pub fn decode_sync(body: &[u8]) -> Result<SyncMessage, WireError> {
    let message: SyncMessage =
        postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    let ids = match &message {
        SyncMessage::OpIds(ids) | SyncMessage::WantOps(ids) => ids.len(),
        SyncMessage::WantIds(docs) => docs.len(),
        SyncMessage::Ids { ids, .. } | SyncMessage::Want { ids, .. } => ids.len(),
        SyncMessage::Digests(d) => d.len(),
        SyncMessage::Ops(items) | SyncMessage::Changes(items) => items.len(),
        SyncMessage::Hello { .. } | SyncMessage::CaughtUp => 0,
    };
    if ids > MAX_IDS {
        return Err(WireError::TooManyIds(ids));
    }
    Ok(message)
}

/// Decodes an invite message body and checks its list limits.
pub fn decode_invite(body: &[u8]) -> Result<InviteMessage, WireError> {
    let message: InviteMessage =
        postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    let n = match &message {
        InviteMessage::Ops(items) => items.len(),
        InviteMessage::Welcome(w) => {
            if w.ops > MAX_WELCOME_OPS {
                return Err(WireError::Malformed(format!(
                    "a welcome announces {} ops, more than the limit of {MAX_WELCOME_OPS}",
                    w.ops
                )));
            }
            let most_addrs = w.peers.iter().map(|p| p.addrs.len()).max().unwrap_or(0);
            if w.peers.len() > MAX_WELCOME_PEERS || most_addrs > MAX_PEER_ADDRS {
                return Err(WireError::Malformed(
                    "a welcome lists too many peers or addresses".into(),
                ));
            }
            0
        }
        InviteMessage::Join { .. }
        | InviteMessage::Confirm
        | InviteMessage::Confirmed
        | InviteMessage::Refused(_) => 0,
    };
    if n > MAX_IDS {
        return Err(WireError::TooManyIds(n));
    }
    Ok(message)
}

/// Splits `items` (encoded ops or changes) into pages of about [`BATCH_BYTES`] each, keeping
/// their order; an item larger than that is a page of its own.
pub fn pages(items: &[Vec<u8>]) -> Vec<&[Vec<u8>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let full = i > start && (bytes + item.len() > BATCH_BYTES || i - start >= MAX_IDS);
        if full {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += item.len();
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: SyncMessage) {
        let frame = encode_frame(&m).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode_sync(&frame[4..]).unwrap(), m);
    }

    #[test]
    fn messages_round_trip() {
        roundtrip(SyncMessage::Hello {
            version: SYNC_VERSION,
            family: FamilyId([7; 32]),
        });
        roundtrip(SyncMessage::Want {
            doc: DocId([1; 32]),
            ids: vec![ChangeId([2; 32]), ChangeId([3; 32])],
        });
        roundtrip(SyncMessage::Changes(vec![vec![1, 2, 3], vec![]]));
        roundtrip(SyncMessage::CaughtUp);
    }

    #[test]
    fn oversized_lengths_are_refused_before_reading() {
        assert_eq!(
            frame_len(((MAX_FRAME + 1) as u32).to_be_bytes()),
            Err(WireError::TooLarge(MAX_FRAME + 1))
        );
        assert!(frame_len((MAX_FRAME as u32).to_be_bytes()).is_ok());
    }

    #[test]
    fn too_many_ids_are_refused() {
        let m = SyncMessage::OpIds(vec![OpId([0; 32]); MAX_IDS + 1]);
        let frame = encode_frame(&m).unwrap();
        assert_eq!(
            decode_sync(&frame[4..]),
            Err(WireError::TooManyIds(MAX_IDS + 1))
        );
    }

    #[test]
    fn digest_ignores_order() {
        let a = [ChangeId([1; 32]), ChangeId([2; 32])];
        let b = [ChangeId([2; 32]), ChangeId([1; 32])];
        assert_eq!(digest_ids(&a), digest_ids(&b));
        assert_ne!(digest_ids(&a), digest_ids(&a[..1]));
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ len).collect();
            let _ = decode_sync(&bytes);
            let _ = decode_invite(&bytes);
        }
    }

    #[test]
    fn have_messages_round_trip_and_are_bounded() {
        for m in [
            HaveMessage::Prove {
                nonce: [1; 32],
                blobs: vec![Challenge {
                    hash: [7; 32],
                    chunks: vec![0, 3, 9],
                }],
            },
            HaveMessage::Proofs(vec![Some([2; 32]), None]),
        ] {
            let frame = encode_frame(&m).unwrap();
            assert_eq!(decode_have(&frame[4..]).unwrap(), m);
        }
        let too_many = HaveMessage::Proofs(vec![None; MAX_CHALLENGES + 1]);
        let frame = encode_frame(&too_many).unwrap();
        assert_eq!(
            decode_have(&frame[4..]),
            Err(WireError::TooManyIds(MAX_CHALLENGES + 1))
        );
        let long = HaveMessage::Prove {
            nonce: [0; 32],
            blobs: vec![Challenge {
                hash: [0; 32],
                chunks: (0..=PROOF_CHUNKS as u64).collect(),
            }],
        };
        let frame = encode_frame(&long).unwrap();
        assert!(decode_have(&frame[4..]).is_err());
        let repeated = HaveMessage::Prove {
            nonce: [0; 32],
            blobs: vec![Challenge {
                hash: [0; 32],
                chunks: vec![4, 4],
            }],
        };
        let frame = encode_frame(&repeated).unwrap();
        assert!(decode_have(&frame[4..]).is_err());
        assert!(decode_have(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn picked_chunks_are_distinct_in_range_and_cover_small_blobs() {
        assert_eq!(pick_chunks(0, || 0), Vec::<u64>::new());
        assert_eq!(pick_chunks(3000, || 0), vec![0, 1, 2]);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let len = 5_000_000;
        let picked = pick_chunks(len, &mut random);
        assert_eq!(picked.len(), PROOF_CHUNKS);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        assert!(picked.iter().all(|&c| chunk_range(c, len).is_some()));
        // A constant source still gives distinct chunks.
        assert_eq!(pick_chunks(len, || 0).len(), PROOF_CHUNKS);
        assert_eq!(chunk_range(2, 2100), Some(2048..2100));
        assert_eq!(chunk_range(3, 2100), None);
        assert_eq!(chunk_range(u64::MAX, u64::MAX), None);
    }

    #[test]
    fn a_proof_depends_on_nonce_prover_and_every_byte() {
        let prover = DeviceId([5; 32]);
        let base = holding_proof(&[1; 32], &[2; 32], &prover, b"chunk bytes");
        assert_ne!(
            base,
            holding_proof(&[9; 32], &[2; 32], &prover, b"chunk bytes")
        );
        assert_ne!(
            base,
            holding_proof(&[1; 32], &[2; 32], &DeviceId([6; 32]), b"chunk bytes")
        );
        assert_ne!(
            base,
            holding_proof(&[1; 32], &[2; 32], &prover, b"chunk bytez")
        );
        assert_ne!(
            base,
            holding_proof(&[1; 32], &[3; 32], &prover, b"chunk bytes")
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_have_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = decode_have(&bytes);
        }

        #[test]
        fn mutated_have_messages_never_panic(flip in 0usize..4096, to in proptest::prelude::any::<u8>(), cut in 0usize..4096) {
            let m = HaveMessage::Prove {
                nonce: [3; 32],
                blobs: vec![Challenge { hash: [4; 32], chunks: vec![1, 2, 70_000] }; 5],
            };
            let mut body = encode_frame(&m).unwrap()[4..].to_vec();
            let at = flip % body.len();
            body[at] = to;
            body.truncate(cut % (body.len() + 1));
            let _ = decode_have(&body);
        }
    }

    #[test]
    fn invite_messages_round_trip_and_are_bounded() {
        let welcome = Welcome {
            family: FamilyId([1; 32]),
            root_op: OpId([2; 32]),
            family_secret: [3; 32],
            ops: 3,
            peers: vec![DeviceAddrs {
                device: DeviceId([4; 32]),
                addrs: vec![vec![5, 6]],
            }],
        };
        for m in [
            InviteMessage::Welcome(Box::new(welcome.clone())),
            InviteMessage::Ops(vec![vec![1, 2], vec![3]]),
            InviteMessage::Confirm,
            InviteMessage::Confirmed,
            InviteMessage::Refused(Refusal::AlreadyUsed),
        ] {
            let frame = encode_frame(&m).unwrap();
            assert_eq!(decode_invite(&frame[4..]).unwrap(), m);
        }
        let endless = Welcome {
            ops: MAX_WELCOME_OPS + 1,
            ..welcome.clone()
        };
        let frame = encode_frame(&InviteMessage::Welcome(Box::new(endless))).unwrap();
        assert!(decode_invite(&frame[4..]).is_err());
        let crowded = Welcome {
            peers: vec![welcome.peers[0].clone(); MAX_WELCOME_PEERS + 1],
            ..welcome
        };
        let frame = encode_frame(&InviteMessage::Welcome(Box::new(crowded))).unwrap();
        assert!(decode_invite(&frame[4..]).is_err());
        let frame = encode_frame(&InviteMessage::Ops(vec![vec![]; MAX_IDS + 1])).unwrap();
        assert_eq!(
            decode_invite(&frame[4..]),
            Err(WireError::TooManyIds(MAX_IDS + 1))
        );
    }

    #[test]
    fn small_messages_refuse_large_prefixes() {
        let prefix = ((MAX_REQUEST_FRAME + 1) as u32).to_be_bytes();
        assert_eq!(
            frame_len_within(prefix, MAX_REQUEST_FRAME),
            Err(WireError::OverLimit {
                len: MAX_REQUEST_FRAME + 1,
                limit: MAX_REQUEST_FRAME
            })
        );
        assert_eq!(
            frame_len_within(u32::MAX.to_be_bytes(), MAX_REQUEST_FRAME),
            Err(WireError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(
            frame_len_within((MAX_REQUEST_FRAME as u32).to_be_bytes(), MAX_REQUEST_FRAME),
            Ok(MAX_REQUEST_FRAME)
        );
    }

    #[test]
    fn a_log_larger_than_a_frame_is_paged_into_frames() {
        // 5 × MAX_FRAME of ops, 300 bytes each, like a long-lived family's log.
        let ops: Vec<Vec<u8>> = (0..5 * MAX_FRAME / 300)
            .map(|i| vec![i as u8; 300])
            .collect();
        let pages = pages(&ops);
        assert!(pages.len() > 5);
        assert_eq!(pages.concat(), ops);
        for page in &pages {
            let frame = encode_frame(&InviteMessage::Ops(page.to_vec())).unwrap();
            assert!(frame.len() <= BATCH_BYTES + 64 * 1024);
            assert!(decode_invite(&frame[4..]).is_ok());
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_invite_bytes_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)
        ) {
            let _ = decode_invite(&bytes);
            // Valid prefixes of each message kind, then arbitrary bytes.
            for tag in 0u8..8 {
                let mut tagged = vec![tag];
                tagged.extend_from_slice(&bytes);
                let _ = decode_invite(&tagged);
            }
        }

        #[test]
        fn pages_keep_every_item_in_order(
            sizes in proptest::collection::vec(0usize..(3 * BATCH_BYTES / 2), 0..12)
        ) {
            let items: Vec<Vec<u8>> = sizes.iter().map(|n| vec![0u8; *n]).collect();
            let pages = pages(&items);
            proptest::prop_assert_eq!(pages.concat(), items.clone());
            for page in pages {
                let bytes: usize = page.iter().map(Vec::len).sum();
                proptest::prop_assert!(page.len() == 1 || bytes <= BATCH_BYTES);
            }
        }
    }
}
