//! Document snapshots (`node/src/store/snapshots.rs`): a library opens from each document's
//! snapshot plus the changes after it, shows exactly what its changes say, and a snapshot
//! that does not match the stored changes (one naming a change that is not stored, one made
//! with a key no longer held, one that does not load) is not used: the document is rebuilt
//! from its changes and nothing is lost.
//!
//! To tell a used snapshot from an unused one, the tests write a snapshot that differs from
//! the stored changes (one photo removed from it, with the storage key a stolen-disk attacker
//! does not have) and look for the photo.

use std::collections::HashMap;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::{Readout, Snapshot, Store};
use kith_protocol::keys::{DocId, PhotoId};
use kith_protocol::library::{DocKind, Document};
use kith_protocol::seal::ChangeId;
use kith_tests::corpus::{Row, importable_jpegs, jpegs, paths};
use kith_tests::{TestNode, ids, import};

fn store_of(node: &TestNode) -> Result<Store> {
    let dir = DataDir::new(&node.data_dir);
    Ok(Store::open(
        &dir.db_file(),
        dir.read_device_secret()?.storage_key(),
    )?)
}

fn listed(node: &TestNode) -> Result<Vec<String>> {
    let mut listed = ids(&node.json(&["photos", "--json"])?)?;
    listed.sort();
    Ok(listed)
}

/// The snapshots of the documents that hold one photo (its library shard and the album),
/// with that photo removed from them and naming the same changes: what the library shows when
/// it opens from them.
fn snapshots_without_a_photo(
    snapshots: &HashMap<DocId, Snapshot>,
) -> Result<(Vec<(DocId, Snapshot)>, PhotoId)> {
    let device = kith_protocol::keys::DeviceId([1; 32]);
    let mut photo = None;
    for snapshot in snapshots.values() {
        let loaded = Document::from_snapshot(&device, &snapshot.doc, [])?;
        if loaded.kind() == Some(DocKind::Library) {
            photo = photo.or(loaded.photos()?.first().map(|e| e.id));
        }
    }
    let photo = photo.context("no library shard snapshot holds a photo")?;
    let mut edited = Vec::new();
    for (doc, snapshot) in snapshots {
        let mut loaded = Document::from_snapshot(&device, &snapshot.doc, [])?;
        if loaded.remove_photo(&photo)? {
            loaded.commit(1).context("a change removing the photo")?;
            let bytes = loaded
                .snapshot()
                .context("a snapshot of the edited document")?;
            // What the index reads, as the node reads it when it snapshots.
            let readout = Readout {
                album: loaded.album().ok(),
                entries: loaded.photos()?,
            };
            let changes = snapshot.changes.clone();
            let edited_snapshot = Snapshot {
                changes,
                doc: bytes,
                readout: Some(readout),
                keys: snapshot.keys.clone(),
            };
            edited.push((*doc, edited_snapshot));
        }
    }
    Ok((edited, photo))
}

#[test]
fn a_library_opens_from_snapshots_and_never_from_one_that_does_not_match_its_changes() -> Result<()>
{
    let node = TestNode::initialised()?;
    let rows = jpegs(6)?;
    import(&node, &paths(&rows[..4]), "Trip")?;
    let before = listed(&node)?;
    assert_eq!(before.len(), 4);

    // Every command that opened the library left snapshots of what it changed.
    let snapshots = store_of(&node)?.load_snapshots()?;
    assert!(
        snapshots.len() >= 2,
        "a library shard and the album are snapshotted: {snapshots:?}"
    );
    // More photos after the snapshots: the next open replays just those changes.
    import(&node, &paths(&rows[4..]), "Trip")?;
    let all = listed(&node)?;
    assert_eq!(all.len(), 6);

    // A snapshot that differs from the changes and names only stored ones is used: proof
    // that the library opens from snapshots.
    let snapshots = store_of(&node)?.load_snapshots()?;
    let (edited, photo) = snapshots_without_a_photo(&snapshots)?;
    assert_eq!(edited.len(), 2, "the photo's shard and the album");
    store_of(&node)?.put_snapshots(&edited)?;
    let from_edited = listed(&node)?;
    assert!(
        !from_edited.contains(&photo.to_string()),
        "the library did not open from the snapshots"
    );

    // Without what the index reads out of them, the documents are read from the snapshots.
    let unread: Vec<(DocId, Snapshot)> = (edited.iter())
        .map(|(doc, s)| {
            let readout = None;
            (
                *doc,
                Snapshot {
                    readout,
                    ..s.clone()
                },
            )
        })
        .collect();
    store_of(&node)?.put_snapshots(&unread)?;
    assert!(!listed(&node)?.contains(&photo.to_string()));

    // Naming a change that is not stored, they are not used: the documents come from their
    // changes, whole.
    let stale: Vec<(DocId, Snapshot)> = (edited.iter())
        .map(|(doc, s)| {
            let mut s = s.clone();
            s.changes.push(ChangeId([0xee; 32]));
            s.changes.sort();
            (*doc, s)
        })
        .collect();
    store_of(&node)?.put_snapshots(&stale)?;
    assert_eq!(
        listed(&node)?,
        all,
        "a snapshot naming a change not stored was used"
    );

    // Made with a key this device no longer holds (a rotation that lost a race drops it), it
    // is not used: changes it holds may not open any more.
    let other_key: Vec<(DocId, Snapshot)> = (edited.iter())
        .map(|(doc, s)| {
            let keys = vec![[0x11; 32]];
            (*doc, Snapshot { keys, ..s.clone() })
        })
        .collect();
    store_of(&node)?.put_snapshots(&other_key)?;
    assert_eq!(
        listed(&node)?,
        all,
        "a snapshot made with a key not held was used"
    );

    // A snapshot whose document does not load is not used either, and is not damage.
    store_of(&node)?.put_snapshots(&edited)?;
    assert!(!listed(&node)?.contains(&photo.to_string()));
    let broken: Vec<(DocId, Snapshot)> = (edited.iter())
        .map(|(doc_id, s)| {
            let doc = b"not an automerge document".to_vec();
            let readout = None;
            (
                *doc_id,
                Snapshot {
                    doc,
                    readout,
                    ..s.clone()
                },
            )
        })
        .collect();
    store_of(&node)?.put_snapshots(&broken)?;
    assert_eq!(listed(&node)?, all);
    let status = node.json(&["status", "--json"])?;
    assert_eq!(status["damaged"], serde_json::json!([]), "{status}");
    Ok(())
}

/// A document indexed from its snapshot's readout is read into automerge only when first used
/// (`node/src/library/lazy.rs`). When its snapshot then does not load, the document is rebuilt
/// from its stored changes and indexed again from them: the write goes through, nothing is
/// lost, nothing is reported damaged, and the next write of the document works.
#[test]
fn a_snapshot_that_does_not_load_when_first_used_gives_way_to_the_changes() -> Result<()> {
    let node = TestNode::initialised()?;
    // Two photos of one month share a library shard.
    let rows: Vec<Row> = importable_jpegs()?.collect();
    let month = |r: &Row| r.taken_at().map(|t| t.chars().take(7).collect::<String>());
    let (first, second) = (0..rows.len())
        .flat_map(|i| (i + 1..rows.len()).map(move |j| (i, j)))
        .find(|(i, j)| month(&rows[*i]).is_some() && month(&rows[*i]) == month(&rows[*j]))
        .context("the corpus has two JPEGs of one month")?;
    let later = (0..rows.len())
        .find(|k| *k != first && *k != second)
        .context("a third JPEG")?;
    let pair = [rows[first].clone(), rows[second].clone()];
    import(&node, &paths(&pair), "Trip")?;
    let snapshots = store_of(&node)?.load_snapshots()?;
    let (edited, photo) = snapshots_without_a_photo(&snapshots)?;
    // What the index reads says the photo is not there; the document itself does not load.
    let broken: Vec<(DocId, Snapshot)> = (edited.iter())
        .map(|(doc_id, s)| {
            let doc = b"not an automerge document".to_vec();
            (*doc_id, Snapshot { doc, ..s.clone() })
        })
        .collect();
    assert!(broken.iter().all(|(_, s)| s.readout.is_some()));
    store_of(&node)?.put_snapshots(&broken)?;
    // One running node, so that what it shows is its own index, not a snapshot a command
    // wrote when it closed.
    let mut node = node;
    node.start()?;
    let listed_before = listed(&node)?;
    assert_eq!(listed_before.len(), 1, "opened from the readouts");
    assert!(!listed_before.contains(&photo.to_string()));

    // Editing another photo of the same library shard writes that photo's entry alone: the
    // first use of the shard's document, and of the album's, which carries the entry too.
    let neighbour = (edited.iter())
        .filter_map(|(_, s)| s.readout.as_ref())
        .find_map(|r| r.entries.first())
        .context("the photo's shard holds another photo")?
        .id;
    node.json(&[
        "photos",
        "edit",
        &neighbour.to_string(),
        "--caption",
        "x",
        "--json",
    ])?;
    let after = listed(&node)?;
    assert_eq!(after.len(), 2, "every photo, from the changes: {after:?}");
    assert!(after.contains(&photo.to_string()));
    let albums = node.json(&["albums", "--json"])?;
    assert_eq!(albums[0]["photos"], 2, "{albums}");

    import(&node, &paths(&rows[later..=later]), "Trip")?;
    assert_eq!(listed(&node)?.len(), 3);
    let status = node.json(&["status", "--json"])?;
    assert_eq!(status["damaged"], serde_json::json!([]), "{status}");
    node.stop()?;
    Ok(())
}
