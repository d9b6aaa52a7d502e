//! Tests that a stranger is answered while the library is busy: its lock held, as during a long
//! import or sync commit. Here (inside the crate) a test can hold the lock itself.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_protocol::keys::DeviceSecret;
use kith_protocol::membership::Role;
use kith_protocol::ticket::{InviteId, invite_proof};
use kith_protocol::wire::{self, InviteMessage, Refusal};
use libp2p::swarm::SwarmEvent;

use super::frame::{read_frame, write_frame};
use super::{INVITE, NetConfig, Network, build_swarm, keypair, members, peer_id};
use crate::datadir::DataDir;
use crate::library::Library;

async fn running_node(home: &std::path::Path) -> Arc<Network> {
    let dir = DataDir::new(home.join("ana"));
    Library::init(&dir, "Ana", "laptop").await.unwrap();
    let lib = Library::open(&dir).await.unwrap();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
    };
    Network::start(lib, config).await.unwrap()
}

/// A stranger with a fresh key asks `node` to join with `request`; returns the answer.
async fn ask(node: &Network, request: impl Fn(&DeviceSecret) -> InviteMessage) -> InviteMessage {
    let stranger = DeviceSecret::from_seeds(rand::random(), rand::random());
    let mut swarm = build_swarm(keypair(&stranger).unwrap(), false, members::nobody()).unwrap();
    let mut control = swarm.behaviour().stream.new_control();
    let target = peer_id(&node.lib.device_id()).unwrap();
    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(target)
        .addresses(node.listen_addrs())
        .build();
    swarm.dial(opts).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let driver = tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    rx.await.unwrap();
    let mut stream = control.open_stream(target, INVITE).await.unwrap();
    write_frame(&mut stream, &request(&stranger)).await.unwrap();
    let body = read_frame(&mut stream).await.unwrap().unwrap();
    driver.abort();
    wire::decode_invite(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_answered_while_the_library_is_locked() {
    let home = tempfile::tempdir().unwrap();
    let node = running_node(home.path()).await;
    let (ticket, _) = node
        .lib
        .create_invite(Role::Member, 3_600_000, node.ticket_addrs())
        .await
        .unwrap();
    let join = |invite: InviteId, secret: [u8; 32]| {
        let ticket = ticket.clone();
        move |me: &DeviceSecret| InviteMessage::Join {
            invite,
            family: ticket.family,
            joiner_x25519: me.x25519_public(),
            person_name: "Eve".into(),
            device_name: "phone".into(),
            proof: invite_proof(
                &secret,
                &invite,
                &ticket.inviter,
                &me.device_id(),
                &me.x25519_public(),
            ),
        }
    };

    let held = node.lib.state.lock().await;
    let within = Duration::from_secs(10);
    let unknown = tokio::time::timeout(within, ask(&node, join(InviteId([9; 16]), [0; 32])));
    assert_eq!(
        unknown.await.expect("answered while the lock is held"),
        InviteMessage::Refused(Refusal::UnknownInvite)
    );
    let wrong = tokio::time::timeout(within, ask(&node, join(ticket.invite, [1; 32])));
    assert_eq!(
        wrong.await.expect("answered while the lock is held"),
        InviteMessage::Refused(Refusal::WrongSecret)
    );
    drop(held);

    // With the right secret the request goes on to the library, and is admitted.
    let right = tokio::time::timeout(within, ask(&node, join(ticket.invite, ticket.secret)));
    assert!(matches!(
        right.await.expect("answered"),
        InviteMessage::Welcome(_)
    ));
    node.lib.close().await;
}
