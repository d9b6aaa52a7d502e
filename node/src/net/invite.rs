//! `/kith/invite/2`: a device that holds a ticket joins the family.
//!
//! The joiner dials the inviter at the ticket's addresses, with the inviter's device id as the
//! expected peer id (Noise checks it), and sends a proof of the ticket's secret bound to both
//! device ids and its X25519 key — never the secret. The inviter answers with a welcome (the
//! family's photo-id secret, where the other devices are) and then the membership log in pages
//! (it holds the envelopes of the keys the new device may read); the joiner records it all and
//! confirms, which uses the invite up. A joiner whose answer was lost asks again with the same
//! device key and ticket.
//!
//! Strangers reach this protocol, so it is bounded: [`STREAMS_PER_PEER`] and [`STREAMS`]
//! requests at once (more are dropped unread), requests of at most `MAX_REQUEST_FRAME` bytes
//! read within [`REQUEST_TIMEOUT`], [`PEER_FAILURES_PER_MINUTE`] failed requests per peer and
//! `MAX_FAILURES` wrong proofs per invite; and everything up to a valid proof is answered
//! without the library's lock.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use kith_protocol::keys::{DeviceId, DeviceSecret, PersonId};
use kith_protocol::membership::{self, SignedOp};
use kith_protocol::ticket::{InviteId, Ticket, invite_proof};
use kith_protocol::wire::{self, DeviceAddrs, InviteMessage, MAX_REQUEST_FRAME, Refusal, Welcome};
use libp2p::{Multiaddr, PeerId, Stream};

use super::frame::{read_frame, read_frame_within, write_frame};
use super::{INVITE, Network, build_swarm, device_of, keypair, peer_id};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::invites::JoinRequest;
use crate::library::Library;
use crate::library::now_ms;
use crate::store::{Identity, PeerRecord, Store, WriteBatch};
use crate::views::InitView;

/// Failed invite requests one peer may make per minute.
const PEER_FAILURES_PER_MINUTE: u32 = 5;
/// Invite requests answered at once for one peer, and for all peers together. A joiner needs
/// one; more from one peer are dropped unread.
pub const STREAMS_PER_PEER: usize = 2;
pub const STREAMS: usize = 32;
/// Time a peer has to send its (small) request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the joiner has to record the log and confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// Peers whose failures are remembered; older entries are forgotten first.
const REMEMBERED_PEERS: usize = 4096;
/// Time a joiner waits for the whole answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn accept_loop(net: Arc<Network>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let Some(slot) = StreamSlot::take(&net, peer) else {
            tracing::debug!(%peer, "dropped an invite stream: too many at once");
            drop(stream);
            continue;
        };
        let net = net.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve(&net, peer, stream).await {
                tracing::warn!(%peer, "invite request rejected: {e}");
            }
        });
    }
}

/// One invite stream being answered; counted until dropped.
struct StreamSlot {
    net: Arc<Network>,
    peer: PeerId,
}

impl StreamSlot {
    fn take(net: &Arc<Network>, peer: PeerId) -> Option<StreamSlot> {
        let mut streams = net.invite_streams.lock().ok()?;
        let total: usize = streams.values().sum();
        let mine = streams.entry(peer).or_insert(0);
        if total >= STREAMS || *mine >= STREAMS_PER_PEER {
            return None;
        }
        *mine += 1;
        Some(StreamSlot {
            net: net.clone(),
            peer,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.net.invite_streams.lock()
            && let Some(n) = streams.get_mut(&self.peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(&self.peer);
            }
        }
    }
}

async fn serve(net: &Network, peer: PeerId, mut stream: Stream) -> Result<(), String> {
    let device = device_of(&peer).ok_or("its peer id is not an ed25519 key")?;
    if net.peer_limited(&peer) {
        let reply = InviteMessage::Refused(Refusal::TooManyAttempts);
        let _ = write_frame(&mut stream, &reply).await;
        return Err("too many failed attempts from this peer".into());
    }
    let request = tokio::time::timeout(
        REQUEST_TIMEOUT,
        read_frame_within(&mut stream, MAX_REQUEST_FRAME),
    )
    .await;
    let body = match request {
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => return Err("the stream closed before a request".into()),
        Ok(Err(e)) => {
            net.note_failure(&peer);
            return Err(e.to_string());
        }
        Err(_) => {
            net.note_failure(&peer);
            return Err(format!("no request within {REQUEST_TIMEOUT:?}"));
        }
    };
    let message = wire::decode_invite(&body).map_err(|e| {
        net.note_failure(&peer);
        e.to_string()
    })?;
    let InviteMessage::Join {
        invite,
        family,
        joiner_x25519,
        person_name,
        device_name,
        proof,
    } = message
    else {
        net.note_failure(&peer);
        return Err("expected a Join request".into());
    };
    if !kith_protocol::keys::x25519_public_key_is_valid(&joiner_x25519) {
        net.note_failure(&peer);
        let _ = write_frame(&mut stream, &InviteMessage::Refused(Refusal::NotAllowed)).await;
        return Err("its X25519 key is a low-order point, which could not keep keys secret".into());
    }
    let req = JoinRequest {
        device,
        invite,
        family,
        x25519: joiner_x25519,
        person_name,
        device_name,
        proof,
    };
    // Up to a valid proof, nothing here waits on the library's lock.
    let checked = net
        .lib
        .check_join(net.members().family, &req, net.failures_of(&invite));
    let answer = match checked {
        Ok(()) => net.lib.admit(req).await,
        Err(refusal) => Err(refusal),
    };
    let (mut welcome, ops) = match answer {
        Ok(answer) => answer,
        Err(refusal) => {
            net.note_failure(&peer);
            if refusal == Refusal::WrongSecret {
                net.note_proof_failure(&invite);
            }
            let _ = write_frame(&mut stream, &InviteMessage::Refused(refusal)).await;
            let _ = stream.close().await;
            return Err(format!("refused: {}", refusal.explain()));
        }
    };
    // The joiner is family from now on: serve it as such as soon as it connects.
    net.refresh_members().await;
    net.blobs_wanted.notify_one();
    welcome.peers = net.addrs_for_joiner(&device);
    let sent = async {
        write_frame(&mut stream, &InviteMessage::Welcome(Box::new(welcome))).await?;
        for page in wire::pages(&ops) {
            write_frame(&mut stream, &InviteMessage::Ops(page.to_vec())).await?;
        }
        Ok::<_, super::frame::FrameError>(())
    };
    sent.await
        .map_err(|e| format!("sending the welcome failed (the joiner may ask again): {e}"))?;
    let confirm = tokio::time::timeout(
        CONFIRM_TIMEOUT,
        read_frame_within(&mut stream, MAX_REQUEST_FRAME),
    )
    .await;
    match confirm {
        Ok(Ok(Some(body))) if wire::decode_invite(&body) == Ok(InviteMessage::Confirm) => {}
        _ => return Err("the joiner did not confirm; it may ask again".into()),
    }
    net.lib
        .confirm_join(&invite, &device)
        .await
        .map_err(|e| e.to_string())?;
    let _ = write_frame(&mut stream, &InviteMessage::Confirmed).await;
    let _ = stream.close().await;
    tracing::info!(%device, "the new device confirmed its join; invite {invite} is used");
    Ok(())
}

impl Network {
    /// The family's other devices and where this node last reached them.
    fn addrs_for_joiner(&self, joiner: &DeviceId) -> Vec<DeviceAddrs> {
        self.peer_status()
            .into_iter()
            .filter(|(device, _)| device != joiner)
            .map(|(device, status)| DeviceAddrs {
                device,
                addrs: status
                    .addrs
                    .iter()
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                    .map(|a| a.to_vec())
                    .take(wire::MAX_PEER_ADDRS)
                    .collect(),
            })
            .filter(|d| !d.addrs.is_empty())
            .take(wire::MAX_WELCOME_PEERS)
            .collect()
    }

    fn peer_limited(&self, peer: &PeerId) -> bool {
        let now = now_ms();
        self.invite_failures
            .lock()
            .map(|m| {
                m.get(peer).is_some_and(|(n, since)| {
                    now.saturating_sub(*since) < 60_000 && *n >= PEER_FAILURES_PER_MINUTE
                })
            })
            .unwrap_or(false)
    }

    fn note_failure(&self, peer: &PeerId) {
        let now = now_ms();
        if let Ok(mut m) = self.invite_failures.lock() {
            if m.len() >= REMEMBERED_PEERS {
                m.retain(|_, (_, since)| now.saturating_sub(*since) < 60_000);
            }
            if m.len() >= REMEMBERED_PEERS {
                // Every entry is recent: a flood of fresh keys. Forget the oldest half.
                let mut since: Vec<u64> = m.values().map(|(_, s)| *s).collect();
                since.sort_unstable();
                let cut = since[since.len() / 2];
                m.retain(|_, (_, s)| *s > cut);
            }
            let entry = m.entry(*peer).or_insert((0, now));
            if now.saturating_sub(entry.1) >= 60_000 {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    fn failures_of(&self, invite: &InviteId) -> u32 {
        self.invite_proof_failures
            .lock()
            .map(|m| m.get(invite).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Counts a wrong proof for an invite this node issued (unknown invite ids are never
    /// counted, so this map holds at most this node's invites).
    fn note_proof_failure(&self, invite: &InviteId) {
        if let Ok(mut m) = self.invite_proof_failures.lock() {
            *m.entry(*invite).or_insert(0) += 1;
        }
    }
}

/// `kith join`: joins the family of `ticket`. Nothing is written unless the inviter admits
/// this device. A data dir that already holds a library of its own (the device ran kith alone)
/// keeps it: its photos and albums become this person's in the family joined.
pub async fn join(
    data_dir: &DataDir,
    ticket: &Ticket,
    person_name: &str,
    device_name: &str,
) -> Result<InitView> {
    if ticket.is_expired(now_ms()) {
        return Err(Error::Invite(Refusal::Expired.explain().into()));
    }
    let has_key = data_dir.key_file().exists();
    if data_dir.db_file().exists() && Store::peek_has_identity(&data_dir.db_file())? {
        return join_with_library(data_dir, ticket, person_name, device_name).await;
    }
    let existing_key = has_key.then(|| data_dir.read_device_secret()).transpose()?;
    let device = existing_key
        .clone()
        .unwrap_or_else(|| DeviceSecret::from_seeds(rand::random(), rand::random()));
    let write_key = existing_key.is_none();
    let joined = ask_to_join(&device, ticket, person_name, device_name, |welcome, ops| {
        record_welcome(
            data_dir,
            &device,
            write_key,
            ticket,
            device_name,
            welcome,
            ops,
        )
    })
    .await;
    match joined {
        Ok(view) => Ok(view),
        Err(Failure {
            error,
            answer_lost: true,
        }) if write_key => {
            // The inviter may have admitted this device already: only this key can ask again.
            data_dir.create()?;
            data_dir.write_device_secret(&device)?;
            Err(Error::Invite(format!(
                "{error}. The inviting device may have admitted this device already; its key \
                 is kept in {}: run the same `kith join` again to ask again with this ticket",
                data_dir.root().display()
            )))
        }
        Err(f) => Err(f.error),
    }
}

/// Joins from a data dir that holds a library: the family's state is written to a new data dir
/// beside it, the library is carried over into it, and then the two swap places; the data dir
/// as it was stays beside the new one (`NAME.before-join`) until the user deletes it.
async fn join_with_library(
    data_dir: &DataDir,
    ticket: &Ticket,
    person_name: &str,
    device_name: &str,
) -> Result<InitView> {
    let root = data_dir.root();
    let sibling = |suffix: &str| {
        let mut name = root.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        root.with_file_name(name)
    };
    let (staging, previous) = (sibling(".joining"), sibling(".before-join"));
    if previous.exists() {
        return Err(Error::Invite(format!(
            "{} is in the way (a library kept from an earlier join): move or delete it, then join again",
            previous.display()
        )));
    }
    // Opening it first checks that it is readable and that no node runs on it.
    let old = Library::open(data_dir).await?;
    let device = data_dir.read_device_secret()?;
    let new_dir = DataDir::new(&staging);
    let joined = ask_to_join(&device, ticket, person_name, device_name, |welcome, ops| {
        if staging.exists() {
            // Left by a join that stopped half way; the library it copied from is untouched.
            std::fs::remove_dir_all(&staging)
                .map_err(|e| Error::Invite(format!("cannot clear {}: {e}", staging.display())))?;
        }
        record_welcome(&new_dir, &device, true, ticket, device_name, welcome, ops)
    })
    .await;
    let mut view = match joined {
        Ok(view) => view,
        Err(f) => {
            old.close().await;
            return Err(f.error);
        }
    };
    let new = Library::open(&new_dir).await?;
    let kept = new.take_in(&old).await;
    new.close().await;
    old.close().await;
    let mut kept = kept.map_err(|e| {
        Error::Invite(format!(
            "this device joined the family, but carrying its library over failed: {e}. \
             Your library is untouched in {}; the half-made new one is in {}. \
             Delete the latter and join again with a new invite",
            root.display(),
            staging.display()
        ))
    })?;
    let swap = std::fs::rename(root, &previous).and_then(|()| std::fs::rename(&staging, root));
    swap.map_err(|e| {
        Error::Invite(format!(
            "joined and carried the library over into {}, but cannot put it in place of {}: {e}. \
             Move it there by hand; the data dir as it was is in {} if it was moved already",
            staging.display(),
            root.display(),
            previous.display()
        ))
    })?;
    if let Some(parent) = root.parent() {
        crate::datadir::sync_dir(parent)?;
    }
    kept.previous_data_dir = previous.display().to_string();
    view.data_dir = root.display().to_string();
    view.kept = Some(kept);
    Ok(view)
}

/// Why `kith join` failed, and whether the request may have been answered (so the inviter
/// may have admitted this device and only its key can ask again).
struct Failure {
    error: Error,
    answer_lost: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            answer_lost: false,
        }
    }
}

/// Asks the inviter to admit `device`; `record` writes what it answered, before this device
/// confirms (so a crash before recording leaves the invite open to this device).
async fn ask_to_join<T>(
    device: &DeviceSecret,
    ticket: &Ticket,
    person_name: &str,
    device_name: &str,
    record: impl FnOnce(Welcome, Vec<Vec<u8>>) -> Result<T>,
) -> Result<T, Failure> {
    let inviter = peer_id(&ticket.inviter)
        .ok_or_else(|| Error::Invite("the ticket's inviter id is not a device key".into()))?;
    let addrs: Vec<Multiaddr> = ticket
        .addrs
        .iter()
        .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
        .collect();
    if addrs.is_empty() {
        return Err(Error::Invite(
            "the ticket holds no address to reach the inviting device: ask for a new one".into(),
        )
        .into());
    }
    let mut swarm = build_swarm(keypair(device)?, false, super::members::nobody())?;
    let mut control = swarm.behaviour().stream.new_control();
    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(inviter)
        .addresses(addrs.clone())
        .build();
    swarm
        .dial(opts)
        .map_err(|e| Error::Invite(format!("cannot dial the inviting device: {e}")))?;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    // libp2p-stream loses a stream opened while the connection is being set up (its handler
    // exists, the swarm has not reported the connection yet: the stream waits on a dial that
    // never happens). So the stream is opened only once the connection is established.
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        let mut last_error = None;
        let mut connected_tx = Some(connected_tx);
        loop {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    libp2p::swarm::SwarmEvent::OutgoingConnectionError { error, .. } => {
                        last_error = Some(error.to_string());
                        // No connection came: opening the stream dials again and says why.
                        connected_tx.take();
                    }
                    libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == inviter => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                },
                _ = &mut done_rx => return last_error,
            }
        }
    });
    let request = InviteMessage::Join {
        invite: ticket.invite,
        family: ticket.family,
        joiner_x25519: device.x25519_public(),
        person_name: person_name.to_owned(),
        device_name: device_name.to_owned(),
        proof: invite_proof(
            &ticket.secret,
            &ticket.invite,
            &ticket.inviter,
            &device.device_id(),
            &device.x25519_public(),
        ),
    };
    let mut sent = false;
    let exchange = async {
        let _ = connected_rx.await;
        let mut stream = control.open_stream(inviter, INVITE).await.map_err(|e| {
            Error::Invite(format!(
                "cannot reach the inviting device at {}: {e}; is its `kith run` running and reachable?",
                addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        write_frame(&mut stream, &request)
            .await
            .map_err(|e| Error::Invite(format!("sending the request failed: {e}")))?;
        sent = true;
        let (welcome, ops) = read_answer(&mut stream).await?;
        let recorded = record(welcome, ops).map_err(Failure::from)?;
        // Recorded: from here the join stands, whether or not the inviter hears the confirm
        // (it then keeps the invite open to this device alone).
        let _ = write_frame(&mut stream, &InviteMessage::Confirm).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream)).await;
        let _ = stream.close().await;
        Ok::<T, Failure>(recorded)
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, exchange).await;
    let _ = done_tx.send(());
    let dial_error = driver.await.ok().flatten();
    match answer {
        Ok(Ok(recorded)) => Ok(recorded),
        Ok(Err(mut f)) => {
            f.answer_lost |= sent && !f.answer_lost && is_lost(&f.error);
            Err(f)
        }
        Err(_) => Err(Failure {
            error: Error::Invite(format!(
                "the inviting device did not answer within {ANSWER_TIMEOUT:?}{}",
                dial_error.map(|e| format!(" ({e})")).unwrap_or_default()
            )),
            answer_lost: sent,
        }),
    }
}

/// Whether a failure after the request was sent means the answer was lost on the way (rather
/// than refused or wrong).
fn is_lost(error: &Error) -> bool {
    matches!(error, Error::Invite(m) if m.starts_with(LOST))
}

const LOST: &str = "the answer was lost";

/// Reads the welcome and the pages of the log that follow it.
async fn read_answer(stream: &mut Stream) -> Result<(Welcome, Vec<Vec<u8>>), Failure> {
    let lost = |e: &dyn std::fmt::Display| Failure {
        error: Error::Invite(format!("{LOST}: {e}")),
        answer_lost: true,
    };
    let unreadable =
        |e: wire::WireError| Failure::from(Error::Invite(format!("the answer is unreadable: {e}")));
    let body = read_frame(stream)
        .await
        .map_err(|e| lost(&e))?
        .ok_or_else(|| lost(&"the inviting device closed the connection without an answer"))?;
    let welcome = match wire::decode_invite(&body).map_err(unreadable)? {
        InviteMessage::Welcome(w) => *w,
        InviteMessage::Refused(r) => {
            return Err(Error::Invite(format!("refused: {}", r.explain())).into());
        }
        _ => {
            return Err(Error::Invite("the inviting device answered out of turn".into()).into());
        }
    };
    let total = welcome.ops as usize;
    let mut ops = Vec::with_capacity(total.min(wire::MAX_IDS));
    while ops.len() < total {
        let body = read_frame(stream)
            .await
            .map_err(|e| lost(&e))?
            .ok_or_else(|| lost(&"the connection closed in the middle of the log"))?;
        let InviteMessage::Ops(page) = wire::decode_invite(&body).map_err(unreadable)? else {
            return Err(Error::Invite(
                "the inviting device sent something else than the log".into(),
            )
            .into());
        };
        if ops.len() + page.len() > total {
            return Err(Error::Invite(
                "the inviting device sent more of the log than it announced".into(),
            )
            .into());
        }
        ops.extend(page);
    }
    Ok((welcome, ops))
}

/// Checks the welcome and writes the new identity, the log and the keys in one transaction.
fn record_welcome(
    data_dir: &DataDir,
    device: &DeviceSecret,
    write_key: bool,
    ticket: &Ticket,
    device_name: &str,
    welcome: Welcome,
    ops: Vec<Vec<u8>>,
) -> Result<InitView> {
    if welcome.family != ticket.family {
        return Err(Error::Invite(
            "the inviting device answered for another family".into(),
        ));
    }
    let ops = ops
        .iter()
        .map(|b| SignedOp::from_bytes(b))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invite(format!("the membership log received does not verify: {e}")))?;
    let family = membership::evaluate_with_root(welcome.root_op, &ops).map_err(|e| {
        Error::Invite(format!(
            "the membership log received does not evaluate: {e}"
        ))
    })?;
    if family.family != ticket.family {
        return Err(Error::Invite(
            "the membership log is of another family".into(),
        ));
    }
    let me = device.device_id();
    let (person, person_state): (PersonId, _) = family.active_person(&me).ok_or_else(|| {
        Error::Invite("the inviting device answered without adding this device".into())
    })?;
    data_dir.create()?;
    if write_key {
        data_dir.write_device_secret(device)?;
    }
    let store = Store::open(&data_dir.db_file(), device.storage_key())?;
    let identity = Identity {
        family: welcome.family,
        family_secret: welcome.family_secret,
        person,
        device_name: device_name.to_owned(),
        library_key: rand::random(),
        root_op: welcome.root_op.0,
    };
    let now = now_ms();
    let record = |addrs: &[Vec<u8>]| PeerRecord {
        addrs: addrs
            .iter()
            .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
            .map(|a| a.to_string())
            .take(8)
            .collect(),
        last_seen_ms: now,
    };
    // The other devices the inviter knows where to find; only devices of the family count.
    let mut peers: Vec<(DeviceId, PeerRecord)> = welcome
        .peers
        .iter()
        .take(wire::MAX_WELCOME_PEERS)
        .filter(|p| p.device != me && p.device != ticket.inviter)
        .filter(|p| family.active_person(&p.device).is_some())
        .map(|p| (p.device, record(&p.addrs)))
        .collect();
    peers.push((ticket.inviter, record(&ticket.addrs)));
    store.commit(&WriteBatch {
        identity: Some(identity),
        ops,
        peers,
        ..WriteBatch::default()
    })?;
    Ok(InitView {
        data_dir: data_dir.root().display().to_string(),
        device_id: me.to_string(),
        person: person_state.name.clone(),
        family_id: welcome.family.to_string(),
        kept: None,
    })
}
