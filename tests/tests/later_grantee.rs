//! A later grantee sees the album as it is: a photo captioned and then removed from an album
//! before the album is shared with a relative leaves nothing she can read. With every key her
//! device obtains, no change of the album that any device ever held opens to the removed
//! photo's caption or file name, while she reads the photos in the album now. A member that was
//! offline during the share and added a photo meanwhile follows the new history, and its photo
//! reaches everyone. A relative made a member reads the household's albums the same way, and
//! a fresh start cancelled by a rotation race is cut again.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::{Store, WriteBatch};
use kith_protocol::envelope::{Envelope, SealedHistory};
use kith_protocol::keys::{DeviceId, DocId, SymmetricKey};
use kith_protocol::membership::{self, MembershipOp, OpBody, OpId, SignedOp};
use kith_protocol::seal::{self, SealedChange};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE, join_relative};
use kith_tests::corpus::{Row, jpegs, paths};
use kith_tests::{TestNode, XorShift, album_id, import, photo_ids, wait_until};

const ALBUM: &str = "Summer 2026";
const CAPTION: &str = "the-caption-nobody-else-should-read";

/// An album a photo left: what `photo_left_album` made.
struct Left {
    doc: DocId,
    /// The photos in it now.
    now: Vec<String>,
    /// The photo that left it, and its file name.
    gone: String,
    name: String,
}

/// On the running node `a`: the album made of `rows`, its first photo captioned and then
/// removed from it.
fn photo_left_album(a: &TestNode, rows: &[Row]) -> Result<Left> {
    import(a, &paths(rows), ALBUM)?;
    let doc: DocId = album_id(a, ALBUM)?.parse().context("album id")?;
    let before = photo_ids(a, Some(ALBUM))?;
    let gone = before.first().context("a photo")?.clone();
    let name = a.json(&["photos", "show", &gone, "--json"])?["file_name"]
        .as_str()
        .context("file name")?
        .to_owned();
    a.ok(&["photos", "edit", &gone, "--caption", CAPTION])?;
    a.ok(&["albums", "remove", ALBUM, &gone])?;
    let now = before.into_iter().filter(|p| *p != gone).collect();
    Ok(Left {
        doc,
        now,
        gone,
        name,
    })
}

/// The photos in the album on `node`, sorted; none while the album is not shared with it yet
/// (the node knows no album by that name).
fn album_on(node: &TestNode) -> Result<Vec<String>> {
    match photo_ids(node, Some(ALBUM)) {
        Err(e) if format!("{e:#}").contains("no album named") => Ok(Vec::new()),
        other => other,
    }
}

/// On Ana's running node `a`: imports `rows` (two photos) outside the album, which holds `now`
/// and which `gone` left, and makes Person 1 an admin. Returns the two new photos.
fn second_admin_and_two_more_photos(
    a: &TestNode,
    rows: &[Row],
    now: &[String],
    gone: &str,
) -> Result<Vec<String>> {
    let more = paths(rows);
    let mut args = vec!["import"];
    args.extend(more.iter().map(String::as_str));
    a.ok(&args)?;
    a.ok(&["people", "set-role", "Person 1", "admin"])?;
    let extra: Vec<String> = photo_ids(a, None)?
        .into_iter()
        .filter(|p| !now.contains(p) && p != gone)
        .collect();
    assert_eq!(extra.len(), 2, "two photos outside the album");
    Ok(extra)
}

/// Stops every device of `cluster` and the relatives' devices, so their stores can be read.
fn stop_everyone<const N: usize>(
    cluster: &mut Cluster,
    relatives: [&mut TestNode; N],
) -> Result<()> {
    for node in cluster.nodes.iter_mut().chain(relatives) {
        node.stop()?;
    }
    Ok(())
}

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
    let Left {
        doc,
        now,
        gone,
        name,
    } = photo_left_album(a, &rows[0..3])?;
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
        Ok(album_on(&g)? == now)
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

/// A member's laptop adds a photo to the album, which Ana then captions and removes; the laptop
/// is away while the album starts over twice (shared with Grandma, a photo removed, shared with
/// Grandpa) and adds another photo meanwhile. Back, it follows the newest history directly:
/// it carries over only what it added while away, never the photo that left before (its
/// sequence numbers are compared with the clock of the first cut after its own history).
#[test]
fn a_device_away_through_two_fresh_starts_brings_back_nothing_that_left() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    let rows = jpegs(5)?;
    import(&cluster.nodes[0], &paths(&rows[0..2]), ALBUM)?;
    let first = photo_ids(&cluster.nodes[0], Some(ALBUM))?;
    wait_until(SYNC_DEADLINE, "the laptop to see the album", || {
        Ok(album_on(&cluster.nodes[1])? == first)
    })?;
    import(&cluster.nodes[1], &paths(&rows[2..3]), ALBUM)?;
    wait_until(SYNC_DEADLINE, "Ana to see the laptop's photo", || {
        Ok(album_on(&cluster.nodes[0])?.len() == 3)
    })?;
    let a = &cluster.nodes[0];
    let gone = album_on(a)?
        .into_iter()
        .find(|p| !first.contains(p))
        .context("the laptop's photo")?;
    let name = a.json(&["photos", "show", &gone, "--json"])?["file_name"]
        .as_str()
        .context("file name")?
        .to_owned();
    a.ok(&["photos", "edit", &gone, "--caption", CAPTION])?;
    a.ok(&["albums", "remove", ALBUM, &gone])?;
    wait_until(SYNC_DEADLINE, "the laptop to see the removal", || {
        Ok(album_on(&cluster.nodes[1])? == first)
    })?;
    let doc: DocId = album_id(a, ALBUM)?.parse().context("album id")?;

    // Away: the laptop adds a photo; the album starts over twice.
    cluster.nodes[1].stop()?;
    import(&cluster.nodes[1], &paths(&rows[3..4]), ALBUM)?;
    let a = &cluster.nodes[0];
    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    g.start()?;
    a.ok(&["share", ALBUM, "Grandma"])?;
    a.ok(&["albums", "remove", ALBUM, &first[0]])?;
    let mut p = join_relative(a, "Grandpa's phone", "Grandpa")?;
    p.start()?;
    a.ok(&["share", ALBUM, "Grandpa"])?;
    wait_until(SYNC_DEADLINE, "both relatives to read the album", || {
        Ok(album_on(&g)? == first[1..] && album_on(&p)? == first[1..])
    })?;

    cluster.nodes[1].start()?;
    wait_until(
        SYNC_DEADLINE,
        "the laptop's photo to reach everyone",
        || {
            let on_a = album_on(&cluster.nodes[0])?;
            Ok(on_a.len() == 2
                && album_on(&cluster.nodes[1])? == on_a
                && album_on(&g)? == on_a
                && album_on(&p)? == on_a)
        },
    )?;
    let log = cluster.nodes[1].log();
    assert!(log.contains("carried 1 entries"), "{log}");
    for node in [&cluster.nodes[0], &cluster.nodes[1], &g, &p] {
        let album = album_on(node)?;
        assert!(
            !album.contains(&gone) && !album.contains(&first[0]),
            "{album:?}"
        );
    }
    stop_everyone(&mut cluster, [&mut g, &mut p])?;
    let holders: Vec<&TestNode> = cluster.nodes.iter().collect();
    // The album was made at epoch 1 and first started over at 2, when Grandma got it.
    assert_reads_nothing_that_left_since(&holders, &g, &doc, &name, Some(2))?;
    assert_reads_nothing_that_left(&holders, &p, &doc, &name)
}

/// A relative made a member reads every household album: each as it is now, like a grantee.
#[test]
fn a_relative_made_a_member_reads_the_albums_now_not_what_left_them() -> Result<()> {
    let mut cluster = Cluster::start(1)?;
    let rows = jpegs(3)?;
    let a = &cluster.nodes[0];
    let Left { doc, now, name, .. } = photo_left_album(a, &rows)?;

    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    g.start()?;
    a.ok(&["people", "set-role", "Grandma", "member"])?;
    wait_until(SYNC_DEADLINE, "Grandma to read the album as it is", || {
        Ok(album_on(&g)? == now)
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
    assert_reads_nothing_that_left_since(holders, g, doc, name, None)
}

/// [`assert_reads_nothing_that_left`], where `g` may hold keys from the fresh start at epoch
/// `since` on (when given; else from the newest one): she was granted the album at that one.
fn assert_reads_nothing_that_left_since(
    holders: &[&TestNode],
    g: &TestNode,
    doc: &DocId,
    name: &str,
    since: Option<u32>,
) -> Result<()> {
    let mut all = BTreeMap::new();
    for node in holders.iter().copied().chain([g]) {
        all.extend(changes_of(node, doc)?);
    }
    let (keys, fresh) = keys_of(g, doc)?;
    assert!(!keys.is_empty(), "Grandma holds the album's key");
    // Not one key from before the album started over, whoever holds the old changes.
    let fresh = since
        .or(fresh)
        .context("the album's history did not start over")?;
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

/// Two admins act on one album while apart: Ana shares it with Grandma (a fresh start, since a
/// photo left it) while Ben's device rotates its key for a removal. The log keeps Ben's
/// rotation, so Ana's fresh start is cancelled. Ana cuts it again at the next epoch: every
/// device ends on the same album, with both admins' additions, and Grandma still holds no key
/// of a history that held the removed photo.
#[test]
fn a_fresh_start_that_loses_a_rotation_race_is_cut_again() -> Result<()> {
    fresh_start_loses_a_race(1, Restart::No)
}

/// As above, but Ben's device rotated the album twice: the family moved on from the epoch Ana
/// cut at, so she does not cut again. Ben's device, responsible for the next rotation, starts
/// the album over from the history everyone else is on, and Ana's device follows it, carrying
/// over what it wrote on its cancelled history.
#[test]
fn a_fresh_start_cancelled_by_two_rotations_is_followed_not_cut_again() -> Result<()> {
    fresh_start_loses_a_race(2, Restart::No)
}

/// As above, but Ana's device learns of Ben's rotations (and takes their key) alone and
/// restarts before it can follow: what it wrote on the cancelled history still opens after the
/// restart (nothing is listed as damaged), and is carried over when Ben's fresh start comes.
#[test]
fn a_device_on_a_cancelled_fresh_start_that_restarts_keeps_what_it_wrote_there() -> Result<()> {
    fresh_start_loses_a_race(2, Restart::BeforeFollowing)
}

/// Whether Ana's device restarts between learning that its fresh start was cancelled and
/// following the next one.
#[derive(PartialEq)]
enum Restart {
    No,
    BeforeFollowing,
}

/// Two admins share one album, a photo left it, with two relatives while apart: both start its
/// history over at the same epoch, and the log keeps one of the two. The other admin's device
/// follows the history that was kept, carrying over what it added; every device ends on one
/// album with both additions, and neither relative holds a key of a history that held the
/// removed photo.
#[test]
fn two_admins_sharing_one_album_while_apart_end_on_one_history() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    let rows = jpegs(5)?;
    let Left {
        doc,
        now,
        gone,
        name,
    } = photo_left_album(&cluster.nodes[0], &rows[0..3])?;
    let a = &cluster.nodes[0];
    let extra = second_admin_and_two_more_photos(a, &rows[3..5], &now, &gone)?;
    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    let mut p = join_relative(a, "Grandpa's phone", "Grandpa")?;
    g.start()?;
    p.start()?;
    cluster.wait_converged()?;

    // Apart (the relatives' devices too, which would pass the log on): each admin shares the
    // album with one relative and adds a photo to it.
    g.stop()?;
    p.stop()?;
    cluster.nodes[1].stop()?;
    let a = &cluster.nodes[0];
    a.ok(&["share", ALBUM, "Grandma"])?;
    a.ok(&["albums", "add", ALBUM, &extra[0]])?;
    cluster.nodes[0].stop()?;
    cluster.nodes[1].start()?;
    let b = &cluster.nodes[1];
    b.ok(&["share", ALBUM, "Grandpa"])?;
    b.ok(&["albums", "add", ALBUM, &extra[1]])?;

    cluster.nodes[0].start()?;
    g.start()?;
    p.start()?;
    let mut want = now.clone();
    want.extend(extra.iter().cloned());
    want.sort();
    wait_until(SYNC_DEADLINE, "every device to show the same album", || {
        Ok(album_on(&cluster.nodes[0])? == want
            && album_on(&cluster.nodes[1])? == want
            && album_on(&g)? == want
            && album_on(&p)? == want)
    })?;
    for node in [&cluster.nodes[0], &cluster.nodes[1], &g, &p] {
        let status = node.json(&["status", "--json"])?;
        assert_eq!(status["damaged"], serde_json::json!([]), "{status}");
    }
    // The admin whose cut lost followed the other's, carrying over the photo it added.
    let carried = |node: &TestNode| node.log().contains("carried 1 entries");
    assert!(
        carried(&cluster.nodes[0]) != carried(&cluster.nodes[1]),
        "exactly one admin's device carried its addition over"
    );
    stop_everyone(&mut cluster, [&mut g, &mut p])?;
    let holders: Vec<&TestNode> = cluster.nodes.iter().collect();
    assert_reads_nothing_that_left(&holders, &g, &doc, &name)?;
    assert_reads_nothing_that_left(&holders, &p, &doc, &name)
}

/// Ana shares an album a photo left while Ben's device, apart, makes `rotations` rotations of
/// it that win over Ana's; both add a photo to it meanwhile.
fn fresh_start_loses_a_race(rotations: u32, restart: Restart) -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let rows = jpegs(5)?;
    let a = &cluster.nodes[0];
    let Left {
        doc,
        now,
        gone,
        name,
    } = photo_left_album(a, &rows[0..3])?;
    let extra = second_admin_and_two_more_photos(a, &rows[3..5], &now, &gone)?;
    let mut g = join_relative(a, "Grandma's tablet", "Grandma")?;
    cluster.wait_converged()?;
    let removed: DeviceId = cluster.nodes[2].json(&["status", "--json"])?["device_id"]
        .as_str()
        .context("device id")?
        .parse()?;

    // Apart: Ana shares the album and adds a photo to it; Ben's device removes the member's
    // device (rotating the album's key to the same epoch) and adds another photo.
    cluster.nodes[2].stop()?;
    cluster.nodes[1].stop()?;
    let a = &cluster.nodes[0];
    a.ok(&["share", ALBUM, "Grandma"])?;
    a.ok(&["albums", "add", ALBUM, &extra[0]])?;
    cluster.nodes[0].stop()?;
    let (tries, made) = rotate_so_that_it_wins(
        &cluster.nodes[1],
        &cluster.nodes[0],
        &doc,
        &removed,
        rotations,
    )?;
    eprintln!("Ben's rotation wins the race after {tries} tries");
    cluster.nodes[1].ok(&["albums", "add", ALBUM, &extra[1]])?;
    if restart == Restart::BeforeFollowing {
        // Ana's device hears of Ben's rotations (from a device that passed them on) while Ben's
        // is away, takes their key, and restarts.
        commit_ops(&cluster.nodes[0], made)?;
        let a = &mut cluster.nodes[0];
        a.start()?;
        a.stop()?;
        a.start()?;
        let status = a.json(&["status", "--json"])?;
        assert_eq!(status["damaged"], serde_json::json!([]), "{status}");
        a.stop()?;
    }

    let mut want = now.clone();
    want.extend(extra.iter().cloned());
    want.sort();
    cluster.nodes[0].start()?;
    cluster.nodes[1].start()?;
    g.start()?;
    wait_until(SYNC_DEADLINE, "every device to show the same album", || {
        Ok(album_on(&cluster.nodes[0])? == want
            && album_on(&cluster.nodes[1])? == want
            && album_on(&g)? == want)
    })?;
    assert_eq!(
        cluster.nodes[0].log().contains("cut it again"),
        rotations == 1,
        "Ana cuts the album's history again only when nobody rotated it since"
    );
    if rotations > 1 {
        // Ana followed Ben's fresh start, carrying over the photo she added meanwhile.
        let log = cluster.nodes[0].log();
        assert!(log.contains("followed the new history"), "{log}");
        assert!(log.contains("carried 1 entries"), "{log}");
    }
    for node in [&cluster.nodes[0], &cluster.nodes[1], &g] {
        let status = node.json(&["status", "--json"])?;
        assert_eq!(status["damaged"], serde_json::json!([]), "{status}");
    }
    cluster.nodes[0].stop()?;
    cluster.nodes[1].stop()?;
    g.stop()?;
    let holders = [&cluster.nodes[0], &cluster.nodes[1]];
    assert_reads_nothing_that_left(&holders, &g, &doc, &name)
}

/// Makes, on the stopped `ben`'s device, the removal of `device` and `rotations` rotations of
/// `doc` after it (as an admin's node may), while apart from the stopped `ana` who shared
/// `doc`; signed at times chosen so that the log keeps Ben's first rotation over Ana's (whose
/// fresh start it cancels). Returns how many times it signed them, and the ops.
///
/// Concurrent ops apply in ascending op id order once their parents have (see
/// `kith_protocol::membership`), so Ben's removal and first rotation both sort before Ana's
/// rotation to that epoch when each has a smaller id. Each is searched on its own (its
/// signing time is informational and changes its id): the expected tries are two over the
/// fraction of ids below Ana's, where searching the pair at once needs that fraction squared
/// and, when Ana's id happens to be small, ran out of tries in about one run in thirty.
fn rotate_so_that_it_wins(
    ben: &TestNode,
    ana: &TestNode,
    doc: &DocId,
    device: &DeviceId,
    rotations: u32,
) -> Result<(u64, Vec<SignedOp>)> {
    let dir = DataDir::new(&ben.data_dir);
    let secret = dir.read_device_secret()?;
    let store = Store::open(&dir.db_file(), secret.storage_key())?;
    let loaded = store.load(&ben.data_dir)?;
    let ana_dir = DataDir::new(&ana.data_dir);
    let ana_store = Store::open(
        &ana_dir.db_file(),
        ana_dir.read_device_secret()?.storage_key(),
    )?;
    let root = OpId(loaded.identity.root_op);
    let mut merged = ana_store.load(&ana.data_dir)?.ops;
    merged.extend(loaded.ops.iter().cloned());
    let record = (loaded.docs.iter())
        .find(|(d, _)| d == doc)
        .map(|(_, r)| r.clone())
        .context("Ben's device holds the album's key")?;
    let racing = record.epoch + 1;
    let anas_rotation = (merged.iter())
        .filter(|op| {
            matches!(&op.op().body, OpBody::RotateKey { doc: d, epoch, .. }
                if d == doc && *epoch == racing)
        })
        .map(|op| op.id())
        .min()
        .context("Ana's rotation of the album that Ben's must race")?;
    let mut rng = XorShift::new(0x5eed);
    let mut seed = || -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        out
    };
    let mut tries = 0u64;
    // Signs `body` after `parents` at the first time whose op id sorts before Ana's rotation
    // when `race` holds, else at a fixed time.
    let mut sign = |parents: Vec<OpId>, body: OpBody, race: bool| -> Result<SignedOp> {
        for time in 1_800_000_000_000..1_800_010_000_000u64 {
            tries += 1;
            let op = SignedOp::sign(
                MembershipOp {
                    version: membership::VERSION,
                    parents: parents.clone(),
                    author: secret.device_id(),
                    time_ms: time,
                    body: body.clone(),
                },
                &secret,
            );
            if !race || op.id() < anas_rotation {
                return Ok(op);
            }
        }
        anyhow::bail!("no signing time sorts Ben's op before Ana's rotation {anas_rotation}")
    };
    let revoke = sign(
        membership::heads(&loaded.ops),
        OpBody::RevokeDevice { device: *device },
        true,
    )?;
    let mut made = vec![revoke];
    let mut keys = record.all_keys();
    for epoch in racing..=record.epoch + rotations {
        let mut ops = loaded.ops.clone();
        ops.extend(made.iter().cloned());
        let family = membership::evaluate_with_root(root, &ops)?;
        let key = seed();
        let sym = SymmetricKey::from_bytes(key);
        let mut envelopes = Vec::new();
        for (to, x25519) in family.key_recipients(doc, &loaded.identity.person) {
            envelopes.push((to, Envelope::seal(&sym, doc, epoch, &to, &x25519, seed())?));
        }
        let earlier: Vec<(u32, SymmetricKey)> = (keys.iter())
            .map(|(e, k)| (*e, SymmetricKey::from_bytes(*k)))
            .collect();
        let history = SealedHistory::seal(&sym, doc, epoch, &earlier, [7; 24])?;
        keys.push((epoch, key));
        let parents = vec![made.last().context("an op")?.id()];
        let body = OpBody::RotateKey {
            doc: *doc,
            epoch,
            envelopes,
            history: Some(history),
        };
        made.push(sign(parents, body, epoch == racing)?);
    }
    // Ben's first rotation must win its epoch, and the last be the log's.
    let wins = |count: usize, epoch: u32| -> Result<bool> {
        let mut all = merged.clone();
        all.extend(made[..count].iter().cloned());
        let family = membership::evaluate_with_root(root, &all)?;
        Ok(family.fresh_start(doc).is_none()
            && family
                .current_keys(doc)
                .is_some_and(|k| k.rotated_by == secret.device_id() && k.epoch == epoch))
    };
    anyhow::ensure!(
        wins(2, racing)? && wins(made.len(), record.epoch + rotations)?,
        "Ben's rotation signed to sort first does not win the race: the log orders \
         concurrent rotations other than by op id"
    );
    store.commit(&WriteBatch {
        ops: made.clone(),
        ..WriteBatch::default()
    })?;
    Ok((tries, made))
}

/// Writes `ops` into the log of the stopped `node`, as if a device had passed them on.
fn commit_ops(node: &TestNode, ops: Vec<SignedOp>) -> Result<()> {
    let dir = DataDir::new(&node.data_dir);
    let store = Store::open(&dir.db_file(), dir.read_device_secret()?.storage_key())?;
    store.commit(&WriteBatch {
        ops,
        ..WriteBatch::default()
    })?;
    Ok(())
}
