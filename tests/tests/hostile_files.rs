//! A folder of crafted files (built by `kith_node::media::crafted`, none stored), the corpus's
//! own hostile files (MANIFEST `reject:` rows) and two good photos, imported with the real
//! `kith import`: every hostile file is skipped with a reason naming it, the good photos are
//! imported, and the command ends.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kith_node::media::crafted::hostile_set;
use kith_tests::corpus::{self, Expect};
use kith_tests::{TestNode, parse_lines, wait_until};

/// For the whole command: each hostile file is refused from its headers in milliseconds,
/// so this only stops a hung import from hanging the suite.
const WHOLE_IMPORT: Duration = Duration::from_secs(60);

const GOOD: [&str; 2] = [
    "camera/canon-powershot-s40_flower.jpg",
    "formats/png/hopper.png",
];

#[test]
fn every_crafted_file_is_skipped_with_a_reason_and_good_photos_still_import() -> Result<()> {
    let node = TestNode::initialised()?;
    let folder = tempfile::tempdir()?;
    let mut hostile = Vec::new();
    for file in hostile_set() {
        std::fs::write(folder.path().join(file.name), &file.bytes)?;
        hostile.push((file.name.to_owned(), file.what.to_owned(), None));
    }
    for row in corpus::manifest()? {
        if let Expect::Reject(code) = &row.expect {
            let name = format!("corpus_{}", row.file_name());
            std::fs::copy(row.abs_path(), folder.path().join(&name))
                .with_context(|| row.path.clone())?;
            hostile.push((name, format!("corpus {}", row.path), Some(code.clone())));
        }
    }
    for good in GOOD {
        let name = good.rsplit('/').next().unwrap_or(good);
        std::fs::copy(corpus::dir().join(good), folder.path().join(name))?;
    }

    let started = Instant::now();
    let (status, stdout) = run_with_deadline(&node, folder.path())?;
    let took = started.elapsed();
    let lines = parse_lines(&stdout)?;
    eprintln!(
        "import of {} hostile and {} good files took {took:?}",
        hostile.len(),
        GOOD.len()
    );

    let line_for = |name: &str| {
        lines.iter().find(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| Path::new(p).file_name() == Some(name.as_ref()))
        })
    };
    let mut failures = Vec::new();
    for (name, what, code) in &hostile {
        let Some(line) = line_for(name) else {
            failures.push(format!("{name} ({what}): not reported"));
            continue;
        };
        let reason = line["reason"].as_str().unwrap_or("");
        let code_ok = code.as_ref().is_none_or(|c| reason.starts_with(c.as_str()));
        // A reason is a code, a colon and a sentence for people.
        let explained = reason
            .split_once(": ")
            .is_some_and(|(c, text)| !c.is_empty() && !c.contains(' ') && text.len() > 20);
        if line["status"] != "skipped" || !code_ok || !explained {
            failures.push(format!(
                "{name} ({what}): want skipped with a reason, got {line}"
            ));
        }
    }
    for good in GOOD {
        let name = good.rsplit('/').next().unwrap_or(good);
        match line_for(name) {
            Some(line) if line["status"] == "imported" => {}
            other => failures.push(format!("{good}: want imported, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} files wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let summary = lines.last().context("no summary line")?;
    assert_eq!(summary["imported"], GOOD.len());
    assert_eq!(summary["skipped"], hostile.len());
    assert_eq!(status, Some(2), "exit status 2: files were skipped");
    Ok(())
}

/// Runs `kith import FOLDER --json`, killing it if it outlives [`WHOLE_IMPORT`].
fn run_with_deadline(node: &TestNode, folder: &Path) -> Result<(Option<i32>, Vec<u8>)> {
    let mut child = node
        .command(&["import", folder.to_str().context("utf-8 path")?, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = child.stdout.take().context("stdout")?;
    // Read while it runs, so a full pipe cannot stall it.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let mut status = None;
    let waited = wait_until(WHOLE_IMPORT, "kith import to end", || {
        status = child.try_wait()?;
        Ok(status.is_some())
    });
    if let Err(e) = waited {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader panicked"))?;
    Ok((status.and_then(|s| s.code()), out))
}
