//! Import of the corpus: every MANIFEST expectation, duplicates, re-import, exit status.

use std::collections::HashMap;

use anyhow::Result;
use kith_tests::TestNode;
use kith_tests::corpus::{self, Expect};
use serde_json::Value;

use crate::fixture::{ALBUM, corpus_library};

#[test]
fn every_manifest_row_gets_its_expected_outcome() -> Result<()> {
    let lib = corpus_library();
    let rows = corpus::manifest()?;
    let mut failures = Vec::new();
    for row in &rows {
        let Some(line) = lib.line_for(&row.path) else {
            failures.push(format!("{}: not reported at all", row.path));
            continue;
        };
        let status = line["status"].as_str().unwrap_or("");
        // Of two copies of one photo, whichever import meets first is imported, the other is
        // its duplicate: both name the same photo id.
        let has_copy = |path: &str| {
            rows.iter()
                .any(|r| r.expect == Expect::DuplicateOf(path.to_owned()))
        };
        match &row.expect {
            Expect::Ok => {
                if status != "imported" && !(status == "duplicate" && has_copy(&row.path)) {
                    failures.push(format!("{}: expected imported, got {line}", row.path));
                }
            }
            Expect::DuplicateOf(original) => {
                let original_line = lib.line_for(original);
                let same_id = original_line.map(|l| l["id"].clone()) == Some(line["id"].clone());
                let original_status = original_line
                    .and_then(|l| l["status"].as_str())
                    .unwrap_or("");
                let one_each = matches!(
                    (status, original_status),
                    ("duplicate", "imported") | ("imported", "duplicate")
                );
                if !same_id || !one_each {
                    failures.push(format!(
                        "{}: expected the same photo as {original} (one imported, one duplicate), got {line}",
                        row.path
                    ));
                }
            }
            Expect::Reject(code) => {
                let reason = line["reason"].as_str().unwrap_or("");
                if status != "skipped" || !reason.starts_with(code.as_str()) {
                    failures.push(format!(
                        "{}: expected skipped ({code}), got {line}",
                        row.path
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let summary = lib.lines.last().expect("summary line");
    let count = |f: fn(&Expect) -> bool| rows.iter().filter(|r| f(&r.expect)).count();
    assert_eq!(summary["imported"], count(|e| *e == Expect::Ok));
    assert_eq!(
        summary["duplicates"],
        count(|e| matches!(e, Expect::DuplicateOf(_)))
    );
    // MANIFEST.tsv and README.md are in the corpus folder too, and are not photos.
    assert_eq!(
        summary["skipped"],
        count(|e| matches!(e, Expect::Reject(_))) + 2
    );
    assert_eq!(
        lib.exit_code,
        Some(2),
        "exit status 2 tells a script that files were skipped"
    );
    Ok(())
}

#[test]
fn imported_photos_carry_the_manifest_metadata() -> Result<()> {
    let lib = corpus_library();
    let node = lib.node();
    let photos = node.json(&["photos", "--json"])?;
    let by_id: HashMap<String, &Value> = photos
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_owned(), p))
        .collect();
    let rows = corpus::manifest()?;
    let mut dup_names: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &rows {
        if let Expect::DuplicateOf(original) = &r.expect {
            dup_names
                .entry(original.as_str())
                .or_default()
                .push(r.file_name());
        }
    }
    let mut failures = Vec::new();
    for row in rows.iter().filter(|r| r.expect == Expect::Ok) {
        let id = lib
            .line_for(&row.path)
            .and_then(|l| l["id"].as_str())
            .unwrap_or("");
        let Some(p) = by_id.get(id) else {
            failures.push(format!("{}: not listed", row.path));
            continue;
        };
        let mut check = |what: &str, ok: bool| {
            if !ok {
                failures.push(format!("{}: {what} differs: {p}", row.path));
            }
        };
        check("width", p["width"].as_u64() == row.width.map(u64::from));
        check("height", p["height"].as_u64() == row.height.map(u64::from));
        check(
            "display_width",
            p["display_width"].as_u64() == row.display_width.map(u64::from),
        );
        check(
            "display_height",
            p["display_height"].as_u64() == row.display_height.map(u64::from),
        );
        check("make", p["make"].as_str() == row.make.as_deref());
        check("model", p["model"].as_str() == row.model.as_deref());
        check(
            "taken_at",
            p["taken_at"].as_str().map(str::to_owned) == row.taken_at(),
        );
        check(
            "orientation",
            p["orientation"].as_u64() == row.orientation.map(u64::from),
        );
        let gps = p["gps"].as_object().map(|g| {
            (
                g["lat"].as_f64().unwrap_or(0.0),
                g["lon"].as_f64().unwrap_or(0.0),
            )
        });
        let gps_ok = match (gps, row.gps) {
            (None, None) => true,
            (Some((a, b)), Some((c, d))) => (a - c).abs() < 1e-6 && (b - d).abs() < 1e-6,
            _ => false,
        };
        check("gps", gps_ok);
        // A photo imported from a copy carries the name of the copy met first.
        let copies: Vec<&str> = std::iter::once(row.file_name())
            .chain(
                dup_names
                    .get(row.path.as_str())
                    .into_iter()
                    .flatten()
                    .copied(),
            )
            .collect();
        check(
            "file name",
            p["file_name"].as_str().is_some_and(|n| copies.contains(&n)),
        );
        check("album", p["albums"] == serde_json::json!([ALBUM]));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn photos_are_listed_newest_first() -> Result<()> {
    let node = corpus_library().node();
    let photos = node.json(&["photos", "--json"])?;
    let taken: Vec<&str> = photos
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["taken_at"].as_str())
        .collect();
    let mut sorted = taken.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(taken, sorted);
    Ok(())
}

#[test]
fn reimport_reports_everything_as_duplicate() -> Result<()> {
    let lib = corpus_library();
    let node = lib.node();
    let corpus_dir = corpus::dir();
    let (out, lines) = node.json_lines(&["import", corpus_dir.to_str().unwrap(), "--json"])?;
    assert_eq!(out.status.code(), Some(2));
    let first = lib.lines.last().unwrap();
    let summary = lines.last().unwrap();
    assert_eq!(summary["imported"], 0);
    assert_eq!(
        summary["duplicates"].as_u64().unwrap(),
        first["imported"].as_u64().unwrap() + first["duplicates"].as_u64().unwrap()
    );
    assert_eq!(summary["skipped"], first["skipped"]);
    Ok(())
}

#[test]
fn a_clean_import_exits_zero_and_the_same_file_twice_is_one_photo() -> Result<()> {
    let node = TestNode::initialised()?;
    let dir = tempfile::tempdir()?;
    let src = corpus::dir().join("camera/canon-powershot-s40_flower.jpg");
    std::fs::copy(&src, dir.path().join("a.jpg"))?;
    std::fs::create_dir(dir.path().join("sub"))?;
    std::fs::copy(&src, dir.path().join("sub/b copy.jpg"))?;
    let (out, lines) = node.json_lines(&["import", dir.path().to_str().unwrap(), "--json"])?;
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["imported"], 1);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(
        node.json(&["photos", "--json"])?.as_array().unwrap().len(),
        1
    );
    Ok(())
}
