//! Sharing with a relative across real nodes: she receives the shared album and nothing else,
//! views it read-only until she may contribute, and once her device is removed it cannot open
//! what is added later even when handed the ciphertext.

use anyhow::{Context, Result};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE, join_relative};
use kith_tests::corpus::{jpegs, paths};
use kith_tests::leaks::Needles;
use kith_tests::{TestNode, album_id, import, photo_ids, wait_until, walk};
use redb::{ReadableDatabase, ReadableTable};
use serde_json::Value;

const SHARED: &str = "Summer 2026";
const PRIVATE: &str = "Just us";

/// Whether any file under the node's data dir holds `needle` (e.g. a document id, which redb
/// keys of stored changes start with).
fn data_dir_holds(node: &TestNode, needle: &[u8]) -> Result<bool> {
    for file in walk(&node.data_dir) {
        let data = std::fs::read(&file)?;
        if data.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn hex_bytes(hex: &str) -> Result<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("hex"))
        .collect()
}

/// Copies every stored sealed change of `from` into `to` (both stopped): hands `to` the
/// ciphertext of everything `from` holds.
fn hand_over_changes(from: &TestNode, to: &TestNode) -> Result<usize> {
    let source = redb::Database::open(from.data_dir.join("kith.redb"))?;
    let target = redb::Database::open(to.data_dir.join("kith.redb"))?;
    let read = source.begin_read()?;
    let write = target.begin_write()?;
    let mut copied = 0;
    // The changes, and their heads (what opening reads of them), as kith stores both.
    for name in ["changes", "change_heads"] {
        let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
        let rows = read.open_table(table)?;
        let mut out = write.open_table(table)?;
        for row in rows.iter()? {
            let (k, v) = row?;
            out.insert(k.value(), v.value())?;
            copied += usize::from(name == "changes");
        }
    }
    write.commit()?;
    Ok(copied)
}

#[test]
fn a_relative_receives_only_what_is_shared_and_loses_access_on_removal() -> Result<()> {
    let cluster = Cluster::start(2)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let rows = jpegs(7)?;
    import(a, &paths(&rows[0..3]), SHARED)?;
    import(a, &paths(&rows[3..5]), PRIVATE)?;
    a.ok(&["albums", "create", "Beach", "--parent", SHARED])?;
    let shared = album_id(a, SHARED)?;
    let private = album_id(a, PRIVATE)?;
    let summer_photos = photo_ids(a, Some(SHARED))?;

    // Grandma joins as a relative.
    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    g.start()?;
    cluster.wait_converged()?;
    // Before anything is shared she sees nothing, and holds nothing of the family's albums.
    wait_until(SYNC_DEADLINE, "Grandma to be connected", || {
        Ok(g.json(&["devices", "--json"])?
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["online"] == true)))
    })?;
    assert!(photo_ids(&g, None)?.is_empty());
    assert_eq!(g.json(&["albums", "--json"])?, Value::Array(vec![]));

    // A member cannot share the admin's album; the admin shares it for viewing.
    let refused = b.run(&["share", SHARED, "Grandma"])?;
    assert!(!refused.status.success());
    let view = a.json(&["share", SHARED, "Grandma", "--json"])?;
    assert_eq!(view["access"], "view");
    assert_eq!(view["albums"].as_array().map(Vec::len), Some(2), "{view}");

    wait_until(
        SYNC_DEADLINE,
        "Grandma to receive the shared album's photos",
        || Ok(photo_ids(&g, None)? == summer_photos && g.sync_state()?.blobs_wanted == 0),
    )?;
    let mut titles: Vec<String> = g
        .json(&["albums", "--json"])?
        .as_array()
        .context("albums")?
        .iter()
        .map(|x| {
            format!(
                "{} {}",
                x["path"].as_str().unwrap_or(""),
                x["access"].as_str().unwrap_or("")
            )
        })
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        vec![format!("{SHARED} view"), format!("{SHARED}/Beach view")]
    );
    let exported = tempfile::tempdir()?;
    g.ok(&["export", &exported.path().display().to_string()])?;
    let originals = walk(exported.path())
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "json"))
        .count();
    assert_eq!(originals, 3, "Grandma exports exactly the shared photos");

    // Nothing of the private album reached her: not one change (their redb keys start with
    // the album's id), while the shared album's did.
    assert!(data_dir_holds(&g, &hex_bytes(&shared)?)?);
    assert!(
        !data_dir_holds(&g, &hex_bytes(&private)?)?,
        "a change of the unshared album is in the relative's data dir"
    );

    // Her device holds the two shared albums' documents and nothing else (no library shard),
    // and nothing on its disk is plaintext: no EXIF string, file name, title or run of bytes
    // of any of the family's photos.
    assert_eq!(g.json(&["status", "--json"])?["documents"], 2);
    let needles = Needles::new(&[SHARED, PRIVATE], &rows[0..5], &rows[0..5])?;
    let mut leaks = Vec::new();
    for file in walk(&g.data_dir) {
        let data = std::fs::read(&file)?;
        let blob = file.components().any(|c| c.as_os_str() == "blobs");
        leaks.extend(needles.scan(&file.display().to_string(), &data, if blob { 8 } else { 0 }));
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));

    // An album made later under the shared one is shared the same way.
    a.ok(&["albums", "create", "Later", "--parent", SHARED])?;
    wait_until(SYNC_DEADLINE, "the new sub-album to reach Grandma", || {
        Ok(g.json(&["albums", "--json"])?
            .as_array()
            .is_some_and(|x| x.iter().any(|al| al["path"] == format!("{SHARED}/Later"))))
    })?;

    // A viewer's change is refused locally, with a message that says what to do.
    let add = g.run(&["albums", "add", SHARED, &summer_photos[0]])?;
    assert!(!add.status.success());
    let err = String::from_utf8_lossy(&add.stderr);
    assert!(
        err.contains("can only be viewed") && err.contains("--can contribute"),
        "{err}"
    );
    let rename = g.run(&["albums", "rename", SHARED, "Mine now"])?;
    assert!(!rename.status.success());

    // As a contributor she adds a photo of her own; everyone sees it, marked as hers.
    a.ok(&["share", SHARED, "Grandma", "--can", "contribute"])?;
    wait_until(SYNC_DEADLINE, "Grandma to be allowed to contribute", || {
        Ok(g.json(&["albums", "--json"])?.as_array().is_some_and(|x| {
            x.iter()
                .any(|al| al["title"] == SHARED && al["access"] == "contribute")
        }))
    })?;
    import(&g, &paths(&rows[5..6]), SHARED)?;
    wait_until(SYNC_DEADLINE, "her photo to reach A and B", || {
        Ok(photo_ids(a, Some(SHARED))?.len() == 4 && photo_ids(b, Some(SHARED))?.len() == 4)
    })?;
    let listed = a.json(&["photos", "--json", "--album", SHARED])?;
    let added_by: Vec<&str> = listed
        .as_array()
        .context("photos")?
        .iter()
        .filter_map(|p| p["added_by"].as_str())
        .collect();
    assert!(
        added_by.contains(&"Grandma") && added_by.contains(&"Ana"),
        "{listed}"
    );

    // Her tablet is lost: the admin removes it, then adds a photo to the album.
    a.ok(&["devices", "remove", "Grandma's tablet"])?;
    import(a, &paths(&rows[6..7]), SHARED)?;
    let later = photo_ids(a, Some(SHARED))?;
    assert_eq!(later.len(), 5);
    let g_before = photo_ids(&g, Some(SHARED))?;
    assert_eq!(g_before.len(), 4, "the removed device got nothing new");

    // Handed every sealed change A holds, the removed tablet still cannot open the new photo.
    let mut cluster = cluster;
    cluster.nodes[0].stop()?;
    g.stop()?;
    let copied = hand_over_changes(&cluster.nodes[0], &g)?;
    assert!(copied > 0);
    let after = photo_ids(&g, Some(SHARED))?;
    assert_eq!(
        after, g_before,
        "the removed device opened a change made after its removal"
    );
    assert!(
        photo_ids(&g, None)?.len() == 4,
        "the removed device reads nothing beyond what it had"
    );
    Ok(())
}

fn albums_summary(node: &TestNode) -> Result<Vec<String>> {
    let mut out: Vec<String> = node
        .json(&["albums", "--json"])?
        .as_array()
        .context("albums --json is a list")?
        .iter()
        .map(|a| {
            format!(
                "{} ({} photos)",
                a["path"].as_str().unwrap_or(""),
                a["photos"]
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

fn online(node: &TestNode, device: &str) -> Result<bool> {
    Ok(node
        .json(&["devices", "--json"])?
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["name"] == device && x["online"] == true)))
}

#[test]
fn a_removal_and_changes_made_apart_converge_the_same_way_on_every_device() -> Result<()> {
    // A (admin), B, C, D (members).
    let mut cluster = Cluster::start(4)?;
    let rows = jpegs(2)?;
    import(&cluster.nodes[0], &paths(&rows), "Trip")?;
    cluster.nodes[0].ok(&["albums", "create", "Party"])?;
    cluster.wait_converged()?;
    let photo = photo_ids(&cluster.nodes[0], Some("Trip"))?[0].clone();

    // C and D are away while A removes D and renames an album.
    cluster.nodes[2].stop()?;
    cluster.nodes[3].stop()?;
    cluster.nodes[0].ok(&["devices", "remove", "device 3"])?;
    cluster.nodes[0].ok(&["albums", "rename", "Trip", "Trip 2026"])?;
    cluster.wait_converged_among(&[0, 1])?;

    // Then A and B are away, and C and D, who know nothing of it, change albums too.
    cluster.nodes[0].stop()?;
    cluster.nodes[1].stop()?;
    cluster.nodes[2].start()?;
    cluster.nodes[3].start()?;
    let (c, d) = (&cluster.nodes[2], &cluster.nodes[3]);
    wait_until(SYNC_DEADLINE, "C and D to find each other", || {
        online(c, "device 3")
    })?;
    c.ok(&["albums", "add", "Party", &photo])?;
    d.ok(&["albums", "rename", "Party", "Party at D's"])?;
    wait_until(SYNC_DEADLINE, "C and D to exchange their changes", || {
        Ok(albums_summary(c)? == albums_summary(d)?
            && albums_summary(c)?.contains(&"Party at D's (1 photos)".to_owned()))
    })?;

    // Everyone is back: A, B and C converge to one state, D is turned away.
    cluster.nodes[0].start()?;
    cluster.nodes[1].start()?;
    cluster.wait_converged_among(&[0, 1, 2])?;
    let expected = vec![
        "Party at D's (1 photos)".to_owned(),
        "Trip 2026 (2 photos)".to_owned(),
    ];
    for i in 0..3 {
        assert_eq!(albums_summary(&cluster.nodes[i])?, expected, "node {i}");
    }
    wait_until(SYNC_DEADLINE, "C to drop the removed device", || {
        Ok(!online(&cluster.nodes[2], "device 3")?)
    })?;
    Ok(())
}

#[test]
fn two_admins_rotating_while_apart_lose_no_change() -> Result<()> {
    // A and B are admins; both remove C's device while apart, so each rotates the album's key
    // to the same new epoch, and each then adds a photo under its own new key.
    let mut cluster = Cluster::start(3)?;
    let rows = jpegs(2)?;
    let files = paths(&rows);
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    cluster.nodes[0].ok(&args)?;
    cluster.nodes[0].ok(&["albums", "create", "Trip"])?;
    cluster.nodes[0].ok(&["people", "set-role", "Person 1", "admin"])?;
    cluster.wait_converged()?;
    let photos = photo_ids(&cluster.nodes[0], None)?;

    cluster.nodes[1].stop()?;
    cluster.nodes[0].ok(&["devices", "remove", "device 2"])?;
    cluster.nodes[0].ok(&["albums", "add", "Trip", &photos[0]])?;
    cluster.nodes[0].stop()?;
    cluster.nodes[1].start()?;
    cluster.nodes[1].ok(&["devices", "remove", "device 2"])?;
    cluster.nodes[1].ok(&["albums", "add", "Trip", &photos[1]])?;

    cluster.nodes[0].start()?;
    cluster.wait_converged_among(&[0, 1])?;
    // The race happened: one of them lost it and sealed its change again under the winner's key.
    let logs = cluster.nodes[0].log() + &cluster.nodes[1].log();
    assert!(logs.contains("lost a race"), "no rotation race was seen");
    for i in 0..2 {
        let node = &cluster.nodes[i];
        assert_eq!(photo_ids(node, Some("Trip"))?, photos, "node {i}");
        assert_eq!(
            node.json(&["status", "--json"])?["damaged"],
            Value::Array(vec![]),
            "node {i}"
        );
    }
    Ok(())
}
