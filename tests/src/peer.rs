//! A bare libp2p peer for tests: it speaks kith's transports but none of its rules, so tests can
//! send what a real node never would (garbage, oversized and forged frames, requests from
//! outsiders) and see what comes back.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use kith_protocol::keys::{DeviceId, FamilyId};
use kith_protocol::wire::{self, SYNC_VERSION, SyncMessage};
use libp2p::{Multiaddr, PeerId, StreamProtocol, swarm::SwarmEvent};
use serde_json::Value;

use crate::TestNode;

/// A running node as a raw peer reaches it: its peer id and TCP address, its family and device.
pub struct Target {
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub family: FamilyId,
    pub device: DeviceId,
}

impl Target {
    /// The running `node`, from its `kith status --json`.
    pub fn of(node: &TestNode) -> Result<Target> {
        Target::from_status(&node.json(&["status", "--json"])?)
    }

    /// The node whose `kith status --json` printed `status`.
    pub fn from_status(status: &Value) -> Result<Target> {
        let device: DeviceId = status["device_id"].as_str().context("device id")?.parse()?;
        Ok(Target {
            peer: kith_node::net::peer_id(&device).context("peer id")?,
            addr: status["sync"]["listen"][0]
                .as_str()
                .context("listen addr")?
                .parse()?,
            family: status["family_id"].as_str().context("family id")?.parse()?,
            device,
        })
    }
}

/// A tokio runtime (two worker threads) for a synchronous test to drive raw peers on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The framed Hello a device of `family` opens a sync stream with.
pub fn hello(family: FamilyId) -> Result<Vec<u8>> {
    Ok(wire::encode_frame(&SyncMessage::Hello {
        version: SYNC_VERSION,
        family,
    })?)
}

pub struct RawPeer {
    control: libp2p_stream::Control,
    target: PeerId,
    sync_in: libp2p_stream::IncomingStreams,
    _driver: tokio::task::JoinHandle<()>,
}

impl RawPeer {
    /// Connects to `target` at `addr` with `keypair` (a fresh one for an outsider, a family
    /// device's own for a forging insider).
    pub async fn connect(
        keypair: libp2p::identity::Keypair,
        target: PeerId,
        addr: Multiaddr,
    ) -> Result<RawPeer> {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
            .build();
        let mut control = swarm.behaviour().new_control();
        let sync_in = control
            .accept(StreamProtocol::new("/kith/sync/1"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(target)
            .addresses(vec![addr])
            .build();
        swarm.dial(opts)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let driver = tokio::spawn(async move {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => bail!("cannot connect: {e}"),
            _ => bail!("no connection within 20 s"),
        }
        Ok(RawPeer {
            control,
            target,
            sync_in,
            _driver: driver,
        })
    }

    /// Opens a stream on `protocol`, writes `bytes`, half-closes, and returns what comes back
    /// until the other side closes (or an error, which counts as nothing).
    pub async fn exchange(&self, protocol: &'static str, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut control = self.control.clone();
        let mut stream = match control
            .open_stream(self.target, StreamProtocol::new(protocol))
            .await
        {
            Ok(s) => s,
            Err(e) => bail!("stream refused: {e}"),
        };
        let _ = stream.write_all(bytes).await;
        let _ = stream.close().await;
        let mut out = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        read.context("the node neither answered nor closed within 10 s")?
            .ok();
        Ok(out)
    }
}

impl RawPeer {
    /// Opens a stream on `protocol` and hands it over, for a test to write and read at its own
    /// pace (a trickle, a stream left open).
    pub async fn open(&self, protocol: &'static str) -> Result<libp2p::Stream> {
        let mut control = self.control.clone();
        match control
            .open_stream(self.target, StreamProtocol::new(protocol))
            .await
        {
            Ok(s) => Ok(s),
            Err(e) => bail!("stream refused: {e}"),
        }
    }

    /// Waits for the node to open its sync (pull) stream to us, reads its first frame, then
    /// writes `frames` as if we were serving, and reads until the node closes or 10 s pass.
    pub async fn serve_sync(&mut self, frames: &[Vec<u8>]) -> Result<()> {
        let (_, mut stream) = tokio::time::timeout(Duration::from_secs(20), self.sync_in.next())
            .await
            .context("the node opened no sync stream within 20 s")?
            .context("incoming streams ended")?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await?;
        let mut hello = vec![0u8; u32::from_be_bytes(prefix) as usize];
        stream.read_exact(&mut hello).await?;
        for f in frames {
            if stream.write_all(f).await.is_err() {
                break;
            }
        }
        let _ = stream.flush().await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        Ok(())
    }
}

impl RawPeer {
    /// Waits for the node to open its sync (pull) stream to us, reads its Hello and answers
    /// with `hello` (a framed Hello), then hands the stream over: the test serves frames at its
    /// own pace and keeps the stream open while it watches the node.
    pub async fn accept_sync(&mut self, hello: &[u8]) -> Result<libp2p::Stream> {
        let (_, mut stream) = tokio::time::timeout(Duration::from_secs(20), self.sync_in.next())
            .await
            .context("the node opened no sync stream within 20 s")?
            .context("incoming streams ended")?;
        read_frame(&mut stream).await?;
        stream.write_all(hello).await?;
        stream.flush().await?;
        Ok(stream)
    }
}

/// Reads one kith frame's body from `stream` (within 20 s).
pub async fn read_frame(stream: &mut libp2p::Stream) -> Result<Vec<u8>> {
    let read = async {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await?;
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        stream.read_exact(&mut body).await?;
        anyhow::Ok(body)
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .context("no frame within 20 s")?
}

/// A kith frame: 4-byte big-endian length, then the body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

impl RawPeer {
    /// Takes the streams the node opens to us on `protocol` (to answer them as a test wants).
    pub fn accept(&self, protocol: &'static str) -> Result<libp2p_stream::IncomingStreams> {
        self.control
            .clone()
            .accept(StreamProtocol::new(protocol))
            .map_err(|e| anyhow::anyhow!("cannot accept {protocol}: {e}"))
    }
}
