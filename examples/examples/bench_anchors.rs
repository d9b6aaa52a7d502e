//! The transfer benchmark's anchors on their own: builds a photo set and prints how fast a raw
//! TCP copy and Syncthing move it over loopback (see `kith_examples::transfer_anchors`).
//!
//! Run: `cargo run --release -p kith-examples --example bench_anchors [-- --mb N]` (N decimal
//! megabytes of photos, default 200; `apt-get install syncthing` for the Syncthing anchor).
//! Everything lives in a temporary directory that is removed at the end. Prints figures, asserts
//! nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_examples::transfer_anchors::{
    make_photo_set, mb_per_s, raw_tcp_copy, syncthing_available, syncthing_sync,
};

fn main() -> Result<()> {
    let mb = parse_mb()?;
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

    let raw = raw_tcp_copy(&set, &tmp.path().join("raw-copy"))?;
    report("raw TCP copy (loopback, fsync per file)", set.bytes, raw);

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
    Ok(())
}

fn report(what: &str, bytes: u64, elapsed: Duration) {
    println!(
        "{what}: {:.1} MB in {:.2} s = {:.1} MB/s",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        mb_per_s(bytes, elapsed)
    );
}

fn parse_mb() -> Result<u64> {
    let mut mb = 200;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mb" => {
                let v = args.next().context("--mb needs a number")?;
                mb = v
                    .parse()
                    .with_context(|| format!("--mb {v}: not a number"))?;
            }
            "-h" | "--help" => {
                println!("usage: bench_anchors [--mb N]   (N decimal MB of photos, default 200)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (usage: bench_anchors [--mb N])"),
        }
    }
    if mb == 0 {
        bail!("--mb must be at least 1");
    }
    Ok(mb)
}
