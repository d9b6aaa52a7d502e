//! Import benchmark: kith importing the corpus' photos, next to its anchors measured in the same
//! run on the same files: libvips' `vipsthumbnail` making the same two sizes (2048 and 320 px
//! long edge), and raw XChaCha20-Poly1305 + BLAKE3 over the same bytes.
//!
//! Run: `cargo run --release -p kith-examples --example bench_import [-- CORPUS_DIR [ROUNDS]]`
//! (`apt-get install libvips-tools` for the vipsthumbnail anchor). Prints figures, asserts
//! nothing: absolute times on shared machines are noise, the ratios are the result.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_node::{DataDir, ImportRequest, Library};
use rayon::prelude::*;

/// Formats both kith and libvips read (HEIC depends on how libvips was built, so it is left out).
const FORMATS: [&str; 6] = ["jpeg", "png", "webp", "gif", "tiff", "mpo"];

fn corpus_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::args_os().nth(1) {
        return Ok(PathBuf::from(dir));
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|c| c.join("MANIFEST.tsv").exists())
        .context("the corpus was not found: pass its path as the first argument")
}

/// The `ok` photos of the corpus in the formats both sides read.
fn photos(corpus: &Path) -> Result<Vec<PathBuf>> {
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv"))?;
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty manifest")?
        .split('\t')
        .collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .context("manifest column")
    };
    let (path, format, expect) = (col("path")?, col("format")?, col("expect")?);
    Ok(lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.get(expect) == Some(&"ok"))
        .filter(|f| f.get(format).is_some_and(|x| FORMATS.contains(x)))
        .filter_map(|f| f.get(path).map(|p| corpus.join(p)))
        .collect())
}

fn best_of(rounds: usize, mut run: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        best = best.min(run()?);
    }
    Ok(best)
}

async fn kith_import(files: &[PathBuf]) -> Result<Duration> {
    let home = tempfile::tempdir()?;
    let data_dir = DataDir::new(home.path().join("data"));
    Library::init(&data_dir, "Bench", "bench").await?;
    let library = Library::open(&data_dir).await?;
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let start = Instant::now();
    let summary = library
        .import(
            ImportRequest {
                paths: files.to_vec(),
                album: None,
            },
            events,
        )
        .await?;
    let took = start.elapsed();
    library.close().await;
    if summary.imported != files.len() {
        bail!(
            "kith imported {} of {} files",
            summary.imported,
            files.len()
        );
    }
    Ok(took)
}

/// vipsthumbnail makes the preview and the thumbnail of every file, two processes at a time
/// (one per core, as kith's import uses every core). It makes one size per run, so it reads
/// each file twice (with shrink-on-load); kith decodes each file once for both sizes.
fn vipsthumbnail(files: &[PathBuf]) -> Result<Duration> {
    let out = tempfile::tempdir()?;
    let start = Instant::now();
    let halves: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(2).max(1)).collect();
    halves.par_iter().try_for_each(|part| -> Result<()> {
        for (size, quality, tag) in [(2048, 85, "p"), (320, 80, "t")] {
            let status = Command::new("vipsthumbnail")
                .arg("--size")
                .arg(format!("{size}x{size}>"))
                .arg("-o")
                .arg(out.path().join(format!("%s_{tag}.jpg[Q={quality}]")))
                .args(part.iter())
                // libvips warns about every EXIF tag it does not know; the figures are the point.
                .stderr(std::process::Stdio::null())
                .status()
                .context("running vipsthumbnail")?;
            if !status.success() {
                bail!("vipsthumbnail failed with {status}");
            }
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

/// Raw AEAD + hash over the same bytes, in 64 KiB chunks, on every core.
fn raw_cipher(contents: &[Vec<u8>]) -> Duration {
    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    let start = Instant::now();
    contents.par_iter().for_each(|bytes| {
        let mut hasher = blake3::Hasher::new();
        for (i, chunk) in bytes.chunks(65536).enumerate() {
            let mut buf = chunk.to_vec();
            let mut nonce = XNonce::default();
            nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
            if let Ok(tag) = cipher.encrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into()) {
                hasher.update(&buf);
                hasher.update(&tag);
            }
        }
        std::hint::black_box(hasher.finalize());
    });
    start.elapsed()
}

#[tokio::main]
async fn main() -> Result<()> {
    let corpus = corpus_dir()?;
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let files = photos(&corpus)?;
    let contents = files
        .iter()
        .map(std::fs::read)
        .collect::<Result<Vec<_>, _>>()?;
    let bytes: usize = contents.iter().map(Vec::len).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "{} photos, {:.1} MB, {} cores, best of {rounds} rounds",
        files.len(),
        mb,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let rate = |d: Duration| (files.len() as f64 / d.as_secs_f64(), mb / d.as_secs_f64());

    let mut kith = Duration::MAX;
    for _ in 0..rounds {
        kith = kith.min(kith_import(&files).await?);
    }
    let (kps, kmbs) = rate(kith);
    println!(
        "kith import            {:>8.2} s  {kps:>7.1} photos/s  {kmbs:>7.1} MB/s",
        kith.as_secs_f64()
    );

    match best_of(rounds, || vipsthumbnail(&files)) {
        Ok(vips) => {
            let (vps, vmbs) = rate(vips);
            println!(
                "vipsthumbnail (2 sizes){:>8.2} s  {vps:>7.1} photos/s  {vmbs:>7.1} MB/s",
                vips.as_secs_f64()
            );
            println!(
                "ratio kith / vipsthumbnail: {:.2} (above 1 means kith is faster)",
                kps / vps
            );
        }
        Err(e) => println!("vipsthumbnail: not measured ({e:#}); apt-get install libvips-tools"),
    }

    let raw = best_of(rounds, || Ok(raw_cipher(&contents)))?;
    let (_, rmbs) = rate(raw);
    println!(
        "raw XChaCha20-Poly1305 + BLAKE3 {:>6.3} s  {rmbs:>7.1} MB/s",
        raw.as_secs_f64()
    );
    println!("ratio kith / raw cipher: {:.3}", kmbs / rmbs);
    Ok(())
}
