//! Peers that misbehave: outsiders asking for data, family devices sending garbage, oversized
//! or forged frames. Each is refused and logged, and the node keeps serving its family.

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_protocol::keys::{DeviceSecret, DocId, SymmetricKey};
use kith_protocol::seal::{ChangeHeader, seal_change};
use kith_protocol::wire::{
    self, BLOBS_PROTOCOL, HAVE_PROTOCOL, HaveMessage, INVITE_PROTOCOL, InviteMessage, MAX_FRAME,
    SYNC_PROTOCOL, SYNC_VERSION, SyncMessage,
};
use kith_tests::cluster::Cluster;
use kith_tests::corpus::{more_photos, some_photos};
use kith_tests::peer::{RawPeer, Target, frame, hello, runtime};
use kith_tests::{album_id, import};
use serde_json::Value;

#[test]
fn an_outsider_gets_no_kith_protocol_and_no_invite_without_a_ticket() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let a = &cluster.nodes[0];
    a.ok(&[
        "import",
        "--album",
        "Secret",
        &kith_tests::corpus::dir()
            .join("camera")
            .display()
            .to_string(),
    ])
    .ok();
    let t = Target::of(a)?;
    let rt = runtime()?;
    rt.block_on(async {
        let outsider = RawPeer::connect(
            libp2p::identity::Keypair::generate_ed25519(),
            t.peer,
            t.addr.clone(),
        )
        .await?;
        let hello = frame(&postcard_body(&SyncMessage::Hello {
            version: SYNC_VERSION,
            family: t.family,
        })?);
        let got = outsider
            .exchange(SYNC_PROTOCOL, &hello)
            .await
            .unwrap_or_default();
        assert!(
            got.is_empty(),
            "an outsider got {} bytes of sync",
            got.len()
        );
        let got = outsider
            .exchange(BLOBS_PROTOCOL, b"\x00garbage request")
            .await
            .unwrap_or_default();
        assert!(
            got.is_empty(),
            "an outsider got {} bytes of blobs",
            got.len()
        );
        let ask = wire::encode_frame(&HaveMessage::Prove {
            nonce: [0; 32],
            blobs: vec![wire::Challenge {
                hash: [0; 32],
                chunks: vec![0],
            }],
        })?;
        let got = outsider
            .exchange(HAVE_PROTOCOL, &ask)
            .await
            .unwrap_or_default();
        assert!(
            got.is_empty(),
            "an outsider got {} bytes of have answers",
            got.len()
        );
        // An invite request with a made-up invite is answered with a refusal, nothing more.
        let join = InviteMessage::Join {
            invite: kith_protocol::ticket::InviteId([9; 16]),
            family: t.family,
            joiner_x25519: [1; 32],
            person_name: "Mallory".into(),
            device_name: "evil".into(),
            proof: [0; 32],
        };
        let got = outsider
            .exchange(INVITE_PROTOCOL, &wire::encode_frame(&join)?)
            .await?;
        let answer = wire::decode_invite(got.get(4..).context("an answer frame")?)?;
        assert!(matches!(answer, InviteMessage::Refused(_)), "{answer:?}");
        anyhow::Ok(())
    })?;
    let devices = a.json(&["devices", "--json"])?;
    assert_eq!(devices.as_array().map(Vec::len), Some(1));
    Ok(())
}

fn postcard_body(m: &SyncMessage) -> Result<Vec<u8>> {
    Ok(wire::encode_frame(m)?[4..].to_vec())
}

#[test]
fn garbage_oversized_and_forged_frames_from_a_device_are_rejected_and_the_node_keeps_serving()
-> Result<()> {
    let mut cluster = Cluster::start(2)?;
    import(&cluster.nodes[0], &some_photos(3)?, "Kept")?;
    cluster.wait_converged()?;
    let album: DocId = album_id(&cluster.nodes[0], "Kept")?.parse()?;
    let before = cluster.nodes[0].json(&["status", "--json"])?;
    let t = Target::from_status(&before)?;

    // B goes away; a raw peer with B's own key (a compromised or buggy device) takes its place.
    cluster.nodes[1].stop()?;
    let b_secret = DataDir::new(&cluster.nodes[1].data_dir).read_device_secret()?;
    let b_key = kith_node::net::keypair(&b_secret)?;
    let outsider = DeviceSecret::from_seeds([5; 32], [6; 32]);
    let rt = runtime()?;
    rt.block_on(async {
        let mut fake_b = RawPeer::connect(b_key, t.peer, t.addr.clone()).await?;
        // A pulls from "B": it is served a garbage frame, a forged change signed by a device
        // outside the family, and one by B sealed under a key that is not the album's.
        let forged_outsider = seal_change(
            &SymmetricKey::from_bytes([1; 32]),
            &ChangeHeader {
                doc: album,
                epoch: 0,
                author: outsider.device_id(),
            },
            [2; 24],
            b"not an automerge change",
            &outsider,
        );
        let forged_b = seal_change(
            &SymmetricKey::from_bytes([3; 32]),
            &ChangeHeader {
                doc: album,
                epoch: 0,
                author: b_secret.device_id(),
            },
            [4; 24],
            b"not an automerge change either",
            &b_secret,
        );
        let hello = hello(t.family)?;
        let changes = wire::encode_frame(&SyncMessage::Changes(vec![
            forged_outsider.into_bytes(),
            forged_b.into_bytes(),
            vec![0xff; 300],
        ]))?;
        fake_b
            .serve_sync(&[hello, changes, frame(b"\x07garbage")])
            .await?;

        // As a puller, "B" sends garbage and an oversized length on its own sync streams.
        let _ = fake_b
            .exchange(SYNC_PROTOCOL, b"\x00\x00\x00\x05hello")
            .await;
        let _ = fake_b
            .exchange(SYNC_PROTOCOL, &((MAX_FRAME as u32 + 1).to_be_bytes()))
            .await;
        let _ = fake_b
            .exchange(BLOBS_PROTOCOL, &[0xde, 0xad, 0xbe, 0xef])
            .await;
        let _ = fake_b
            .exchange(HAVE_PROTOCOL, b"\x00\x00\x00\x03\xff\xff\xff")
            .await;
        let _ = fake_b
            .exchange(HAVE_PROTOCOL, &((MAX_FRAME as u32 + 1).to_be_bytes()))
            .await;
        anyhow::Ok(())
    })?;
    drop(rt);

    let a = &cluster.nodes[0];
    let after = a.json(&["status", "--json"])?;
    assert_eq!(
        after["changes"], before["changes"],
        "a rejected change was stored"
    );
    assert_eq!(after["damaged"], Value::Array(vec![]));
    let log = a.log();
    assert!(
        log.contains("rejected a change"),
        "no rejection logged:\n{log}"
    );
    assert!(
        log.contains("sync stream ended"),
        "bad frames not logged:\n{log}"
    );
    assert!(
        log.contains("have request refused"),
        "bad have frames not logged:\n{log}"
    );

    // A still serves its family: the real B comes back and catches up with a new import.
    let more = more_photos(3, 2)?;
    let mut args = vec!["import"];
    args.extend(more.iter().map(String::as_str));
    a.ok(&args)?;
    cluster.nodes[1].start()?;
    cluster.wait_converged()?;
    let photos = cluster.nodes[1].json(&["photos", "--json"])?;
    assert_eq!(photos.as_array().map(Vec::len), Some(5));
    Ok(())
}

#[test]
fn a_viewers_forged_change_is_rejected_for_its_author_and_never_forwarded() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let a = &cluster.nodes[0];
    import(a, &some_photos(2)?, "Shared")?;
    // Person 1 becomes a relative who may only view the album.
    a.ok(&["people", "set-role", "Person 1", "relative"])?;
    a.ok(&["share", "Shared", "Person 1", "--can", "view"])?;
    cluster.wait_converged_among(&[0, 2])?;
    let album: DocId = album_id(a, "Shared")?.parse()?;
    kith_tests::wait_until(
        kith_tests::cluster::SYNC_DEADLINE,
        "B to see the album",
        || {
            Ok(cluster.nodes[1]
                .json(&["photos", "--json"])?
                .as_array()
                .map(Vec::len)
                == Some(2))
        },
    )?;
    let before = a.json(&["status", "--json"])?;
    let c_before = cluster.nodes[2].json(&["status", "--json"])?;
    let t = Target::from_status(&before)?;

    // The viewer's device is replaced by a raw peer with its key, which offers A a change to
    // the album it may only view (signed by it, at an epoch the album had).
    cluster.nodes[1].stop()?;
    let b_secret = DataDir::new(&cluster.nodes[1].data_dir).read_device_secret()?;
    let b_key = kith_node::net::keypair(&b_secret)?;
    let forged = seal_change(
        &SymmetricKey::from_bytes([9; 32]),
        &ChangeHeader {
            doc: album,
            epoch: 1,
            author: b_secret.device_id(),
        },
        [8; 24],
        b"a viewer's change",
        &b_secret,
    );
    let rt = runtime()?;
    rt.block_on(async {
        let mut fake_b = RawPeer::connect(b_key, t.peer, t.addr.clone()).await?;
        let hello = hello(t.family)?;
        let changes = wire::encode_frame(&SyncMessage::Changes(vec![forged.into_bytes()]))?;
        fake_b.serve_sync(&[hello, changes]).await
    })?;
    drop(rt);

    let a = &cluster.nodes[0];
    kith_tests::wait_until(
        kith_tests::cluster::SYNC_DEADLINE,
        "A to log the rejection",
        || {
            Ok(a.log()
                .contains("is not a current device allowed to write this document"))
        },
    )?;
    let after = a.json(&["status", "--json"])?;
    assert_eq!(
        after["changes"], before["changes"],
        "the forged change was stored"
    );
    // Nor did it reach C: A's next change does, and C holds nothing more than that.
    a.ok(&["albums", "rename", "Shared", "Shared with Person 1"])?;
    cluster.wait_converged_among(&[0, 2])?;
    let c_after = cluster.nodes[2].json(&["status", "--json"])?;
    assert_eq!(
        c_after["changes"].as_u64(),
        c_before["changes"].as_u64().map(|n| n + 1),
        "C holds something besides the rename"
    );
    Ok(())
}
