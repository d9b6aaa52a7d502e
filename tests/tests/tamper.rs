//! Flipped bytes on disk are detected and reported, never shown or exported as a photo.

use anyhow::{Context, Result};
use std::time::Duration;

use kith_tests::{wait_until, walk};

use crate::fixture::corpus_library;

#[test]
fn a_flipped_byte_in_a_blob_fails_that_photo_only() -> Result<()> {
    let node = corpus_library().node();
    let biggest = walk(&node.data_dir.join("blobs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .context("no blob data files")?;
    let mut bytes = std::fs::read(&biggest)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&biggest, bytes)?;

    let out = tempfile::tempdir()?;
    let (status, lines) = node.json_lines(&["export", out.path().to_str().unwrap(), "--json"])?;
    assert_eq!(
        status.status.code(),
        Some(2),
        "a failed photo must show in the exit status"
    );
    let failed: Vec<_> = lines.iter().filter(|l| l["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let reason = failed[0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("damaged"), "{reason}");
    let path = failed[0]["path"].as_str().unwrap_or("");
    assert!(
        !std::path::Path::new(path).exists(),
        "a damaged photo was written out"
    );
    assert!(lines.last().unwrap()["written"].as_u64().unwrap() > 10);
    Ok(())
}

/// A flipped byte in a stored change. Opening reads only the changes no snapshot holds, so a
/// command run without the node may not read this one; what it shows comes from the sealed
/// snapshots and is what it was. The running node reads and checks every stored change once
/// it starts, and reports the flipped one.
#[test]
fn a_flipped_byte_in_a_sealed_change_is_reported_not_shown() -> Result<()> {
    let mut node = corpus_library().node();
    let before = node.json(&["status", "--json"])?;
    let listed_before = node.json(&["photos", "--json"])?;
    let db = node.data_dir.join("kith.redb");
    let mut bytes = std::fs::read(&db)?;
    // Sealed changes start with the magic "KCH" and format version 1; flip one byte inside the
    // first one's body.
    let at = bytes
        .windows(4)
        .position(|w| w == b"KCH\x01")
        .context("no sealed change found in the database file")?;
    bytes[at + 150] ^= 0x40;
    std::fs::write(&db, bytes)?;

    let reported = |status: &serde_json::Value| -> Result<bool> {
        let damaged = status["damaged"].as_array().context("damaged list")?;
        Ok(damaged.iter().any(|d| {
            d.as_str()
                .is_some_and(|d| d.contains("flipped bytes") || d.contains("change"))
        }))
    };
    let out = node.run(&["status", "--json"])?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("damaged"), "{err}");
        return Ok(());
    }
    let after: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(after["changes"] == before["changes"]);
    assert!(after["photos"].as_u64() <= before["photos"].as_u64());
    if !reported(&after)? {
        // Not read at open: what is shown is what the snapshots hold, unchanged.
        assert_eq!(node.json(&["photos", "--json"])?, listed_before);
    }
    node.start()?;
    wait_until(
        Duration::from_secs(60),
        "the node to report the flipped change",
        || reported(&node.json(&["status", "--json"])?),
    )?;
    let status = node.json(&["status", "--json"])?;
    assert!(status["photos"].as_u64() <= before["photos"].as_u64());
    node.stop()?;
    Ok(())
}
