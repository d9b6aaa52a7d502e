//! `/kith/have/1`: asks other devices which blobs they hold in full, so a device sets its own
//! copy of an original aside only when another device keeps one (`kith free-space`).

use std::collections::HashSet;
use std::sync::Arc;

use futures::{AsyncWriteExt, StreamExt};
use kith_protocol::keys::DeviceId;
use kith_protocol::library::BlobRef;
use kith_protocol::wire::{self, HaveMessage, MAX_IDS};
use libp2p::{PeerId, Stream};

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
    if net.lib.peer_role(&device).await.is_none() {
        return Err("it is not a current device of this family".into());
    }
    let body = read_frame(&mut stream)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the stream closed before the question")?;
    let HaveMessage::Ask(hashes) = wire::decode_have(&body).map_err(|e| e.to_string())? else {
        return Err("expected a question".into());
    };
    let mut held = Vec::with_capacity(hashes.len());
    for hash in hashes {
        // Only blobs the asker may fetch are confirmed: the answer promises them.
        let ok = net.lib.may_read_blob(&device, &hash).await
            && net
                .lib
                .blobs
                .has(&BlobRef { hash, len: 0 })
                .await
                .unwrap_or(false);
        held.push(ok);
    }
    write_frame(&mut stream, &HaveMessage::Held(held))
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.close().await;
    Ok(())
}

impl Network {
    /// Of `hashes`, those a connected family device holds in full (asked now, not cached).
    pub(crate) async fn held_elsewhere(&self, hashes: &[[u8; 32]]) -> HashSet<[u8; 32]> {
        let mut out = HashSet::new();
        for device in self.sources().await {
            for chunk in hashes.chunks(MAX_IDS) {
                match self.ask_have(&device, chunk).await {
                    Ok(flags) => out.extend(
                        chunk
                            .iter()
                            .zip(flags)
                            .filter(|(_, held)| *held)
                            .map(|(h, _)| *h),
                    ),
                    Err(e) => {
                        tracing::debug!(peer = %device, "cannot ask which blobs it holds: {e}");
                        break;
                    }
                }
            }
        }
        out
    }

    async fn ask_have(&self, device: &DeviceId, hashes: &[[u8; 32]]) -> Result<Vec<bool>, String> {
        let peer = peer_id(device).ok_or("not a libp2p key")?;
        let mut stream = self
            .control
            .clone()
            .open_stream(peer, HAVE)
            .await
            .map_err(|e| e.to_string())?;
        write_frame(&mut stream, &HaveMessage::Ask(hashes.to_vec()))
            .await
            .map_err(|e| e.to_string())?;
        let body = read_frame(&mut stream)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the device closed the stream without an answer")?;
        match wire::decode_have(&body).map_err(|e| e.to_string())? {
            HaveMessage::Held(flags) if flags.len() == hashes.len() => Ok(flags),
            _ => Err("the answer does not match the question".into()),
        }
    }
}
