//! Two devices: invite, join, and replication of documents and blobs over libp2p.

use anyhow::{Context, Result};
use kith_tests::TestNode;
use kith_tests::cluster::Cluster;
use kith_tests::corpus;
use kith_tests::import;

#[test]
fn invite_join_import_on_a_shows_on_b_with_identical_originals() -> Result<()> {
    let cluster = Cluster::start(2)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let files = corpus::some_photos(6)?;
    import(a, &files, "Summer 2026")?;
    cluster.wait_converged()?;

    let on_a = a.json(&["photos", "--json"])?;
    let on_b = b.json(&["photos", "--json"])?;
    assert_eq!(on_a, on_b);
    assert_eq!(on_b.as_array().map(Vec::len), Some(files.len()));
    let albums = b.json(&["albums", "--json"])?;
    assert_eq!(albums[0]["title"], "Summer 2026");

    let from_a = a.exported()?;
    let from_b = b.exported()?;
    assert_eq!(from_a.len(), files.len());
    assert_eq!(from_a, from_b, "B's export must equal A's byte for byte");

    // Both devices know each other, and each marks itself.
    let devices = b.json(&["devices", "--json"])?;
    let devices = devices.as_array().context("devices is a list")?;
    assert_eq!(devices.len(), 2);
    assert_eq!(devices.iter().filter(|d| d["this"] == true).count(), 1);
    assert!(devices.iter().all(|d| d["online"] == true), "{devices:?}");
    Ok(())
}

#[test]
fn edits_on_both_sides_converge_and_flow_both_ways() -> Result<()> {
    let cluster = Cluster::start(2)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let files = corpus::some_photos(4)?;
    import(a, &files[..2], "Trip")?;
    cluster.wait_converged()?;
    // B imports its own photos into the same album, A renames it meanwhile.
    import(b, &files[2..], "Trip")?;
    a.ok(&["albums", "rename", "Trip", "Trip to the sea"])?;
    cluster.wait_converged()?;
    for node in [a, b] {
        let albums = node.json(&["albums", "--json"])?;
        let titles: Vec<&str> = albums
            .as_array()
            .context("list")?
            .iter()
            .filter_map(|x| x["title"].as_str())
            .collect();
        assert!(titles.contains(&"Trip to the sea"), "{titles:?}");
        let photos = node.json(&["photos", "--album", "Trip to the sea", "--json"])?;
        assert_eq!(photos.as_array().map(Vec::len), Some(4), "{photos}");
    }
    assert_eq!(a.exported()?, b.exported()?);
    Ok(())
}

#[test]
fn a_device_that_was_offline_catches_up() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    cluster.nodes[1].stop()?;
    let files = corpus::some_photos(5)?;
    import(&cluster.nodes[0], &files, "While away")?;
    cluster.nodes[1].start()?;
    cluster.wait_converged()?;
    let photos = cluster.nodes[1].json(&["photos", "--json"])?;
    assert_eq!(photos.as_array().map(Vec::len), Some(files.len()));
    assert_eq!(cluster.nodes[0].exported()?, cluster.nodes[1].exported()?);
    Ok(())
}

/// A device that ran kith alone joins a family: its photos and albums (nesting included) become
/// part of the family's library, re-keyed, with byte-identical originals on both devices, and
/// its data dir as it was is kept beside the new one.
#[test]
fn joining_with_a_library_of_its_own_brings_it_into_the_family() -> Result<()> {
    let files = corpus::some_photos(5)?;
    let mut a = TestNode::initialised()?;
    a.start()?;
    import(&a, &files[..2], "Family")?;

    let mut b = TestNode::initialised()?;
    import(&b, &files[2..], "Mine")?;
    b.ok(&["albums", "create", "Best", "--parent", "Mine"])?;
    let before = b.json(&["photos", "--json"])?;
    let before = before.as_array().context("photos is a list")?.clone();
    let first = before[0]["id"].as_str().context("photo id")?.to_owned();
    b.ok(&["albums", "add", "Mine/Best", &first])?;

    let joined = b.json(&["join", &a.invite()?, "--name", "B", "--json"])?;
    let kept = &joined["kept"];
    assert_eq!(kept["photos"], 3, "{joined}");
    assert_eq!(kept["albums"], 2, "{joined}");
    assert_eq!(
        kept["skipped"].as_array().map(Vec::len),
        Some(0),
        "{joined}"
    );
    let previous = std::path::PathBuf::from(kept["previous_data_dir"].as_str().context("path")?);
    assert!(
        previous.is_dir(),
        "the data dir as it was is kept at {previous:?}"
    );

    b.start()?;
    let cluster = Cluster { nodes: vec![a, b] };
    cluster.wait_converged()?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let on_a = a.json(&["photos", "--json"])?;
    assert_eq!(on_a, b.json(&["photos", "--json"])?);
    assert_eq!(on_a.as_array().map(Vec::len), Some(5));
    // Re-keyed: the family's secret makes other ids than B's own family's did.
    let ids: Vec<&str> = on_a
        .as_array()
        .context("photos is a list")?
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(
        before
            .iter()
            .all(|p| !ids.contains(&p["id"].as_str().unwrap_or_default()))
    );

    let albums = a.json(&["albums", "--json"])?;
    let paths: Vec<(&str, u64)> = albums
        .as_array()
        .context("albums is a list")?
        .iter()
        .filter_map(|x| Some((x["path"].as_str()?, x["photos"].as_u64()?)))
        .collect();
    for expected in [("Family", 2), ("Mine", 3), ("Mine/Best", 1)] {
        assert!(paths.contains(&expected), "{expected:?} not in {paths:?}");
    }
    assert_eq!(a.exported()?, b.exported()?, "originals identical on both");
    Ok(())
}
