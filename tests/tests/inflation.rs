//! A change cannot crash a device: a family device (a raw peer with a real device key) sends
//! sealed changes whose automerge content would inflate to hundreds of megabytes or make
//! automerge panic; the same changes written straight into a data dir's database; and records
//! of a real data dir's database corrupted. The node refuses or sets aside what it cannot use,
//! says so in `kith status`, and keeps running.

use std::path::Path;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::{DocRecord, Store};
use kith_protocol::keys::{DeviceSecret, DocId, SymmetricKey};
use kith_protocol::seal::{ChangeHeader, SealedChange, seal_change};
use kith_protocol::wire::{self, SyncMessage};
use kith_tests::cluster::Cluster;
use kith_tests::peer::{RawPeer, Target, hello, runtime};
use kith_tests::{TestNode, album_id};
use redb::{ReadableDatabase, TableDefinition};
use serde_json::Value;

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0) {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn automerge_chunk(chunk_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, chunk_type];
    uleb(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// Bits of a DEFLATE stream, least significant first; Huffman codes go most significant first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, len: u32) {
        self.acc |= value << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A compressed automerge change (chunk type 2) of about `len` bytes: one fixed-Huffman DEFLATE
/// block of a zero byte and then copies of 258 bytes at distance 1, so it inflates 159 times.
fn inflating_change(len: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.put(1, 1); // final block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // the literal 0
    for _ in 0..(len * 8 / 13) {
        bits.code(0xc5, 8); // length 258
        bits.code(0, 5); // distance 1
    }
    bits.code(0, 7); // end of block
    automerge_chunk(2, &bits.finish())
}

/// A change whose action column starts with a literal run of `i64::MIN` values: automerge 0.12
/// takes its `abs()`, which overflows (a panic, as kith's debug and test builds check).
fn panicking_change() -> Vec<u8> {
    let mut body = Vec::new();
    uleb(&mut body, 0); // deps
    uleb(&mut body, 16);
    body.extend([7; 16]); // actor
    uleb(&mut body, 1); // seq
    uleb(&mut body, 1); // start op
    sleb(&mut body, 0); // time
    uleb(&mut body, 0); // message
    uleb(&mut body, 0); // other actors
    let mut key = Vec::new();
    sleb(&mut key, 1);
    uleb(&mut key, 1);
    key.push(b'a');
    let mut action = Vec::new();
    sleb(&mut action, i64::MIN);
    uleb(&mut action, 1);
    let columns: [(u32, Vec<u8>); 5] = [
        ((1 << 4) | 5, key),
        ((3 << 4) | 4, vec![1]),
        ((4 << 4) | 2, action),
        ((5 << 4) | 6, vec![1, 0]),
        (7 << 4, vec![1, 0]),
    ];
    uleb(&mut body, columns.len() as u64);
    for (spec, data) in &columns {
        uleb(&mut body, u64::from(*spec));
        uleb(&mut body, data.len() as u64);
    }
    for (_, data) in &columns {
        body.extend_from_slice(data);
    }
    automerge_chunk(1, &body)
}

/// The key and current epoch of `doc` as the node at `data_dir` holds them.
fn doc_key(data_dir: &Path, secret: &DeviceSecret, doc: &DocId) -> Result<(u32, [u8; 32])> {
    let store = Store::open(&DataDir::new(data_dir).db_file(), secret.storage_key())?;
    let loaded = store.load(data_dir)?;
    let record: &DocRecord = loaded
        .docs
        .iter()
        .find(|(id, _)| id == doc)
        .map(|(_, r)| r)
        .context("the device holds no key for the album")?;
    Ok((record.epoch, record.key))
}

fn sealed(
    key: [u8; 32],
    doc: DocId,
    epoch: u32,
    author: &DeviceSecret,
    nonce: u8,
    change: &[u8],
) -> SealedChange {
    seal_change(
        &SymmetricKey::from_bytes(key),
        &ChangeHeader {
            doc,
            epoch,
            author: author.device_id(),
        },
        [nonce; 24],
        change,
        author,
    )
}

/// Most memory the `kith run` process on `data_dir` has held (VmHWM), in bytes.
fn peak_rss(data_dir: &Path) -> Result<u64> {
    let wanted = format!("KITH_DATA_DIR={}", data_dir.display());
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(environ) = std::fs::read(path.join("environ")) else {
            continue;
        };
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let is_run = cmdline.split(|&b| b == 0).any(|arg| arg == b"run");
        if is_run && environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            let status = std::fs::read_to_string(path.join("status"))?;
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .context("VmHWM")?;
            return Ok(kib * 1024);
        }
    }
    anyhow::bail!("no kith run process for {}", data_dir.display())
}

const MIB: u64 = 1024 * 1024;

#[test]
fn a_devices_inflating_or_panicking_change_is_refused_and_the_node_keeps_running() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    cluster.nodes[0].ok(&["albums", "create", "Kept"])?;
    cluster.wait_converged()?;
    let album: DocId = album_id(&cluster.nodes[0], "Kept")?.parse()?;
    let before = cluster.nodes[0].json(&["status", "--json"])?;
    let t = Target::from_status(&before)?;

    // B goes away; a raw peer with B's own key, holding the album's real key, takes its place.
    cluster.nodes[1].stop()?;
    let b_dir = cluster.nodes[1].data_dir.clone();
    let b_secret = DataDir::new(&b_dir).read_device_secret()?;
    let (epoch, key) = doc_key(&b_dir, &b_secret, &album)?;
    // 3.4 MB that inflate to about 540 MB (a frame holds at most 4 MiB).
    let inflating = sealed(
        key,
        album,
        epoch,
        &b_secret,
        1,
        &inflating_change(3_400_000),
    );
    let panicking = sealed(key, album, epoch, &b_secret, 2, &panicking_change());
    let rss_before = peak_rss(&cluster.nodes[0].data_dir)?;

    let rt = runtime()?;
    rt.block_on(async {
        let mut fake_b =
            RawPeer::connect(kith_node::net::keypair(&b_secret)?, t.peer, t.addr).await?;
        let hello = hello(t.family)?;
        let first = wire::encode_frame(&SyncMessage::Changes(vec![inflating.into_bytes()]))?;
        let second = wire::encode_frame(&SyncMessage::Changes(vec![panicking.into_bytes()]))?;
        fake_b.serve_sync(&[hello, first, second]).await?;
        anyhow::Ok(())
    })?;
    drop(rt);

    let a = &mut cluster.nodes[0];
    assert!(a.is_running(), "A stopped:\n{}", a.log());
    let after = a.json(&["status", "--json"])?;
    assert_eq!(
        after["changes"], before["changes"],
        "a bad change was stored"
    );
    let log = a.log();
    assert_eq!(
        log.matches("rejected a change").count(),
        2,
        "both changes refused:\n{log}"
    );
    assert!(log.contains("inflate past the limit"), "{log}");
    let rss_after = peak_rss(&a.data_dir)?;
    println!(
        "A's peak memory: {} MiB before, {} MiB after",
        rss_before / MIB,
        rss_after / MIB
    );
    assert!(
        rss_after < rss_before + 128 * MIB,
        "receiving the change cost {} MiB",
        (rss_after - rss_before) / MIB
    );

    // A still serves its family: the real B comes back and gets a new album.
    a.ok(&["albums", "create", "After"])?;
    cluster.nodes[1].start()?;
    cluster.wait_converged()?;
    let albums = cluster.nodes[1].json(&["albums", "--json"])?;
    assert_eq!(albums.as_array().map(Vec::len), Some(2));
    Ok(())
}

#[test]
fn a_stored_change_that_would_inflate_or_panic_is_set_aside_and_the_node_starts() -> Result<()> {
    let mut node = TestNode::initialised()?;
    node.ok(&["albums", "create", "Kept"])?;
    let album: DocId = node.json(&["albums", "--json"])?[0]["id"]
        .as_str()
        .context("album id")?
        .parse()?;
    let secret = DataDir::new(&node.data_dir).read_device_secret()?;
    let (epoch, key) = doc_key(&node.data_dir, &secret, &album)?;
    // On disk there is no frame limit: 20 MB that inflate to 3 GB.
    let bad = [
        sealed(key, album, epoch, &secret, 1, &inflating_change(20_000_000)),
        sealed(key, album, epoch, &secret, 2, &panicking_change()),
    ];
    // Stored as kith stores a change it received (with its head), as an older kith that did
    // not check them would have.
    {
        let dir = DataDir::new(&node.data_dir);
        let store = Store::open(&dir.db_file(), secret.storage_key())?;
        store.commit(&kith_node::store::WriteBatch {
            changes: bad.iter().map(|c| (album, c.clone())).collect(),
            ..Default::default()
        })?;
    }

    let status = node.json(&["status", "--json"])?;
    let damaged = status["damaged"].to_string();
    assert!(
        damaged.contains(&album.to_string()),
        "not reported: {status}"
    );
    node.start()?;
    let status = node.json(&["status", "--json"])?;
    assert_eq!(status["running"], Value::Bool(true));
    assert!(
        status["damaged"].to_string().contains(&album.to_string()),
        "{status}"
    );
    assert!(node.is_running());
    Ok(())
}

/// Flips bytes in the middle of every value of `table`.
fn corrupt_values(db_file: &Path, table: &str) -> Result<usize> {
    let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(table);
    let db = redb::Database::open(db_file)?;
    let rows: Vec<(Vec<u8>, Vec<u8>)> = {
        let txn = db.begin_read()?;
        let t = txn.open_table(def)?;
        redb::ReadableTable::iter(&t)?
            .map(|row| {
                let (k, v) = row?;
                Ok((k.value().to_vec(), v.value().to_vec()))
            })
            .collect::<Result<_>>()?
    };
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(def)?;
        for (k, mut v) in rows.clone() {
            let middle = v.len() / 2;
            if let Some(b) = v.get_mut(middle) {
                *b ^= 0x5a;
            }
            t.insert(k.as_slice(), v.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(rows.len())
}

#[test]
fn corrupted_database_records_never_crash_a_node_at_start() -> Result<()> {
    // A data dir with every kind of record: ops, documents and changes, an invite, peers.
    let mut cluster = Cluster::start(2)?;
    cluster.nodes[0].ok(&["albums", "create", "Kept"])?;
    cluster.nodes[0].invite()?;
    cluster.wait_converged()?;
    cluster.nodes[0].stop()?;
    let source = cluster.nodes[0].data_dir.clone();
    for table in ["membership", "docs", "changes", "invites", "peers"] {
        let mut node = TestNode::copy_of(&source)?;
        let n = corrupt_values(&DataDir::new(&node.data_dir).db_file(), table)?;
        assert!(n > 0, "no {table} records to corrupt");
        let status = node.run(&["status", "--json"])?;
        let stderr = String::from_utf8_lossy(&status.stderr);
        // Never a panic (exit 101) or a signal: either the node reports what it set aside, or
        // (a corrupt root of the membership log, without which nothing can be read) it refuses
        // with the reason and what to do.
        assert!(
            !stderr.contains("panicked") && matches!(status.status.code(), Some(0 | 1)),
            "kith status crashed on corrupt {table}: {:?} {stderr}",
            status.status
        );
        if !status.status.success() {
            assert!(stderr.contains("stored data is damaged"), "{stderr}");
            let run = node.run(&["run", "--api", "127.0.0.1:0"])?;
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(
                run.status.code(),
                Some(1),
                "kith run on corrupt {table}: {stderr}"
            );
            assert!(stderr.contains("stored data is damaged"), "{stderr}");
            println!("corrupt {table}: refused with: {}", stderr.trim());
            continue;
        }
        let v: Value = serde_json::from_slice(&status.stdout)?;
        println!("corrupt {table}: starts, damaged = {}", v["damaged"]);
        node.start()
            .with_context(|| format!("kith run on corrupt {table}:\n{}", node.log()))?;
        assert!(!node.log().contains("panicked"), "{}", node.log());
        node.stop()?;
    }
    Ok(())
}
