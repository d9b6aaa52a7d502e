//! A removal re-keys at once: the removal and the rotations it makes due are committed
//! together, and nothing new is sealed under a key a removed device holds, even when a data
//! dir's log has the removal but not the rotation (a crash between the two on an older
//! version, or a removal learned from a peer before the rotation).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::{Store, WriteBatch};
use kith_protocol::keys::{DeviceId, SymmetricKey};
use kith_protocol::membership::OpBody;
use kith_protocol::seal::open_change;
use kith_tests::cluster::Cluster;
use kith_tests::corpus::{more_photos, some_photos};
use kith_tests::import;

use crate::bad_keys::{chain, family_of, load};

/// A family of two (Ana the admin, Person 1 a member) sharing an album of two photos.
fn family_with_photos() -> Result<(Cluster, DeviceId)> {
    let cluster = Cluster::start(2)?;
    import(&cluster.nodes[0], &some_photos(2)?, "Home")?;
    cluster.wait_converged()?;
    let b: DeviceId = cluster.nodes[1].json(&["status", "--json"])?["device_id"]
        .as_str()
        .context("B's id")?
        .parse()?;
    Ok((cluster, b))
}

#[test]
fn a_removal_is_committed_with_its_rotations() -> Result<()> {
    let (mut cluster, b) = family_with_photos()?;
    let a = &mut cluster.nodes[0];
    a.ok(&["devices", "remove", "device 1"])?;
    // A crash right after the command returns: what it reported is on disk, rotations included.
    a.kill9()?;
    let (_, loaded) = load(a)?;
    let family = family_of(&loaded)?;
    assert!(
        family.active_person(&b).is_none(),
        "the removal is not on disk"
    );
    assert!(!loaded.docs.is_empty());
    for (doc, _) in &loaded.docs {
        assert!(
            !family.needs_rotation(doc),
            "document {doc} was not re-keyed"
        );
        let keys = family.current_keys(doc).context("a key in the log")?;
        assert!(!keys.envelopes.contains_key(&b));
    }
    Ok(())
}

#[test]
fn a_photo_added_after_a_removal_without_its_rotation_is_not_sealed_under_the_old_key() -> Result<()>
{
    let (mut cluster, b) = family_with_photos()?;
    cluster.nodes[1].stop()?;
    cluster.nodes[0].stop()?;
    let a = &cluster.nodes[0];
    // Every key the removed device holds.
    let (_, b_loaded) = load(&cluster.nodes[1])?;
    let b_keys: Vec<(kith_protocol::keys::DocId, [u8; 32])> = b_loaded
        .docs
        .iter()
        .flat_map(|(doc, record)| record.all_keys().into_iter().map(|(_, k)| (*doc, k)))
        .collect();
    assert!(!b_keys.is_empty());

    // A's log gets the removal alone, committed through A's own store and signed by A: the
    // state a crash between the removal and its rotation left behind.
    let (a_secret, before) = load(a)?;
    let removal = chain(
        &a_secret,
        &before.ops,
        vec![OpBody::RevokeDevice { device: b }],
    );
    {
        let dir = DataDir::new(&a.data_dir);
        let store = Store::open(&dir.db_file(), a_secret.storage_key())?;
        store.commit(&WriteBatch {
            ops: removal,
            ..WriteBatch::default()
        })?;
    }
    let (_, crashed) = load(a)?;
    let family = family_of(&crashed)?;
    assert!(family.active_person(&b).is_none());
    assert!(
        crashed
            .docs
            .iter()
            .any(|(doc, _)| family.needs_rotation(doc)),
        "the crash state was not built"
    );
    let old: BTreeSet<_> = crashed.changes.iter().map(|(_, c)| c.id()).collect();

    // A photo added now, without a running node, is sealed under keys B never had.
    let more = more_photos(2, 1)?;
    a.ok(&["import", "--album", "Home", &more[0]])?;
    let (_, after) = load(a)?;
    let fresh: Vec<_> = after
        .changes
        .iter()
        .filter(|(_, c)| !old.contains(&c.id()))
        .collect();
    assert!(!fresh.is_empty(), "the import wrote no change");
    for (doc, change) in &fresh {
        for (_, key) in b_keys.iter().filter(|(d, _)| d == doc) {
            assert!(
                open_change(&SymmetricKey::from_bytes(*key), change).is_err(),
                "a change to {doc} after the removal opens with a key the removed device holds"
            );
        }
    }
    let family = family_of(&after)?;
    for (doc, _) in &fresh {
        assert!(
            !family.needs_rotation(doc),
            "document {doc} was not re-keyed"
        );
    }

    // `kith run` re-keys the documents nothing was sealed to yet.
    let a = &mut cluster.nodes[0];
    a.start()?;
    a.stop()?;
    let (_, ran) = load(a)?;
    let family = family_of(&ran)?;
    for (doc, _) in &ran.docs {
        assert!(
            !family.needs_rotation(doc),
            "document {doc} was not re-keyed"
        );
    }
    Ok(())
}
