//! Nothing kith writes to disk holds a plaintext EXIF string, file name, album title or any
//! run of an original's bytes.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use kith_tests::corpus::{self, Expect};
use kith_tests::walk;

use crate::fixture::{ALBUM, corpus_library};

/// Length of the runs of original bytes that must not appear on disk.
const RUN: usize = 32;
const BLOCK: usize = RUN / 2;

/// A run made of few distinct bytes (padding, fill, quantisation tables of zeros) identifies
/// nothing and also occurs in any database file; such runs are not counted as leaks, and such
/// blocks are not indexed (a 32-byte run of photo data has high-entropy aligned blocks).
fn is_low_entropy(run: &[u8], min_distinct: usize) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for b in run {
        if !seen[*b as usize] {
            seen[*b as usize] = true;
            distinct += 1;
        }
    }
    distinct < min_distinct
}

/// Every plaintext found under `dir`, as readable lines.
fn scan(dir: &Path) -> Result<Vec<String>> {
    let rows = corpus::manifest()?;
    let mut needles: Vec<(String, Vec<u8>)> =
        vec![("album title".into(), ALBUM.as_bytes().to_vec())];
    for row in &rows {
        needles.push((
            format!("file name of {}", row.path),
            row.file_name().as_bytes().to_vec(),
        ));
        if row.expect == Expect::Ok {
            for (what, value) in [
                ("make", row.make.clone()),
                ("model", row.model.clone()),
                ("date", row.datetime_original.clone()),
                ("taken-at", row.taken_at()),
            ] {
                if let Some(v) = value.filter(|v| v.len() >= 4) {
                    needles.push((format!("{what} of {}", row.path), v.into_bytes()));
                }
            }
        }
    }
    // Index every aligned 16-byte block of every imported original and of the preview and
    // thumbnail kith renders from it (rendering is deterministic, so these are the plaintext
    // renditions that were encrypted): any 32-byte run contains one whole aligned block.
    let mut originals: Vec<(String, Vec<u8>)> = Vec::new();
    for row in rows.iter().filter(|r| r.expect == Expect::Ok) {
        let bytes = std::fs::read(row.abs_path())?;
        if let Ok(rendered) = kith_node::media::analyze(&bytes) {
            originals.push((
                format!("the preview of {}", row.path),
                rendered.preview.bytes,
            ));
            originals.push((
                format!("the thumbnail of {}", row.path),
                rendered.thumbnail.bytes,
            ));
        }
        originals.push((row.path.clone(), bytes));
    }
    let mut blocks: HashMap<[u8; BLOCK], Vec<(usize, usize)>> = HashMap::new();
    for (index, (_, bytes)) in originals.iter().enumerate() {
        for (n, chunk) in bytes.chunks_exact(BLOCK).enumerate() {
            if let Ok(block) = <[u8; BLOCK]>::try_from(chunk)
                && !is_low_entropy(&block, 6)
            {
                blocks.entry(block).or_default().push((index, n * BLOCK));
            }
        }
    }
    let finder = aho_corasick::AhoCorasick::new(needles.iter().map(|(_, n)| n))?;
    let files = walk(dir);
    let mut leaks = Vec::new();
    for file in &files {
        let data = std::fs::read(file)?;
        // A needle of 4 to 7 bytes turns up by chance in tens of MB of ciphertext (about once
        // per 4 GiB per needle for 4 bytes, and the blob files hold tens of MB), so short needles
        // are not looked for in the blob files; those are covered by the 32-byte-run scan below,
        // whose originals and renditions hold these same EXIF strings.
        let ciphertext_blob = file.components().any(|c| c.as_os_str() == "blobs")
            && file.extension().is_some_and(|e| e == "data");
        for m in finder.find_overlapping_iter(&data) {
            if ciphertext_blob && needles[m.pattern().as_usize()].1.len() < 8 {
                continue;
            }
            leaks.push(format!(
                "{} contains the {}",
                file.display(),
                needles[m.pattern().as_usize()].0
            ));
        }
        for at in 0..data.len().saturating_sub(BLOCK - 1) {
            let Ok(block) = <[u8; BLOCK]>::try_from(&data[at..at + BLOCK]) else {
                continue;
            };
            let Some(hits) = blocks.get(&block) else {
                continue;
            };
            for &(index, offset) in hits {
                let original = &originals[index].1;
                // Extend the match both ways and see whether it reaches RUN bytes.
                let mut back = 0;
                while back < at
                    && back < offset
                    && data[at - back - 1] == original[offset - back - 1]
                {
                    back += 1;
                }
                let mut fwd = BLOCK;
                while at + fwd < data.len()
                    && offset + fwd < original.len()
                    && data[at + fwd] == original[offset + fwd]
                {
                    fwd += 1;
                }
                let run = &data[at - back..at + fwd];
                if run.len() >= RUN && !is_low_entropy(run, 8) {
                    leaks.push(format!(
                        "{} holds {} bytes of {} at offset {}",
                        file.display(),
                        run.len(),
                        originals[index].0,
                        at - back
                    ));
                }
            }
        }
    }
    leaks.sort();
    leaks.dedup();
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
