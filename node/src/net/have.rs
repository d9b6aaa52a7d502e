//! `/kith/have/2`: another device proves it holds blobs, so a device sets its own copy of an
//! original aside only when another device demonstrably keeps one (`kith free-space`).
//!
//! A claim is not enough. The asker sends a fresh random nonce and, per blob, random 1 KiB
//! chunks ([`wire::pick_chunks`]); the prover reads those chunks from its store and answers
//! with [`wire::holding_proof`] over them, its own device id and the nonce. The asker computes
//! the same over its own copy (it still holds the blob: that is what it is about to set aside)
//! and counts the blob held only when both agree. Without the bytes the answer cannot be made;
//! a device missing part of a blob fails with high probability (see [`wire::PROOF_CHUNKS`]);
//! and since the proof names the prover, relaying the question to a device that holds the blob
//! (even back to the asker) gives an answer that does not count.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::{AsyncWriteExt, StreamExt};
use iroh_blobs::Hash;
use iroh_blobs::api::proto::BlobStatus;
use kith_protocol::keys::DeviceId;
use kith_protocol::library::BlobRef;
use kith_protocol::wire::{self, Challenge, HaveMessage, MAX_CHALLENGES};
use libp2p::{PeerId, Stream};
use range_collections::RangeSet2;

use super::frame::{read_frame, write_frame};
use super::{HAVE, Network, device_of, peer_id};

pub(crate) async fn accept_loop(net: Arc<Network>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let net = net.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&net, peer, stream).await {
                tracing::warn!(%peer, "have request refused: {e}");
            }
        });
    }
}

async fn serve(net: &Network, peer: PeerId, mut stream: Stream) -> Result<(), String> {
    let Some(device) = device_of(&peer) else {
        return Err("its peer id is not an ed25519 key".into());
    };
    // The snapshot first: a stranger never waits on, or takes, the library's lock.
    if !net.members().is_current(&device) || net.lib.peer_role(&device).await.is_none() {
        return Err("it is not a current device of this family".into());
    }
    let body = read_frame(&mut stream)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the stream closed before the question")?;
    let HaveMessage::Prove { nonce, blobs } =
        wire::decode_have(&body).map_err(|e| e.to_string())?
    else {
        return Err("expected a question".into());
    };
    let me = net.lib.device_id();
    let mut proofs = Vec::with_capacity(blobs.len());
    for challenge in blobs {
        // Only blobs the asker may fetch are proven: the answer promises them.
        let proof = if net.lib.may_read_blob(&device, &challenge.hash).await {
            chunks_held(net, &challenge)
                .await
                .map(|bytes| wire::holding_proof(&nonce, &challenge.hash, &me, &bytes))
        } else {
            None
        };
        proofs.push(proof);
    }
    write_frame(&mut stream, &HaveMessage::Proofs(proofs))
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.close().await;
    Ok(())
}

/// The bytes of the challenged chunks of a blob held here in full, concatenated in order; or
/// `None` when the blob is not complete here or a chunk lies past its end.
async fn chunks_held(net: &Network, challenge: &Challenge) -> Option<Vec<u8>> {
    let store = net.lib.blobs.api_store();
    let hash = Hash::from_bytes(challenge.hash);
    let BlobStatus::Complete { size } = store.status(hash).await.ok()? else {
        return None;
    };
    read_chunks(&store, hash, size, &challenge.chunks).await
}

/// Reads chunks `chunks` (strictly ascending) of a blob of `size` bytes from `store`.
async fn read_chunks(
    store: &iroh_blobs::api::Store,
    hash: Hash,
    size: u64,
    chunks: &[u64],
) -> Option<Vec<u8>> {
    let mut ranges = RangeSet2::empty();
    let mut expected = 0;
    for &chunk in chunks {
        let range = wire::chunk_range(chunk, size)?;
        expected += range.end - range.start;
        ranges |= RangeSet2::from(range);
    }
    let bytes = store.export_ranges(hash, ranges).concatenate().await.ok()?;
    (bytes.len() as u64 == expected).then_some(bytes)
}

/// What asking the connected devices found.
#[derive(Debug, Default)]
pub(crate) struct Proven {
    /// Blobs a device that keeps originals proved it holds.
    pub held: HashSet<[u8; 32]>,
    /// Per device whose answers did not count: how many blobs it failed to prove.
    pub unproven: BTreeMap<DeviceId, usize>,
    /// Connected devices not asked because they keep no originals of these photos.
    pub not_keepers: Vec<DeviceId>,
}

impl Network {
    /// Of `blobs` (held here), those a connected device that keeps originals proves it holds in
    /// full, asked now (nothing is cached: a proof is only good for the moment it was made).
    pub(crate) async fn proven_elsewhere(&self, blobs: &[BlobRef]) -> Proven {
        let mut out = Proven::default();
        for device in self.sources().await {
            let mut eligible = Vec::new();
            for blob in blobs {
                if self.lib.keeps_originals(&device, &blob.hash).await {
                    eligible.push(*blob);
                }
            }
            if eligible.is_empty() {
                if !blobs.is_empty() {
                    out.not_keepers.push(device);
                }
                continue;
            }
            // A blob one device proved need not be proven again.
            eligible.retain(|b| !out.held.contains(&b.hash));
            for batch in eligible.chunks(MAX_CHALLENGES) {
                match self.challenge(&device, batch).await {
                    Ok((proven, failed)) => {
                        out.held.extend(proven);
                        if failed > 0 {
                            *out.unproven.entry(device).or_default() += failed;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer = %device, "cannot ask it to prove what it holds: {e}");
                        break;
                    }
                }
            }
        }
        out
    }

    /// Asks `device` to prove it holds `blobs`; returns those it proved, and how many it
    /// answered for with a proof that does not hold (a claim it could not back). Blobs it says
    /// it does not hold are neither.
    async fn challenge(
        &self,
        device: &DeviceId,
        blobs: &[BlobRef],
    ) -> Result<(Vec<[u8; 32]>, usize), String> {
        let nonce: [u8; 32] = rand::random();
        let store = self.lib.blobs.api_store();
        let mut challenges = Vec::with_capacity(blobs.len());
        let mut expected = Vec::with_capacity(blobs.len());
        for blob in blobs {
            let chunks = wire::pick_chunks(blob.len, rand::random);
            let hash = Hash::from_bytes(blob.hash);
            // Our own copy is the reference; if it cannot be read, the blob stays.
            expected.push(
                read_chunks(&store, hash, blob.len, &chunks)
                    .await
                    .map(|bytes| wire::holding_proof(&nonce, &blob.hash, device, &bytes)),
            );
            challenges.push(Challenge {
                hash: blob.hash,
                chunks,
            });
        }
        let peer = peer_id(device).ok_or("not a libp2p key")?;
        let mut stream = self
            .control
            .clone()
            .open_stream(peer, HAVE)
            .await
            .map_err(|e| e.to_string())?;
        let question = HaveMessage::Prove {
            nonce,
            blobs: challenges,
        };
        write_frame(&mut stream, &question)
            .await
            .map_err(|e| e.to_string())?;
        let body = read_frame(&mut stream)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the device closed the stream without an answer")?;
        let HaveMessage::Proofs(proofs) = wire::decode_have(&body).map_err(|e| e.to_string())?
        else {
            return Err("the answer is not a list of proofs".into());
        };
        if proofs.len() != blobs.len() {
            return Err("the answer does not match the question".into());
        }
        let mut proven = Vec::new();
        let mut failed = 0;
        for ((blob, want), got) in blobs.iter().zip(expected).zip(proofs) {
            match (want, got) {
                (Some(want), Some(got)) if want == got => proven.push(blob.hash),
                (Some(_), Some(_)) => failed += 1,
                // Not held there, or our own copy could not be read: the blob stays.
                _ => {}
            }
        }
        Ok((proven, failed))
    }
}
