//! Strangers flooding a node: connections from one key and from many, invite streams with
//! bogus proofs, lying length prefixes and trickled bytes. The node holds a bounded number of
//! their connections and a bounded amount of memory, and keeps serving its family and a joiner
//! with a valid ticket all the while.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{AsyncReadExt, AsyncWriteExt};
use kith_node::net::limits::{PER_PEER, STRANGERS_PER_IP};
use kith_protocol::wire::{INVITE_PROTOCOL, MAX_FRAME};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::hostile::{node_pid, peak_rss_kib};
use kith_tests::peer::{RawPeer, Target, runtime};
use kith_tests::{TestNode, wait_until};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

/// Connects `n` times with keys from `key`; keeps the connections that were made.
async fn connect_many(
    n: usize,
    key: impl Fn() -> Keypair,
    peer: PeerId,
    addr: &Multiaddr,
) -> Vec<RawPeer> {
    let mut out = Vec::new();
    for _ in 0..n {
        if let Ok(p) = RawPeer::connect(key(), peer, addr.clone()).await {
            out.push(p);
        }
    }
    out
}

/// How many of `peers` still have a connection the node answers streams on.
async fn alive(peers: &[RawPeer]) -> usize {
    let mut n = 0;
    for p in peers {
        let open = tokio::time::timeout(Duration::from_secs(5), p.open(INVITE_PROTOCOL)).await;
        if let Ok(Ok(mut stream)) = open {
            let _ = stream.close().await;
            n += 1;
        }
    }
    n
}

/// Waits until at most `limit` of `peers` are alive; returns how many are.
async fn settle_at_most(peers: &[RawPeer], limit: usize) -> usize {
    let start = Instant::now();
    loop {
        let n = alive(peers).await;
        if n <= limit || start.elapsed() > Duration::from_secs(20) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_strangers_connections_are_capped_and_the_family_still_syncs() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    cluster.nodes[1].stop()?;
    let Target { peer, addr, .. } = Target::of(&cluster.nodes[0])?;
    let rt = runtime()?;
    let (same_key, many_keys) = rt.block_on(async {
        // One stranger, one key, many connections.
        let key = Keypair::generate_ed25519();
        let one = connect_many(24, || key.clone(), peer, &addr).await;
        let same_key = settle_at_most(&one, PER_PEER as usize).await;
        // Strangers with a fresh key each, all from this address.
        let many = connect_many(24, Keypair::generate_ed25519, peer, &addr).await;
        let many_keys = settle_at_most(&many, STRANGERS_PER_IP - same_key).await;
        // Held open while the family device comes back below.
        Ok::<_, anyhow::Error>(((same_key, one), (many_keys, many)))
    })?;
    assert!(
        same_key.0 <= PER_PEER as usize,
        "one stranger holds {} connections",
        same_key.0
    );
    assert!(
        same_key.0 + many_keys.0 <= STRANGERS_PER_IP,
        "strangers from one address hold {} connections",
        same_key.0 + many_keys.0
    );

    // The family device, from the same address as the strangers, connects and syncs.
    cluster.nodes[1].ok(&["albums", "create", "Made during a flood"])?;
    cluster.nodes[1].start()?;
    let a = &cluster.nodes[0];
    wait_until(SYNC_DEADLINE, "the album to reach the admin", || {
        Ok(a.json(&["albums", "--json"])?
            .to_string()
            .contains("Made during a flood"))
    })?;
    // The strangers' connections were held open until here.
    drop((same_key, many_keys));
    Ok(())
}

/// Writes a frame prefix claiming `claimed` bytes, then `body` in pieces of `piece` bytes
/// every `every`; errors (the node dropped the stream) end it quietly.
async fn lying_stream(
    peer: &RawPeer,
    claimed: u32,
    body: usize,
    piece: usize,
    every: Duration,
) -> Option<libp2p::Stream> {
    let mut stream = peer.open(INVITE_PROTOCOL).await.ok()?;
    stream.write_all(&claimed.to_be_bytes()).await.ok()?;
    let chunk = vec![0xA5u8; piece];
    let mut sent = 0;
    while sent < body {
        stream.write_all(&chunk).await.ok()?;
        sent += piece;
        tokio::time::sleep(every).await;
    }
    let _ = stream.flush().await;
    Some(stream)
}

#[test]
fn a_flood_of_invite_streams_holds_little_memory_and_a_join_still_works() -> Result<()> {
    let mut ana = TestNode::initialised()?;
    ana.start()?;
    let pid = node_pid(&ana)?;
    let ticket = ana.invite()?;
    let Target { peer, addr, .. } = Target::of(&ana)?;
    let before = peak_rss_kib(pid)?;
    let rt = runtime()?;
    rt.block_on(async {
        let strangers = connect_many(3, Keypair::generate_ed25519, peer, &addr).await;
        let mut flood = Vec::new();
        for (i, p) in strangers.iter().enumerate() {
            for j in 0..16 {
                flood.push(async move {
                    match (i + j) % 4 {
                        // A frame claiming 4 GiB, then a trickle.
                        0 => lying_stream(p, u32::MAX, 64, 1, Duration::from_millis(100)).await,
                        // A full-size frame of garbage, sent at once.
                        _ => {
                            let size = MAX_FRAME as u32;
                            lying_stream(p, size, MAX_FRAME, 64 * 1024, Duration::ZERO).await
                        }
                    }
                });
            }
        }
        // A genuine join while the flood runs.
        let ticket = ticket.clone();
        let join = tokio::task::spawn_blocking(move || {
            TestNode::new().run(&["join", &ticket, "--name", "laptop", "--person", "Bo"])
        });
        let streams = futures::future::join_all(flood).await;
        let out = join.await??;
        anyhow::ensure!(
            out.status.success(),
            "the join failed during the flood: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Whatever the node still answers on the streams left open is read and dropped.
        for mut s in streams.into_iter().flatten() {
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let grew_mib = peak_rss_kib(pid)?.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 48,
        "the node's peak memory grew by {grew_mib} MiB during the flood"
    );
    assert!(ana.is_running(), "the node stopped during the flood");
    let devices = ana.json(&["devices", "--json"])?;
    assert_eq!(devices.as_array().map(Vec::len), Some(2), "{devices}");
    Ok(())
}
