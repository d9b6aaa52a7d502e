//! `kith free-space`: a device sets aside originals another device holds, keeps thumbnails and
//! previews, does not fetch them again by itself, and gets them back for an export.

use anyhow::{Context, Result};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::{TestNode, corpus, wait_until};

fn blob_bytes(node: &TestNode) -> Result<u64> {
    node.json(&["status", "--json"])?["blob_bytes"]
        .as_u64()
        .context("status has blob_bytes")
}

#[test]
fn free_space_sets_originals_aside_and_export_brings_them_back() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    let files = corpus::some_photos(3)?;
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    cluster.nodes[0].ok(&args)?;
    cluster.wait_converged()?;
    let from_a = cluster.nodes[0].exported()?;

    let b = &cluster.nodes[1];
    let before = blob_bytes(b)?;
    let freed = b.json(&["free-space", "--json"])?;
    assert_eq!(freed["originals"], 3, "{freed}");
    assert_eq!(freed["kept"], 0, "{freed}");
    let set_aside = freed["bytes"].as_u64().context("bytes")?;
    assert!(set_aside > 0);
    wait_until(SYNC_DEADLINE, "B's blob store to shrink", || {
        Ok(blob_bytes(b)? + set_aside * 9 / 10 <= before)
    })?;
    // Thumbnails and previews stay, nothing is wanted, and the originals are not fetched again.
    cluster.wait_converged()?;
    assert_eq!(
        b.json(&["photos", "--json"])?.as_array().map(Vec::len),
        Some(3)
    );
    assert!(blob_bytes(b)? + set_aside * 9 / 10 <= before);
    let again = b.json(&["free-space", "--json"])?;
    assert_eq!(again["originals"], 0, "{again}");
    assert_eq!(again["already_set_aside"], 3, "{again}");

    // An export needs the originals: they come back from A, byte for byte.
    assert_eq!(b.exported()?, from_a);

    // With A stopped, nothing is set aside: no other device confirms holding the originals.
    cluster.nodes[0].stop()?;
    let b = &cluster.nodes[1];
    let alone = b.json(&["free-space", "--json"])?;
    assert_eq!(alone["originals"], 0, "{alone}");
    assert_eq!(alone["kept"], 3, "{alone}");
    Ok(())
}
