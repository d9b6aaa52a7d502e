//! Devices inside the test process (`kith_tests::in_process`): the same Library and Network
//! as `kith run`, looked at directly.

use std::collections::BTreeMap;

use anyhow::Result;
use kith_tests::corpus;
use kith_tests::in_process::InProcessCluster;

fn corpus_photos() -> Result<Vec<std::path::PathBuf>> {
    Ok(corpus::importable_jpegs()?.map(|r| r.abs_path()).collect())
}

/// A third device joins a family whose two devices already hold every photo: it learns from
/// the invite where the second device is, connects to both, and takes renditions from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_device_fetches_from_every_device_that_holds_the_photos() -> Result<()> {
    let mut cluster = InProcessCluster::start(2).await?;
    let photos = corpus_photos()?;
    let imported = cluster.devices[0].import(&photos, "Summer 2026").await?;
    assert!(imported >= 10, "only {imported} corpus photos imported");
    cluster.wait_converged().await?;

    let c = cluster.add_device().await?;
    let c_id = c.lib.device_id().to_string();
    cluster.wait_converged().await?;

    let lists: Vec<Vec<String>> = {
        let mut lists = Vec::new();
        for d in &cluster.devices {
            lists.push(
                d.lib
                    .photos(None)
                    .await?
                    .into_iter()
                    .map(|p| p.id)
                    .collect(),
            );
        }
        lists
    };
    assert!(lists.iter().all(|l| l == &lists[0] && l.len() == imported));

    let view = cluster.devices[2].net.sync_view().await?;
    let fetched: BTreeMap<String, (bool, u64)> = view
        .peers
        .iter()
        .map(|p| (p.name.clone(), (p.online, p.blobs_fetched)))
        .collect();
    assert_eq!(fetched.len(), 2, "C knows both other devices: {fetched:?}");
    assert!(
        fetched.values().all(|&(online, n)| online && n > 0),
        "C ({c_id}) is connected to both and took renditions from each: {fetched:?}"
    );
    let total: u64 = fetched.values().map(|&(_, n)| n).sum();
    assert_eq!(total, 3 * imported as u64, "every rendition exactly once");
    cluster.close().await;
    Ok(())
}
