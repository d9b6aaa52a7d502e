//! Blob transfer between devices when the connection breaks mid-way: the transfer resumes,
//! renditions already held are not fetched again, partly fetched ones are not fetched from
//! their start (after a crash, those received in memory are), and B ends with A's originals
//! byte for byte.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kith_protocol::ticket::Ticket;
use kith_tests::cluster::{Cluster, multiaddr};
use kith_tests::relay::Relay;
use kith_tests::{TestNode, XorShift, wait_until};
use serde_json::Value;

/// Photos of random noise, which JPEG cannot compress: 24 at 640×480 and quality 100 make about
/// 38 MB of blobs (originals, previews, thumbnails), a few seconds of transfer on loopback.
const PHOTOS: usize = 24;
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// Writes `n` distinct noise JPEGs into `dir`; returns their paths.
fn noise_photos(dir: &std::path::Path, n: usize, seed: u64) -> Result<Vec<String>> {
    let mut rng = XorShift::new(seed);
    let mut paths = Vec::new();
    for i in 0..n {
        let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        for chunk in pixels.chunks_mut(8) {
            let r = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100).encode(
            &pixels,
            WIDTH,
            HEIGHT,
            image::ExtendedColorType::Rgb8,
        )?;
        let path = dir.join(format!("noise-{i:02}.jpg"));
        std::fs::write(&path, jpeg)?;
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

/// The sizes of the blob files in a node's store (every blob above iroh-blobs' 16 KiB inline
/// limit has one).
fn blob_file_sizes(node: &TestNode) -> Result<Vec<u64>> {
    node.files()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .map(|p| Ok(std::fs::metadata(p)?.len()))
        .collect()
}

/// B's sync counters: renditions held and wanted, and bytes fetched from all peers.
fn progress(status: &Value) -> (u64, u64, u64) {
    let sync = &status["sync"];
    let bytes = sync["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p["bytes_fetched"].as_u64())
                .sum()
        })
        .unwrap_or_default();
    (
        sync["blobs_have"].as_u64().unwrap_or_default(),
        sync["blobs_wanted"].as_u64().unwrap_or(u64::MAX),
        bytes,
    )
}

/// A and B, with B fetching A's photos through `relay`, which now holds A's bytes back after
/// every thumbnail and preview and most of the originals; B holds some originals, has
/// others in part, and its transfer has stalled.
struct MidWay {
    a: TestNode,
    b: TestNode,
    relay: Relay,
    /// Bytes of all of A's blobs.
    total: u64,
    /// B's counters once stalled: renditions held, bytes fetched (all of them in whole blobs,
    /// fetched once each).
    have: u64,
    fetched: u64,
    started: Instant,
    _photos: tempfile::TempDir,
}

fn mid_way() -> Result<MidWay> {
    let started = Instant::now();
    let seed = 0x6b69_7468 ^ std::process::id() as u64;
    eprintln!("transfer: noise seed {seed}");
    let photos_dir = tempfile::tempdir()?;
    let files = noise_photos(photos_dir.path(), PHOTOS, seed)?;

    let mut a = TestNode::initialised()?;
    a.start()?;
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    a.ok(&args)?;
    let sizes = blob_file_sizes(&a)?;
    assert_eq!(
        sizes.len(),
        3 * PHOTOS,
        "every rendition should be a blob file, or the total below is not every blob's size"
    );
    let total: u64 = sizes.iter().sum();
    eprintln!(
        "transfer: {PHOTOS} photos, {total} bytes of blobs, ready after {:?}",
        started.elapsed()
    );

    // B joins and fetches through the relay, which lets A's bytes through only up to a point.
    let relay = Relay::new();
    relay.set_target(a.listen_addr()?);
    let front = relay.listen("127.0.0.1:0".parse()?)?;
    let mut ticket = Ticket::decode(&a.invite()?)?;
    ticket.addrs = vec![multiaddr(front).to_vec()];
    let mut b = TestNode::new();
    b.ok(&["join", &ticket.encode(), "--name", "B", "--person", "Bo"])?;
    let mut by_size = sizes.clone();
    by_size.sort_unstable();
    let small: u64 = by_size[..2 * PHOTOS].iter().sum();
    // 85 % of the rest: even with every parallel fetch (16) holding a partial original, several
    // originals complete, and some bytes are still missing.
    let hold_at = relay.from_target_total() + small + (total - small) * 17 / 20;
    relay.hold_back_after(Some(hold_at));
    b.start()?;

    let mut last = Value::Null;
    wait_until(Duration::from_secs(60), "B to hold some originals", || {
        last = b.json(&["status", "--json"])?;
        let (have, wanted, _) = progress(&last);
        Ok(relay.holding() && have > 2 * PHOTOS as u64 && wanted > 0)
    })
    .with_context(|| format!("B's status: {last}\n{}", b.log()))?;
    // Then until B's counters have not moved for a second: every fetch that could complete
    // has, and its blob is committed (iroh-blobs commits its metadata within 500 ms).
    let mut seen = progress(&last);
    let mut since = Instant::now();
    wait_until(Duration::from_secs(30), "B's transfer to stall", || {
        let now = progress(&b.json(&["status", "--json"])?);
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        Ok(since.elapsed() >= Duration::from_secs(1))
    })?;
    let (have, _, fetched) = seen;
    eprintln!(
        "transfer: A's bytes held back after {} bytes; B holds {have} of {} renditions, {fetched} bytes fetched ({:?})",
        relay.from_target_total(),
        3 * PHOTOS,
        started.elapsed()
    );
    Ok(MidWay {
        a,
        b,
        relay,
        total,
        have,
        fetched,
        started,
        _photos: photos_dir,
    })
}

#[test]
fn a_transfer_cut_mid_way_resumes_without_starting_over() -> Result<()> {
    let MidWay {
        a,
        b,
        relay,
        total,
        started,
        ..
    } = mid_way()?;
    assert_eq!(
        relay.cut(),
        1,
        "B fetched over one connection through the relay"
    );
    relay.hold_back_after(None);

    let cluster = converged_with_equal_exports(a, b)?;
    let b = &cluster.nodes[1];

    let status = b.json(&["status", "--json"])?;
    let (have, _, fetched) = progress(&status);
    assert_eq!(have, 3 * PHOTOS as u64);
    // Each rendition was fetched (completed) once: none held before the cut came again.
    assert_eq!(
        status["sync"]["blobs_fetched"],
        3 * PHOTOS,
        "renditions fetched more than once: {status}"
    );
    // Fetches count the payload bytes they read, and a fetch the cut broke off counts none (it
    // is retried). Partly fetched renditions resumed where they stopped, so B read fewer bytes
    // than the blobs hold in all; had the cut interrupted no fetch, it would read all of them.
    assert!(
        fetched < total,
        "B fetched {fetched} bytes for {total} bytes of blobs: the cut transfers started over"
    );
    eprintln!(
        "transfer: B fetched {fetched} of {total} bytes ({} not fetched again), done after {:?}",
        total - fetched,
        started.elapsed()
    );
    Ok(())
}

#[test]
fn a_device_killed_mid_transfer_resumes_after_restart() -> Result<()> {
    let MidWay {
        a,
        mut b,
        relay,
        total,
        have,
        fetched,
        started,
        ..
    } = mid_way()?;
    b.kill9()?;
    relay.cut();
    relay.hold_back_after(None);
    b.start()?;

    let cluster = converged_with_equal_exports(a, b)?;
    let b = &cluster.nodes[1];
    // The restarted process counts only what it fetched itself.
    let status = b.json(&["status", "--json"])?;
    let (_, _, fetched_after) = progress(&status);
    let renditions_after = status["sync"]["blobs_fetched"].as_u64().unwrap_or(u64::MAX);
    eprintln!(
        "transfer: killed holding {have} renditions ({fetched} bytes); after the restart B fetched {renditions_after} renditions, {fetched_after} of {total} bytes; done after {:?}",
        started.elapsed()
    );
    assert!(
        renditions_after <= 3 * PHOTOS as u64 - have,
        "renditions held before the crash were fetched again: {status}"
    );
    // Blobs of up to 8 MiB (all of these) are received whole in memory, so the crash lost
    // the in-flight ones and they came again from their start; nothing held came twice.
    assert!(
        fetched_after + fetched <= total,
        "B fetched {fetched} + {fetched_after} bytes for {total} bytes of blobs: held renditions came again"
    );
    Ok(())
}

/// Waits until A and B converge, and checks that B's export equals A's byte for byte.
fn converged_with_equal_exports(a: TestNode, b: TestNode) -> Result<Cluster> {
    let cluster = Cluster { nodes: vec![a, b] };
    cluster.wait_converged()?;
    let from_a = cluster.nodes[0].exported()?;
    assert_eq!(from_a.len(), PHOTOS);
    assert!(
        from_a == cluster.nodes[1].exported()?,
        "B's export must equal A's byte for byte"
    );
    Ok(cluster)
}
