//! The library benchmark: what a family's library of N photos costs on one device, next to
//! what the same work costs on a small one (issue 13's anchors are kith's own small-library
//! figures: an operation must cost what it changes, not what the library holds).
//!
//! 1. Import 1 000 photos into a fresh library and one album (the anchor rate: the same work
//!    per photo as the steps below, each photo written into its month's document and the
//!    album's).
//! 2. Import 0.9 N photos into a fresh library, into one album.
//! 3. Import 0.1 N more into the same album, which then holds N.
//! 4. Close the library (which writes document snapshots), open it again, and list every
//!    photo.
//!
//! Photos are tiny generated JPEGs (16×16) with EXIF dates over ten years, named so that
//! consecutive files are months apart (`--order scattered`, the default) or in date order
//! (`--order chronological`): decoding costs next to nothing, so what is measured is kith's
//! own work per photo. Rates are printed with their ratio to step 1's.
//!
//! Run: `cargo run --release -p kith-examples --example bench_library [-- --photos N]
//! [--order scattered|chronological] [--keep DIR]` (N defaults to 20 000; issue 13's figure is
//! at 100 000). Everything lives in a temporary directory that is removed at the end, but for
//! the library of N photos with `--keep` (moved to DIR, on the same file system as `$TMPDIR`). Prints figures,
//! asserts nothing but that every photo imported.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kith_examples::photos::{self, Order};
use kith_node::{DataDir, Library};

const ANCHOR_PHOTOS: usize = 1_000;
const ALBUM: &str = "Everything";

fn main() -> Result<()> {
    let Args { n, order, keep } = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let big = n * 9 / 10;
    let rest = n - big;

    let t = Instant::now();
    let small_dir = tmp.path().join("small");
    photos::generate(&small_dir, ANCHOR_PHOTOS, order)?;
    let big_dir = tmp.path().join("big");
    photos::generate(&big_dir, big, order)?;
    let rest_dir = tmp.path().join("rest");
    let bytes = photos::generate_range(&rest_dir, big..n, n, order)?;
    println!(
        "generated {} + {n} JPEGs (16x16, EXIF dates over 10 years, {order:?}), last {rest} {:.1} MB, in {:.1} s",
        ANCHOR_PHOTOS,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    runtime.block_on(async {
        let anchor = import_into_new(tmp.path(), "lib-small", &small_dir, Some(ALBUM)).await?;
        let lib = open_new(tmp.path(), "lib-big").await?;
        let bulk = timed_import(&lib, &big_dir, Some(ALBUM)).await?;
        let more = timed_import(&lib, &rest_dir, Some(ALBUM)).await?;
        let t = Instant::now();
        lib.close().await;
        let closed = t.elapsed();
        drop(lib);

        let t = Instant::now();
        let lib = Library::open(&DataDir::new(tmp.path().join("lib-big"))).await?;
        let opened = t.elapsed();
        let t = Instant::now();
        let listed = lib.photos(None).await?.len();
        let listing = t.elapsed();
        ensure!(listed == n, "the library lists {listed} photos, not {n}");
        lib.close().await;

        let rate = |count: usize, d: Duration| count as f64 / d.as_secs_f64().max(1e-9);
        let r_anchor = rate(ANCHOR_PHOTOS, anchor);
        let r_bulk = rate(big, bulk);
        let r_more = rate(rest, more);
        println!();
        println!("library of {n} photos, {order:?} file order, one device");
        println!(
            "  anchor: import {ANCHOR_PHOTOS} into a new library and album: {:.2} s, {r_anchor:.0} photos/s",
            anchor.as_secs_f64()
        );
        println!(
            "  import {big} into a new library and album: {:.2} s, {r_bulk:.0} photos/s = {:.2}x the anchor rate (goal >= 0.8)",
            bulk.as_secs_f64(),
            r_bulk / r_anchor
        );
        println!(
            "  import {rest} more into the album holding {big}: {:.2} s, {r_more:.0} photos/s = {:.2}x the anchor rate (goal >= 0.8)",
            more.as_secs_f64(),
            r_more / r_anchor
        );
        println!(
            "  close it (writes the snapshots due): {:.2} s; open it again: {:.2} s; list all {listed} photos: {:.2} s (goal: first page < 1 s)",
            closed.as_secs_f64(),
            opened.as_secs_f64(),
            listing.as_secs_f64()
        );
        println!(
            "  peak RSS of this process (all steps): {:.0} MB",
            peak_rss_kb().unwrap_or(0) as f64 / 1024.0
        );
        anyhow::Ok(())
    })?;
    if let Some(keep) = keep {
        std::fs::rename(tmp.path().join("lib-big"), &keep)
            .with_context(|| format!("moving the library to {}", keep.display()))?;
        println!("  the library is kept in {}", keep.display());
    }
    Ok(())
}

async fn open_new(tmp: &Path, name: &str) -> Result<Arc<Library>> {
    let dir = DataDir::new(tmp.join(name));
    Library::init(&dir, "Ana", "A").await?;
    Ok(Library::open(&dir).await?)
}

async fn import_into_new(
    tmp: &Path,
    name: &str,
    folder: &Path,
    album: Option<&str>,
) -> Result<Duration> {
    let lib = open_new(tmp, name).await?;
    let took = timed_import(&lib, folder, album).await?;
    lib.close().await;
    Ok(took)
}

async fn timed_import(lib: &Arc<Library>, folder: &Path, album: Option<&str>) -> Result<Duration> {
    let expected = std::fs::read_dir(folder)?.count();
    let t = Instant::now();
    let summary = kith_examples::import(lib, vec![PathBuf::from(folder)], album).await?;
    let took = t.elapsed();
    ensure!(
        summary.imported == expected,
        "imported {} of {expected} photos from {} ({} skipped)",
        summary.imported,
        folder.display(),
        summary.skipped
    );
    Ok(took)
}

/// This process' peak resident set (`VmHWM`), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the command line asks for.
struct Args {
    n: usize,
    order: Order,
    /// Where to keep the library of N photos after the run (to profile opening it).
    keep: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut n = 20_000;
    let mut order = Order::Scattered;
    let mut keep = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--photos" => {
                n = args.next().context("--photos needs a number")?.parse()?;
                ensure!(n >= 10, "--photos must be at least 10");
            }
            "--order" => {
                order = match args.next().as_deref() {
                    Some("scattered") => Order::Scattered,
                    Some("chronological") => Order::Chronological,
                    other => bail!("--order is scattered or chronological, not {other:?}"),
                }
            }
            "--keep" => keep = Some(PathBuf::from(args.next().context("--keep needs a path")?)),
            other => bail!("unknown argument {other:?}; see the top of bench_library.rs"),
        }
    }
    Ok(Args { n, order, keep })
}
