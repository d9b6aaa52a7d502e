//! Test harness: real `kith` processes on temp data dirs, the photo corpus, and waiting on
//! conditions with deadlines (never bare sleeps).

pub mod cluster;
pub mod corpus;
pub mod hostile;
pub mod in_process;
pub mod leaks;
pub mod peer;
pub mod prover;
pub mod relay;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The `kith` binary under test: `KITH_BIN`, else the one cargo built next to this test.
pub fn kith_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KITH_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/kith
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("kith{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds it) or set KITH_BIN",
        bin.display()
    );
    bin
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// One device: a temp data dir and, while started, its `kith run` process.
pub struct TestNode {
    _dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    /// The node's log (stderr of `kith run`), beside the data dir, not in it.
    pub log_file: PathBuf,
    node: Option<Child>,
}

impl Default for TestNode {
    fn default() -> Self {
        Self::new()
    }
}

impl TestNode {
    /// A fresh, uninitialised data dir.
    pub fn new() -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let log_file = dir.path().join("node.log");
        TestNode {
            _dir: dir,
            data_dir,
            log_file,
            node: None,
        }
    }

    /// A node whose data dir is a copy of `source` (a prepared library).
    pub fn copy_of(source: &Path) -> Result<TestNode> {
        let node = TestNode::new();
        copy_dir(source, &node.data_dir)?;
        Ok(node)
    }

    /// A fresh node initialised for a person named Ana.
    pub fn initialised() -> Result<TestNode> {
        let node = TestNode::new();
        node.ok(&["init", "--name", "Ana"])?;
        Ok(node)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kith_bin());
        cmd.args(args)
            .env("KITH_DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kith ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.command(args)
            .output()
            .with_context(|| format!("running kith {args:?}"))
    }

    /// Runs `kith ARGS`, requires success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "kith {args:?} failed with {}:\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command with `--json` output and parses it as one value.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let out = self.ok(args)?;
        serde_json::from_str(&out).with_context(|| format!("kith {args:?} printed {out}"))
    }

    /// Parses newline-delimited JSON from stdout, whatever the exit status.
    pub fn json_lines(&self, args: &[&str]) -> Result<(Output, Vec<Value>)> {
        let out = self.run(args)?;
        let lines = parse_lines(&out.stdout)?;
        Ok((out, lines))
    }

    /// Starts `kith run` and waits until its API answers.
    pub fn start(&mut self) -> Result<()> {
        assert!(self.node.is_none(), "node already started");
        let api_file = self.data_dir.join("api.json");
        let _ = std::fs::remove_file(&api_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .context("opening the node log")?;
        let child = self
            .command(&[
                "run",
                "--api",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .env("RUST_LOG", "warn,kith_node=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning kith run")?;
        self.node = Some(child);
        wait_until(Duration::from_secs(60), "the node's API", || {
            if let Some(child) = self.node.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("kith run exited early with {status}");
            }
            if !api_file.exists() {
                return Ok(false);
            }
            let out = self.run(&["status", "--json"])?;
            if !out.status.success() {
                return Ok(false);
            }
            let v: Value = serde_json::from_slice(&out.stdout)?;
            Ok(v["running"] == Value::Bool(true))
        })
    }

    /// The node's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.node.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.node.take().context("node not started")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("node did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the node with SIGKILL (a crash).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.node.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Every regular file under the data dir.
    pub fn files(&self) -> Vec<PathBuf> {
        walk(&self.data_dir)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.node.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `kith import --album ALBUM FILES` on `node`.
pub fn import(node: &TestNode, files: &[String], album: &str) -> Result<()> {
    let mut args = vec!["import", "--album", album];
    args.extend(files.iter().map(String::as_str));
    node.ok(&args)?;
    Ok(())
}

/// The `id` of each entry of a `--json` listing (photos, trash), in the listing's order.
pub fn ids(list: &Value) -> Result<Vec<String>> {
    Ok(list
        .as_array()
        .context("a list of photos")?
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect())
}

/// The id of the album titled `title` that `node` lists.
pub fn album_id(node: &TestNode, title: &str) -> Result<String> {
    let albums = node.json(&["albums", "--json"])?;
    albums
        .as_array()
        .and_then(|a| a.iter().find(|x| x["title"] == title))
        .and_then(|a| a["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no album {title:?} in {albums}"))
}

/// The ids of the photos `node` lists, all or those in `album`, sorted.
pub fn photo_ids(node: &TestNode, album: Option<&str>) -> Result<Vec<String>> {
    let mut args = vec!["photos", "--json"];
    if let Some(a) = album {
        args.extend(["--album", a]);
    }
    let mut ids = ids(&node.json(&args)?)?;
    ids.sort();
    Ok(ids)
}

pub fn parse_lines(stdout: &[u8]) -> Result<Vec<Value>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for file in walk(from) {
        let rel = file.strip_prefix(from)?;
        let target = to.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&file, &target).with_context(|| format!("copying {}", file.display()))?;
    }
    Ok(())
}

/// A small deterministic generator for test randomness (seed printed by the test).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}
