//! `kill -9` of the node at random moments during imports: every photo that had been reported
//! imported survives and exports intact.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kith_tests::{TestNode, XorShift, wait_until};
use serde_json::Value;

const CYCLES: usize = 20;
const PHOTOS_PER_CYCLE: usize = 6;

/// A distinct JPEG photo: a seeded pattern, so every file is a different photo.
fn write_photo(path: &Path, seed: u64) -> Result<()> {
    let mut rng = XorShift::new(seed);
    let (a, b, c) = (
        rng.range(1, 7) as u32,
        rng.range(1, 7) as u32,
        rng.range(0, 255) as u32,
    );
    let img = image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([
            ((x * a + y) % 256) as u8,
            ((y * b + x / 3) % 256) as u8,
            ((x ^ y).wrapping_add(c) % 256) as u8,
        ])
    });
    let file = std::fs::File::create(path)?;
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 85);
    encoder.encode_image(&img)?;
    Ok(())
}

#[test]
fn kill_9_during_import_loses_nothing_reported() -> Result<()> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    eprintln!("crash test seed: {seed}");
    let mut rng = XorShift::new(seed);
    let mut node = TestNode::initialised()?;
    let src = tempfile::tempdir()?;
    let mut reported: HashMap<String, PathBuf> = HashMap::new();
    let mut next_photo = 0u64;

    for cycle in 0..CYCLES {
        for _ in 0..PHOTOS_PER_CYCLE {
            write_photo(
                &src.path().join(format!("photo_{next_photo:04}.jpg")),
                seed ^ (next_photo + 1),
            )?;
            next_photo += 1;
        }
        node.start()
            .with_context(|| format!("restart before cycle {cycle}"))?;
        // Everything reported before is still there after the restart.
        let listed: Vec<String> = node
            .json(&["photos", "--json"])?
            .as_array()
            .context("photos array")?
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        for id in reported.keys() {
            assert!(
                listed.contains(id),
                "cycle {cycle}: photo {id} was reported imported but is gone"
            );
        }

        let mut import = node
            .command(&["import", src.path().to_str().unwrap(), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = import.stdout.take().context("import stdout")?;
        let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    if let Ok(v) = serde_json::from_str(&line) {
                        lines.lock().unwrap().push(v);
                    }
                }
            })
        };
        // Kill after a random number of reported files plus a random extra moment (which may
        // fall inside a commit, between blobs and change, or after the end).
        let wait_for = rng.range(0, 4) as usize;
        let _ = wait_until(Duration::from_secs(60), "reported files", || {
            Ok(lines.lock().unwrap().len() >= wait_for)
        });
        let extra = Instant::now() + Duration::from_millis(rng.range(0, 400));
        while Instant::now() < extra {
            std::thread::yield_now();
        }
        node.kill9()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while import.try_wait()?.is_none() {
            assert!(
                Instant::now() < deadline,
                "the import client hung after the node died"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        reader.join().expect("reader thread");
        for line in lines.lock().unwrap().iter() {
            if line["status"] == "imported" {
                let id = line["id"].as_str().context("id")?.to_owned();
                reported.insert(id, PathBuf::from(line["path"].as_str().context("path")?));
            }
        }
    }
    assert!(
        !reported.is_empty(),
        "no cycle got as far as one reported import"
    );

    // Offline now: every reported photo exports byte-identical to its source.
    let out = tempfile::tempdir()?;
    let (_, lines) = node.json_lines(&["export", out.path().to_str().unwrap(), "--json"])?;
    for (id, source) in &reported {
        let exported = lines
            .iter()
            .find(|l| l["id"] == Value::String(id.clone()) && l["status"] != "failed")
            .and_then(|l| l["path"].as_str())
            .with_context(|| format!("photo {id} ({}) not exported", source.display()))?;
        assert_eq!(
            std::fs::read(exported)?,
            std::fs::read(source)?,
            "{id} differs"
        );
    }
    // And a last import completes whatever the kills interrupted.
    let (_, done) = node.json_lines(&["import", src.path().to_str().unwrap(), "--json"])?;
    let summary = done.last().context("summary")?;
    assert_eq!(
        summary["imported"].as_u64().unwrap_or(0) + summary["duplicates"].as_u64().unwrap_or(0),
        next_photo,
        "{summary}"
    );
    eprintln!(
        "crash test: {} photos reported before kills over {CYCLES} cycles",
        reported.len()
    );
    Ok(())
}
