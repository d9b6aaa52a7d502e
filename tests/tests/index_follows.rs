//! A device's index follows what it receives: a received change that writes only some photo
//! entries has just those entries re-read (`State::reindex_touched`), so every kind of edit a
//! family member makes must show on the other device exactly as it shows on the device that
//! made it.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith_node::edit::EditRequest;
use kith_node::views::PhotoView;
use kith_tests::cluster::SYNC_DEADLINE;
use kith_tests::corpus;
use kith_tests::in_process::{Device, InProcessCluster};

/// What a device shows: every photo as listed, and each album's path and photo count.
async fn shown(d: &Device) -> Result<(Vec<PhotoView>, Vec<(String, usize)>)> {
    let mut photos = d.lib.photos(None).await?;
    photos.sort_by(|a, b| a.id.cmp(&b.id));
    let mut albums: Vec<(String, usize)> = d
        .lib
        .albums()
        .await?
        .into_iter()
        .map(|a| (a.path, a.photos))
        .collect();
    albums.sort();
    Ok((photos, albums))
}

/// Waits until B shows what A shows, after `step`.
async fn wait_same(cluster: &InProcessCluster, step: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let a = shown(&cluster.devices[0]).await?;
        let b = shown(&cluster.devices[1]).await?;
        if a == b {
            return Ok(());
        }
        if start.elapsed() > SYNC_DEADLINE {
            let differ: Vec<String> =
                a.0.iter()
                    .filter(|p| !b.0.contains(p))
                    .map(|p| format!("{p:?}"))
                    .collect();
            bail!(
                "after {step}, B does not show what A shows: photos differing on A {differ:#?}; \
                 albums A {:?} B {:?}; B lists {} photos, A {}",
                a.1,
                b.1,
                b.0.len(),
                a.0.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn edit(photo: &str) -> EditRequest {
    EditRequest {
        photo: photo.to_owned(),
        caption: None,
        no_caption: false,
        favourite: None,
        tag: Vec::new(),
        untag: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_edit_shows_on_the_other_device_as_on_its_own() -> Result<()> {
    let cluster = InProcessCluster::start(2).await?;
    let a = &cluster.devices[0].lib;
    let paths: Vec<_> = corpus::importable_jpegs()?
        .map(|r| r.abs_path())
        .take(8)
        .collect();
    let imported = cluster.devices[0].import(&paths, "Trip").await?;
    assert!(imported >= 6, "only {imported} corpus photos imported");
    wait_same(&cluster, "the import").await?;
    let ids: Vec<String> = a.photos(None).await?.into_iter().map(|p| p.id).collect();

    a.edit_photo(&EditRequest {
        caption: Some("at the lake".into()),
        favourite: Some(true),
        tag: vec!["grandma".into(), "lake".into()],
        ..edit(&ids[0])
    })
    .await?;
    wait_same(&cluster, "a caption, a favourite and two tags").await?;

    a.edit_photo(&EditRequest {
        no_caption: true,
        untag: vec!["lake".into()],
        ..edit(&ids[0])
    })
    .await?;
    wait_same(&cluster, "a caption and a tag taken off").await?;

    a.trash(&ids[1..3]).await?;
    wait_same(&cluster, "two photos trashed").await?;
    a.restore(&ids[1..2]).await?;
    wait_same(&cluster, "one restored").await?;
    a.empty_trash(&ids[2..3]).await?;
    wait_same(&cluster, "one purged from the trash").await?;

    a.remove_from_album("Trip", &ids[3..4]).await?;
    wait_same(&cluster, "a photo taken out of its album").await?;
    a.create_album("Day one", Some("Trip")).await?;
    a.add_to_album("Trip/Day one", &ids[4..6]).await?;
    wait_same(&cluster, "a nested album with two photos").await?;
    a.rename_album("Trip/Day one", "First day").await?;
    a.remove_from_album("Trip/First day", &ids[4..5]).await?;
    wait_same(&cluster, "the nested album renamed, one photo out").await?;

    let (photos, albums) = shown(&cluster.devices[1]).await?;
    assert_eq!(photos.len(), imported - 1, "all but the purged photo");
    assert!(
        albums.contains(&("Trip/First day".to_owned(), 1)),
        "{albums:?}"
    );
    cluster.close().await;
    Ok(())
}
