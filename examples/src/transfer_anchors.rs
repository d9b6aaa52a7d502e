//! Anchors for kith's transfer benchmark, and the photo set it moves.
//!
//! kith's figure (photos from node A to node B on loopback) means little alone, so the benchmark
//! prints it next to two anchors measured in the same run, on the same bytes, on the same disk:
//!
//! * [`raw_tcp_copy`] — the ceiling. One plain TCP connection over 127.0.0.1, a trivial
//!   length-prefixed framing, the receiver writing each file and `fsync`ing it. No encryption, no
//!   hashing, no database, no protocol round trips: what the kernel, the loopback device and the
//!   disk allow. A transfer tool that reaches a sizeable fraction of it is doing well.
//! * [`syncthing_sync`] — a mature peer-to-peer tool doing the same job. Two Syncthing homes on
//!   loopback, A sharing the photo folder with B's empty folder. Syncthing pays for TLS, SHA-256
//!   per 128 KiB block (checked by B on receipt), its index exchange, its database and its
//!   `fsync`s — roughly the kind of costs kith pays (kith: its own encryption and BLAKE3).
//!   The clock starts once A has finished its initial scan (hashing its files, as kith's node A
//!   has imported its photos before it serves them), both devices are connected and B *accepts*
//!   the share (its folder is configured but paused; the clock starts right before it is
//!   unpaused), and stops when B reports the folder complete (100 %, nothing needed, every file
//!   known) and every file is on B's disk with the right size. Content is then verified with
//!   BLAKE3, outside the clock.
//!
//! Both anchors read the source files from the page cache (they were just written) and leave the
//! copies `fsync`ed on disk. Throughput is in decimal megabytes per second ([`mb_per_s`]).
//!
//! [`make_photo_set`] builds the data: copies of the corpus' JPEGs, each made distinct with a JPEG
//! comment segment so that content-addressed tools (kith, Syncthing) cannot deduplicate them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

/// A folder of photos made by [`make_photo_set`]: every file sits directly in one directory.
#[derive(Debug, Clone)]
pub struct PhotoSet {
    /// The photos, in the order they were written.
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Decimal megabytes per second: `bytes / 1e6 / seconds`.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------------
// The photo set
// ---------------------------------------------------------------------------------------------

/// Builds a folder of distinct JPEG files totalling about `target_bytes` by repeating the corpus'
/// decodable JPEGs, each copy made distinct by inserting a JPEG COM segment (FF FE, len,
/// "kith bench copy N") right after SOI — still a valid JPEG, different bytes (kith dedups
/// identical photos by content).
///
/// Corpus: `KITH_CORPUS` env var or `../shared/corpus` relative to the workspace root; only the
/// MANIFEST.tsv rows with format `jpeg` and expected outcome `ok` (an import) are used.
///
/// The sources are taken round-robin, and copy N made in round r has the comment
/// `"kith bench copy N"` followed by r spaces, so the copies of one source all have different
/// comment lengths. That matters for Syncthing: it splits files into fixed-offset blocks and
/// fetches a block from a file it already has when the hashes match, so copies whose bytes were
/// merely shifted by the *same* amount would share every block after the first and would not
/// cross the wire. Shifted by different amounts (less than a block), no block repeats.
///
/// `out_dir` is created if needed and must be empty. It stops at the first file that brings the
/// total to `target_bytes` or more. Every file (and the directory) is `fsync`ed before returning,
/// so no writeback of the set competes with the transfers measured afterwards.
pub fn make_photo_set(out_dir: &Path, target_bytes: u64) -> Result<PhotoSet> {
    let corpus = corpus_dir()?;
    let sources = corpus_jpegs(&corpus)?;
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    ensure!(
        fs::read_dir(out_dir)?.next().is_none(),
        "{} is not empty: the photo set needs a directory of its own",
        out_dir.display()
    );

    let mut set = PhotoSet {
        files: Vec::new(),
        bytes: 0,
    };
    let mut n = 0u64;
    'rounds: for round in 0usize.. {
        for (stem, jpeg) in &sources {
            if set.bytes >= target_bytes {
                break 'rounds;
            }
            let comment = format!("kith bench copy {n}{}", " ".repeat(round));
            // The segment length field counts itself (2 bytes) and must fit in 16 bits.
            let seg_len = u16::try_from(comment.len() + 2)
                .map_err(|_| anyhow!("photo set too large for distinct comment lengths"))?;
            let path = out_dir.join(format!("kith-bench-{n:06}-{stem}.jpg"));
            let mut file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            file.write_all(&[0xFF, 0xD8, 0xFF, 0xFE])?;
            file.write_all(&seg_len.to_be_bytes())?;
            file.write_all(comment.as_bytes())?;
            file.write_all(&jpeg[2..])?;
            file.sync_all()?;
            set.bytes += 4 + u64::from(seg_len) + jpeg.len() as u64 - 2;
            set.files.push(path);
            n += 1;
        }
    }
    sync_dir(out_dir)?;
    Ok(set)
}

fn corpus_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("KITH_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the examples crate has no parent directory")?
            .join("../shared/corpus"),
    };
    ensure!(
        dir.join("MANIFEST.tsv").is_file(),
        "no corpus at {} (set KITH_CORPUS to the directory holding MANIFEST.tsv)",
        dir.display()
    );
    Ok(dir)
}

/// `(file stem, bytes)` of every corpus JPEG that is expected to import.
fn corpus_jpegs(corpus: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let manifest = fs::read_to_string(corpus.join("MANIFEST.tsv"))?;
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty MANIFEST.tsv")?
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("MANIFEST.tsv has no `{name}` column"))
    };
    let (path_col, format_col, expect_col) = (col("path")?, col("format")?, col("expect")?);
    let mut out = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.get(format_col) != Some(&"jpeg") || fields.get(expect_col) != Some(&"ok") {
            continue;
        }
        let rel = fields
            .get(path_col)
            .context("MANIFEST.tsv row without a path")?;
        let path = corpus.join(rel);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            bytes.starts_with(&[0xFF, 0xD8]),
            "{} does not start with a JPEG SOI marker",
            path.display()
        );
        let stem = Path::new(rel)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("photo")
            .to_owned();
        out.push((stem, bytes));
    }
    ensure!(
        !out.is_empty(),
        "no importable JPEG listed in {}",
        corpus.join("MANIFEST.tsv").display()
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Anchor 1: raw TCP copy
// ---------------------------------------------------------------------------------------------

/// How long the raw copy's receiver waits for the next bytes before giving up.
const RAW_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends every file's bytes over one loopback TCP connection (127.0.0.1:0) to a receiver thread
/// that writes them to files under `dest_dir` and fsyncs each (like a real copy); returns the
/// elapsed time from connect to last fsync.
///
/// Framing: a file count, then per file its name, its size and its bytes (sent with `io::copy`,
/// which uses `sendfile` on Linux). The receiver writes through a 1 MiB buffer, `fsync`s each
/// file and, after the last one, `dest_dir` itself. Files land in `dest_dir` under their own
/// names (which must therefore be distinct). Afterwards, outside the clock, every copy is
/// checked against its source with BLAKE3.
pub fn raw_tcp_copy(set: &PhotoSet, dest_dir: &Path) -> Result<Duration> {
    let names = file_names(set)?;
    fs::create_dir_all(dest_dir).with_context(|| format!("creating {}", dest_dir.display()))?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;

    let start = Instant::now();
    // The kernel completes the handshake into the listen backlog, so connecting before the
    // receiver thread exists cannot hang, and a failure here leaves no thread behind.
    let mut stream = TcpStream::connect(addr).context("connecting on loopback")?;
    let receiver = {
        let dest = dest_dir.to_path_buf();
        let count = names.len();
        thread::spawn(move || receive_files(&listener, &dest, count))
    };
    let sent = send_files(&mut stream, set, &names);
    // Closing our end makes a receiver still waiting for bytes fail instead of hanging.
    let _ = stream.shutdown(Shutdown::Both);
    drop(stream);
    let received = receiver
        .join()
        .map_err(|_| anyhow!("raw TCP receiver thread panicked"))?;
    let done = match (sent, received) {
        (Ok(()), Ok(done)) => done,
        (Err(send), Err(recv)) => {
            bail!("raw TCP copy failed: sender: {send:#}; receiver: {recv:#}")
        }
        (Err(send), Ok(_)) => return Err(send.context("raw TCP sender")),
        (Ok(()), Err(recv)) => return Err(recv.context("raw TCP receiver")),
    };
    let elapsed = done.duration_since(start);
    verify_copies(set, dest_dir, &names).context("raw TCP copy")?;
    Ok(elapsed)
}

fn send_files(stream: &mut TcpStream, set: &PhotoSet, names: &[String]) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.write_all(&(names.len() as u64).to_be_bytes())?;
    for (path, name) in set.files.iter().zip(names) {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata()?.len();
        let mut header = Vec::with_capacity(2 + name.len() + 8);
        header.extend_from_slice(&u16::try_from(name.len())?.to_be_bytes());
        header.extend_from_slice(name.as_bytes());
        header.extend_from_slice(&size.to_be_bytes());
        stream.write_all(&header)?;
        let sent = io::copy(&mut file.take(size), stream)?;
        ensure!(sent == size, "{} shrank while being sent", path.display());
    }
    stream.flush()?;
    Ok(())
}

/// Accepts one connection and writes the files it carries; returns when the last one is synced.
fn receive_files(listener: &TcpListener, dest: &Path, count: usize) -> Result<Instant> {
    let (mut stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(RAW_READ_TIMEOUT))?;
    let announced = read_u64(&mut stream)?;
    ensure!(
        announced == count as u64,
        "expected {count} files, sender announced {announced}"
    );
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..count {
        let mut name_len = [0u8; 2];
        stream.read_exact(&mut name_len)?;
        let mut name = vec![0u8; usize::from(u16::from_be_bytes(name_len))];
        stream.read_exact(&mut name)?;
        let name = String::from_utf8(name).context("file name is not UTF-8")?;
        ensure!(
            !name.is_empty() && !name.contains('/') && name != "." && name != "..",
            "refusing file name {name:?}"
        );
        let mut left = read_u64(&mut stream)?;
        let path = dest.join(&name);
        let mut file =
            File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = stream.read(&mut buf[..want])?;
            ensure!(got > 0, "connection closed in the middle of {name}");
            file.write_all(&buf[..got])?;
            left -= got as u64;
        }
        file.sync_all()?;
    }
    sync_dir(dest)?;
    Ok(Instant::now())
}

fn read_u64(r: &mut impl Read) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

// ---------------------------------------------------------------------------------------------
// Anchor 2: Syncthing
// ---------------------------------------------------------------------------------------------

/// Folder ID of the shared folder on both devices.
const FOLDER_ID: &str = "kith-bench";
/// Syncthing's folder marker; it must exist in a folder's root or the folder will not start.
const MARKER: &str = ".stfolder";
/// Interval between REST polls. It bounds how late the end of a transfer is noticed.
const POLL: Duration = Duration::from_millis(50);
/// Timeout of one REST call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `syncthing` is on PATH (and runs); the bench prints
/// "syncthing: not installed (apt-get install syncthing)" otherwise.
pub fn syncthing_available() -> bool {
    Command::new("syncthing")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two Syncthing homes on loopback (temp dirs under `work_dir`, free ports), A sharing `set`'s
/// folder send-only to B's empty send-receive folder; returns the time from both devices
/// connected-and-folder-shared until B's copy is complete, plus the syncthing version string
/// (e.g. `v1.19.2-ds1`).
///
/// What the clock covers: before it starts, both processes are up, A has finished its initial
/// scan (every file hashed and in its index), the devices are connected (TLS done) and B has the
/// folder configured but paused. The clock starts right before B's folder is unpaused through the
/// REST API ("B accepts the share"), so it includes B starting the folder, the index exchange,
/// the block requests, B's SHA-256 check of every block, its writes, `fsync`s and renames and its
/// database updates. It stops at the first poll (every 50 ms) where B's `/rest/db/status` shows
/// every file of the set known and nothing needed, `/rest/db/completion` says 100 %, and every
/// file is present in B's folder with the right size. Then, outside the clock, both processes
/// are killed and every copy is compared with its source by BLAKE3.
///
/// The shared folder is the directory holding the set's files; it must hold nothing else (a
/// `.stfolder` marker is created there for the run and removed afterwards). The homes are
/// configured in their `config.xml` (made by `syncthing generate`) before the first start: no
/// global or local discovery, no relays, no NAT traversal, no usage or crash reporting, no
/// auto-upgrade, no lowered process priority, no filesystem watcher; each listens only on
/// `tcp://127.0.0.1:<free port>`, its GUI/REST API on another free loopback port, and knows the
/// other's address. Every process started is killed when this returns, also on error or panic.
/// `work_dir` is created if needed; homes, logs and B's copy are left in it.
pub fn syncthing_sync(set: &PhotoSet, work_dir: &Path) -> Result<(Duration, String)> {
    fs::create_dir_all(work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
    let work_dir = work_dir.canonicalize()?;
    let logs = [
        work_dir.join("syncthing-a.log"),
        work_dir.join("syncthing-b.log"),
    ];
    run_syncthing(set, &work_dir, &logs).map_err(|e| {
        // The processes are gone by now; their last log lines usually say what went wrong.
        let tails: Vec<String> = logs
            .iter()
            .map(|log| format!("--- {} ---\n{}", log.display(), log_tail(log, 15)))
            .collect();
        anyhow!("syncthing: {e:#}\n{}", tails.join("\n"))
    })
}

fn run_syncthing(
    set: &PhotoSet,
    work_dir: &Path,
    logs: &[PathBuf; 2],
) -> Result<(Duration, String)> {
    let names = file_names(set)?;
    let src_dir = shared_dir(set, &names)?;
    let dest_dir = work_dir.join("b-photos");
    if dest_dir.exists() {
        ensure!(
            fs::read_dir(&dest_dir)?.all(|e| e.is_ok_and(|e| e.file_name() == MARKER)),
            "{} is not empty",
            dest_dir.display()
        );
    }
    fs::create_dir_all(dest_dir.join(MARKER))?;
    let _src_marker = TempMarker::create(&src_dir)?;

    let [gui_a, listen_a, gui_b, listen_b] = free_ports::<4>()?;
    let home_a = Home::generate(&work_dir.join("a-home"))?;
    let home_b = Home::generate(&work_dir.join("b-home"))?;
    home_a.configure(&FolderPlan {
        gui_port: gui_a,
        listen_port: listen_a,
        path: &src_dir,
        kind: "sendonly",
        paused: false,
        peer: &home_b.device_id,
        peer_port: listen_b,
    })?;
    home_b.configure(&FolderPlan {
        gui_port: gui_b,
        listen_port: listen_b,
        path: &dest_dir,
        kind: "sendreceive",
        paused: true,
        peer: &home_a.device_id,
        peer_port: listen_a,
    })?;

    let mut procs = Procs {
        a: Proc::start("A", &home_a.dir, &logs[0])?,
        b: Proc::start("B", &home_b.dir, &logs[1])?,
    };
    let api_a = Api::new(gui_a, &home_a.api_key);
    let api_b = Api::new(gui_b, &home_b.api_key);

    wait_until(
        &mut procs,
        "both REST APIs",
        Duration::from_secs(30),
        || Ok(api_a.get("/rest/system/ping").is_ok() && api_b.get("/rest/system/ping").is_ok()),
    )?;
    let version = api_a.get("/rest/system/version")?["version"]
        .as_str()
        .context("no version in /rest/system/version")?
        .to_owned();

    let n = set.files.len() as u64;
    let status_path = format!("/rest/db/status?folder={FOLDER_ID}");
    let scan_timeout = Duration::from_secs(60 + set.bytes / 20_000_000);
    wait_until(&mut procs, "A's initial scan", scan_timeout, || {
        let s = api_a.get(&status_path)?;
        Ok(s["state"] == "idle"
            && s["localFiles"].as_u64() == Some(n)
            && s["localBytes"].as_u64() == Some(set.bytes))
    })?;
    wait_until(
        &mut procs,
        "A and B to connect",
        Duration::from_secs(60),
        || Ok(connected(&api_a, &home_b.device_id)? && connected(&api_b, &home_a.device_id)?),
    )?;

    // B's folder is paused: nothing may have arrived yet, or the clock would start late.
    ensure!(
        fs::read_dir(&dest_dir)?.all(|e| e.is_ok_and(|e| e.file_name() == MARKER)),
        "B received files before its folder was unpaused"
    );
    let start = Instant::now();
    api_b.patch(
        &format!("/rest/config/folders/{FOLDER_ID}"),
        &json!({ "paused": false }),
    )?;
    let sync_timeout = Duration::from_secs(120 + set.bytes / 5_000_000);
    wait_until(&mut procs, "B to complete the folder", sync_timeout, || {
        let s = api_b.get(&status_path)?;
        if s["pullErrors"].as_u64().unwrap_or(0) > 0 {
            bail!("B reports pull errors: {s}");
        }
        if !(s["globalFiles"].as_u64() == Some(n)
            && s["globalBytes"].as_u64() == Some(set.bytes)
            && s["needTotalItems"].as_u64() == Some(0)
            && s["inSyncFiles"].as_u64() == Some(n))
        {
            return Ok(false);
        }
        let c = api_b.get(&format!("/rest/db/completion?folder={FOLDER_ID}"))?;
        if c["completion"].as_f64() != Some(100.0) || c["needBytes"].as_u64() != Some(0) {
            return Ok(false);
        }
        Ok(all_present(set, &dest_dir, &names))
    })?;
    let elapsed = start.elapsed();
    drop(procs);

    verify_copies(set, &dest_dir, &names).context("syncthing copy")?;
    Ok((elapsed, version))
}

/// What [`Home::configure`] writes into a home's `config.xml`.
struct FolderPlan<'a> {
    gui_port: u16,
    listen_port: u16,
    path: &'a Path,
    /// Syncthing folder type: `sendonly`, `sendreceive`, ...
    kind: &'a str,
    paused: bool,
    peer: &'a str,
    peer_port: u16,
}

/// A Syncthing home directory made by `syncthing generate`.
struct Home {
    dir: PathBuf,
    device_id: String,
    api_key: String,
}

impl Home {
    fn generate(dir: &Path) -> Result<Home> {
        ensure!(!dir.exists(), "{} already exists", dir.display());
        let dir_s = path_str(dir)?;
        run_quiet(&[
            "generate",
            "--home",
            dir_s,
            "--no-default-folder",
            "--skip-port-probing",
        ])?;
        let id_out = run_quiet(&["serve", "--home", dir_s, "--device-id"])?;
        let device_id = id_out.trim().to_owned();
        ensure!(
            device_id.len() == 63
                && device_id
                    .chars()
                    .all(|c| c == '-' || c.is_ascii_alphanumeric()),
            "unexpected device ID {device_id:?}"
        );
        let config = fs::read_to_string(dir.join("config.xml"))?;
        let api_key = elem_text(&config, "gui", "apikey")?.to_owned();
        ensure!(!api_key.is_empty(), "generated config.xml has no API key");
        Ok(Home {
            dir: dir.to_path_buf(),
            device_id,
            api_key,
        })
    }

    /// Locks the home down to loopback and adds the peer and the shared folder.
    fn configure(&self, plan: &FolderPlan) -> Result<()> {
        let path = self.dir.join("config.xml");
        let mut xml = fs::read_to_string(&path)?;
        let listen = format!("tcp://127.0.0.1:{}", plan.listen_port);
        for (tag, value) in [
            ("listenAddress", listen.as_str()),
            ("globalAnnounceEnabled", "false"),
            ("localAnnounceEnabled", "false"),
            ("relaysEnabled", "false"),
            ("natEnabled", "false"),
            ("announceLANAddresses", "false"),
            ("urAccepted", "-1"),
            ("autoUpgradeIntervalH", "0"),
            ("crashReportingEnabled", "false"),
            ("startBrowser", "false"),
            ("setLowPriority", "false"),
            ("reconnectionIntervalS", "5"),
        ] {
            set_elem(&mut xml, "options", tag, value)?;
        }
        set_elem(
            &mut xml,
            "gui",
            "address",
            &format!("127.0.0.1:{}", plan.gui_port),
        )?;
        let gui_at = xml.find("<gui ").context("config.xml has no <gui>")?;
        let gui_tag_end = gui_at + xml[gui_at..].find('>').context("unterminated <gui>")?;
        let gui_tag = xml[gui_at..gui_tag_end].replace(r#"tls="true""#, r#"tls="false""#);
        xml.replace_range(gui_at..gui_tag_end, &gui_tag);

        // New elements start from the `<defaults>` templates of the generated config, so that
        // every setting not named here has Syncthing's default value.
        let (folder_tpl, device_tpl) = defaults_templates(&xml);
        let mut folder = folder_tpl.unwrap_or_default();
        remove_elems(&mut folder, "device")?;
        let len = folder.len();
        set_elem_in(&mut folder, 0..len, "paused", &plan.paused.to_string())?;
        let len = folder.len();
        set_elem_in(&mut folder, 0..len, "markerName", MARKER)?;
        let mut device = device_tpl.unwrap_or_default();
        let peer_addr = format!("tcp://127.0.0.1:{}", plan.peer_port);
        for (tag, value) in [
            ("address", peer_addr.as_str()),
            ("paused", "false"),
            ("autoAcceptFolders", "false"),
        ] {
            let len = device.len();
            set_elem_in(&mut device, 0..len, tag, value)?;
        }
        let (me, peer) = (&self.device_id, plan.peer);
        let folder_and_peer = format!(
            r#"<folder id="{FOLDER_ID}" label="{FOLDER_ID}" path="{path}" type="{kind}" rescanIntervalS="3600" fsWatcherEnabled="false" fsWatcherDelayS="10" ignorePerms="false" autoNormalize="true">
        <device id="{me}" introducedBy=""></device>
        <device id="{peer}" introducedBy=""></device>
        {folder}
    </folder>
    <device id="{peer}" name="peer" compression="metadata" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        {device}
    </device>
    "#,
            path = xml_escape(path_str(plan.path)?),
            kind = plan.kind,
        );
        xml.insert_str(gui_at, &folder_and_peer);
        fs::write(&path, xml)?;
        Ok(())
    }
}

/// A running `syncthing serve`, killed when dropped.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn start(name: &'static str, home: &Path, log: &Path) -> Result<Proc> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let child = Command::new("syncthing")
            .arg("serve")
            .arg("--home")
            .arg(home)
            .args([
                "--no-browser",
                "--no-restart",
                "--no-upgrade",
                "--no-default-folder",
            ])
            // Log lines with microsecond timestamps.
            .arg("--logflags=6")
            // Without STMONITORED, `serve` runs as a monitor process that starts the real
            // syncthing as its child; killing the monitor would leave the child running.
            .env("STMONITORED", "1")
            .env("STNORESTART", "1")
            .env("STNOUPGRADE", "1")
            .env("STNODEFAULTFOLDER", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting syncthing")?;
        Ok(Proc { name, child })
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("syncthing {} exited early ({status})", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Procs {
    a: Proc,
    b: Proc,
}

/// Polls `ready` every [`POLL`] until it says yes, either process dies or `timeout` passes.
/// Errors from `ready` count as "not yet" (e.g. while the API starts) unless they persist.
fn wait_until(
    procs: &mut Procs,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        procs.a.check_alive()?;
        procs.b.check_alive()?;
        let last_err = match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            let why = last_err
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{why}");
        }
        thread::sleep(POLL);
    }
}

/// Syncthing's REST API on loopback.
struct Api {
    agent: ureq::Agent,
    base: String,
    key: String,
}

impl Api {
    fn new(port: u16, key: &str) -> Api {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .proxy(None)
            .build()
            .into();
        Api {
            agent,
            base: format!("http://127.0.0.1:{port}"),
            key: key.to_owned(),
        }
    }

    fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.agent
            .get(&url)
            .header("X-API-Key", &self.key)
            .call()
            .with_context(|| format!("GET {url}"))?
            .into_body()
            .read_json()
            .with_context(|| format!("GET {url}: reading JSON"))
    }

    fn patch(&self, path: &str, body: &Value) -> Result<()> {
        let url = format!("{}{path}", self.base);
        self.agent
            .patch(&url)
            .header("X-API-Key", &self.key)
            .send_json(body)
            .with_context(|| format!("PATCH {url}"))?;
        Ok(())
    }
}

fn connected(api: &Api, peer: &str) -> Result<bool> {
    let c = api.get("/rest/system/connections")?;
    Ok(c["connections"][peer]["connected"].as_bool() == Some(true))
}

/// Runs `syncthing ARGS` to completion (stdin closed) and returns its stdout.
fn run_quiet(args: &[&str]) -> Result<String> {
    let out = Command::new("syncthing")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running syncthing {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "syncthing {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates Syncthing's folder marker in the shared source folder for the run, and removes it
/// again if it was not there before.
struct TempMarker(Option<PathBuf>);

impl TempMarker {
    fn create(dir: &Path) -> Result<TempMarker> {
        let marker = dir.join(MARKER);
        if marker.exists() {
            return Ok(TempMarker(None));
        }
        fs::create_dir(&marker).with_context(|| format!("creating {}", marker.display()))?;
        Ok(TempMarker(Some(marker)))
    }
}

impl Drop for TempMarker {
    fn drop(&mut self) {
        if let Some(marker) = &self.0 {
            let _ = fs::remove_dir_all(marker);
        }
    }
}

/// The directory holding all of `set`'s files, which Syncthing will share whole: it must not
/// hold anything else.
fn shared_dir(set: &PhotoSet, names: &[String]) -> Result<PathBuf> {
    let first = set.files.first().context("the photo set is empty")?;
    let dir = first.parent().context("photo without a parent directory")?;
    ensure!(
        set.files.iter().all(|f| f.parent() == Some(dir)),
        "Syncthing shares one folder: every file of the set must be directly in {}",
        dir.display()
    );
    let ours: HashSet<&str> = names.iter().map(String::as_str).collect();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        ensure!(
            name == MARKER || ours.contains(name.as_ref()),
            "{} also holds {name:?}, which is not in the photo set (Syncthing would sync it too)",
            dir.display()
        );
    }
    Ok(dir.canonicalize()?)
}

fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // Hold all listeners at once so the ports differ; syncthing binds them a moment later.
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

/// Sets `<tag>value</tag>` inside the first `<scope …>…</scope>` element, adding it if missing.
fn set_elem(xml: &mut String, scope: &str, tag: &str, value: &str) -> Result<()> {
    let (start, end) = scope_range(xml, scope)?;
    set_elem_in(xml, start..end, tag, value)
}

/// Sets `<tag>value</tag>` within `xml[range]`, adding it at the end of the range if missing.
fn set_elem_in(
    xml: &mut String,
    range: std::ops::Range<usize>,
    tag: &str,
    value: &str,
) -> Result<()> {
    let (start, end) = (range.start, range.end);
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    match xml[start..end].find(&open) {
        Some(at) => {
            let from = start + at + open.len();
            let to = from
                + xml[from..end]
                    .find(&close)
                    .with_context(|| format!("unterminated <{tag}> in config.xml"))?;
            xml.replace_range(from..to, value);
        }
        None => xml.insert_str(end, &format!("    {open}{value}{close}\n    ")),
    }
    Ok(())
}

/// Inner XML of the `<folder>` and `<device>` templates in the config's `<defaults>`
/// (Syncthing 1.12+), which carry every default value.
fn defaults_templates(xml: &str) -> (Option<String>, Option<String>) {
    let Ok((start, end)) = scope_range(xml, "defaults") else {
        return (None, None);
    };
    let defaults = &xml[start..end];
    let folder = scope_range(defaults, "folder").ok();
    // The folder template holds `<device>` children: the device template comes after it.
    let after = folder.map_or(0, |(_, e)| e);
    let device = scope_range(&defaults[after..], "device")
        .ok()
        .map(|(s, e)| defaults[after + s..after + e].trim().to_owned());
    let folder = folder.map(|(s, e)| defaults[s..e].trim().to_owned());
    (folder, device)
}

/// Removes every `<tag …>…</tag>` and `<tag …/>` element from `xml`.
fn remove_elems(xml: &mut String, tag: &str) -> Result<()> {
    let (open, close) = (format!("<{tag} "), format!("</{tag}>"));
    while let Some(at) = xml.find(&open) {
        let tag_end = at + xml[at..].find('>').context("unterminated tag")?;
        let end = if xml[..tag_end].ends_with('/') {
            tag_end + 1
        } else {
            at + xml[at..].find(&close).context("unterminated element")? + close.len()
        };
        xml.replace_range(at..end, "");
    }
    Ok(())
}

/// Text of `<tag>` inside the first `<scope …>` element.
fn elem_text<'x>(xml: &'x str, scope: &str, tag: &str) -> Result<&'x str> {
    let (start, end) = scope_range(xml, scope)?;
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let from = start
        + xml[start..end]
            .find(&open)
            .with_context(|| format!("no <{tag}> in <{scope}> of config.xml"))?
        + open.len();
    let to = from
        + xml[from..end]
            .find(&close)
            .context("unterminated element")?;
    Ok(&xml[from..to])
}

/// Byte range of the content of the first `<scope>` / `<scope …>` element.
fn scope_range(xml: &str, scope: &str) -> Result<(usize, usize)> {
    let open = [format!("<{scope}>"), format!("<{scope} ")]
        .iter()
        .filter_map(|o| xml.find(o.as_str()))
        .min()
        .with_context(|| format!("no <{scope}> in config.xml"))?;
    let start = open + xml[open..].find('>').context("unterminated tag")? + 1;
    let end = start
        + xml[start..]
            .find(&format!("</{scope}>"))
            .with_context(|| format!("unterminated <{scope}> in config.xml"))?;
    Ok((start, end))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The files' names, which must be UTF-8 and distinct (copies land side by side).
fn file_names(set: &PhotoSet) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    set.files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has no UTF-8 file name", f.display()))?
                .to_owned();
            ensure!(
                seen.insert(name.clone()),
                "two files of the set are named {name}"
            );
            Ok(name)
        })
        .collect()
}

/// Whether every file is in `dest` with its source's size.
fn all_present(set: &PhotoSet, dest: &Path, names: &[String]) -> bool {
    set.files.iter().zip(names).all(|(src, name)| {
        match (fs::metadata(src), fs::metadata(dest.join(name))) {
            (Ok(s), Ok(d)) => d.is_file() && s.len() == d.len(),
            _ => false,
        }
    })
}

/// Compares every copy in `dest` with its source: size, then BLAKE3 of the content.
fn verify_copies(set: &PhotoSet, dest: &Path, names: &[String]) -> Result<()> {
    let mut total = 0;
    for (src, name) in set.files.iter().zip(names) {
        let copy = dest.join(name);
        let (a, len) = hash_file(src)?;
        let (b, _) = hash_file(&copy)?;
        ensure!(a == b, "{} differs from {}", copy.display(), src.display());
        total += len;
    }
    ensure!(
        total == set.bytes,
        "the set's files hold {total} bytes, the set says {}",
        set.bytes
    );
    Ok(())
}

fn hash_file(path: &Path) -> Result<(blake3::Hash, u64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(BufReader::with_capacity(1 << 20, file))?;
    Ok((hasher.finalize(), hasher.count()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?
        .sync_all()
        .with_context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_set_copies_are_distinct_jpegs() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let set = make_photo_set(&tmp.path().join("set"), 5_000_000)?;
        assert!(set.bytes >= 5_000_000);
        let mut hashes = HashSet::new();
        let mut total = 0;
        for f in &set.files {
            let bytes = fs::read(f)?;
            total += bytes.len() as u64;
            assert_eq!(&bytes[..4], &[0xFF, 0xD8, 0xFF, 0xFE]);
            let seg_len = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
            assert!(bytes[6..4 + seg_len].starts_with(b"kith bench copy "));
            // The original's second marker follows the comment segment.
            assert_eq!(bytes[4 + seg_len], 0xFF);
            assert!(hashes.insert(blake3::hash(&bytes)));
        }
        assert_eq!(total, set.bytes);
        Ok(())
    }

    #[test]
    fn raw_tcp_copy_copies_everything() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let set = make_photo_set(&tmp.path().join("set"), 3_000_000)?;
        let elapsed = raw_tcp_copy(&set, &tmp.path().join("copy"))?;
        assert!(elapsed > Duration::ZERO);
        Ok(())
    }

    #[test]
    fn set_elem_replaces_and_inserts() -> Result<()> {
        let mut xml = "<configuration><device id=\"x\"><address>dynamic</address></device>\
                       <gui enabled=\"true\"><address>127.0.0.1:8384</address></gui>\
                       <options><natEnabled>true</natEnabled></options></configuration>"
            .to_owned();
        set_elem(&mut xml, "gui", "address", "127.0.0.1:1")?;
        set_elem(&mut xml, "options", "natEnabled", "false")?;
        set_elem(&mut xml, "options", "relaysEnabled", "false")?;
        assert!(xml.contains("<address>dynamic</address>"));
        assert!(xml.contains("<address>127.0.0.1:1</address>"));
        assert!(xml.contains("<natEnabled>false</natEnabled>"));
        assert!(xml.contains("<relaysEnabled>false</relaysEnabled>"));
        assert_eq!(elem_text(&xml, "gui", "address")?, "127.0.0.1:1");
        Ok(())
    }
}
