//! A stolen phone: an admin removes it while it and another device are away; it meets only that
//! device, which has not heard of the removal, and trashes and purges every photo with the
//! stock CLI. Once the removal is known, nothing it did has deleted anything.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::corpus::some_photos;
use kith_tests::{TestNode, wait_until};
use serde_json::Value;

use crate::purge::blob_files;

fn ids(list: &Value) -> Result<BTreeSet<String>> {
    Ok(kith_tests::ids(list)?.into_iter().collect())
}

/// The photos `node` lists, in the library and in the trash (kept entries included).
fn listed_and_trashed(node: &TestNode) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    Ok((
        ids(&node.json(&["photos", "--json"])?)?,
        ids(&node.json(&["trash", "--json"])?)?,
    ))
}

fn knows_removed(node: &TestNode, device: &str) -> Result<bool> {
    let devices = node.json(&["devices", "--json"])?;
    Ok(devices
        .as_array()
        .context("a list of devices")?
        .iter()
        .any(|d| d["name"] == device && d["revoked"] == true))
}

#[test]
fn a_removed_phone_deletes_nothing_even_through_a_device_that_has_not_heard() -> Result<()> {
    // Node 0 is Ana's laptop (admin), node 1 the tablet, node 2 the phone. The phone's person
    // is an admin, so the phone may trash and purge every photo while it is a family device.
    let mut cluster = Cluster::start(3)?;
    let files = some_photos(3)?;
    cluster.nodes[0].ok(&["import", &files[0], &files[1]])?;
    cluster.nodes[2].ok(&["import", &files[2]])?;
    cluster.nodes[0].ok(&["people", "set-role", "Person 2", "admin"])?;
    wait_until(SYNC_DEADLINE, "the phone to be an admin's", || {
        let people = cluster.nodes[2].json(&["people", "--json"])?;
        Ok(people.as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["name"] == "Person 2" && p["role"] == "admin")
        }))
    })?;
    cluster.wait_converged()?;
    let reference = cluster.nodes[0].exported().with_context(|| {
        format!(
            "--- laptop:\n{}\n--- tablet:\n{}\n--- phone:\n{}",
            cluster.nodes[0].log(),
            cluster.nodes[1].log(),
            cluster.nodes[2].log()
        )
    })?;
    ensure!(reference.len() == 3, "{:?}", reference.keys());
    let all = ids(&cluster.nodes[0].json(&["photos", "--json"])?)?;
    ensure!(all.len() == 3, "{all:?}");
    let laptop_blobs = blob_files(&cluster.nodes[0].data_dir);

    // The tablet and the phone are away; the admin removes the phone from the laptop.
    cluster.nodes[1].stop()?;
    cluster.nodes[2].stop()?;
    cluster.nodes[0].ok(&["devices", "remove", "device 2"])?;
    cluster.nodes[0].stop()?;

    // The phone, with its last keys, meets only the tablet, and destroys what it can.
    cluster.nodes[1].start()?;
    cluster.nodes[2].start()?;
    cluster.wait_converged_among(&[1, 2])?;
    let phone = &cluster.nodes[2];
    let mut args = vec!["trash"];
    args.extend(all.iter().map(String::as_str));
    phone.ok(&args)?;
    phone.ok(&["trash", "empty"])?;
    let tablet = &cluster.nodes[1];
    wait_until(
        SYNC_DEADLINE,
        "the tablet to take the phone's purge",
        || {
            let (listed, trashed) = listed_and_trashed(tablet)?;
            Ok(listed.is_empty() && trashed.is_empty())
        },
    )
    .with_context(|| format!("--- tablet's log:\n{}", tablet.log()))?;
    cluster.nodes[2].stop()?;

    // The laptop meets the tablet: both know of the removal, and every photo is back in the
    // library or in the trash, its original intact.
    cluster.nodes[0].start()?;
    for (name, i) in [("laptop", 0), ("tablet", 1)] {
        let node = &cluster.nodes[i];
        let mut last = (BTreeSet::new(), BTreeSet::new());
        wait_until(
            SYNC_DEADLINE,
            "every photo back after the removal is known",
            || {
                last = listed_and_trashed(node)?;
                let held: BTreeSet<String> = last.0.union(&last.1).cloned().collect();
                Ok(knows_removed(node, "device 2")? && held.is_superset(&all))
            },
        )
        .with_context(|| format!("{name} lists {last:?}\n--- log:\n{}", node.log()))?;
    }
    let kept = blob_files(&cluster.nodes[0].data_dir);
    ensure!(
        kept.is_superset(&laptop_blobs),
        "the laptop deleted {:?}",
        laptop_blobs.difference(&kept).collect::<Vec<_>>()
    );
    // `kith status` counts what was kept, as `kith trash` lists it.
    for (name, i) in [("laptop", 0), ("tablet", 1)] {
        let node = &cluster.nodes[i];
        let trash = node.json(&["trash", "--json"])?;
        let kept = trash
            .as_array()
            .context("a list")?
            .iter()
            .filter(|t| !t["kept_from"].is_null())
            .count();
        let status = node.json(&["status", "--json"])?;
        ensure!(kept > 0, "{name} kept nothing: {trash}");
        ensure!(status["kept"] == kept, "{name}: {status} against {trash}");
    }
    // `kith devices` says what the phone did; only an admin undoes it, in one command, and
    // both devices hold every original as it was.
    let devices = cluster.nodes[0].json(&["devices", "--json"])?;
    let phone_row = devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "device 2"))
        .context("the phone in kith devices")?;
    ensure!(phone_row["undoable"] == 3, "{devices}");
    let refused = cluster.nodes[1].run(&["devices", "undo", "device 2"])?;
    ensure!(!refused.status.success(), "a member undid it");
    let undone = cluster.nodes[0].json(&["devices", "undo", "device 2", "--json"])?;
    ensure!(undone["restored"] == 3, "{undone}");
    ensure!(ids(&cluster.nodes[0].json(&["trash", "--json"])?)?.is_empty());
    // The tablet had deleted its copies (the purge looked valid to it): it fetches them again
    // from the laptop while it runs, with no restart.
    cluster.wait_converged_among(&[0, 1])?;
    for (name, i) in [("laptop", 0), ("tablet", 1)] {
        let node = &cluster.nodes[i];
        ensure!(
            ids(&node.json(&["photos", "--json"])?)? == all,
            "{name} lists {}",
            node.json(&["photos", "--json"])?
        );
        let mut last = None;
        wait_until(SYNC_DEADLINE, "every original exported as it was", || {
            let exported = node.exported();
            let done = exported.as_ref().is_ok_and(|e| *e == reference);
            last = Some(exported.map(|e| e.len()));
            Ok(done)
        })
        .with_context(|| format!("{name}'s export: {last:?}\n--- log:\n{}", node.log()))?;
    }
    Ok(())
}
