//! `/kith/sync/1`: keeping documents and the membership log the same on every family device.
//!
//! Each side of a family connection opens one stream to the other and *pulls*: the serving
//! side offers its op ids and a digest per document the puller may read (by the membership
//! log); the puller asks for what differs, then stays subscribed while the server pushes every
//! new op and change as it is committed, and fresh digests after new ops (a share may have
//! opened documents to the puller). Keys are not sent here: they are envelopes inside the ops.
//! Two pulls, one per direction, make sync symmetric.
//!
//! `CaughtUp` is a barrier: the puller sends it after its requests, the server echoes it after
//! answering them. The second echo (after the change requests) means the puller has caught up.
//!
//! **Invariant:** on every connection membership ops travel before document changes. The
//! puller asks for the ops it lacks before its first `CaughtUp` and for changes only after the
//! ids that answer its `WantIds`; the server answers in order and pushes nothing before it has
//! answered that first `CaughtUp`. So a device that had not heard of a removal or a new device
//! judges the changes it is sent by the log it is about to hold.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use kith_protocol::keys::{DeviceId, FamilyId};
use kith_protocol::wire::{self, BATCH_BYTES, MAX_IDS, SYNC_VERSION, SyncMessage};
use libp2p::{PeerId, Stream};
use tokio::sync::broadcast::error::RecvError;

use super::frame::{FrameError, read_frame, write_frame};
use super::{Network, SYNC, device_of};
use crate::library::Update;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
    #[error("cannot open a sync stream: {0}")]
    Open(String),
    #[error(transparent)]
    Node(#[from] crate::error::Error),
}

/// Frames read ahead of the one being handled.
const READ_AHEAD: usize = 16;
/// Most bytes of sealed changes a puller takes in with one commit. Bounded because the library
/// stays locked while they are checked, applied and indexed.
const GATHER_BYTES: usize = 4 * BATCH_BYTES;

/// Serves every incoming sync stream on its own task (the accept loop only spawns).
pub(crate) async fn accept_loop(net: Arc<Network>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let net = net.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&net, peer, stream).await {
                tracing::warn!(%peer, "sync stream ended: {e}");
            }
        });
    }
}

async fn serve(net: &Network, peer: PeerId, mut stream: Stream) -> Result<(), SyncError> {
    let Some(device) = device_of(&peer) else {
        return refuse(stream, "its peer id is not an ed25519 key").await;
    };
    // A stranger is turned away by the snapshot, without waiting on the library's lock.
    if !net.members().is_current(&device) || net.lib.peer_role(&device).await.is_none() {
        return refuse(stream, "it is not a current device of this family").await;
    }
    let family = net.lib.family_id().await;
    expect_hello(&mut stream, family).await?;
    // Subscribe before offering, so nothing committed in between is missed.
    let mut updates = net.lib.subscribe();
    send_hello(&mut stream, family).await?;
    offer(net, &device, &mut stream).await?;
    let (mut reader, mut writer) = futures::AsyncReadExt::split(stream);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SyncMessage>(16);
    // Frames from the puller are read on their own task so a slow write never stalls reading.
    let read_task = tokio::spawn(async move {
        loop {
            match read_frame(&mut reader).await {
                Ok(Some(body)) => match wire::decode_sync(&body) {
                    Ok(m) => {
                        if tx.send(m).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(SyncError::from(FrameError::from(e))),
                },
                Ok(None) => return Ok(()),
                Err(e) => return Err(SyncError::from(e)),
            }
        }
    });
    // What is committed meanwhile is pushed only once the puller's first `CaughtUp` is
    // answered: it asks for the ops it lacks before that barrier and requests are answered in
    // order, so every op it asked for reaches it before any document change (see the module
    // docs). Updates wait in the subscription; too many turn into a fresh offer (`Lagged`).
    let mut pushing = false;
    let result: Result<(), SyncError> = async {
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    let barrier = matches!(message, SyncMessage::CaughtUp);
                    answer(net, &device, message, &mut writer).await?;
                    pushing |= barrier;
                }
                update = updates.recv(), if pushing => match update {
                    Ok(update) => push(net, &device, update, &mut writer).await?,
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(peer = %device, "sync push lagged by {n} updates; offering again");
                        offer(net, &device, &mut writer).await?;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
    .await;
    let read_result = if read_task.is_finished() {
        read_task.await.ok()
    } else {
        read_task.abort();
        None
    };
    match (result, read_result) {
        (Err(e), _) | (Ok(()), Some(Err(e))) => Err(e),
        _ => Ok(()),
    }
}

async fn refuse(mut stream: Stream, why: &str) -> Result<(), SyncError> {
    let _ = stream.close().await;
    Err(SyncError::Protocol(format!("refused a sync stream: {why}")))
}

/// Op ids, and digests of what `device` may read (keys travel inside the ops).
async fn offer<W: futures::AsyncWrite + Unpin>(
    net: &Network,
    device: &DeviceId,
    w: &mut W,
) -> Result<(), SyncError> {
    for chunk in net.lib.op_ids().await.chunks(MAX_IDS) {
        write_frame(w, &SyncMessage::OpIds(chunk.to_vec())).await?;
    }
    send_digests(net, device, w).await
}

/// A digest of every document held here that `device` may read.
async fn send_digests<W: futures::AsyncWrite + Unpin>(
    net: &Network,
    device: &DeviceId,
    w: &mut W,
) -> Result<(), SyncError> {
    let digests = net.lib.offer_for(device).await;
    // Always at least one Digests frame: the puller starts its barrier on it.
    if digests.is_empty() {
        write_frame(w, &SyncMessage::Digests(Vec::new())).await?;
    }
    for chunk in digests.chunks(MAX_IDS) {
        write_frame(w, &SyncMessage::Digests(chunk.to_vec())).await?;
    }
    Ok(())
}

async fn answer<W: futures::AsyncWrite + Unpin>(
    net: &Network,
    device: &DeviceId,
    message: SyncMessage,
    w: &mut W,
) -> Result<(), SyncError> {
    match message {
        SyncMessage::WantOps(ids) => {
            send_batched(w, net.lib.ops_by_id(&ids).await, SyncMessage::Ops).await
        }
        SyncMessage::WantIds(docs) => {
            for doc in docs {
                if !net.lib.may_read(device, &doc).await {
                    tracing::warn!(peer = %device, %doc, "asked for a document it may not read");
                    continue;
                }
                let ids = net.lib.change_ids(&doc).await;
                for chunk in ids.chunks(MAX_IDS) {
                    write_frame(
                        w,
                        &SyncMessage::Ids {
                            doc,
                            ids: chunk.to_vec(),
                        },
                    )
                    .await?;
                }
            }
            Ok(())
        }
        SyncMessage::Want { doc, ids } => {
            if !net.lib.may_read(device, &doc).await {
                tracing::warn!(peer = %device, %doc, "asked for changes of a document it may not read");
                return Ok(());
            }
            let changes = net.lib.changes_by_id(&doc, &ids)?;
            send_batched(w, changes, SyncMessage::Changes).await
        }
        SyncMessage::CaughtUp => Ok(write_frame(w, &SyncMessage::CaughtUp).await?),
        other => Err(SyncError::Protocol(format!(
            "a puller sent {}",
            message_name(&other)
        ))),
    }
}

/// Pushes what was just committed here, filtered to what `device` may read.
async fn push<W: futures::AsyncWrite + Unpin>(
    net: &Network,
    device: &DeviceId,
    update: Update,
    w: &mut W,
) -> Result<(), SyncError> {
    if net.lib.peer_role(device).await.is_none() {
        return Err(SyncError::Protocol(
            "the peer is no longer a family device".into(),
        ));
    }
    match update {
        Update::Ops(ops) if !ops.is_empty() => {
            let bytes = ops.iter().map(|o| o.to_bytes()).collect();
            send_batched(w, bytes, SyncMessage::Ops).await?;
            // New ops may let the peer read documents it could not before (a share, a new
            // device): it learns of them, and of what they hold, from fresh digests.
            send_digests(net, device, w).await
        }
        Update::Changes(changes) => {
            let mut out = Vec::new();
            for c in changes {
                if net.lib.may_read(device, &c.header().doc).await {
                    out.push(c.into_bytes());
                }
            }
            send_batched(w, out, SyncMessage::Changes).await
        }
        Update::Ops(_) => Ok(()),
    }
}

async fn send_batched<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    items: Vec<Vec<u8>>,
    wrap: fn(Vec<Vec<u8>>) -> SyncMessage,
) -> Result<(), SyncError> {
    let mut batch = Vec::new();
    let mut size = 0;
    for item in items {
        if !batch.is_empty() && (size + item.len() > BATCH_BYTES || batch.len() >= MAX_IDS) {
            write_frame(w, &wrap(std::mem::take(&mut batch))).await?;
            size = 0;
        }
        size += item.len() + 8;
        batch.push(item);
    }
    if !batch.is_empty() {
        write_frame(w, &wrap(batch)).await?;
    }
    Ok(())
}

fn message_name(m: &SyncMessage) -> &'static str {
    match m {
        SyncMessage::Hello { .. } => "Hello",
        SyncMessage::OpIds(_) => "OpIds",
        SyncMessage::WantOps(_) => "WantOps",
        SyncMessage::Ops(_) => "Ops",
        SyncMessage::Digests(_) => "Digests",
        SyncMessage::WantIds(_) => "WantIds",
        SyncMessage::Ids { .. } => "Ids",
        SyncMessage::Want { .. } => "Want",
        SyncMessage::Changes(_) => "Changes",
        SyncMessage::CaughtUp => "CaughtUp",
    }
}

async fn read_sync<R: futures::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<SyncMessage>, SyncError> {
    match read_frame(r).await? {
        Some(body) => Ok(Some(wire::decode_sync(&body).map_err(FrameError::from)?)),
        None => Ok(None),
    }
}

async fn send_hello(stream: &mut Stream, family: FamilyId) -> Result<(), SyncError> {
    let hello = SyncMessage::Hello {
        version: SYNC_VERSION,
        family,
    };
    Ok(write_frame(stream, &hello).await?)
}

/// Reads the other side's first frame: a Hello for this family and protocol version.
async fn expect_hello(stream: &mut Stream, family: FamilyId) -> Result<(), SyncError> {
    match read_sync(stream).await? {
        Some(SyncMessage::Hello {
            version,
            family: theirs,
        }) if theirs == family && version == SYNC_VERSION => Ok(()),
        other => Err(SyncError::Protocol(format!(
            "expected a Hello of this family and sync version {SYNC_VERSION}, got {other:?}"
        ))),
    }
}

/// Keeps pulling from `device` while it stays connected, reopening the stream after errors.
pub(crate) async fn pull_loop(net: Arc<Network>, device: DeviceId, peer: PeerId) {
    let mut pause = Duration::from_millis(200);
    loop {
        match pull(&net, &device, peer).await {
            Ok(()) => tracing::debug!(peer = %device, "sync stream closed"),
            Err(e) => tracing::warn!(peer = %device, "sync with this device stopped: {e}"),
        }
        let connected = net.peer_status().get(&device).is_some_and(|p| p.connected);
        if !connected {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn pull(net: &Network, device: &DeviceId, peer: PeerId) -> Result<(), SyncError> {
    let mut control = net.control.clone();
    let mut stream = control
        .open_stream(peer, SYNC)
        .await
        .map_err(|e| SyncError::Open(e.to_string()))?;
    let family = net.lib.family_id().await;
    send_hello(&mut stream, family).await?;
    expect_hello(&mut stream, family).await?;
    let (mut reader, mut stream) = futures::AsyncReadExt::split(stream);
    // Frames are read and decoded on their own task, so the next ones arrive while changes
    // are being applied, and changes already waiting can be taken in together.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SyncMessage, SyncError>>(READ_AHEAD);
    let read_task = tokio::spawn(async move {
        loop {
            let message = read_sync(&mut reader).await.transpose();
            let end = !matches!(message, Some(Ok(_)));
            if let Some(message) = message
                && tx.send(message).await.is_err()
            {
                return;
            }
            if end {
                return;
            }
        }
    });
    let result = pull_frames(net, device, &mut rx, &mut stream).await;
    read_task.abort();
    result
}

async fn pull_frames<W: futures::AsyncWrite + Unpin>(
    net: &Network,
    device: &DeviceId,
    rx: &mut tokio::sync::mpsc::Receiver<Result<SyncMessage, SyncError>>,
    stream: &mut W,
) -> Result<(), SyncError> {
    // 0: digests not seen yet; 1: waiting for the echo after WantIds; 2: after Wants.
    let mut barrier = 0u8;
    // A frame read while gathering changes that is not one of them: handled next.
    let mut next: Option<Result<SyncMessage, SyncError>> = None;
    loop {
        let message = match next.take() {
            Some(m) => m?,
            None => match rx.recv().await {
                Some(m) => m?,
                None => return Ok(()),
            },
        };
        match message {
            SyncMessage::OpIds(ids) => {
                let have = net.lib.op_ids().await;
                let missing: Vec<_> = ids.into_iter().filter(|id| !have.contains(id)).collect();
                if !missing.is_empty() {
                    write_frame(stream, &SyncMessage::WantOps(missing)).await?;
                }
            }
            SyncMessage::Ops(items) => {
                let got = net.lib.receive_ops(device, items).await?;
                if got.rejected > 0 {
                    net.with_peer(device, |p| p.changes_rejected += got.rejected as u64);
                }
                if got.applied > 0 {
                    // Keys that came with them may open changes that reference new photos.
                    net.blobs_wanted.notify_one();
                }
            }
            SyncMessage::Digests(digests) => {
                let mut differ = Vec::new();
                for d in digests {
                    if net.lib.digest(&d.doc).await != d {
                        differ.push(d.doc);
                    }
                }
                for chunk in differ.chunks(MAX_IDS) {
                    write_frame(stream, &SyncMessage::WantIds(chunk.to_vec())).await?;
                }
                barrier = 1;
                write_frame(stream, &SyncMessage::CaughtUp).await?;
            }
            SyncMessage::Ids { doc, ids } => {
                let missing = net.lib.missing_changes(&doc, &ids).await;
                if !missing.is_empty() {
                    write_frame(stream, &SyncMessage::Want { doc, ids: missing }).await?;
                }
            }
            SyncMessage::Changes(mut items) => {
                // Changes frames already read are taken in with this one: one commit and one
                // re-index of each document for all of them.
                let mut size: usize = items.iter().map(Vec::len).sum();
                while size < GATHER_BYTES {
                    match rx.try_recv() {
                        Ok(Ok(SyncMessage::Changes(more))) => {
                            size += more.iter().map(Vec::len).sum::<usize>();
                            items.extend(more);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let got = net.lib.receive_changes(device, items).await?;
                net.with_peer(device, |p| {
                    p.changes_received += got.applied as u64;
                    p.changes_rejected += got.rejected as u64;
                });
                if got.applied > 0 {
                    net.blobs_wanted.notify_one();
                }
            }
            SyncMessage::CaughtUp => match barrier {
                1 => {
                    barrier = 2;
                    write_frame(stream, &SyncMessage::CaughtUp).await?;
                }
                2 => {
                    barrier = 0;
                    net.with_peer(device, |p| p.caught_up = true);
                    tracing::info!(peer = %device, "caught up");
                }
                _ => {}
            },
            other => {
                return Err(SyncError::Protocol(format!(
                    "a server sent {}",
                    message_name(&other)
                )));
            }
        }
    }
}
