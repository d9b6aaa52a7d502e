//! Flipped bytes on disk are detected and reported, never shown or exported as a photo.

use anyhow::{Context, Result};
use kith_tests::walk;

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

#[test]
fn a_flipped_byte_in_a_sealed_change_is_reported_not_shown() -> Result<()> {
    let node = corpus_library().node();
    let before = node.json(&["status", "--json"])?;
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

    let out = node.run(&["status", "--json"])?;
    if out.status.success() {
        let after: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let damaged = after["damaged"].as_array().context("damaged list")?;
        assert!(
            !damaged.is_empty(),
            "the flipped change went unnoticed: {after}"
        );
        assert!(after["changes"] == before["changes"]);
        assert!(after["photos"].as_u64() <= before["photos"].as_u64());
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("damaged"), "{err}");
    }
    Ok(())
}
