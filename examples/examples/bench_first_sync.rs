//! The first-sync benchmark: device A holds a library of N photo entries (default 100 000; tiny
//! generated JPEGs spread over ten years, so ~120 monthly documents); device B joins the family
//! and starts its node, and the clock runs until B's documents match A's (`docs_digest` equal,
//! same photo count). Blobs are not part of this figure, but B's blob fetcher runs as it always
//! does and competes for the CPU; what it fetched meanwhile is printed.
//!
//! In the same run the anchor moves the same amount of data: a raw TCP copy over loopback of as
//! many messages as A holds sealed changes and membership ops, totalling the same bytes, the
//! receiver appending them to one file and `fsync`ing it every MiB (kith commits about one redb
//! transaction per MiB batch). The ratio kith / anchor is printed.
//!
//! Device B runs in a child process (this same program, started with `--device-b`), so the
//! peak RSS printed for B is B's alone (its `VmHWM`).
//!
//! Run: `cargo run --release -p kith-examples --example bench_first_sync [-- --photos N]`.
//! Everything lives in a temporary directory that is removed at the end. Prints figures,
//! asserts nothing. Setup (generating and importing N photos) takes minutes at 100 000.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kith_node::net::{NetConfig, Network};
use kith_node::replica::ReplicaSize;
use kith_node::{DataDir, Library};
use kith_protocol::membership::Role;

/// How long B may take before the benchmark gives up.
const DEADLINE: Duration = Duration::from_secs(30 * 60);

fn main() -> Result<()> {
    match parse_args()? {
        Mode::Bench { photos } => bench(photos),
        Mode::DeviceB {
            dir,
            digest,
            photos,
        } => tokio::runtime::Runtime::new()?.block_on(device_b(&dir, &digest, photos)),
    }
}

fn loopback() -> Result<NetConfig> {
    Ok(NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        mdns: false,
    })
}

fn bench(photos: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let folder = tmp.path().join("photos");

    let t = Instant::now();
    let bytes = kith_examples::photos::generate(
        &folder,
        photos,
        kith_examples::photos::Order::Chronological,
    )?;
    let generated = t.elapsed();
    println!(
        "generated {photos} JPEGs (16x16, EXIF dates over 10 years), {:.1} MB, in {:.1} s",
        bytes as f64 / 1e6,
        generated.as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let run = runtime.block_on(first_sync(tmp.path(), &folder, photos))?;

    let anchor = raw_tcp_messages(
        run.size.changes + run.size.ops,
        run.size.change_bytes + run.size.op_bytes,
        &tmp.path().join("anchor.bin"),
    )?;

    let size = run.size;
    println!();
    println!("first sync of {photos} photo entries, A -> newly joined B, loopback");
    println!(
        "  setup: generate {:.1} s, import on A {:.1} s ({:.0} photos/s), B open {:.2} s",
        generated.as_secs_f64(),
        run.import.as_secs_f64(),
        photos as f64 / run.import.as_secs_f64(),
        run.b_open.as_secs_f64()
    );
    println!(
        "  data: {} documents, {} sealed changes ({:.2} MB), {} membership ops ({:.1} kB)",
        size.documents,
        size.changes,
        size.change_bytes as f64 / 1e6,
        size.ops,
        size.op_bytes as f64 / 1e3
    );
    println!(
        "  kith: B's documents match A's {:.2} s after B's network started (goal < 30 s)",
        run.sync.as_secs_f64()
    );
    println!(
        "  anchor: raw TCP copy of {} messages, {:.2} MB, fsync per MiB: {:.3} s",
        size.changes + size.ops,
        (size.change_bytes + size.op_bytes) as f64 / 1e6,
        anchor.as_secs_f64()
    );
    println!(
        "  kith / anchor: {:.0}x",
        run.sync.as_secs_f64() / anchor.as_secs_f64().max(1e-9)
    );
    println!(
        "  B peak RSS (VmHWM of B's process, open + sync + fetching blobs): {:.0} MB",
        run.b_rss_kb as f64 / 1024.0
    );
    println!(
        "  B's blob fetcher meanwhile: {} renditions fetched during the sync",
        run.b_blobs_fetched
    );
    Ok(())
}

struct Run {
    import: Duration,
    size: ReplicaSize,
    b_open: Duration,
    sync: Duration,
    b_rss_kb: u64,
    b_blobs_fetched: u64,
}

async fn first_sync(tmp: &Path, folder: &Path, photos: usize) -> Result<Run> {
    let dir_a = DataDir::new(tmp.join("kith-a"));
    Library::init(&dir_a, "Ana", "A").await?;
    let lib_a = Library::open(&dir_a).await?;

    let t = Instant::now();
    let summary = kith_examples::import(&lib_a, vec![folder.to_path_buf()], None).await?;
    let import_time = t.elapsed();
    ensure!(
        summary.imported == photos,
        "A imported {} of {photos} photos ({} skipped)",
        summary.imported,
        summary.skipped
    );
    println!(
        "A imported {} photos in {:.1} s",
        summary.imported,
        import_time.as_secs_f64()
    );

    let size = lib_a.replica_size().await?;
    let digest = lib_a.docs_digest().await;
    let net_a = Network::start(lib_a.clone(), loopback()?).await?;
    let (ticket, _) = lib_a
        .create_invite(Role::Member, 3_600_000, net_a.ticket_addrs())
        .await?;
    let dir_b = tmp.join("kith-b");
    kith_node::net::invite::join(&DataDir::new(&dir_b), &ticket, "Bo", "B").await?;

    // B in its own process; its lines are echoed, its RESULT line parsed.
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--device-b")
        .arg(&dir_b)
        .arg("--digest")
        .arg(&digest)
        .arg("--photos")
        .arg(photos.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting device B")?;
    let stdout = child.stdout.take().context("B's stdout")?;
    let result = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut result = None;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            match line.strip_prefix("RESULT ") {
                Some(r) => result = Some(r.to_owned()),
                None => println!("  B| {line}"),
            }
        }
        let status = child.wait()?;
        ensure!(status.success(), "device B failed: {status}");
        result.context("device B printed no result")
    })
    .await??;
    lib_a.close().await;

    let field = |name: &str| -> Result<f64> {
        result
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in B's result {result:?}"))?
            .parse::<f64>()
            .with_context(|| format!("{name} in B's result {result:?}"))
    };
    Ok(Run {
        import: import_time,
        size,
        b_open: Duration::from_secs_f64(field("open_s")?),
        sync: Duration::from_secs_f64(field("sync_s")?),
        b_rss_kb: field("rss_kb")? as u64,
        b_blobs_fetched: field("blobs_fetched")? as u64,
    })
}

/// Device B: opens its (just joined, empty) library, starts its node and waits until its
/// documents match `digest` and it lists `photos` photos.
async fn device_b(dir: &Path, digest: &str, photos: usize) -> Result<()> {
    let t = Instant::now();
    let lib = Library::open(&DataDir::new(dir)).await?;
    let open = t.elapsed();
    let start = Instant::now();
    let net = Network::start(lib.clone(), loopback()?).await?;
    let mut last_report = Instant::now();
    let sync = loop {
        // The digest is cheap; the photo count is read once the digests agree.
        if lib.docs_digest().await == digest && lib.photos(None).await?.len() == photos {
            break start.elapsed();
        }
        if start.elapsed() > DEADLINE {
            bail!("B did not catch up within {DEADLINE:?}");
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            let received: u64 = net.peer_status().values().map(|p| p.changes_received).sum();
            println!(
                "{:>5.1} s: {received} changes received",
                start.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let view = net.sync_view().await?;
    let rss_kb = peak_rss_kb().unwrap_or(0);
    println!(
        "RESULT open_s={} sync_s={} rss_kb={rss_kb} blobs_fetched={}",
        open.as_secs_f64(),
        sync.as_secs_f64(),
        view.blobs_fetched
    );
    lib.close().await;
    Ok(())
}

/// This process' peak resident set (`VmHWM`), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The photos
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// The anchor
// ---------------------------------------------------------------------------------------------

/// Sends `count` length-prefixed messages totalling `bytes` over one loopback TCP connection to
/// a receiver thread that appends them to `dest` and `fsync`s every MiB and at the end; returns
/// the time from connect to the last `fsync`. Sizes are as even as `bytes / count` allows.
fn raw_tcp_messages(count: usize, bytes: u64, dest: &Path) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let payload = vec![0x5au8; (bytes / count.max(1) as u64 + 1) as usize];
    let dest = dest.to_path_buf();
    let start = Instant::now();
    let stream = TcpStream::connect(addr)?;
    let receiver = std::thread::spawn(move || receive_messages(&listener, &dest, count));
    stream.set_nodelay(true)?;
    let mut w = BufWriter::with_capacity(1 << 16, stream);
    w.write_all(&(count as u64).to_be_bytes())?;
    let mut left = bytes;
    for i in 0..count {
        let len = (left / (count - i) as u64) as usize;
        left -= len as u64;
        w.write_all(&(len as u32).to_be_bytes())?;
        w.write_all(&payload[..len])?;
    }
    w.flush()?;
    let done = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("anchor receiver panicked"))??;
    Ok(done.duration_since(start))
}

fn receive_messages(listener: &TcpListener, dest: &PathBuf, expected: usize) -> Result<Instant> {
    let (stream, _) = listener.accept()?;
    let mut r = BufReader::with_capacity(1 << 16, stream);
    let mut file = File::create(dest)?;
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    ensure!(u64::from_be_bytes(n) == expected as u64, "anchor count");
    let mut buf = Vec::new();
    let mut unsynced = 0usize;
    for _ in 0..expected {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        buf.resize(len, 0);
        r.read_exact(&mut buf)?;
        file.write_all(&buf)?;
        unsynced += len + 4;
        if unsynced >= 1 << 20 {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    file.sync_all()?;
    Ok(Instant::now())
}

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

enum Mode {
    Bench {
        photos: usize,
    },
    /// Internal: run device B (started by the benchmark itself).
    DeviceB {
        dir: PathBuf,
        digest: String,
        photos: usize,
    },
}

const USAGE: &str = "usage: bench_first_sync [--photos N]   (N photo entries, default 100000)";

fn parse_args() -> Result<Mode> {
    let mut photos = 100_000usize;
    let mut device_b = None;
    let mut digest = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--photos" => {
                let v = args.next().context("--photos needs a number")?;
                photos = v
                    .parse()
                    .with_context(|| format!("--photos {v}: not a number"))?;
            }
            "--device-b" => device_b = Some(PathBuf::from(args.next().context("--device-b DIR")?)),
            "--digest" => digest = Some(args.next().context("--digest HEX")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} ({USAGE})"),
        }
    }
    if photos == 0 {
        bail!("--photos must be at least 1");
    }
    Ok(match device_b {
        Some(dir) => Mode::DeviceB {
            dir,
            digest: digest.context("--device-b needs --digest")?,
            photos,
        },
        None => Mode::Bench { photos },
    })
}
