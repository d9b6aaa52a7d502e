//! A later grantee sees the album as it is: a photo captioned and then removed from an album
//! before the album is shared with a relative leaves nothing she can read. With every key her
//! device obtains, no change of the album that any device ever held opens to the removed
//! photo's caption or file name, while she reads the photos in the album now. A member that was
//! offline during the share and added a photo meanwhile follows the new history, and its photo
//! reaches everyone. A relative made a member reads the household's albums the same way.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::Store;
use kith_protocol::keys::{DocId, SymmetricKey};
use kith_protocol::membership::{self, OpId};
use kith_protocol::seal::{self, SealedChange};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE, join_relative};
use kith_tests::corpus::{jpegs, paths};
use kith_tests::{TestNode, album_id, import, photo_ids, wait_until};

const ALBUM: &str = "Summer 2026";
const CAPTION: &str = "the-caption-nobody-else-should-read";

/// Every sealed change of `doc` a stopped node holds, by id.
fn changes_of(node: &TestNode, doc: &DocId) -> Result<BTreeMap<String, SealedChange>> {
    let dir = DataDir::new(&node.data_dir);
    let store = Store::open(&dir.db_file(), dir.read_device_secret()?.storage_key())?;
    Ok(store
        .load(&node.data_dir)?
        .changes
        .into_iter()
        .filter(|(d, _)| d == doc)
        .map(|(_, c)| (c.id().to_string(), c))
        .collect())
}

/// Keys of one document by epoch.
type Keys = Vec<(u32, [u8; 32])>;

/// Every key of `doc` a stopped node holds, and the epoch its log says `doc` started over at.
fn keys_of(node: &TestNode, doc: &DocId) -> Result<(Keys, Option<u32>)> {
    let dir = DataDir::new(&node.data_dir);
    let store = Store::open(&dir.db_file(), dir.read_device_secret()?.storage_key())?;
    let loaded = store.load(&node.data_dir)?;
    let family = membership::evaluate_with_root(OpId(loaded.identity.root_op), &loaded.ops)?;
    let keys = loaded
        .docs
        .into_iter()
        .filter(|(d, _)| d == doc)
        .flat_map(|(_, r)| r.all_keys())
        .collect();
    Ok((keys, family.fresh_start(doc).map(|f| f.epoch)))
}

#[test]
fn a_relative_granted_an_album_later_reads_its_photos_now_not_what_left_it() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    let rows = jpegs(4)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    import(a, &paths(&rows[0..3]), ALBUM)?;
    let album = album_id(a, ALBUM)?;
    let doc: DocId = album.parse().context("album id")?;
    let before = photo_ids(a, Some(ALBUM))?;
    let gone = before.first().context("a photo")?.clone();
    let name = a.json(&["photos", "show", &gone, "--json"])?["file_name"]
        .as_str()
        .context("file name")?
        .to_owned();
    a.ok(&["photos", "edit", &gone, "--caption", CAPTION])?;
    a.ok(&["albums", "remove", ALBUM, &gone])?;
    let now: Vec<String> = before.iter().filter(|p| **p != gone).cloned().collect();
    wait_until(SYNC_DEADLINE, "the member to see the removal", || {
        Ok(photo_ids(b, Some(ALBUM))? == now)
    })?;

    // Grandma joins as a relative; the member's laptop is away when the album is shared.
    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    g.start()?;
    cluster.wait_converged()?;
    cluster.nodes[1].stop()?;
    // Meanwhile the member adds a photo to the album on its own.
    import(&cluster.nodes[1], &paths(&rows[3..4]), ALBUM)?;
    let a = &cluster.nodes[0];
    a.ok(&["share", ALBUM, "Grandma"])?;

    wait_until(SYNC_DEADLINE, "Grandma to read the album as it is", || {
        Ok(photo_ids(&g, Some(ALBUM))? == now)
    })?;
    cluster.nodes[1].start()?;
    wait_until(
        SYNC_DEADLINE,
        "the member's photo to reach everyone",
        || {
            let on_a = photo_ids(&cluster.nodes[0], Some(ALBUM))?;
            Ok(on_a.len() == 3
                && photo_ids(&cluster.nodes[1], Some(ALBUM))? == on_a
                && photo_ids(&g, Some(ALBUM))? == on_a)
        },
    )?;
    assert!(!photo_ids(&cluster.nodes[0], Some(ALBUM))?.contains(&gone));

    // Every change of the album any device holds, and every key Grandma's device holds.
    for node in &mut cluster.nodes {
        node.stop()?;
    }
    g.stop()?;
    let holders: Vec<&TestNode> = cluster.nodes.iter().collect();
    assert_reads_nothing_that_left(&holders, &g, &doc, &name)
}

/// A relative made a member reads every household album: each as it is now, like a grantee.
#[test]
fn a_relative_made_a_member_reads_the_albums_now_not_what_left_them() -> Result<()> {
    let mut cluster = Cluster::start(1)?;
    let rows = jpegs(3)?;
    let a = &cluster.nodes[0];
    import(a, &paths(&rows), ALBUM)?;
    let doc: DocId = album_id(a, ALBUM)?.parse().context("album id")?;
    let before = photo_ids(a, Some(ALBUM))?;
    let gone = before.first().context("a photo")?.clone();
    let name = a.json(&["photos", "show", &gone, "--json"])?["file_name"]
        .as_str()
        .context("file name")?
        .to_owned();
    a.ok(&["photos", "edit", &gone, "--caption", CAPTION])?;
    a.ok(&["albums", "remove", ALBUM, &gone])?;
    let now: Vec<String> = before.iter().filter(|p| **p != gone).cloned().collect();

    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    g.start()?;
    a.ok(&["people", "set-role", "Grandma", "member"])?;
    wait_until(SYNC_DEADLINE, "Grandma to read the album as it is", || {
        Ok(photo_ids(&g, Some(ALBUM))? == now)
    })?;
    cluster.nodes[0].stop()?;
    g.stop()?;
    assert_reads_nothing_that_left(&[&cluster.nodes[0]], &g, &doc, &name)
}

/// With every key of `doc` Grandma's (stopped) device `g` holds, no change of it that she or
/// `holders` hold opens to the removed photo's caption or file `name`; and she holds no key
/// from before the album started over.
fn assert_reads_nothing_that_left(
    holders: &[&TestNode],
    g: &TestNode,
    doc: &DocId,
    name: &str,
) -> Result<()> {
    let mut all = BTreeMap::new();
    for node in holders.iter().copied().chain([g]) {
        all.extend(changes_of(node, doc)?);
    }
    let (keys, fresh) = keys_of(g, doc)?;
    assert!(!keys.is_empty(), "Grandma holds the album's key");
    // Not one key from before the album started over, whoever holds the old changes.
    let fresh = fresh.context("the album's history did not start over")?;
    assert!(
        keys.iter().all(|(epoch, _)| *epoch >= fresh),
        "Grandma holds a key from before the fresh start at epoch {fresh}: {:?}",
        keys.iter().map(|(e, _)| e).collect::<Vec<_>>()
    );
    let mut opened = 0;
    for (id, sealed) in &all {
        for (epoch, key) in &keys {
            if sealed.header().epoch != *epoch {
                continue;
            }
            let Ok(plain) = seal::open_change(&SymmetricKey::from_bytes(*key), sealed) else {
                continue;
            };
            opened += 1;
            let holds = |needle: &[u8]| plain.windows(needle.len()).any(|w| w == needle);
            assert!(
                !holds(CAPTION.as_bytes()),
                "Grandma's keys open change {id}, which holds the removed photo's caption"
            );
            assert!(
                !holds(name.as_bytes()),
                "Grandma's keys open change {id}, which holds the removed photo's file name"
            );
        }
    }
    assert!(opened > 0, "Grandma's keys open the album's changes");
    Ok(())
}
