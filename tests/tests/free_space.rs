//! `kith free-space`: a device sets aside originals another device holds, keeps thumbnails and
//! previews, does not fetch them again by itself, and gets them back for an export. Another
//! device's copy counts only when it proves it holds it and keeps originals: a device that
//! claims what it lacks, holds half, or is a relative's, frees nothing.

use std::collections::HashMap;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::blobs::Blobs;
use kith_protocol::library::BlobRef;
use kith_tests::cluster::{Cluster, SYNC_DEADLINE, join_relative};
use kith_tests::peer::{RawPeer, Target, runtime};
use kith_tests::prover::{FakeHolder, Holding};
use kith_tests::{TestNode, corpus, import, wait_until};

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

/// Ana's device A imports three photos and member B's device receives them all; then B stops,
/// and a raw peer holding B's real key (and copies of B's blobs) connects to A in its place.
struct Impostor {
    cluster: Cluster,
    rt: tokio::runtime::Runtime,
    holder: FakeHolder,
    _peer: RawPeer,
}

fn b_replaced_by_a_fake_holder(holding: Holding) -> Result<Impostor> {
    let mut cluster = Cluster::start(2)?;
    let files = corpus::some_photos(3)?;
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    cluster.nodes[0].ok(&args)?;
    cluster.wait_converged()?;
    cluster.nodes[1].stop()?;
    let rt = runtime()?;
    let b_dir = DataDir::new(&cluster.nodes[1].data_dir);
    let b_secret = b_dir.read_device_secret()?;
    let blobs = rt.block_on(blobs_of(&b_dir))?;
    let t = Target::of(&cluster.nodes[0])?;
    let (peer, holder) = rt.block_on(async {
        let peer = RawPeer::connect(kith_node::net::keypair(&b_secret)?, t.peer, t.addr).await?;
        let holder = FakeHolder::serve(&peer, b_secret.device_id(), blobs, holding)?;
        anyhow::Ok((peer, holder))
    })?;
    let a = &cluster.nodes[0];
    wait_until(SYNC_DEADLINE, "A to see B's key online", || {
        Ok(a.json(&["devices", "--json"])?
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["this"] == false && x["online"] == true)))
    })?;
    Ok(Impostor {
        cluster,
        rt,
        holder,
        _peer: peer,
    })
}

/// Every blob a stopped node's store holds, by hash (ciphertext, checked against its hash).
async fn blobs_of(dir: &DataDir) -> Result<HashMap<[u8; 32], Vec<u8>>> {
    let store = Blobs::open(&dir.blobs_dir()).await?;
    let mut out = HashMap::new();
    for hash in store.hashes().await? {
        out.insert(hash, store.get(&BlobRef { hash, len: 0 }).await?);
    }
    store.shutdown().await;
    Ok(out)
}

fn notes(view: &serde_json::Value) -> String {
    view["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn a_device_claiming_originals_it_does_not_hold_frees_nothing_and_is_named() -> Result<()> {
    let impostor = b_replaced_by_a_fake_holder(Holding::Nothing)?;
    let a = &impostor.cluster.nodes[0];
    let freed = a.json(&["free-space", "--json"])?;
    assert_eq!(freed["originals"], 0, "{freed}");
    assert_eq!(freed["kept"], 3, "{freed}");
    let said = notes(&freed);
    assert!(
        said.contains("\"device 1\"") && said.contains("could not prove it holds 3 originals"),
        "{said}"
    );
    let text = a.ok(&["free-space"])?;
    assert!(text.contains("Set aside 0 originals"), "{text}");
    assert!(
        text.contains("could not prove it holds 3 originals"),
        "{text}"
    );
    drop(impostor.holder);
    impostor.rt.shutdown_background();
    Ok(())
}

#[test]
fn a_device_holding_half_of_each_original_fails_the_proof() -> Result<()> {
    let impostor = b_replaced_by_a_fake_holder(Holding::FirstHalf)?;
    let a = &impostor.cluster.nodes[0];
    let before = blob_bytes(a)?;
    let freed = a.json(&["free-space", "--json"])?;
    assert_eq!(freed["originals"], 0, "{freed}");
    assert_eq!(freed["kept"], 3, "{freed}");
    assert!(
        notes(&freed).contains("could not prove it holds 3 originals"),
        "{freed}"
    );
    assert_eq!(blob_bytes(a)?, before);
    // The same device holding every byte proves it, so the half was what failed.
    impostor.holder.set(Holding::Everything);
    let freed = a.json(&["free-space", "--json"])?;
    assert_eq!(freed["originals"], 3, "{freed}");
    assert_eq!(notes(&freed), "", "{freed}");
    impostor.rt.shutdown_background();
    Ok(())
}

#[test]
fn a_view_only_relatives_copies_never_count() -> Result<()> {
    let mut a = TestNode::initialised()?;
    a.start()?;
    import(&a, &corpus::some_photos(3)?, "Summer")?;
    let mut g = join_relative(&a, "Grandma's tablet", "Grandma")?;
    g.start()?;
    a.ok(&["share", "Summer", "Grandma"])?;
    wait_until(SYNC_DEADLINE, "Grandma to hold every original", || {
        let state = g.sync_state()?;
        Ok(
            g.json(&["photos", "--json"])?.as_array().map(Vec::len) == Some(3)
                && state.blobs_wanted == 0,
        )
    })?;
    let freed = a.json(&["free-space", "--json"])?;
    assert_eq!(freed["originals"], 0, "{freed}");
    assert_eq!(freed["kept"], 3, "{freed}");
    let said = notes(&freed);
    assert!(
        said.contains("Grandma's tablet") && said.contains("keeps no originals"),
        "{said}"
    );
    Ok(())
}
