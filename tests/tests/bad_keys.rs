//! Bad keys from a family device: a raw peer with a real member's device key pushes ops a real
//! node never makes (a device with a low-order X25519 key, a rotation whose envelopes are
//! garbage). The node refuses the key, keeps rotating for everyone else, and starts again.
//! A join presenting a low-order key is refused with the reason in the inviter's log.

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::{Loaded, Store};
use kith_protocol::envelope::{Envelope, SealedHistory};
use kith_protocol::keys::{DeviceId, DeviceSecret, DocId, PersonId};
use kith_protocol::membership::{
    self, FamilyState, MembershipOp, OpBody, OpId, SignedOp, evaluate_with_root,
};
use kith_protocol::ticket::{Ticket, invite_proof};
use kith_protocol::wire::{self, INVITE_PROTOCOL, InviteMessage, SyncMessage};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::corpus::{more_photos, some_photos};
use kith_tests::peer::{RawPeer, Target, hello, runtime};
use kith_tests::{TestNode, import, wait_until};
use serde_json::Value;

/// Everything a stopped node's data dir holds, read through its own store.
pub(crate) fn load(node: &TestNode) -> Result<(DeviceSecret, Loaded)> {
    let dir = DataDir::new(&node.data_dir);
    let secret = dir.read_device_secret()?;
    let store = Store::open(&dir.db_file(), secret.storage_key())?;
    let loaded = store.load(&node.data_dir)?;
    Ok((secret, loaded))
}

/// The family as a stopped node's log describes it.
pub(crate) fn family_of(loaded: &Loaded) -> Result<FamilyState> {
    Ok(evaluate_with_root(
        OpId(loaded.identity.root_op),
        &loaded.ops,
    )?)
}

/// Signs `bodies` one after another as `author`, on top of `ops`.
pub(crate) fn chain(author: &DeviceSecret, ops: &[SignedOp], bodies: Vec<OpBody>) -> Vec<SignedOp> {
    let mut parents = membership::heads(ops);
    let mut out = Vec::new();
    for body in bodies {
        let op = SignedOp::sign(
            MembershipOp {
                version: membership::VERSION,
                parents: std::mem::take(&mut parents),
                author: author.device_id(),
                time_ms: 1_800_000_000_000,
                body,
            },
            author,
        );
        parents = vec![op.id()];
        out.push(op);
    }
    out
}

fn device_count(node: &TestNode) -> Result<usize> {
    let people = node.json(&["people", "--json"])?;
    Ok(people
        .as_array()
        .context("people")?
        .iter()
        .map(|p| p["devices"].as_array().map_or(0, Vec::len))
        .sum())
}

#[test]
fn a_low_order_device_key_and_garbage_envelopes_do_not_stop_rotation_or_startup() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    import(&cluster.nodes[0], &some_photos(2)?, "Home")?;
    cluster.wait_converged()?;
    let t = Target::of(&cluster.nodes[0])?;
    let c_device: DeviceId = cluster.nodes[2].json(&["status", "--json"])?["device_id"]
        .as_str()
        .context("C's id")?
        .parse()?;

    // B (a member) goes away; a raw peer with B's own key signs, on B's log, two devices for
    // B's person with low-order keys, and a rotation of a document of its own whose envelopes
    // to A and C and whose history are garbage.
    cluster.nodes[1].stop()?;
    let (b_secret, b_loaded) = load(&cluster.nodes[1])?;
    let b_person: PersonId = b_loaded.identity.person;
    let bad_phone = DeviceSecret::from_seeds([71; 32], [72; 32]);
    let bad_tablet = DeviceSecret::from_seeds([73; 32], [74; 32]);
    let mut order_8 = [0u8; 32];
    for (i, byte) in order_8.iter_mut().enumerate() {
        let hex = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800";
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    let garbage = |n: u8| Envelope {
        ephemeral: [n; 32],
        sealed_key: [n.wrapping_add(1); 32],
        tag: [n.wrapping_add(2); 16],
    };
    let pushed = chain(
        &b_secret,
        &b_loaded.ops,
        vec![
            OpBody::AddDevice {
                person: b_person,
                device: bad_phone.device_id(),
                device_x25519: [0; 32],
                device_name: "zero key".into(),
            },
            OpBody::AddDevice {
                person: b_person,
                device: bad_tablet.device_id(),
                device_x25519: order_8,
                device_name: "order 8 key".into(),
            },
            OpBody::RotateKey {
                doc: DocId([0x5a; 32]),
                epoch: 1,
                envelopes: vec![(t.device, garbage(0)), (c_device, garbage(9))],
                history: Some(SealedHistory {
                    nonce: [3; 24],
                    ciphertext: vec![0xee; 80],
                }),
            },
        ],
    );
    let rt = runtime()?;
    rt.block_on(async {
        let b_key = kith_node::net::keypair(&b_secret)?;
        let mut fake_b = RawPeer::connect(b_key, t.peer, t.addr.clone()).await?;
        let hello = hello(t.family)?;
        let ops = wire::encode_frame(&SyncMessage::Ops(
            pushed.iter().map(SignedOp::to_bytes).collect(),
        ))?;
        fake_b.serve_sync(&[hello, ops]).await
    })?;
    drop(rt);
    let a = &mut cluster.nodes[0];
    wait_until(SYNC_DEADLINE, "A to take in the pushed ops", || {
        Ok(a.log().contains("an envelope to this device does not open"))
    })?;
    // The log refused both devices: A lists only the family's three.
    assert_eq!(device_count(a)?, 3, "{}", a.json(&["people", "--json"])?);

    // A removes C's device: the removal and the rotations it makes due go through.
    a.ok(&["devices", "remove", "device 2"])
        .with_context(|| format!("--- A's log:\n{}", a.log()))?;
    a.stop()?;
    let (_, a_loaded) = load(a)?;
    let family = family_of(&a_loaded)?;
    for (doc, _) in &a_loaded.docs {
        let keys = family
            .current_keys(doc)
            .with_context(|| format!("document {doc} has no key in the log"))?;
        assert!(
            !family.needs_rotation(doc),
            "document {doc} was not rotated"
        );
        assert!(!keys.envelopes.contains_key(&c_device));
        assert!(keys.envelopes.contains_key(&b_secret.device_id()));
    }
    assert!(family.device(&bad_phone.device_id()).is_none());
    assert!(family.device(&bad_tablet.device_id()).is_none());

    // `kith run` starts on that log, and the real B gets the new keys and a new photo.
    a.start()?;
    cluster.nodes[1].start()?;
    let more = more_photos(2, 1)?;
    cluster.nodes[0].ok(&["import", "--album", "Home", &more[0]])?;
    cluster.wait_converged_among(&[0, 1])?;
    let photos = cluster.nodes[1].json(&["photos", "--json"])?;
    assert_eq!(photos.as_array().map(Vec::len), Some(3));
    Ok(())
}

#[test]
fn a_join_with_a_low_order_key_is_refused_and_the_invite_still_works() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let a = &cluster.nodes[0];
    let ticket_text = a.invite()?;
    let ticket = Ticket::decode(&ticket_text)?;
    let t = Target::of(a)?;
    let joiner = DeviceSecret::from_seeds([81; 32], [82; 32]);
    let zero = [0u8; 32];
    let join = InviteMessage::Join {
        invite: ticket.invite,
        family: ticket.family,
        joiner_x25519: zero,
        person_name: "Mallory".into(),
        device_name: "zero key".into(),
        proof: invite_proof(
            &ticket.secret,
            &ticket.invite,
            &ticket.inviter,
            &joiner.device_id(),
            &zero,
        ),
    };
    let rt = runtime()?;
    let answer = rt.block_on(async {
        let peer =
            RawPeer::connect(kith_node::net::keypair(&joiner)?, t.peer, t.addr.clone()).await?;
        let got = peer
            .exchange(INVITE_PROTOCOL, &wire::encode_frame(&join)?)
            .await?;
        anyhow::Ok(wire::decode_invite(
            got.get(4..).context("an answer frame")?,
        )?)
    })?;
    drop(rt);
    assert!(matches!(answer, InviteMessage::Refused(_)), "{answer:?}");
    wait_until(SYNC_DEADLINE, "the refusal's reason in A's log", || {
        Ok(a.log().contains("low-order"))
    })?;
    assert_eq!(device_count(a)?, 1);
    // The invite was not spent: a real device joins with it.
    let newcomer = TestNode::new();
    newcomer.ok(&["join", &ticket_text, "--name", "phone", "--person", "Bo"])?;
    assert_eq!(device_count(a)?, 2);
    let status: Value = newcomer.json(&["status", "--json"])?;
    assert_eq!(status["person"], "Bo");
    Ok(())
}
