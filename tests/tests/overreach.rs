//! Family devices reaching past their rights, with their real keys: a raw peer holding a
//! relative's, a member's or a joiner's own device key speaks `/kith/sync/1` or
//! `/kith/invite/1` directly and sends what a real node never makes. A contributor's changes
//! that edit or delete another person's entry or set the album's `kind`, and a member's change
//! written under another device's automerge actor, are sealed correctly at the current epoch
//! and still refused by the receiving node, which takes the honest change sent after them. A
//! name that passes for an id, from a joiner or in an op a family device signed, never becomes
//! a person's or a device's name. And a node serving sync sends every membership op a device
//! asks for before any document change, even when it commits something meanwhile.
//!
//! A test that pushes bad changes or ops waits for an honest one sent after them to arrive,
//! then checks that the bad ones left no trace: in the node's listings, in its log, and (once
//! it is stopped) in the documents and changes its data dir holds. The sync test records every
//! frame the node sends to a raw puller that asks the way a real device asks.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail, ensure};
use futures::AsyncWriteExt;
use kith_node::DataDir;
use kith_node::store::Loaded;
use kith_protocol::keys::{DeviceId, DeviceSecret, DocId, PhotoId, SymmetricKey};
use kith_protocol::library::{DocKind, Document, PhotoEdit, PhotoEntry};
use kith_protocol::membership::{OpBody, OpId, SignedOp};
use kith_protocol::names::check_name;
use kith_protocol::seal::{self, ChangeHeader, SealedChange, seal_change};
use kith_protocol::ticket::{Ticket, invite_proof};
use kith_protocol::wire::{self, INVITE_PROTOCOL, InviteMessage, SYNC_PROTOCOL, SyncMessage};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE, join_relative};
use kith_tests::corpus::{jpegs, paths};
use kith_tests::peer::{RawPeer, Target, hello, read_frame, runtime};
use kith_tests::{TestNode, album_id, import, photo_ids, wait_until};

use crate::bad_keys::{chain, family_of, load};

/// Ids of the photos `node` lists in album `title`.
fn album_photos(node: &TestNode, title: &str) -> Result<BTreeSet<String>> {
    Ok(photo_ids(node, Some(title))?.into_iter().collect())
}

/// A document as a stopped node holds it: the current epoch and its key, and every stored
/// change opened.
struct HeldDoc {
    doc: DocId,
    epoch: u32,
    key: [u8; 32],
    changes: Vec<Vec<u8>>,
    /// The author of each stored change.
    authors: Vec<DeviceId>,
}

fn held_doc(loaded: &Loaded, doc: DocId) -> Result<HeldDoc> {
    let record = loaded
        .docs
        .iter()
        .find(|(id, _)| *id == doc)
        .map(|(_, r)| r)
        .with_context(|| format!("the device holds no key of document {doc}"))?;
    let mut changes = Vec::new();
    let mut authors = Vec::new();
    for (_, sealed) in loaded.changes.iter().filter(|(d, _)| *d == doc) {
        let header = sealed.header();
        let key = record
            .key_for(header.epoch)
            .with_context(|| format!("no key of epoch {}", header.epoch))?;
        changes.push(seal::open_change(&SymmetricKey::from_bytes(key), sealed)?);
        authors.push(header.author);
    }
    Ok(HeldDoc {
        doc,
        epoch: record.epoch,
        key: record.key,
        changes,
        authors,
    })
}

impl HeldDoc {
    /// The document as automerge rebuilds it, written (from now on) by `actor`.
    fn document(&self, actor: &DeviceId) -> Result<Document> {
        Ok(Document::from_changes(actor, self.changes.clone())?)
    }

    /// One change written under automerge actor `actor` on top of every held change.
    fn change_by(
        &self,
        actor: &DeviceId,
        edit: impl FnOnce(&mut Document) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let mut doc = self.document(actor)?;
        edit(&mut doc)?;
        doc.commit(1_800_000_000_000)
            .context("the edit changed nothing")
    }

    /// Sealed by `author` at the document's current epoch, as a real node seals.
    fn seal(&self, author: &DeviceSecret, nonce: u8, change: &[u8]) -> SealedChange {
        seal_change(
            &SymmetricKey::from_bytes(self.key),
            &ChangeHeader {
                doc: self.doc,
                epoch: self.epoch,
                author: author.device_id(),
            },
            [nonce; 24],
            change,
            author,
        )
    }
}

/// A change by `actor` that sets the document's own `kind` field: kith's `Document` has no
/// call for it, so it is written with automerge itself.
fn kind_change(held: &HeldDoc, actor: &DeviceId, kind: &str) -> Result<Vec<u8>> {
    use automerge::transaction::Transactable;
    let mut doc =
        automerge::AutoCommit::new().with_actor(automerge::ActorId::from(actor.0.as_slice()));
    let changes = held
        .changes
        .iter()
        .map(|c| automerge::Change::from_bytes(c.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    doc.apply_changes(changes)?;
    doc.put(automerge::ROOT, "kind", kind)?;
    doc.commit();
    Ok(doc
        .get_last_local_change()
        .context("no change was made")?
        .raw_bytes()
        .to_vec())
}

/// A new photo entry like `template` (its renditions exist), made by `by`.
fn new_entry(template: &PhotoEntry, n: u8, by: DeviceId, file_name: &str) -> PhotoEntry {
    PhotoEntry {
        id: PhotoId([n; 32]),
        added_by: by,
        file_name: file_name.to_owned(),
        caption: None,
        ..template.clone()
    }
}

/// Writes `changes` to the node over its pull stream from us, one Changes frame each.
async fn send_changes(stream: &mut libp2p::Stream, changes: Vec<SealedChange>) -> Result<()> {
    for change in changes {
        let frame = wire::encode_frame(&SyncMessage::Changes(vec![change.into_bytes()]))?;
        stream.write_all(&frame).await?;
    }
    stream.flush().await?;
    Ok(())
}

const CONTRIBUTOR_REFUSAL: &str = "its author may only add photos and change the entries its \
                                   person added, and it changes the album itself or someone \
                                   else's entries";

#[test]
fn a_contributor_changes_only_the_entries_its_person_added() -> Result<()> {
    const ALBUM: &str = "Summer";
    let mut cluster = Cluster::start(1)?;
    let a = &cluster.nodes[0];
    import(a, &paths(&jpegs(2)?), ALBUM)?;
    // Grandma joins as a relative with her tablet (a running node) and three more devices (data
    // dirs with their keys), and may contribute to the album.
    let mut tablet = join_relative(a, "Grandma's tablet", "Grandma")?;
    let mut others = Vec::new();
    for name in ["Grandma's phone", "Grandma's laptop", "Grandma's e-reader"] {
        let ticket = a.invite_with(&["--person", "Grandma"])?;
        let device = TestNode::new();
        device.ok(&["join", &ticket, "--name", name])?;
        others.push(DataDir::new(&device.data_dir).read_device_secret()?);
    }
    tablet.start()?;
    a.ok(&["share", ALBUM, "Grandma", "--can", "contribute"])?;
    let album: DocId = album_id(a, ALBUM)?.parse().context("album id")?;
    let anas = album_photos(a, ALBUM)?;
    ensure!(anas.len() == 2, "{anas:?}");
    wait_until(
        SYNC_DEADLINE,
        "the tablet to contribute to the album",
        || {
            let contributes = tablet
                .json(&["albums", "--json"])?
                .as_array()
                .is_some_and(|x| {
                    x.iter()
                        .any(|al| al["title"] == ALBUM && al["access"] == "contribute")
                });
            Ok(contributes && album_photos(&tablet, ALBUM)? == anas)
        },
    )?;

    // The tablet goes away; a raw peer with its key takes its place. From the album as the
    // tablet holds it, each of Grandma's other devices writes one change reaching past her
    // entries (each its own automerge actor, so that none hides another), and the tablet one
    // that adds a photo of hers.
    tablet.stop()?;
    let (tablet_secret, loaded) = load(&tablet)?;
    let [phone, laptop, reader] = others.as_slice() else {
        bail!("three devices joined");
    };
    let grandma_tablet = tablet_secret.device_id();
    let held = held_doc(&loaded, album)?;
    ensure!(
        held.epoch == family_of(&loaded)?.current_epoch(&album),
        "the tablet does not hold the album's current key"
    );
    let before = held.document(&grandma_tablet)?;
    let entries = before.photos()?;
    let (captioned, deleted) = match entries.as_slice() {
        [first, second] => (first.clone(), second.clone()),
        _ => bail!("the album holds {} entries", entries.len()),
    };
    let edit_caption = held.change_by(&phone.device_id(), |d| {
        let caption = PhotoEdit {
            caption: Some(Some("Grandma's now".into())),
            ..PhotoEdit::default()
        };
        ensure!(d.edit_photo(&captioned.id, &caption)?);
        Ok(())
    })?;
    let delete = held.change_by(&laptop.device_id(), |d| {
        ensure!(d.remove_photo(&deleted.id)?);
        Ok(())
    })?;
    let set_kind = kind_change(&held, &reader.device_id(), "library")?;
    let own = new_entry(&captioned, 0x6b, grandma_tablet, "grandma.jpg");
    let add_own = held.change_by(&grandma_tablet, |d| Ok(d.put_photos([&own])?))?;

    let t = Target::of(a)?;
    let rt = runtime()?;
    let (_raw, _stream) = rt.block_on(async {
        let mut raw = RawPeer::connect(
            kith_node::net::keypair(&tablet_secret)?,
            t.peer,
            t.addr.clone(),
        )
        .await?;
        let mut stream = raw.accept_sync(&hello(t.family)?).await?;
        let changes = vec![
            held.seal(phone, 1, &edit_caption),
            held.seal(laptop, 2, &delete),
            held.seal(reader, 3, &set_kind),
            held.seal(&tablet_secret, 4, &add_own),
        ];
        send_changes(&mut stream, changes).await?;
        anyhow::Ok((raw, stream))
    })?;
    let own_id = own.id.to_string();
    wait_until(SYNC_DEADLINE, "Grandma's own photo to reach A", || {
        Ok(album_photos(a, ALBUM)?.contains(&own_id))
    })?;
    let mut wrong = Vec::new();
    if !album_photos(a, ALBUM)?.contains(&deleted.id.to_string()) {
        wrong.push("A no longer lists the photo the contributor deleted".to_owned());
    }
    let refusals = a.log().matches(CONTRIBUTOR_REFUSAL).count();
    if refusals != 3 {
        wrong.push(format!("A logged {refusals} contributor refusals, not 3"));
    }
    drop(rt);

    // What A holds: the album as it was, plus Grandma's photo; no change of the other three.
    let a = &mut cluster.nodes[0];
    a.stop()?;
    let (a_secret, a_loaded) = load(a)?;
    let kept = held_doc(&a_loaded, album)?;
    let after = kept.document(&a_secret.device_id())?;
    if after.kind() != Some(DocKind::Album) {
        wrong.push(format!("the album's kind field is {:?}", after.kind()));
    }
    let photos = after.photos()?;
    match photos.iter().find(|e| e.id == captioned.id) {
        Some(e) if e.caption == captioned.caption => {}
        Some(e) => wrong.push(format!("Ana's entry's caption is now {:?}", e.caption)),
        None => wrong.push("Ana's captioned entry is gone".into()),
    }
    if !photos.iter().any(|e| e.id == deleted.id) {
        wrong.push("Ana's other entry was deleted".into());
    }
    if !photos
        .iter()
        .any(|e| e.id == own.id && e.added_by == grandma_tablet)
    {
        wrong.push("Grandma's own entry is missing".into());
    }
    let by_grandma = kept.authors.iter().filter(|d| **d != a_secret.device_id());
    if by_grandma.clone().any(|d| *d != grandma_tablet) {
        wrong.push(format!(
            "A stores {} changes by Grandma's other devices",
            by_grandma.filter(|d| **d != grandma_tablet).count()
        ));
    }
    assert!(
        wrong.is_empty(),
        "{}\n--- A's log:\n{}",
        wrong.join("\n"),
        a.log()
    );
    Ok(())
}

#[test]
fn a_change_written_under_another_devices_actor_is_refused() -> Result<()> {
    const ALBUM: &str = "Home";
    let mut cluster = Cluster::start(2)?;
    import(&cluster.nodes[0], &paths(&jpegs(2)?), ALBUM)?;
    cluster.wait_converged()?;
    let album: DocId = album_id(&cluster.nodes[0], ALBUM)?
        .parse()
        .context("album id")?;
    let t = Target::of(&cluster.nodes[0])?;

    // B (a member, who may write the household's albums) goes away; a raw peer with its key
    // sends A two changes it signed: one written under A's automerge actor, which would make
    // the entry it adds A's, then an honest one under its own.
    cluster.nodes[1].stop()?;
    let (b_secret, b_loaded) = load(&cluster.nodes[1])?;
    let b = b_secret.device_id();
    let held = held_doc(&b_loaded, album)?;
    let template = held
        .document(&b)?
        .photos()?
        .into_iter()
        .next()
        .context("an entry")?;
    let forged_entry = new_entry(&template, 0x66, t.device, "as-ana.jpg");
    let forged = held.change_by(&t.device, |d| Ok(d.put_photos([&forged_entry])?))?;
    let honest_entry = new_entry(&template, 0x68, b, "by-b.jpg");
    let honest = held.change_by(&b, |d| Ok(d.put_photos([&honest_entry])?))?;
    let a = &cluster.nodes[0];
    let before = a.json(&["status", "--json"])?["changes"]
        .as_u64()
        .context("changes")?;

    let rt = runtime()?;
    let (_raw, _stream) = rt.block_on(async {
        let mut raw =
            RawPeer::connect(kith_node::net::keypair(&b_secret)?, t.peer, t.addr.clone()).await?;
        let mut stream = raw.accept_sync(&hello(t.family)?).await?;
        let changes = vec![
            held.seal(&b_secret, 1, &forged),
            held.seal(&b_secret, 2, &honest),
        ];
        send_changes(&mut stream, changes).await?;
        anyhow::Ok((raw, stream))
    })?;
    let honest_id = honest_entry.id.to_string();
    wait_until(SYNC_DEADLINE, "B's honest photo to reach A", || {
        Ok(album_photos(a, ALBUM)?.contains(&honest_id))
    })?;
    let listed = album_photos(a, ALBUM)?;
    assert!(
        !listed.contains(&forged_entry.id.to_string()),
        "A took the change B wrote as A: {listed:?}"
    );
    let log = a.log();
    assert_eq!(
        log.matches("it is written under another device's automerge actor")
            .count(),
        1,
        "{log}"
    );
    let after = a.json(&["status", "--json"])?["changes"]
        .as_u64()
        .context("changes")?;
    assert_eq!(after, before + 1, "A stored more than the honest change");
    drop(rt);
    Ok(())
}

/// The name of a sync message, and the ids of the ops it carries.
fn describe(message: &SyncMessage) -> Result<(&'static str, Vec<OpId>)> {
    Ok(match message {
        SyncMessage::Hello { .. } => ("Hello", vec![]),
        SyncMessage::OpIds(_) => ("OpIds", vec![]),
        SyncMessage::WantOps(_) => ("WantOps", vec![]),
        SyncMessage::Ops(items) => (
            "Ops",
            items
                .iter()
                .map(|b| Ok(SignedOp::from_bytes(b)?.id()))
                .collect::<Result<_>>()?,
        ),
        SyncMessage::Digests(_) => ("Digests", vec![]),
        SyncMessage::WantIds(_) => ("WantIds", vec![]),
        SyncMessage::Ids { .. } => ("Ids", vec![]),
        SyncMessage::Want { .. } => ("Want", vec![]),
        SyncMessage::Changes(_) => ("Changes", vec![]),
        SyncMessage::CaughtUp => ("CaughtUp", vec![]),
    })
}

async fn read_sync(stream: &mut libp2p::Stream) -> Result<SyncMessage> {
    Ok(wire::decode_sync(&read_frame(stream).await?)?)
}

async fn write_sync(stream: &mut libp2p::Stream, message: &SyncMessage) -> Result<()> {
    stream.write_all(&wire::encode_frame(message)?).await?;
    stream.flush().await?;
    Ok(())
}

#[test]
fn a_node_sends_every_op_asked_for_before_any_document_change() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    import(&cluster.nodes[0], &paths(&jpegs(2)?), "Home")?;
    cluster.wait_converged()?;
    // B goes away and misses a new album (ops: its key and kind; changes: its fields).
    cluster.nodes[1].stop()?;
    let a = &cluster.nodes[0];
    a.ok(&["albums", "create", "While B was away"])?;
    let (b_secret, b_loaded) = load(&cluster.nodes[1])?;
    let known: BTreeSet<OpId> = b_loaded.ops.iter().map(SignedOp::id).collect();
    let t = Target::of(a)?;

    // A raw peer with B's key pulls from A as B would: Hello, then A's offer.
    let rt = runtime()?;
    let mut sent: Vec<SyncMessage> = Vec::new();
    let (raw, mut stream) = rt.block_on(async {
        let raw =
            RawPeer::connect(kith_node::net::keypair(&b_secret)?, t.peer, t.addr.clone()).await?;
        let mut stream = raw.open(SYNC_PROTOCOL).await?;
        stream.write_all(&hello(t.family)?).await?;
        stream.flush().await?;
        loop {
            let message = read_sync(&mut stream).await?;
            let digests = matches!(message, SyncMessage::Digests(_));
            sent.push(message);
            if digests {
                break;
            }
        }
        anyhow::Ok((raw, stream))
    })?;
    // A commits something new while B's requests are on their way.
    a.ok(&["albums", "create", "While B asks"])?;
    let offered: Vec<OpId> = sent
        .iter()
        .filter_map(|m| match m {
            SyncMessage::OpIds(ids) => Some(ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let wanted: BTreeSet<OpId> = offered
        .into_iter()
        .filter(|id| !known.contains(id))
        .collect();
    ensure!(!wanted.is_empty(), "B lacks no op of A's");
    let docs: Vec<DocId> = sent
        .iter()
        .filter_map(|m| match m {
            SyncMessage::Digests(d) => Some(d.iter().map(|d| d.doc).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    // B asks as a real puller does: the ops it lacks, the documents' change ids, the barrier;
    // then the changes listed, until A echoes the second barrier.
    rt.block_on(async {
        write_sync(
            &mut stream,
            &SyncMessage::WantOps(wanted.iter().copied().collect()),
        )
        .await?;
        write_sync(&mut stream, &SyncMessage::WantIds(docs)).await?;
        write_sync(&mut stream, &SyncMessage::CaughtUp).await?;
        let mut barriers = 0;
        while barriers < 2 {
            let message = read_sync(&mut stream).await?;
            match &message {
                SyncMessage::Ids { doc, ids } => {
                    let want = SyncMessage::Want {
                        doc: *doc,
                        ids: ids.clone(),
                    };
                    write_sync(&mut stream, &want).await?;
                }
                SyncMessage::CaughtUp => {
                    barriers += 1;
                    if barriers == 1 {
                        write_sync(&mut stream, &SyncMessage::CaughtUp).await?;
                    }
                }
                _ => {}
            }
            sent.push(message);
        }
        anyhow::Ok(())
    })?;
    drop((stream, raw));
    drop(rt);

    let described = sent.iter().map(describe).collect::<Result<Vec<_>>>()?;
    let names: Vec<&str> = described.iter().map(|(n, _)| *n).collect();
    println!("A sent: {}", names.join(" "));
    let mut got = BTreeSet::new();
    let mut last_wanted_op = 0;
    for (i, (_, ops)) in described.iter().enumerate() {
        if ops.iter().any(|id| wanted.contains(id)) {
            last_wanted_op = i;
        }
        got.extend(ops.iter().copied().filter(|id| wanted.contains(id)));
    }
    assert_eq!(got, wanted, "A did not send every op B asked for");
    let first_change = names
        .iter()
        .position(|n| *n == "Changes")
        .context("A sent no change")?;
    assert!(
        first_change > last_wanted_op,
        "A sent a document change (frame {first_change}) before the last op B asked for \
         (frame {last_wanted_op}): {names:?}"
    );
    Ok(())
}

/// Every person's and device's name a node lists.
struct Names {
    persons: Vec<String>,
    /// Device id (hex) and name.
    devices: Vec<(String, String)>,
}

fn names(node: &TestNode) -> Result<Names> {
    let people = node.json(&["people", "--json"])?;
    let mut persons = Vec::new();
    let mut devices = Vec::new();
    for p in people.as_array().context("people")? {
        persons.push(p["name"].as_str().context("name")?.to_owned());
        for d in p["devices"].as_array().context("devices")? {
            devices.push((
                d["id"].as_str().context("id")?.to_owned(),
                d["name"].as_str().context("name")?.to_owned(),
            ));
        }
    }
    Ok(Names { persons, devices })
}

/// Names the node lists that break the rule of names (`kith_protocol::names`).
fn bad_names(node: &TestNode) -> Result<Vec<String>> {
    let Names { persons, devices } = names(node)?;
    Ok(persons
        .into_iter()
        .chain(devices.into_iter().map(|(_, n)| n))
        .filter(|n| check_name(n).is_err())
        .collect())
}

#[test]
fn a_joiner_named_like_an_id_is_recorded_under_a_plain_name() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let a = &cluster.nodes[0];
    let t = Target::of(a)?;
    let ana_device = t.device.to_string();
    let ticket = Ticket::decode(&a.invite()?)?;
    // A raw joiner with a real ticket: its device named like the prefix of Ana's device id,
    // its person like a longer prefix with a Cyrillic "а" and "е" for a and e.
    let lookalike: String = ana_device[..12]
        .chars()
        .map(|c| match c {
            'a' => 'а',
            'e' => 'е',
            c => c,
        })
        .collect();
    let joiner = DeviceSecret::from_seeds([91; 32], [92; 32]);
    let x25519 = joiner.x25519_public();
    let join = InviteMessage::Join {
        invite: ticket.invite,
        family: ticket.family,
        joiner_x25519: x25519,
        person_name: lookalike.clone(),
        device_name: ana_device[..8].to_owned(),
        proof: invite_proof(
            &ticket.secret,
            &ticket.invite,
            &ticket.inviter,
            &joiner.device_id(),
            &x25519,
        ),
    };
    let rt = runtime()?;
    let answer = rt.block_on(async {
        let peer =
            RawPeer::connect(kith_node::net::keypair(&joiner)?, t.peer, t.addr.clone()).await?;
        let got = peer
            .exchange(INVITE_PROTOCOL, &wire::encode_frame(&join)?)
            .await?;
        let len = u32::from_be_bytes(got.get(..4).context("an answer")?.try_into()?) as usize;
        anyhow::Ok(wire::decode_invite(
            got.get(4..4 + len).context("a whole answer frame")?,
        )?)
    })?;
    drop(rt);
    assert!(
        matches!(answer, InviteMessage::Welcome(_)),
        "the join was not admitted: {answer:?}"
    );
    let Names { persons, devices } = names(a)?;
    let joined = joiner.device_id().to_string();
    let name = devices
        .iter()
        .find(|(id, _)| *id == joined)
        .map(|(_, n)| n.as_str())
        .with_context(|| format!("the joiner is not listed: {devices:?}"))?;
    assert_eq!(name, "new device", "{devices:?}");
    assert!(persons.iter().any(|p| p == "new member"), "{persons:?}");
    let bad = bad_names(a)?;
    assert!(bad.is_empty(), "A lists names like ids: {bad:?}");
    Ok(())
}

#[test]
fn a_signed_op_naming_a_person_or_device_like_an_id_is_refused() -> Result<()> {
    let mut cluster = Cluster::start(2)?;
    let t = Target::of(&cluster.nodes[0])?;
    let ana_device = t.device.to_string();

    // B (a member) goes away; a raw peer with its key signs, on B's log, a rename of its
    // person to a prefix of Ana's device id and a new device of its own named like another
    // prefix of it, then (in a later frame) a device with a plain name.
    cluster.nodes[1].stop()?;
    let (b_secret, b_loaded) = load(&cluster.nodes[1])?;
    let b_person = b_loaded.identity.person;
    let impostor = DeviceSecret::from_seeds([93; 32], [94; 32]);
    let spare = DeviceSecret::from_seeds([95; 32], [96; 32]);
    let bad = chain(
        &b_secret,
        &b_loaded.ops,
        vec![
            OpBody::RenamePerson {
                person: b_person,
                name: ana_device[..12].to_owned(),
            },
            OpBody::AddDevice {
                person: b_person,
                device: impostor.device_id(),
                device_x25519: impostor.x25519_public(),
                device_name: ana_device[..8].to_uppercase(),
            },
        ],
    );
    let so_far: Vec<SignedOp> = b_loaded.ops.iter().chain(&bad).cloned().collect();
    let honest = chain(
        &b_secret,
        &so_far,
        vec![OpBody::AddDevice {
            person: b_person,
            device: spare.device_id(),
            device_x25519: spare.x25519_public(),
            device_name: "Bo's spare phone".into(),
        }],
    );
    let rt = runtime()?;
    let (_raw, _stream) = rt.block_on(async {
        let mut raw =
            RawPeer::connect(kith_node::net::keypair(&b_secret)?, t.peer, t.addr.clone()).await?;
        let mut stream = raw.accept_sync(&hello(t.family)?).await?;
        for ops in [bad, honest] {
            let frame = wire::encode_frame(&SyncMessage::Ops(
                ops.iter().map(SignedOp::to_bytes).collect(),
            ))?;
            stream.write_all(&frame).await?;
        }
        stream.flush().await?;
        anyhow::Ok((raw, stream))
    })?;
    let a = &cluster.nodes[0];
    let spare_id = spare.device_id().to_string();
    wait_until(SYNC_DEADLINE, "B's spare phone to reach A", || {
        Ok(names(a)?.devices.iter().any(|(id, _)| *id == spare_id))
    })?;
    let Names { persons, devices } = names(a)?;
    assert!(persons.iter().any(|p| p == "Person 1"), "{persons:?}");
    let impostor_id = impostor.device_id().to_string();
    assert!(
        !devices.iter().any(|(id, _)| *id == impostor_id),
        "the device named like an id was added: {devices:?}"
    );
    let bad = bad_names(a)?;
    assert!(bad.is_empty(), "A lists names like ids: {bad:?}");
    drop(rt);
    Ok(())
}
