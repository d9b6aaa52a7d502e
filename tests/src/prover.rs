//! A family device, played by a [`RawPeer`] with that device's real key, that answers the
//! questions a node asks before `kith free-space` sets an original aside: both the claim-only
//! `/kith/have/1` (every blob asked about is "held") and `/kith/have/2`'s proofs, made over as
//! much of each blob as the test lets it hold. Tests switch what it holds while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use kith_protocol::keys::DeviceId;
use kith_protocol::wire::{self, HaveMessage};
use libp2p::Stream;
use serde::Serialize;

use crate::peer::RawPeer;

/// How much of each blob the fake device holds when it answers a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Nothing: it claims every blob and answers with made-up proofs.
    Nothing,
    /// The first half of each blob's bytes (and the rest as zeros).
    FirstHalf,
    /// Every byte of the blobs it was given.
    Everything,
}

/// The answering loop; dropped, it stops.
pub struct FakeHolder {
    pub holding: Arc<Mutex<Holding>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHolder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `/kith/have/1`'s messages as main spoke them, to answer a node that still asks for claims.
#[derive(Serialize)]
enum ClaimMessage {
    #[allow(dead_code)]
    Ask(Vec<[u8; 32]>),
    Held(Vec<bool>),
}

impl FakeHolder {
    /// Answers the node behind `peer` as device `me`, holding `blobs` (hash → ciphertext) as
    /// `holding` says.
    pub fn serve(
        peer: &RawPeer,
        me: DeviceId,
        blobs: HashMap<[u8; 32], Vec<u8>>,
        holding: Holding,
    ) -> Result<FakeHolder> {
        let mut claims = peer.accept("/kith/have/1")?;
        let mut proofs = peer.accept(wire::HAVE_PROTOCOL)?;
        let holding = Arc::new(Mutex::new(holding));
        let now = holding.clone();
        let blobs = Arc::new(blobs);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some((_, stream)) = claims.next() => {
                        tokio::spawn(answer_claim(stream));
                    }
                    Some((_, stream)) = proofs.next() => {
                        let holding = *now.lock().unwrap_or_else(|e| e.into_inner());
                        tokio::spawn(answer_proof(stream, me, blobs.clone(), holding));
                    }
                    else => break,
                }
            }
        });
        Ok(FakeHolder { holding, task })
    }

    pub fn set(&self, holding: Holding) {
        *self.holding.lock().unwrap_or_else(|e| e.into_inner()) = holding;
    }
}

async fn read_body(stream: &mut Stream) -> Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let mut body = vec![0u8; wire::frame_len(prefix)?];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Says "held" to every hash of a `/kith/have/1` question.
async fn answer_claim(mut stream: Stream) -> Result<()> {
    let body = read_body(&mut stream).await?;
    // postcard: the variant (0, Ask), then the list's length as a varint.
    let mut n = 0usize;
    for (i, b) in body.iter().skip(1).take(3).enumerate() {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    let answer = wire::encode_frame(&ClaimMessage::Held(vec![true; n]))?;
    stream.write_all(&answer).await?;
    stream.close().await?;
    Ok(())
}

/// Answers a `/kith/have/2` question with a proof for every blob, made over what it holds.
async fn answer_proof(
    mut stream: Stream,
    me: DeviceId,
    blobs: Arc<HashMap<[u8; 32], Vec<u8>>>,
    holding: Holding,
) -> Result<()> {
    let body = read_body(&mut stream).await?;
    let HaveMessage::Prove {
        nonce,
        blobs: challenges,
    } = wire::decode_have(&body)?
    else {
        anyhow::bail!("not a question");
    };
    let mut proofs = Vec::new();
    for c in challenges {
        let proof = match (holding, blobs.get(&c.hash)) {
            (Holding::Nothing, _) | (_, None) => Some([0xab; 32]),
            (Holding::FirstHalf, Some(data)) => {
                let mut half = data.clone();
                let keep = half.len() / 2;
                half[keep..].fill(0);
                Some(proof_over(&nonce, &c, &me, &half)?)
            }
            (Holding::Everything, Some(data)) => Some(proof_over(&nonce, &c, &me, data)?),
        };
        proofs.push(proof);
    }
    stream
        .write_all(&wire::encode_frame(&HaveMessage::Proofs(proofs))?)
        .await?;
    stream.close().await?;
    Ok(())
}

fn proof_over(
    nonce: &[u8; 32],
    challenge: &wire::Challenge,
    me: &DeviceId,
    data: &[u8],
) -> Result<[u8; 32]> {
    let len = data.len() as u64;
    let mut bytes = Vec::new();
    for &chunk in &challenge.chunks {
        let range = wire::chunk_range(chunk, len).context("a chunk past the blob's end")?;
        bytes.extend_from_slice(&data[range.start as usize..range.end as usize]);
    }
    Ok(wire::holding_proof(nonce, &challenge.hash, me, &bytes))
}
