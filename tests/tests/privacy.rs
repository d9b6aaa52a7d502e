//! Nothing kith writes to disk holds a plaintext EXIF string, file name, album title or any
//! run of an original's bytes.

use std::path::Path;

use anyhow::Result;
use kith_tests::corpus::{self, Expect};
use kith_tests::leaks::Needles;
use kith_tests::walk;

use crate::fixture::{ALBUM, corpus_library};

/// Every plaintext found under `dir`, as readable lines.
fn scan(dir: &Path) -> Result<Vec<String>> {
    let rows = corpus::manifest()?;
    let photos: Vec<_> = rows
        .iter()
        .filter(|r| r.expect == Expect::Ok)
        .cloned()
        .collect();
    let needles = Needles::new(&[ALBUM], &rows, &photos)?;
    let mut leaks = Vec::new();
    for file in walk(dir) {
        let data = std::fs::read(&file)?;
        // A needle of 4 to 7 bytes turns up by chance in tens of MB of ciphertext (about once
        // per 4 GiB per needle for 4 bytes, and the blob files hold tens of MB), so short needles
        // are not looked for in the blob files; those are covered by the 32-byte-run scan,
        // whose originals and renditions hold these same EXIF strings.
        let ciphertext_blob = file.components().any(|c| c.as_os_str() == "blobs")
            && file.extension().is_some_and(|e| e == "data");
        let min_len = if ciphertext_blob { 8 } else { 0 };
        leaks.extend(needles.scan(&file.display().to_string(), &data, min_len));
    }
    Ok(leaks)
}

#[test]
fn data_dir_holds_no_plaintext() -> Result<()> {
    let lib = corpus_library();
    let files = walk(&lib.data_dir);
    assert!(
        files.len() > 3,
        "the data dir is suspiciously empty: {files:?}"
    );
    let leaks = scan(&lib.data_dir)?;
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    Ok(())
}

#[test]
fn the_scan_finds_planted_leaks() -> Result<()> {
    // The scan is only worth something if it can fail.
    let dir = tempfile::tempdir()?;
    let original = std::fs::read(corpus::dir().join("camera/canon-powershot-s40_flower.jpg"))?;
    let mut planted = vec![0u8; 1000];
    planted.extend_from_slice(&original[5003..5040]);
    std::fs::write(dir.path().join("a"), &planted)?;
    std::fs::write(
        dir.path().join("b"),
        b"xx canon-powershot-s40_flower.jpg xx Summer 2026",
    )?;
    let leaks = scan(dir.path())?;
    assert!(
        leaks
            .iter()
            .any(|l| l.contains("bytes of camera/canon-powershot-s40_flower.jpg")),
        "{leaks:?}"
    );
    assert!(
        leaks
            .iter()
            .any(|l| l.contains("file name of camera/canon-powershot-s40_flower.jpg")),
        "{leaks:?}"
    );
    assert!(leaks.iter().any(|l| l.contains("album title")), "{leaks:?}");
    Ok(())
}
