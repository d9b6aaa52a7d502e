//! `/kith/blobs/1`: iroh-blobs' verified (BLAKE3/bao) get protocol over libp2p streams.
//!
//! iroh-blobs is generic over its `SendStream`/`RecvStream` traits; [`split`] implements them
//! on the halves of a `libp2p::Stream`. Two rules learned in a trial: the send half must close
//! (FIN) when iroh-blobs drops it, or every fetch waits forever; and the accept loop only
//! spawns, or streams are dropped.
//!
//! Fetching: every rendition of every photo this device may hold and lacks, thumbnails first,
//! then previews, then originals, spread over the connected family devices; a fetch that fails
//! is retried from another device. iroh-blobs skips what is already verified locally, so a
//! transfer cut by a disconnect resumes where it stopped.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bao_tree::io::BaoContentItem;
use bytes::Bytes;
use futures::io::{ReadHalf, WriteHalf};
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use iroh::endpoint::VarInt;
use iroh_blobs::api::proto::BlobStatus;
use iroh_blobs::get::fsm::{AtConnected, BlobContentNext, ConnectedNext};
use iroh_blobs::protocol::{GetRequest, Request};
use iroh_blobs::provider::events::EventSender;
use iroh_blobs::{Hash, HashAndFormat};
use kith_protocol::keys::DeviceId;
use kith_protocol::library::BlobRef;
use libp2p::{PeerId, Stream};

use super::{BLOBS, Network, device_of, peer_id};

/// Parallel fetches. Enough to keep a LAN busy with thumbnail-sized blobs, where each fetch
/// is mostly a round trip.
const PARALLEL: usize = 16;
/// Rounds over the connected devices before a blob counts as failed until the next fetch pass.
const ROUNDS: u32 = 4;
/// Fetched blobs are made durable (fsync) in batches of this many.
const DURABLE_BATCH: usize = 64;
/// Blobs up to this size are received whole into memory (see [`fetch_whole`]); with
/// [`PARALLEL`] fetches that bounds the memory held at 128 MiB. Larger ones stream to disk,
/// so a crash loses the in-flight part of at most that much.
const WHOLE_IN_MEMORY_MAX: u64 = 8 << 20;

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// Blob transfer counters for `kith status`.
#[derive(Debug, Default)]
pub struct Progress {
    /// Renditions lacking when last counted, minus those fetched since.
    pub wanted: AtomicU64,
    /// How many photos that count covered; photos that arrived since are not counted yet.
    pub counted_photos: AtomicU64,
    pub fetched: AtomicU64,
    pub failed: AtomicU64,
}

pub struct P2pRecv {
    inner: ReadHalf<Stream>,
    id: u64,
}

pub struct P2pSend {
    inner: Option<WriteHalf<Stream>>,
    id: u64,
}

pub fn split(stream: Stream) -> (P2pRecv, P2pSend) {
    let id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let (r, w) = stream.split();
    (P2pRecv { inner: r, id }, P2pSend { inner: Some(w), id })
}

impl iroh_blobs::util::RecvStream for P2pRecv {
    async fn recv_bytes(&mut self, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        let mut n = 0;
        while n < len {
            let k = self.inner.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
        }
        buf.truncate(n);
        Ok(buf.into())
    }

    async fn recv_bytes_exact(&mut self, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.inner.read_exact(&mut buf).await?;
        Ok(buf.into())
    }

    async fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf).await
    }

    fn stop(&mut self, _code: VarInt) -> io::Result<()> {
        Ok(())
    }

    fn id(&self) -> u64 {
        self.id
    }
}

impl P2pSend {
    fn half(&mut self) -> io::Result<&mut WriteHalf<Stream>> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stream was reset"))
    }
}

impl iroh_blobs::util::SendStream for P2pSend {
    async fn send_bytes(&mut self, bytes: Bytes) -> io::Result<()> {
        self.half()?.write_all(&bytes).await
    }

    async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.half()?.write_all(buf).await
    }

    async fn sync(&mut self) -> io::Result<()> {
        self.half()?.flush().await
    }

    fn reset(&mut self, _code: VarInt) -> io::Result<()> {
        // libp2p streams have no reset with a code: drop without closing.
        self.inner.take();
        Ok(())
    }

    async fn stopped(&mut self) -> io::Result<Option<VarInt>> {
        std::future::pending().await
    }

    fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for P2pSend {
    fn drop(&mut self) {
        // iroh-blobs treats dropping the writer as finishing it (QUIC semantics).
        if let Some(mut w) = self.inner.take() {
            tokio::spawn(async move {
                let _ = w.close().await;
            });
        }
    }
}

pub(crate) async fn accept_loop(net: Arc<Network>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let net = net.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&net, peer, stream).await {
                tracing::warn!(%peer, "blob request refused: {e}");
            }
        });
    }
}

async fn serve(net: &Network, peer: PeerId, stream: Stream) -> Result<(), String> {
    let Some(device) = device_of(&peer) else {
        return Err("its peer id is not an ed25519 key".into());
    };
    // A stranger is turned away by the snapshot, without waiting on the library's lock.
    if !net.members().is_current(&device) || net.lib.peer_role(&device).await.is_none() {
        return Err("it is not a current device of this family".into());
    }
    let (recv, send) = split(stream);
    let mut pair = iroh_blobs::provider::StreamPair::new(0, recv, send, EventSender::DEFAULT);
    let request = pair
        .read_request()
        .await
        .map_err(|e| format!("unreadable request: {e}"))?;
    let Request::Get(get) = request else {
        return Err("only single-blob get requests are served".into());
    };
    if !get.ranges.is_blob() {
        return Err("only single-blob get requests are served".into());
    }
    if !net.lib.may_read_blob(&device, get.hash.as_bytes()).await {
        return Err(format!(
            "blob {} is not one this device may have",
            get.hash.to_hex()
        ));
    }
    let store = net.lib.blobs.api_store();
    iroh_blobs::provider::handle_get(pair, store, get)
        .await
        .map_err(|e| format!("transfer failed: {e}"))
}

/// Fetches what this device lacks whenever something new is wanted, and every few seconds.
pub(crate) async fn fetch_loop(net: Arc<Network>) {
    let mut complete: HashSet<[u8; 32]> = HashSet::new();
    loop {
        let wait = tokio::time::timeout(Duration::from_secs(3), net.blobs_wanted.notified());
        let _ = wait.await;
        // Deleted since (or about to be): fetched again if a photo wants them back.
        for hash in net.lib.blobs.take_released() {
            complete.remove(&hash);
        }
        let sources = net.sources().await;
        let (wanted, photos) = net.lib.wanted_blobs(&mut complete).await;
        net.transfer
            .wanted
            .store(wanted.len() as u64, Ordering::Relaxed);
        net.transfer.counted_photos.store(photos, Ordering::Relaxed);
        if wanted.is_empty() || sources.is_empty() {
            continue;
        }
        fetch_all(&net, sources, wanted, &mut complete).await;
    }
}

/// Flushes a batch of fetched blobs in the background.
fn make_durable(net: &Arc<Network>, batch: Vec<BlobRef>) -> tokio::task::JoinHandle<()> {
    let net = net.clone();
    tokio::spawn(async move {
        if let Err(e) = net.lib.blobs.make_durable(batch).await {
            tracing::error!("cannot make fetched blobs durable: {e}");
        }
    })
}

async fn fetch_all(
    net: &Arc<Network>,
    mut sources: Vec<DeviceId>,
    wanted: Vec<BlobRef>,
    complete: &mut HashSet<[u8; 32]>,
) {
    // (position, blob, rounds over the devices so far)
    let mut queue: VecDeque<(usize, BlobRef, u32)> = wanted
        .into_iter()
        .enumerate()
        .map(|(i, blob)| (i, blob, 0))
        .collect();
    let mut running = FuturesUnordered::new();
    let mut unflushed = Vec::new();
    let mut flushing = Vec::new();
    // Looked at again on the first round: a device may have connected since `sources`.
    let mut seen = u64::MAX;
    loop {
        // A device that connects during a transfer takes its share from then on.
        let now = net.connection_changes.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            sources = net.sources().await;
        }
        while running.len() < PARALLEL && !sources.is_empty() {
            let Some((i, blob, rounds)) = queue.pop_front() else {
                break;
            };
            let net = net.clone();
            // Round robin over the devices that are connected, starting at a different one
            // for each blob; on failure the next one is tried.
            let order: Vec<DeviceId> = (0..sources.len())
                .map(|k| sources[(i + k) % sources.len()])
                .collect();
            running.push(async move {
                for device in order {
                    match fetch_one(&net, &device, &blob).await {
                        Ok(bytes) => {
                            net.with_peer(&device, |p| {
                                p.blobs_fetched += 1;
                                p.bytes_fetched += bytes;
                            });
                            return (i, blob, rounds, true);
                        }
                        Err(e) => tracing::debug!(peer = %device, blob = %Hash::from_bytes(blob.hash).to_hex(), "fetch failed: {e}"),
                    }
                }
                (i, blob, rounds, false)
            });
        }
        let Some((i, blob, rounds, ok)) = running.next().await else {
            break;
        };
        if !ok && rounds + 1 < ROUNDS {
            // Most failures are passing: libp2p-stream drops an inbound stream when the
            // serving side has not yet taken the one before, which happens in bursts.
            queue.push_back((i + 1, blob, rounds + 1));
        } else if ok {
            complete.insert(blob.hash);
            unflushed.push(blob);
            if unflushed.len() >= DURABLE_BATCH {
                flushing.push(make_durable(net, std::mem::take(&mut unflushed)));
            }
            net.transfer.fetched.fetch_add(1, Ordering::Relaxed);
            net.transfer.wanted.fetch_sub(1, Ordering::Relaxed);
        } else {
            net.transfer.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    flushing.push(make_durable(net, unflushed));
    for task in flushing {
        let _ = task.await;
    }
}

pub(crate) async fn fetch_one(
    net: &Network,
    device: &DeviceId,
    blob: &BlobRef,
) -> Result<u64, String> {
    let peer = peer_id(device).ok_or("not a libp2p key")?;
    let mut control = net.control.clone();
    let stream = control
        .open_stream(peer, BLOBS)
        .await
        .map_err(|e| e.to_string())?;
    let (recv, send) = split(stream);
    let store = net.lib.blobs.api_store();
    let hash = Hash::from_bytes(blob.hash);
    // Tagged before anything is read or written: a garbage collection armed by an earlier
    // release (of a blob wanted again since, e.g. a kept entry) must not sweep it mid-fetch.
    net.lib
        .blobs
        .protect(blob)
        .await
        .map_err(|e| e.to_string())?;
    let fresh = blob.len <= WHOLE_IN_MEMORY_MAX
        && matches!(
            store.status(hash).await.map_err(|e| e.to_string())?,
            BlobStatus::NotFound
        );
    let read = if fresh {
        let data = fetch_whole(&store, recv, send, blob).await?;
        let read = data.len() as u64;
        net.lib
            .blobs
            .put_fetched(blob, data)
            .await
            .map_err(|e| e.to_string())?;
        read
    } else {
        // Large, or partly here already: iroh-blobs asks for the missing ranges only and
        // writes them as they come.
        let pair = iroh_blobs::get::StreamPair::new(0, recv, send);
        let read = store
            .remote()
            .fetch(pair, HashAndFormat::raw(hash))
            .await
            .map_err(|e| e.to_string())?
            .payload_bytes_read;
        net.lib.blobs.adopt(blob).await.map_err(|e| e.to_string())?;
        read
    };
    Ok(read)
}

/// Receives a whole blob into memory, each chunk verified against the hash as it arrives, to be
/// stored with one write. iroh-blobs' streaming path creates and syncs three files per blob
/// (data, outboard, sizes) and writes chunk by chunk: on a 2-core VM that was over a third of
/// a transfer's CPU. If the transfer breaks off, the verified part is kept as a partial blob,
/// so the next attempt (through the streaming path) resumes instead of starting over.
async fn fetch_whole(
    store: &iroh_blobs::api::Store,
    recv: P2pRecv,
    send: P2pSend,
    blob: &BlobRef,
) -> Result<Vec<u8>, String> {
    let hash = Hash::from_bytes(blob.hash);
    let connected = AtConnected::new(
        tokio::time::Instant::now(),
        recv,
        send,
        GetRequest::blob(hash),
        Default::default(),
    );
    let ConnectedNext::StartRoot(root) = connected.next().await.map_err(|e| e.to_string())? else {
        return Err("the device answered with no blob".into());
    };
    let (mut content, size) = root.next().next().await.map_err(|e| e.to_string())?;
    let Some(size) = NonZeroU64::new(size).filter(|s| s.get() == blob.len) else {
        return Err(format!(
            "the device offers {size} bytes where the library says {}",
            blob.len
        ));
    };
    let mut items = Vec::new();
    loop {
        match content.next().await {
            BlobContentNext::More((next, Ok(item))) => {
                items.push(item);
                content = next;
            }
            BlobContentNext::More((_, Err(e))) => {
                keep_partial(store, hash, size, items).await;
                return Err(format!("transfer broke off: {e}"));
            }
            BlobContentNext::Done(_) => break,
        }
    }
    let mut data = vec![0u8; blob.len as usize];
    let mut filled = 0;
    for item in items {
        if let BaoContentItem::Leaf(leaf) = item {
            // The decoder checked each leaf against the tree, whose size is `blob.len`.
            let at = leaf.offset as usize;
            let into = data
                .get_mut(at..at + leaf.data.len())
                .ok_or("a chunk lies beyond the blob's end")?;
            into.copy_from_slice(&leaf.data);
            filled += leaf.data.len();
        }
    }
    if filled != data.len() {
        return Err("the device sent less than the whole blob".into());
    }
    Ok(data)
}

/// Hands the verified part of a broken-off transfer to the store as a partial blob.
async fn keep_partial(
    store: &iroh_blobs::api::Store,
    hash: Hash,
    size: NonZeroU64,
    items: Vec<BaoContentItem>,
) {
    if !items.iter().any(|i| matches!(i, BaoContentItem::Leaf(_))) {
        return;
    }
    let kept = async {
        let handle = store
            .import_bao(hash, size, 32)
            .await
            .map_err(|e| e.to_string())?;
        for item in items {
            handle.tx.send(item).await.map_err(|e| e.to_string())?;
        }
        drop(handle.tx);
        handle
            .rx
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    };
    if let Err(e) = kept.await {
        tracing::warn!(blob = %hash.to_hex(), "cannot keep a partly fetched blob: {e}");
    }
}

impl Network {
    /// Connected family devices that may hold blobs.
    pub(crate) async fn sources(&self) -> Vec<DeviceId> {
        let mut out = Vec::new();
        for (device, status) in self.peer_status() {
            if status.connected && self.lib.peer_role(&device).await.is_some() {
                out.push(device);
            }
        }
        out
    }
}
