//! What an eavesdropper on the wire between two devices sees: a byte capture of every
//! connection between A and B, from the join to the last rendition, holds no plaintext.
//!
//! Every connection must go through the relay, or the test would pass on a capture of nothing.
//! How that is made certain:
//! - B joins with A's ticket whose addresses are replaced by the relay's (the invite proof does
//!   not cover addresses), so the join goes through the relay and B's only address for A is
//!   the relay's.
//! - A then moves to a new port and the relay takes over A's old one, so any address of A that
//!   B could have learned before running (now or in a later version of the join) leads to the
//!   relay too.
//! - A knows no address of B until B's first connection, which can only come through the
//!   relay; mDNS announces only addresses of the interface it runs on, never the loopback
//!   addresses these nodes listen on. Once connected, neither side dials the other again
//!   while the connection is up (redials and mDNS dials happen only when disconnected).
//! - And it is checked: every "family device connected" either node logged names a relay
//!   address as the other end, the relay carried at least as many bytes from A as B counted
//!   fetched from A, and more than the originals' total.

use std::collections::HashSet;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use kith_protocol::ticket::Ticket;
use kith_tests::TestNode;
use kith_tests::cluster::{Cluster, multiaddr, socket_addr};
use kith_tests::corpus::{self, Expect};
use kith_tests::leaks::Needles;
use kith_tests::relay::Relay;
use libp2p::Multiaddr;

const TITLE: &str = "Grandma Wilhelmina's garden, June";

/// Camera JPEGs with make, model and date, of different makers.
const PHOTOS: [&str; 6] = [
    "camera/canon-eos-350d_blinds.jpg",
    "camera/casio-qv-r51_large.jpg",
    "camera/konica-minolta-dimage-z5_wood.jpg",
    "camera/nokia-n9_bythewater.jpg",
    "camera/olympus-e-m1_path.jpg",
    "camera/sony-nex-3n_colorfulcups_gps.jpg",
];

/// Strings shorter than this are not looked for in the capture: it is ciphertext, in which a
/// given 5-byte string turns up by chance about once per TiB, but a 4-byte one once per 4 GiB.
/// The short ones ("Canon", "SONY", "E-M1") lie inside the EXIF blocks of the originals, which
/// the 32-byte-run scan covers.
const MIN_STRING: usize = 6;

/// `ticket` with its addresses replaced by `to`.
fn ticket_through(ticket: &str, to: SocketAddr) -> Result<String> {
    let mut t = Ticket::decode(ticket)?;
    t.addrs = vec![multiaddr(to).to_vec()];
    Ok(t.encode())
}

/// The remote addresses of every "family device connected" line of a node's log.
fn connected_from(log: &str) -> Result<Vec<SocketAddr>> {
    log.lines()
        .filter(|l| l.contains("family device connected"))
        .map(|l| {
            let remote = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("remote="))
                .with_context(|| format!("no remote in {l:?}"))?;
            let addr: Multiaddr = remote.parse()?;
            socket_addr(&addr).with_context(|| format!("{addr} is not a TCP address"))
        })
        .collect()
}

#[test]
fn a_capture_of_everything_between_two_devices_holds_no_plaintext() -> Result<()> {
    let rows: Vec<corpus::Row> = corpus::manifest()?
        .into_iter()
        .filter(|r| PHOTOS.contains(&r.path.as_str()))
        .collect();
    assert_eq!(rows.len(), PHOTOS.len(), "photos missing from the MANIFEST");
    assert!(
        rows.iter()
            .all(|r| r.expect == Expect::Ok && r.make.is_some())
    );

    let mut a = TestNode::initialised()?;
    a.start()?;
    let first = a.listen_addr()?;
    let relay = Relay::new();
    relay.set_target(first);
    let front = relay.listen("127.0.0.1:0".parse()?)?;

    let ticket = ticket_through(&a.invite()?, front)?;
    let mut b = TestNode::new();
    b.ok(&["join", &ticket, "--name", "Bo's laptop", "--person", "Bo"])?;
    let joined = relay.connections();
    assert!(
        joined.len() == 1 && !joined[0].to_target.is_empty() && !joined[0].from_target.is_empty(),
        "the join did not go through the relay: {} connections",
        joined.len()
    );

    // A moves; the relay takes A's old port and forwards both its ports to A's new one.
    a.stop()?;
    relay.listen(first)?;
    a.start()?;
    let moved = a.listen_addr()?;
    assert_ne!(moved, first, "A is back on the port the relay holds");
    relay.set_target(moved);
    b.start()?;

    let mut args = vec!["import", "--album", TITLE];
    let files: Vec<String> = rows
        .iter()
        .map(|r| r.abs_path().display().to_string())
        .collect();
    args.extend(files.iter().map(String::as_str));
    a.ok(&args)?;
    let cluster = Cluster { nodes: vec![a, b] };
    cluster.wait_converged()?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    // B holds every rendition and the album.
    let status = b.json(&["status", "--json"])?;
    assert_eq!(status["sync"]["blobs_have"], 3 * PHOTOS.len(), "{status}");
    assert_eq!(status["sync"]["blobs_wanted"], 0, "{status}");
    let albums = b.json(&["albums", "--json"])?;
    assert_eq!(albums[0]["title"], TITLE);
    assert_eq!(a.exported()?, b.exported()?);

    // Every connection either side saw went through the relay.
    let connections = relay.connections();
    let relay_ends: HashSet<SocketAddr> = relay
        .listeners()
        .into_iter()
        .chain(connections.iter().map(|c| c.outbound))
        .collect();
    for (name, node) in [("A", a), ("B", b)] {
        let remotes = connected_from(&node.log())?;
        assert!(!remotes.is_empty(), "{name} logged no connection");
        for remote in remotes {
            assert!(
                relay_ends.contains(&remote),
                "{name} was connected to {remote}, not through the relay (relay ends: {relay_ends:?})"
            );
        }
    }

    // The capture carried the blob traffic.
    let from_a: usize = connections.iter().map(|c| c.from_target.len()).sum();
    let to_a: usize = connections.iter().map(|c| c.to_target.len()).sum();
    let originals: u64 = rows
        .iter()
        .map(|r| std::fs::metadata(r.abs_path()).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    let fetched: u64 = status["sync"]["peers"]
        .as_array()
        .context("peers")?
        .iter()
        .filter_map(|p| p["bytes_fetched"].as_u64())
        .sum();
    assert!(
        from_a as u64 >= originals && from_a as u64 >= fetched && fetched >= originals,
        "the relay carried {from_a} bytes from A; the originals are {originals} bytes, B fetched {fetched}"
    );

    // And none of it is plaintext.
    let needles = Needles::new(&[TITLE], &rows, &rows)?;
    let mut leaks = Vec::new();
    for (i, c) in connections.iter().enumerate() {
        leaks.extend(needles.scan(&format!("connection {i} B→A"), &c.to_target, MIN_STRING));
        leaks.extend(needles.scan(&format!("connection {i} A→B"), &c.from_target, MIN_STRING));
    }
    assert!(
        leaks.is_empty(),
        "{} leaks in {} + {} captured bytes:\n{}",
        leaks.len(),
        from_a,
        to_a,
        leaks.join("\n")
    );
    eprintln!(
        "capture: {} connections, {from_a} bytes A→B, {to_a} bytes B→A; originals {originals} bytes, B fetched {fetched}; {} bytes of plaintext indexed",
        connections.len(),
        needles.original_bytes()
    );
    Ok(())
}
