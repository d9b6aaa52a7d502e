//! The end of the trash: `kith trash empty` and the 30-day purge remove a photo from every
//! device and its albums, and every device deletes its encrypted blobs (one that was offline
//! when it comes back), while the other photos' blobs stay and export byte for byte.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use kith_node::edit::TRASH_RETENTION_MS;
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::corpus::some_photos;
use kith_tests::in_process::InProcessCluster;
use kith_tests::{TestNode, import, wait_until, walk};
use serde_json::Value;

/// The hashes of the blobs the store keeps in files (`blobs/data/HASH.data`): originals and
/// previews. Thumbnails are small enough for iroh-blobs to keep inside its database; the
/// in-process test below sees those deleted too.
pub(crate) fn blob_files(data_dir: &Path) -> BTreeSet<String> {
    walk(&data_dir.join("blobs").join("data"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .collect()
}

fn ids(photos: &Value) -> Result<BTreeSet<String>> {
    Ok(kith_tests::ids(photos)?.into_iter().collect())
}

/// The ids of the photos a device lists (not those in the trash).
async fn listed(lib: &kith_node::Library) -> Result<Vec<String>> {
    Ok(lib.photos(None).await?.into_iter().map(|p| p.id).collect())
}

/// Whether `node` has nothing left of the purged photo: not listed, not in the trash, not in
/// its album (the album's count counts entries, whether the photo is known or not), none of
/// its blob files.
fn purged_on(node: &TestNode, id: &str, files: &BTreeSet<String>) -> Result<bool> {
    let albums = node.json(&["albums", "--json"])?;
    let trip = albums
        .as_array()
        .and_then(|a| a.iter().find(|a| a["title"] == "Trip"))
        .context("album Trip")?;
    Ok(!ids(&node.json(&["photos", "--json"])?)?.contains(id)
        && ids(&node.json(&["trash", "--json"])?)?.is_empty()
        && trip["photos"] == 0
        && blob_files(&node.data_dir).is_disjoint(files))
}

#[test]
fn emptying_the_trash_purges_a_photo_everywhere_and_every_device_deletes_its_blobs() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let files = some_photos(4)?;
    let (kept, doomed) = files.split_at(3);
    import(&cluster.nodes[0], kept, "Keep")?;
    cluster.wait_converged()?;
    let kept_files = blob_files(&cluster.nodes[0].data_dir);
    import(&cluster.nodes[0], doomed, "Trip")?;
    cluster.wait_converged()?;
    let a = &cluster.nodes[0];
    let doomed_files: BTreeSet<String> = blob_files(&a.data_dir)
        .difference(&kept_files)
        .cloned()
        .collect();
    ensure!(
        doomed_files.len() >= 2,
        "the original and the preview are files: {doomed_files:?}"
    );
    for node in &cluster.nodes {
        ensure!(blob_files(&node.data_dir).is_superset(&doomed_files));
    }
    let kept_ids = ids(&a.json(&["photos", "--album", "Keep", "--json"])?)?;
    let doomed_id = ids(&a.json(&["photos", "--album", "Trip", "--json"])?)?
        .pop_first()
        .context("the photo in Trip")?;
    let first_kept = kept_ids.first().context("kept photos")?.clone();

    // Refused, changing nothing: a photo that is not in the trash.
    let out = a.run(&["trash", "empty", &first_kept])?;
    ensure!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("is not in the trash"), "{err}");
    // Out of an album only: the photo and its blobs stay.
    a.ok(&["albums", "remove", "Keep", &first_kept])?;

    // C is offline while A trashes and empties.
    cluster.nodes[2].stop()?;
    let a = &cluster.nodes[0];
    a.ok(&["trash", &doomed_id])?;
    let reference = a.exported()?;
    ensure!(reference.len() == 3, "{:?}", reference.keys());
    let purged = a.json(&["trash", "empty", "--json"])?;
    ensure!(
        ids(&purged)? == BTreeSet::from([doomed_id.clone()]),
        "{purged}"
    );
    // Deleted here before the command returned.
    ensure!(
        blob_files(&a.data_dir).is_disjoint(&doomed_files),
        "A still holds {:?}",
        blob_files(&a.data_dir)
            .intersection(&doomed_files)
            .collect::<Vec<_>>()
    );
    for (name, node) in [("A", &cluster.nodes[0]), ("B", &cluster.nodes[1])] {
        wait_until(SYNC_DEADLINE, &format!("the purge on {name}"), || {
            purged_on(node, &doomed_id, &doomed_files)
        })
        .with_context(|| format!("{name}'s log:\n{}", node.log()))?;
    }

    // C deletes the blobs once it syncs.
    cluster.nodes[2].start()?;
    let c = &cluster.nodes[2];
    wait_until(SYNC_DEADLINE, "the purge on C", || {
        purged_on(c, &doomed_id, &doomed_files)
    })
    .with_context(|| format!("C's log:\n{}", c.log()))?;
    cluster.wait_converged()?;
    for node in &cluster.nodes {
        ensure!(blob_files(&node.data_dir).is_superset(&kept_files));
        ensure!(ids(&node.json(&["photos", "--json"])?)? == kept_ids);
        ensure!(node.exported()? == reference);
    }
    Ok(())
}

fn corpus_paths(n: usize) -> Result<Vec<PathBuf>> {
    Ok(some_photos(n)?.into_iter().map(PathBuf::from).collect())
}

/// The 30-day purge, with the time given: not a day early, a restored photo never, and a
/// trashed photo leaves its album too; the other device deletes its blobs when the purge
/// reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trash_is_purged_after_thirty_days_and_a_restored_photo_never() -> Result<()> {
    let cluster = InProcessCluster::start(2).await?;
    // What `kith run` starts: here it deletes the other device's copies once the purge arrives.
    let tasks: Vec<_> = cluster
        .devices
        .iter()
        .map(|d| kith_node::purge::spawn(d.lib.clone()))
        .collect();
    let photos = corpus_paths(3)?;
    let a = &cluster.devices[0];
    a.import(&photos[..2], "Lake").await?;
    cluster.wait_converged().await?;
    let kept_blobs = a.lib.stored_blobs().await?;
    let kept = listed(&a.lib).await?;
    a.import(&photos[2..], "Lake").await?;
    cluster.wait_converged().await?;
    let doomed_blobs: HashSet<[u8; 32]> = a
        .lib
        .stored_blobs()
        .await?
        .difference(&kept_blobs)
        .copied()
        .collect();
    ensure!(
        doomed_blobs.len() == 3,
        "three renditions: {doomed_blobs:?}"
    );
    let doomed = listed(&a.lib)
        .await?
        .into_iter()
        .find(|id| !kept.contains(id))
        .context("the new photo")?;

    let trashed = a.lib.trash(&[doomed.clone(), kept[0].clone()]).await?;
    let last = trashed
        .iter()
        .filter_map(|t| t.photo.trashed_at_ms)
        .max()
        .context("trashed_at_ms")?;
    a.lib.restore(std::slice::from_ref(&kept[0])).await?;

    // Thirty days to the millisecond is not yet past.
    ensure!(
        a.lib
            .purge_expired(last + TRASH_RETENTION_MS)
            .await?
            .is_empty()
    );
    let purged = a.lib.purge_expired(last + TRASH_RETENTION_MS + 1).await?;
    ensure!(
        purged.iter().map(|p| p.id.as_str()).collect::<Vec<_>>() == [doomed.as_str()],
        "{purged:?}"
    );
    ensure!(
        a.lib
            .purge_expired(last + 10 * TRASH_RETENTION_MS)
            .await?
            .is_empty()
    );

    cluster.wait_converged().await?;
    for (i, d) in cluster.devices.iter().enumerate() {
        let start = std::time::Instant::now();
        while !d.lib.stored_blobs().await?.is_disjoint(&doomed_blobs) {
            ensure!(
                start.elapsed() < SYNC_DEADLINE,
                "device {i} keeps the purged photo's blobs"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        ensure!(d.lib.stored_blobs().await?.is_superset(&kept_blobs));
        let now = listed(&d.lib).await?;
        ensure!(now.len() == 2 && !now.contains(&doomed), "{now:?}");
        let in_album = d.lib.photos(Some("Lake")).await?;
        ensure!(in_album.len() == 2, "{in_album:?}");
        ensure!(d.lib.trashed().await?.is_empty());
        // The album's count counts its entries, known photos or not: the copy is gone too.
        ensure!(d.lib.albums().await?[0].photos == 2);
    }
    for task in tasks {
        task.abort();
    }
    cluster.close().await;
    Ok(())
}

/// Without a running node, `kith trash empty` works on the data dir itself and has deleted the
/// blobs by the time it returns (the process ends right after).
#[test]
fn emptying_the_trash_without_a_node_deletes_the_blobs_before_returning() -> Result<()> {
    let node = TestNode::initialised()?;
    let files = some_photos(2)?;
    import(&node, &files[..1], "Kept")?;
    let kept_files = blob_files(&node.data_dir);
    import(&node, &files[1..], "Trip")?;
    let doomed_files: BTreeSet<String> = blob_files(&node.data_dir)
        .difference(&kept_files)
        .cloned()
        .collect();
    ensure!(!doomed_files.is_empty());
    let doomed = ids(&node.json(&["photos", "--album", "Trip", "--json"])?)?
        .pop_first()
        .context("the photo in Trip")?;
    node.ok(&["trash", &doomed])?;
    let reference = node.exported()?;

    let text = node.ok(&["trash", "empty", &doomed[..8]])?;
    ensure!(
        text.contains(&format!("Purged {}", &doomed[..12])),
        "{text}"
    );
    ensure!(purged_on(&node, &doomed, &doomed_files)?);
    ensure!(blob_files(&node.data_dir) == kept_files);
    ensure!(node.exported()? == reference);
    let again = node.ok(&["trash", "empty"])?;
    ensure!(again.contains("The trash is empty"), "{again}");
    Ok(())
}
