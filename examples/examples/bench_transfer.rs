//! The transfer benchmark: builds a set of distinct photos, imports it on device A, and times how
//! long a newly joined device B takes to hold every photo and rendition over libp2p on loopback.
//! In the same run, the anchors move the same photos: a raw TCP copy and Syncthing between two
//! homes (see `kith_examples::transfer_anchors`), and the ratios are printed.
//!
//! Run: `cargo run --release -p kith-examples --example bench_transfer [-- --mb N]` (N decimal
//! megabytes of photos, default 200; `apt-get install syncthing` for the Syncthing anchor).
//! Everything lives in a temporary directory that is removed at the end. Prints figures, asserts
//! nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_examples::transfer_anchors::{
    PhotoSet, make_photo_set, mb_per_s, raw_tcp_copy, syncthing_available, syncthing_sync,
};
use kith_node::net::{NetConfig, Network};
use kith_node::{DataDir, Library};
use kith_protocol::membership::Role;

fn main() -> Result<()> {
    let (mb, listen) = parse_args()?;
    let tmp = tempfile::tempdir()?;

    let t = Instant::now();
    let set = make_photo_set(&tmp.path().join("photos"), mb * 1_000_000)?;
    println!(
        "photo set: {} files, {:.1} MB (generated in {:.1} s) under {}",
        set.files.len(),
        set.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        tmp.path().display()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let (kith, wire_bytes) = runtime.block_on(kith_transfer(&set, tmp.path(), &listen))?;
    report(
        &format!("kith (loopback, A -> B, libp2p on {listen})"),
        set.bytes,
        kith,
    );
    println!(
        "  kith moved {:.1} MB of ciphertext (originals, previews, thumbnails, padded)",
        wire_bytes as f64 / 1e6
    );

    let raw = raw_tcp_copy(&set, &tmp.path().join("raw-copy"))?;
    report("raw TCP copy (loopback, fsync per file)", set.bytes, raw);
    println!(
        "kith / raw TCP: {:.0} % (goal >= 70 %)",
        100.0 * raw.as_secs_f64() / kith.as_secs_f64()
    );

    if !syncthing_available() {
        println!("syncthing: not installed (apt-get install syncthing)");
        return Ok(());
    }
    let (elapsed, version) = syncthing_sync(&set, &tmp.path().join("syncthing"))?;
    report(
        &format!("syncthing {version} (loopback, A -> B)"),
        set.bytes,
        elapsed,
    );
    println!(
        "kith / syncthing: {:.2}x (goal >= 1.5x)",
        elapsed.as_secs_f64() / kith.as_secs_f64()
    );
    Ok(())
}

/// Imports the set on A (not timed), then times B from starting its node until it holds every
/// photo and rendition. Returns that time and the bytes B fetched.
async fn kith_transfer(
    set: &PhotoSet,
    tmp: &std::path::Path,
    listen: &str,
) -> Result<(Duration, u64)> {
    let loopback = NetConfig {
        listen: vec![listen.parse()?],
        mdns: false,
    };
    let dir_a = DataDir::new(tmp.join("kith-a"));
    Library::init(&dir_a, "Ana", "A").await?;
    let lib_a = Library::open(&dir_a).await?;
    let net_a = Network::start(lib_a.clone(), loopback.clone()).await?;
    let t = Instant::now();
    let summary = kith_examples::import(&lib_a, set.files.clone(), None).await?;
    println!(
        "kith import on A: {} photos in {:.1} s (not part of the transfer time)",
        summary.imported,
        t.elapsed().as_secs_f64()
    );
    let (ticket, _) = lib_a
        .create_invite(Role::Member, 3_600_000, net_a.ticket_addrs())
        .await?;
    let dir_b = DataDir::new(tmp.join("kith-b"));
    kith_node::net::invite::join(&dir_b, &ticket, "Bo", "B").await?;
    let lib_b = Library::open(&dir_b).await?;
    let start = Instant::now();
    let net_b = Network::start(lib_b.clone(), loopback).await?;
    // Listing photos costs more than the status counters, so it stops once all have arrived:
    // the polling must not take CPU from the transfer it measures.
    let mut all_photos = false;
    loop {
        let sync = net_b.sync_view().await?;
        all_photos = all_photos || lib_b.photos(None).await?.len() == summary.imported;
        if all_photos && sync.blobs_wanted == 0 && sync.blobs_have == 3 * summary.imported as u64 {
            let elapsed = start.elapsed();
            let bytes = sync.peers.iter().map(|p| p.bytes_fetched).sum();
            lib_a.close().await;
            lib_b.close().await;
            return Ok((elapsed, bytes));
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("B did not catch up within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(what: &str, bytes: u64, elapsed: Duration) {
    println!(
        "{what}: {:.1} MB in {:.2} s = {:.1} MB/s",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        mb_per_s(bytes, elapsed)
    );
}

/// `--mb N` and `--listen MULTIADDR` (the transport both devices use; TCP by default).
fn parse_args() -> Result<(u64, String)> {
    let mut mb = 200;
    let mut listen = "/ip4/127.0.0.1/tcp/0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mb" => {
                let v = args.next().context("--mb needs a number")?;
                mb = v
                    .parse()
                    .with_context(|| format!("--mb {v}: not a number"))?;
            }
            "--listen" => listen = args.next().context("--listen needs a multiaddr")?,
            "-h" | "--help" => {
                println!(
                    "usage: bench_transfer [--mb N] [--listen MULTIADDR]   (N decimal MB of photos, default 200; \
                     e.g. --listen /ip4/127.0.0.1/udp/0/quic-v1 for QUIC)"
                );
                std::process::exit(0);
            }
            other => bail!(
                "unknown argument {other:?} (usage: bench_transfer [--mb N] [--listen MULTIADDR])"
            ),
        }
    }
    if mb == 0 {
        bail!("--mb must be at least 1");
    }
    Ok((mb, listen))
}
