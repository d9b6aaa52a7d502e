//! The command line on one device: init, uninitialised data dirs, albums.

use std::collections::BTreeMap;

use anyhow::Result;
use kith_tests::TestNode;

/// Every file under the data dir with its length and a hash of its bytes.
fn snapshot(node: &TestNode) -> BTreeMap<String, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    node.files()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            (p.display().to_string(), (bytes.len(), hasher.finish()))
        })
        .collect()
}

#[test]
fn init_twice_is_refused_and_changes_nothing() -> Result<()> {
    let node = TestNode::initialised()?;
    let before = snapshot(&node);
    let out = node.run(&["init", "--name", "Bea"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already initialised"), "{err}");
    assert_eq!(before, snapshot(&node), "a refused init changed files");
    Ok(())
}

#[test]
fn commands_on_an_uninitialised_data_dir_say_to_run_init() -> Result<()> {
    let node = TestNode::new();
    for args in [
        &["photos"][..],
        &["albums"],
        &["status"],
        &["import", "/nonexistent"],
    ] {
        let out = node.run(args)?;
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("kith init"), "{args:?}: {err}");
    }
    Ok(())
}

#[cfg(unix)]
#[test]
fn secret_files_are_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let node = TestNode::initialised()?;
    let mode = std::fs::metadata(node.data_dir.join("keys/device.key"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

#[test]
fn status_names_the_admin_and_counts_nothing_yet() -> Result<()> {
    let node = TestNode::initialised()?;
    let status = node.json(&["status", "--json"])?;
    assert_eq!(status["person"], "Ana");
    assert_eq!(status["role"], "admin");
    assert_eq!(status["photos"], 0);
    assert_eq!(status["running"], false);
    Ok(())
}

#[test]
fn albums_nest_rename_and_refuse_bad_names() -> Result<()> {
    let node = TestNode::initialised()?;
    node.ok(&["albums", "create", "Trips"])?;
    node.ok(&["albums", "create", "Lisbon", "--parent", "Trips"])?;
    let albums = node.json(&["albums", "--json"])?;
    let paths: Vec<&str> = albums
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["Trips", "Trips/Lisbon"]);

    node.ok(&["albums", "rename", "Trips/Lisbon", "Porto"])?;
    let albums = node.json(&["albums", "--json"])?;
    assert_eq!(albums[1]["path"], "Trips/Porto");

    let dup = node.run(&["albums", "create", "Trips"])?;
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let missing = node.run(&["albums", "add", "Nope", "abcdef"])?;
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no album named"));
    let missing_parent = node.run(&["albums", "create", "X", "--parent", "Nope"])?;
    assert!(!missing_parent.status.success());
    Ok(())
}

#[test]
fn people_lists_this_device_and_a_rename_persists() -> Result<()> {
    let mut node = TestNode::initialised()?;
    let people = node.json(&["people", "--json"])?;
    assert_eq!(people.as_array().map(Vec::len), Some(1));
    assert_eq!(people[0]["name"], "Ana");
    assert_eq!(people[0]["role"], "admin");
    assert_eq!(people[0]["devices"][0]["this"], true);

    node.ok(&["people", "rename", "Ana Lima"])?;
    assert_eq!(node.json(&["status", "--json"])?["person"], "Ana Lima");

    // Through the running node, and still there after it stops.
    node.start()?;
    node.ok(&["people", "rename", "Ana L."])?;
    node.stop()?;
    assert_eq!(node.json(&["people", "--json"])?[0]["name"], "Ana L.");
    let empty = node.run(&["people", "rename", "  "])?;
    assert!(!empty.status.success());
    Ok(())
}

#[test]
fn a_wrong_command_line_exits_1_not_the_skipped_status_2() -> Result<()> {
    let node = TestNode::new();
    let out = node.run(&["frobnicate"])?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(node.run(&["--help"])?.status.code(), Some(0));
    Ok(())
}

#[test]
fn a_reader_that_goes_away_ends_a_listing_quietly() -> Result<()> {
    let node = TestNode::initialised()?;
    // The pipe's reading end is closed before kith writes: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = node
        .command(&["people"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.status.success());
    Ok(())
}
