//! Captions, favourites, tags and the trash: edits on one device reach the others, concurrent
//! edits merge, nothing typed lands on disk in plaintext, and bad ids are named in the error.

use anyhow::{Context, Result};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::corpus::some_photos;
use kith_tests::leaks::Needles;
use kith_tests::{TestNode, ids, import, wait_until, walk};
use serde_json::Value;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Waits until `kith photos show ID --json` on `node` satisfies `done`; returns what it showed.
fn wait_for_photo(
    node: &TestNode,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(SYNC_DEADLINE, what, || {
        last = node.json(&["photos", "show", id, "--json"])?;
        Ok(done(&last))
    })
    .with_context(|| format!("last seen: {last}"))?;
    Ok(last)
}

/// A person's library is changed only by their devices and by admins: B edits A's photos as
/// an admin.
fn make_second_an_admin(cluster: &Cluster) -> Result<()> {
    cluster.nodes[0].ok(&["people", "set-role", "Person 1", "admin"])?;
    wait_until(SYNC_DEADLINE, "B to know it is an admin", || {
        Ok(cluster.nodes[1].json(&["status", "--json"])?["role"] == "admin")
    })
}

#[test]
fn caption_favourite_and_tags_set_on_a_show_on_b_and_concurrent_edits_merge() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    make_second_an_admin(&cluster)?;
    let files = some_photos(2)?;
    import(&cluster.nodes[0], &files, "Garden")?;
    cluster.wait_converged()?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let photos = ids(&a.json(&["photos", "--json"])?)?;
    let id = photos[0].clone();

    // An edit on A, through A's running node, by a prefix of the id.
    let edited = a.json(&[
        "photos",
        "edit",
        &id[..10],
        "--caption",
        "Grandma's roses",
        "--favourite",
        "--tag",
        "roses",
        "--tag",
        "family",
        "--json",
    ])?;
    assert_eq!(edited["caption"], "Grandma's roses");
    let on_b = wait_for_photo(b, &id, "A's edit to reach B", |p| {
        p["caption"] == "Grandma's roses"
    })?;
    assert_eq!(on_b["favourite"], true, "{on_b}");
    assert_eq!(
        on_b["tags"],
        serde_json::json!(["family", "roses"]),
        "{on_b}"
    );
    // The filters see it on B too.
    assert_eq!(
        ids(&b.json(&["photos", "--favourites", "--json"])?)?,
        std::slice::from_ref(&id)
    );
    assert_eq!(
        ids(&b.json(&["photos", "--tag", "roses", "--json"])?)?,
        std::slice::from_ref(&id)
    );
    assert_eq!(
        b.json(&["photos", "--tag", "tulips", "--json"])?,
        serde_json::json!([])
    );

    // Concurrent edits of different fields: B edits while its node is stopped (the command
    // opens the data dir itself), A edits meanwhile; then B comes back.
    cluster.nodes[1].stop()?;
    cluster.nodes[1].ok(&[
        "photos",
        "edit",
        &id,
        "--no-favourite",
        "--untag",
        "family",
        "--tag",
        "garden",
    ])?;
    cluster.nodes[0].ok(&[
        "photos",
        "edit",
        &id,
        "--caption",
        "Roses, June",
        "--tag",
        "june",
    ])?;
    cluster.nodes[1].start()?;
    cluster.wait_converged()?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let want = serde_json::json!(["garden", "june", "roses"]);
    for (name, node) in [("A", a), ("B", b)] {
        let p = wait_for_photo(node, &id, "both edits on both devices", |p| {
            p["tags"] == want
        })?;
        assert_eq!(p["caption"], "Roses, June", "{name}: {p}");
        assert_eq!(p["favourite"], false, "{name}: {p}");
    }
    assert_eq!(
        a.json(&["photos", "--json"])?,
        b.json(&["photos", "--json"])?
    );
    Ok(())
}

#[test]
fn trash_on_b_hides_the_photo_on_a_and_restore_brings_it_back() -> Result<()> {
    let cluster = Cluster::start(2)?;
    make_second_an_admin(&cluster)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let files = some_photos(3)?;
    import(a, &files, "Beach")?;
    cluster.wait_converged()?;
    let all = ids(&a.json(&["photos", "--json"])?)?;
    let gone = all[1].clone();

    let trashed = b.json(&["trash", &gone[..8], "--json"])?;
    let trashed_at = trashed[0]["trashed_at_ms"]
        .as_u64()
        .context("trashed_at_ms")?;
    assert_eq!(
        trashed[0]["purge_at_ms"].as_u64(),
        Some(trashed_at + 30 * DAY_MS)
    );

    let mut last = Value::Null;
    wait_until(
        SYNC_DEADLINE,
        "the trashed photo to leave A's listing",
        || {
            last = a.json(&["photos", "--json"])?;
            Ok(!ids(&last)?.contains(&gone))
        },
    )
    .with_context(|| format!("A still lists {last}"))?;
    assert_eq!(ids(&last)?.len(), 2);
    assert!(!ids(&a.json(&["photos", "--album", "Beach", "--json"])?)?.contains(&gone));
    assert_eq!(a.json(&["albums", "--json"])?[0]["photos"], 2);
    assert_eq!(a.json(&["status", "--json"])?["photos"], 2);
    let in_trash = a.json(&["trash", "list", "--json"])?;
    assert_eq!(ids(&in_trash)?, std::slice::from_ref(&gone));
    assert_eq!(in_trash[0]["trashed_at_ms"].as_u64(), Some(trashed_at));
    assert_eq!(
        ids(&a.json(&["trash", "--json"])?)?,
        std::slice::from_ref(&gone)
    );

    // Restored on A, it is back on B, in its album too.
    a.ok(&["trash", "restore", &gone])?;
    wait_until(SYNC_DEADLINE, "the restored photo on B", || {
        Ok(ids(&b.json(&["photos", "--album", "Beach", "--json"])?)?.contains(&gone))
    })?;
    assert_eq!(b.json(&["trash", "--json"])?, serde_json::json!([]));
    cluster.wait_converged()?;
    assert_eq!(
        a.json(&["photos", "--json"])?,
        b.json(&["photos", "--json"])?
    );
    Ok(())
}

#[test]
fn captions_and_tags_are_not_on_disk_in_plaintext() -> Result<()> {
    const CAPTION: &str = "Uncle Bartholomew's 70th birthday";
    const TAG: &str = "bartholomew-party";
    let mut node = TestNode::initialised()?;
    import(&node, &some_photos(2)?, "Party")?;
    node.start()?;
    let id = ids(&node.json(&["photos", "--json"])?)?[0].clone();
    node.ok(&["photos", "edit", &id, "--caption", CAPTION, "--tag", TAG])?;
    node.stop()?;
    // The edit is there (the scan below looks at a data dir that holds it).
    let shown = node.json(&["photos", "show", &id, "--json"])?;
    assert_eq!(shown["caption"], CAPTION, "{shown}");

    let needles = Needles::new(&[CAPTION, TAG], &[], &[])?;
    let mut leaks = Vec::new();
    for file in walk(&node.data_dir) {
        let data = std::fs::read(&file)?;
        leaks.extend(needles.scan(&file.display().to_string(), &data, 0));
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // The scan does find them where they are in plaintext.
    let planted = format!("xx {CAPTION} xx");
    assert!(!needles.scan("planted", planted.as_bytes(), 0).is_empty());
    Ok(())
}

#[test]
fn unknown_or_wrong_photos_are_named_in_the_error() -> Result<()> {
    let node = TestNode::initialised()?;
    import(&node, &some_photos(1)?, "One")?;
    let id = ids(&node.json(&["photos", "--json"])?)?[0].clone();
    for args in [
        &["photos", "edit", "deadbeef00", "--favourite"][..],
        &["photos", "show", "deadbeef00"],
        &["trash", "deadbeef00"],
        &["trash", "restore", "deadbeef00"],
    ] {
        let out = node.run(args)?;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no photo matches \"deadbeef00\""),
            "{args:?}: {err}"
        );
    }
    // All or nothing: one unknown id among good ones trashes none.
    let out = node.run(&["trash", &id, "deadbeef00"])?;
    assert!(!out.status.success());
    assert_eq!(node.json(&["trash", "--json"])?, serde_json::json!([]));

    let out = node.run(&["trash", "restore", &id])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("photo {id} is not in the trash")),
        "{err}"
    );
    let out = node.run(&["photos", "edit", &id])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to change"), "{err}");
    let out = node.run(&["photos", "edit", &id, "--caption", " "])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-caption"), "{err}");
    // Nothing was written by the refused edits.
    let shown = node.json(&["photos", "show", &id, "--json"])?;
    assert_eq!(shown["caption"], Value::Null);
    assert_eq!(shown["tags"], serde_json::json!([]));
    Ok(())
}

/// An acknowledged edit and trash survive the node being killed right after (kill -9).
#[test]
fn an_edit_is_committed_before_it_is_acknowledged() -> Result<()> {
    let mut node = TestNode::initialised()?;
    import(&node, &some_photos(1)?, "Crash")?;
    node.start()?;
    let id = ids(&node.json(&["photos", "--json"])?)?[0].clone();
    node.ok(&["photos", "edit", &id, "--caption", "kept", "--favourite"])?;
    node.ok(&["trash", &id])?;
    node.kill9()?;
    let trash = node.json(&["trash", "--json"])?;
    assert_eq!(trash[0]["caption"], "kept", "{trash}");
    assert_eq!(trash[0]["favourite"], true, "{trash}");
    Ok(())
}

/// The export sidecar carries what a person added; an export run again finds it its own and
/// writes nothing; a photo in the trash is not exported.
#[test]
fn exports_carry_edits_and_leave_out_the_trash() -> Result<()> {
    let node = TestNode::initialised()?;
    import(&node, &some_photos(2)?, "Out")?;
    let all = ids(&node.json(&["photos", "--json"])?)?;
    node.ok(&[
        "photos",
        "edit",
        &all[0],
        "--caption",
        "Lake",
        "--favourite",
        "--tag",
        "x",
    ])?;
    node.ok(&["trash", &all[1]])?;
    let out = tempfile::tempdir()?;
    let dir = out.path().join("export");
    let dir_arg = dir.to_str().context("utf-8 path")?;
    let (_, first) = node.json_lines(&["export", dir_arg, "--json"])?;
    assert_eq!(first.last().context("summary")?["written"], 1, "{first:?}");
    let sidecars: Vec<_> = walk(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".kith.json"))
        .collect();
    assert_eq!(sidecars.len(), 1);
    let sidecar: Value = serde_json::from_slice(&std::fs::read(&sidecars[0])?)?;
    assert_eq!(sidecar["id"], all[0].as_str());
    assert_eq!(sidecar["caption"], "Lake");
    assert_eq!(sidecar["favourite"], true);
    assert_eq!(sidecar["tags"], serde_json::json!(["x"]));
    let (_, again) = node.json_lines(&["export", dir_arg, "--json"])?;
    assert_eq!(again.last().context("summary")?["written"], 0, "{again:?}");
    Ok(())
}
