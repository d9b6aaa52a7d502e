//! `/kith/invite/1`: a device that holds a ticket joins the family.
//!
//! The joiner dials the inviter at the ticket's addresses, with the inviter's device id as the
//! expected peer id (Noise checks it), and sends a proof of the ticket's secret bound to both
//! device ids and its X25519 key — never the secret. The inviter answers with the membership
//! log, the family's photo-id secret and the keys of the documents the new device may read.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use kith_protocol::keys::{DeviceId, DeviceSecret, PersonId};
use kith_protocol::membership::{self, SignedOp};
use kith_protocol::ticket::{Ticket, invite_proof};
use kith_protocol::wire::{self, DeviceAddrs, InviteMessage, Refusal, Welcome};
use libp2p::{Multiaddr, PeerId, Stream};

use super::frame::{read_frame, write_frame};
use super::{INVITE, Network, build_swarm, device_of, keypair, peer_id};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::invites::JoinRequest;
use crate::library::Library;
use crate::library::now_ms;
use crate::store::{Identity, PeerRecord, Store, WriteBatch};
use crate::views::InitView;

/// Failed invite attempts one peer may make per minute.
const PEER_FAILURES_PER_MINUTE: u32 = 5;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) async fn accept_loop(net: Arc<Network>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let net = net.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(ANSWER_TIMEOUT, serve(&net, peer, stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(%peer, "invite request rejected: {e}"),
                Err(_) => tracing::warn!(%peer, "invite request timed out"),
            }
        });
    }
}

async fn serve(net: &Network, peer: PeerId, mut stream: Stream) -> Result<(), String> {
    let device = device_of(&peer).ok_or("its peer id is not an ed25519 key")?;
    if net.peer_limited(&peer) {
        let reply = InviteMessage::Refused(Refusal::TooManyAttempts);
        let _ = write_frame(&mut stream, &reply).await;
        return Err("too many failed attempts from this peer".into());
    }
    let body = read_frame(&mut stream)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the stream closed before a request")?;
    let message = wire::decode_invite(&body).map_err(|e| e.to_string())?;
    let InviteMessage::Join {
        invite,
        family,
        joiner_x25519,
        person_name,
        device_name,
        proof,
    } = message
    else {
        return Err("expected a Join request".into());
    };
    if !kith_protocol::keys::x25519_public_key_is_valid(&joiner_x25519) {
        net.note_failure(&peer);
        let _ = write_frame(&mut stream, &InviteMessage::Refused(Refusal::NotAllowed)).await;
        return Err("its X25519 key is a low-order point, which could not keep keys secret".into());
    }
    let answer = net
        .lib
        .admit(JoinRequest {
            device,
            invite,
            family,
            x25519: joiner_x25519,
            person_name,
            device_name,
            proof,
        })
        .await;
    let reply = match answer {
        Ok(mut welcome) => {
            welcome.peers = net.addrs_for_joiner(&device);
            InviteMessage::Welcome(Box::new(welcome))
        }
        Err(refusal) => {
            net.note_failure(&peer);
            InviteMessage::Refused(refusal)
        }
    };
    write_frame(&mut stream, &reply)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.close().await;
    if let InviteMessage::Refused(r) = reply {
        return Err(format!("refused: {}", r.explain()));
    }
    net.blobs_wanted.notify_one();
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
                    .take(8)
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
                    now - since < 60_000 && *n >= PEER_FAILURES_PER_MINUTE
                })
            })
            .unwrap_or(false)
    }

    fn note_failure(&self, peer: &PeerId) {
        let now = now_ms();
        if let Ok(mut m) = self.invite_failures.lock() {
            let entry = m.entry(*peer).or_insert((0, now));
            if now - entry.1 >= 60_000 {
                *entry = (0, now);
            }
            entry.0 += 1;
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
    let welcome = ask_to_join(&device, ticket, person_name, device_name).await?;
    record_welcome(
        data_dir,
        &device,
        existing_key.is_none(),
        ticket,
        device_name,
        welcome,
    )
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
    let welcome = ask_to_join(&device, ticket, person_name, device_name).await;
    let welcome = match welcome {
        Ok(w) => w,
        Err(e) => {
            old.close().await;
            return Err(e);
        }
    };
    if staging.exists() {
        // Left by a join that stopped half way; the library it copied from is untouched.
        std::fs::remove_dir_all(&staging)
            .map_err(|e| Error::Invite(format!("cannot clear {}: {e}", staging.display())))?;
    }
    let new_dir = DataDir::new(&staging);
    let mut view = record_welcome(&new_dir, &device, true, ticket, device_name, welcome)?;
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

async fn ask_to_join(
    device: &DeviceSecret,
    ticket: &Ticket,
    person_name: &str,
    device_name: &str,
) -> Result<Welcome> {
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
        ));
    }
    let mut swarm = build_swarm(keypair(device)?, false)?;
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
        let body = read_frame(&mut stream)
            .await
            .map_err(|e| Error::Invite(format!("reading the answer failed: {e}")))?
            .ok_or_else(|| {
                Error::Invite("the inviting device closed the connection without an answer".into())
            })?;
        wire::decode_invite(&body)
            .map_err(|e| Error::Invite(format!("the answer is unreadable: {e}")))
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), exchange).await;
    let _ = done_tx.send(());
    let dial_error = driver.await.ok().flatten();
    let answer = match answer {
        Ok(a) => a,
        Err(_) => {
            return Err(Error::Invite(format!(
                "the inviting device did not answer within 30 s{}",
                dial_error.map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        }
    }?;
    match answer {
        InviteMessage::Welcome(w) => Ok(*w),
        InviteMessage::Refused(r) => Err(Error::Invite(format!("refused: {}", r.explain()))),
        InviteMessage::Join { .. } => Err(Error::Invite(
            "the inviting device answered with a request".into(),
        )),
    }
}

/// Checks the welcome and writes the new identity, the log and the keys in one transaction.
fn record_welcome(
    data_dir: &DataDir,
    device: &DeviceSecret,
    write_key: bool,
    ticket: &Ticket,
    device_name: &str,
    welcome: Welcome,
) -> Result<InitView> {
    if welcome.family != ticket.family {
        return Err(Error::Invite(
            "the inviting device answered for another family".into(),
        ));
    }
    let ops = welcome
        .ops
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
