//! The fuzz targets of kith's decoders, shared by the property harness
//! (`protocol/tests/fuzz_decoders.rs`, run by `cargo test`) and the coverage-guided fuzzer
//! (`tests/fuzz`, cargo-afl), which includes this file by path.
//!
//! Each target takes arbitrary bytes, feeds them to one decoder of bytes from disk or network,
//! and panics only when a property fails: the decoder itself must never panic, must not
//! allocate past what its input and limits allow, and whatever decodes must re-encode to the
//! same bytes where the format is canonical (tickets, signed ops, sealed changes) or to the
//! same value where it is not (postcard wire messages). Each target also has seeds: valid
//! encodings, deterministic, for the mutation half of the harness and for the fuzzer's corpus.

// The harness and the fuzzer each use a part of this module.
#![allow(dead_code)]

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};
use kith_protocol::blob::{self, FileKey, Rendition};
use kith_protocol::envelope::{Envelope, HISTORY_LABEL, SealedHistory};
use kith_protocol::keys::{DeviceId, DeviceSecret, DocId, FamilyId, PersonId, SymmetricKey};
use kith_protocol::library::{ChangeLimits, DocKind, Document, PhotoEntry, check_change_bounds};
use kith_protocol::membership::{MembershipOp, OpBody, Role, SignedOp};
use kith_protocol::record;
use kith_protocol::seal::{self, ChangeHeader, SealedChange};
use kith_protocol::ticket::{CHECKSUM_LABEL, InviteId, TICKET_PREFIX, Ticket};
use kith_protocol::wire::{self, HaveMessage, InviteMessage, SyncMessage};

/// A target: its name, the property check over one input, and its seeds.
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frames",
        check: check_frames,
        seeds: seeds_frames,
    },
    Target {
        name: "sync",
        check: check_sync,
        seeds: seeds_sync,
    },
    Target {
        name: "invite",
        check: check_invite,
        seeds: seeds_invite,
    },
    Target {
        name: "have",
        check: check_have,
        seeds: seeds_have,
    },
    Target {
        name: "ticket_text",
        check: check_ticket_text,
        seeds: seeds_ticket_text,
    },
    Target {
        name: "ticket_bytes",
        check: check_ticket_bytes,
        seeds: seeds_ticket_bytes,
    },
    Target {
        name: "signed_op",
        check: check_signed_op,
        seeds: seeds_signed_op,
    },
    Target {
        name: "op_body",
        check: check_op_body,
        seeds: seeds_op_body,
    },
    Target {
        name: "sealed_change",
        check: check_sealed_change,
        seeds: seeds_sealed_change,
    },
    Target {
        name: "blob",
        check: check_blob,
        seeds: seeds_blob,
    },
    Target {
        name: "record",
        check: check_record,
        seeds: seeds_record,
    },
    Target {
        name: "envelope",
        check: check_envelope,
        seeds: seeds_envelope,
    },
    Target {
        name: "history",
        check: check_history,
        seeds: seeds_history,
    },
    Target {
        name: "change",
        check: check_change,
        seeds: seeds_change,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn device(n: u8) -> DeviceSecret {
    DeviceSecret::from_seeds([n; 32], [n.wrapping_add(100); 32])
}

const DOC: DocId = DocId([4; 32]);
const FAMILY: FamilyId = FamilyId([9; 32]);

fn doc_key() -> SymmetricKey {
    SymmetricKey::from_bytes([3; 32])
}

fn file_key() -> FileKey {
    FileKey::from_bytes([5; 32])
}

fn storage_key() -> SymmetricKey {
    SymmetricKey::from_bytes([6; 32])
}

const RECORD_CONTEXT: &[u8] = b"docs/0404040404";

// ---- wire ----

/// A stream of frames as a reader sees it: a length prefix, refused over the limit before the
/// body is read, then the body; repeated until the input runs out.
fn check_frames(data: &[u8]) {
    let mut rest = data;
    while let Some((prefix, tail)) = rest.split_first_chunk::<4>() {
        let Ok(len) = wire::frame_len(*prefix) else {
            return;
        };
        assert!(len <= wire::MAX_FRAME);
        let Some((body, tail)) = tail.split_at_checked(len) else {
            return;
        };
        check_sync(body);
        rest = tail;
    }
}

/// Decoding then re-encoding gives the same message (postcard accepts more than one encoding
/// of some values, so equality is of values, and of bytes once re-encoded).
fn round_trip<T: serde::Serialize + PartialEq + std::fmt::Debug>(
    message: &T,
    decode: impl Fn(&[u8]) -> Result<T, wire::WireError>,
) {
    let frame = wire::encode_frame(message).expect("a decoded message re-encodes");
    let again = decode(&frame[4..]).expect("a re-encoded message decodes");
    assert_eq!(&again, message);
    let frame_again = wire::encode_frame(&again).expect("re-encodes");
    assert_eq!(frame_again, frame);
}

fn check_sync(data: &[u8]) {
    if let Ok(message) = wire::decode_sync(data) {
        round_trip(&message, wire::decode_sync);
    }
}

fn check_invite(data: &[u8]) {
    if let Ok(message) = wire::decode_invite(data) {
        round_trip(&message, wire::decode_invite);
    }
}

fn check_have(data: &[u8]) {
    if let Ok(message) = wire::decode_have(data) {
        round_trip(&message, wire::decode_have);
    }
}

fn body(message: &impl serde::Serialize) -> Vec<u8> {
    wire::encode_frame(message).expect("encodes")[4..].to_vec()
}

fn seeds_sync() -> Vec<Vec<u8>> {
    let ids = vec![seal::ChangeId([2; 32]), seal::ChangeId([3; 32])];
    [
        SyncMessage::Hello {
            version: wire::SYNC_VERSION,
            family: FAMILY,
        },
        SyncMessage::OpIds(vec![kith_protocol::membership::OpId([1; 32])]),
        SyncMessage::Digests(vec![wire::DocDigest {
            doc: DOC,
            count: 3,
            digest: [7; 32],
        }]),
        SyncMessage::WantIds(vec![DOC]),
        SyncMessage::Ids {
            doc: DOC,
            ids: ids.clone(),
        },
        SyncMessage::Want { doc: DOC, ids },
        SyncMessage::Changes(vec![vec![1, 2, 3], seeds_sealed_change()[0].clone()]),
        SyncMessage::Ops(vec![seeds_signed_op()[0].clone()]),
        SyncMessage::CaughtUp,
    ]
    .iter()
    .map(body)
    .collect()
}

fn seeds_frames() -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = seeds_sync()
        .into_iter()
        .map(|b| {
            let mut f = (b.len() as u32).to_be_bytes().to_vec();
            f.extend(b);
            f
        })
        .collect();
    vec![frames.concat(), frames[0].clone()]
}

fn seeds_invite() -> Vec<Vec<u8>> {
    let join = InviteMessage::Join {
        invite: InviteId([1; 16]),
        family: FAMILY,
        joiner_x25519: device(2).x25519_public(),
        person_name: "Bea".into(),
        device_name: "phone".into(),
        proof: [8; 32],
    };
    let welcome = InviteMessage::Welcome(Box::new(wire::Welcome {
        family: FAMILY,
        root_op: kith_protocol::membership::OpId([1; 32]),
        family_secret: [2; 32],
        ops: 3,
        peers: vec![wire::DeviceAddrs {
            device: device(1).device_id(),
            addrs: vec![vec![4, 127, 0, 0, 1, 6, 0x1f, 0x90]],
        }],
    }));
    let page = InviteMessage::Ops(seeds_signed_op());
    let refused = InviteMessage::Refused(wire::Refusal::Expired);
    [join, welcome, page, InviteMessage::Confirm, refused]
        .iter()
        .map(body)
        .collect()
}

fn seeds_have() -> Vec<Vec<u8>> {
    vec![
        body(&HaveMessage::Prove {
            nonce: [7; 32],
            blobs: vec![wire::Challenge {
                hash: [9; 32],
                chunks: vec![0, 5, 63],
            }],
        }),
        body(&HaveMessage::Proofs(vec![Some([1; 32]), None])),
    ]
}

// ---- tickets ----

fn ticket() -> Ticket {
    Ticket {
        family: FAMILY,
        inviter: device(1).device_id(),
        addrs: vec![
            vec![4, 192, 168, 1, 20, 6, 0x1f, 0x90],
            vec![4, 127, 0, 0, 1, 0xcc, 3, 0x1f, 0x90],
        ],
        invite: InviteId([7; 16]),
        secret: [8; 32],
        role: Role::Member,
        expires_at_ms: 1_800_000_000_000,
    }
}

/// A pasted ticket: any text. What decodes is the ticket `encode` writes, up to case and
/// whitespace.
fn check_ticket_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ticket) = Ticket::decode(&text) {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        assert_eq!(
            ticket.encode(),
            compact,
            "a ticket decodes from a non-canonical text"
        );
        assert_eq!(Ticket::decode(&ticket.encode_for_qr()).ok(), Some(ticket));
    }
}

fn seeds_ticket_text() -> Vec<Vec<u8>> {
    let t = ticket();
    let mut spaced = t.encode();
    spaced.insert(9, ' ');
    spaced.insert(20, '\n');
    vec![
        t.encode().into_bytes(),
        t.encode_for_qr().into_bytes(),
        spaced.into_bytes(),
    ]
}

/// The ticket's binary form (version ‖ postcard body), given a valid checksum and text so the
/// fuzzer reaches the body decoder.
fn check_ticket_bytes(data: &[u8]) {
    let mut bytes = data.to_vec();
    let sum = blake3::Hasher::new_derive_key(CHECKSUM_LABEL)
        .update(data)
        .finalize();
    bytes.extend_from_slice(&sum.as_bytes()[..4]);
    let text = format!(
        "{TICKET_PREFIX}{}",
        data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase()
    );
    check_ticket_text(text.as_bytes());
}

fn seeds_ticket_bytes() -> Vec<Vec<u8>> {
    let text = ticket().encode();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(text[TICKET_PREFIX.len()..].to_ascii_uppercase().as_bytes())
        .expect("a ticket is base32");
    vec![bytes[..bytes.len() - 4].to_vec()]
}

// ---- membership ops ----

fn ops() -> Vec<MembershipOp> {
    let founder = device(1);
    let op = |body| MembershipOp {
        version: 1,
        parents: vec![kith_protocol::membership::OpId([1; 32])],
        author: founder.device_id(),
        time_ms: 1_700_000_000_000,
        body,
    };
    let envelope = Envelope::seal(
        &doc_key(),
        &DOC,
        2,
        &device(2).device_id(),
        &device(2).x25519_public(),
        [42; 32],
    )
    .expect("seals");
    let history = SealedHistory::seal(
        &doc_key(),
        &DOC,
        2,
        &[(1, SymmetricKey::from_bytes([1; 32]))],
        [3; 24],
    )
    .expect("seals");
    let mut out = vec![MembershipOp {
        parents: vec![],
        ..op(OpBody::CreateFamily {
            family: FAMILY,
            person: PersonId([0; 32]),
            name: "Ada".into(),
            device_x25519: founder.x25519_public(),
            device_name: "laptop".into(),
        })
    }];
    out.extend(
        [
            OpBody::AddPerson {
                person: PersonId([2; 32]),
                name: "Bea".into(),
                role: Role::Relative,
            },
            OpBody::AddDevice {
                person: PersonId([2; 32]),
                device: device(2).device_id(),
                device_x25519: device(2).x25519_public(),
                device_name: "phone".into(),
            },
            OpBody::RevokeDevice {
                device: device(2).device_id(),
            },
            OpBody::RotateKey {
                doc: DOC,
                epoch: 2,
                envelopes: vec![(device(2).device_id(), envelope)],
                history: Some(history),
            },
        ]
        .into_iter()
        .map(op),
    );
    out
}

fn check_signed_op(data: &[u8]) {
    if let Ok(op) = SignedOp::from_bytes(data) {
        assert_eq!(
            op.as_bytes(),
            data,
            "a signed op decodes from other bytes than its own"
        );
    }
}

fn seeds_signed_op() -> Vec<Vec<u8>> {
    ops()
        .into_iter()
        .map(|op| SignedOp::sign(op, &device(1)).to_bytes())
        .collect()
}

/// An op's body as the fuzzer mutates it, then signed by its author so the decoder runs past
/// the signature: what decodes must be exactly the signed bytes.
fn check_op_body(data: &[u8]) {
    let author = device(1);
    let Ok(mut op) = postcard::from_bytes::<MembershipOp>(data) else {
        return;
    };
    op.author = author.device_id();
    let Ok(mut bytes) = postcard::to_allocvec(&op) else {
        return;
    };
    let sig = author.sign(kith_protocol::membership::SIGNATURE_LABEL, &bytes);
    bytes.extend_from_slice(&sig);
    if op.version == kith_protocol::membership::VERSION
        && bytes.len() <= kith_protocol::membership::MAX_OP_LEN
    {
        let signed = SignedOp::from_bytes(&bytes).expect("a canonical signed op decodes");
        assert_eq!(signed.op(), &op);
    }
    check_signed_op(&bytes);
}

fn seeds_op_body() -> Vec<Vec<u8>> {
    ops()
        .iter()
        .map(|op| postcard::to_allocvec(op).expect("encodes"))
        .collect()
}

// ---- sealed changes ----

fn check_sealed_change(data: &[u8]) {
    let Ok(sealed) = SealedChange::from_bytes(data.to_vec()) else {
        return;
    };
    assert_eq!(sealed.as_bytes(), data);
    if let Ok(change) = seal::open_change(&doc_key(), &sealed) {
        // Only an authentic change opens: it re-seals to a change that opens the same.
        assert!(change.len() <= seal::MAX_CHANGE_LEN);
        check_change(&change);
    }
}

fn seeds_sealed_change() -> Vec<Vec<u8>> {
    let author = device(1);
    let header = ChangeHeader {
        doc: DOC,
        epoch: 1,
        author: author.device_id(),
    };
    seeds_change()
        .iter()
        .take(3)
        .map(|c| seal::seal_change(&doc_key(), &header, [9; 24], c, &author).into_bytes())
        .collect()
}

// ---- blobs, records, envelopes ----

fn check_blob(data: &[u8]) {
    for rendition in [Rendition::Original, Rendition::Thumbnail] {
        if let Ok(plain) = blob::decrypt_blob(&file_key(), rendition, data) {
            // Authentic: the same plaintext encrypts to the same blob under the same nonce.
            let prefix: [u8; 19] = data[5..24].try_into().expect("header");
            assert_eq!(
                blob::encrypt_blob(&file_key(), rendition, prefix, &plain),
                data
            );
        }
    }
}

fn seeds_blob() -> Vec<Vec<u8>> {
    let long: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        blob::encrypt_blob(&file_key(), Rendition::Original, [1; 19], b"a small photo"),
        blob::encrypt_blob(&file_key(), Rendition::Thumbnail, [2; 19], &[]),
        blob::encrypt_blob(&file_key(), Rendition::Original, [3; 19], &long),
    ]
}

fn check_record(data: &[u8]) {
    if let Ok(plain) = record::open_record(&storage_key(), RECORD_CONTEXT, data) {
        assert_eq!(plain.len() + record::OVERHEAD, data.len());
    }
}

fn seeds_record() -> Vec<Vec<u8>> {
    vec![
        record::seal_record(&storage_key(), RECORD_CONTEXT, [1; 24], b"a doc record"),
        record::seal_record(&storage_key(), RECORD_CONTEXT, [2; 24], &[]),
    ]
}

/// An envelope as it travels inside a rotation op (postcard), opened by its recipient.
fn check_envelope(data: &[u8]) {
    let Ok(envelope) = postcard::from_bytes::<Envelope>(data) else {
        return;
    };
    let _ = envelope.open(&DOC, 2, &device(2));
}

fn seeds_envelope() -> Vec<Vec<u8>> {
    let envelope = Envelope::seal(
        &doc_key(),
        &DOC,
        2,
        &device(2).device_id(),
        &device(2).x25519_public(),
        [42; 32],
    )
    .expect("seals");
    vec![postcard::to_allocvec(&envelope).expect("encodes")]
}

/// A key history: the input is its plaintext, sealed here under the right key so the fuzzer
/// reaches the decoder behind the tag.
fn check_history(data: &[u8]) {
    let epoch = 9;
    let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(
        *doc_key().derive(HISTORY_LABEL).as_bytes(),
    ));
    let mut ad = DOC.0.to_vec();
    ad.extend_from_slice(&u32::to_be_bytes(epoch));
    let mut ciphertext = data.to_vec();
    let Ok(tag) = cipher.encrypt_inout_detached(
        &XNonce::from([1; 24]),
        &ad,
        ciphertext.as_mut_slice().into(),
    ) else {
        return;
    };
    ciphertext.extend_from_slice(&tag);
    let history = SealedHistory {
        nonce: [1; 24],
        ciphertext,
    };
    if let Ok(keys) = history.open(&doc_key(), &DOC, epoch) {
        assert!(keys.len() <= kith_protocol::envelope::MAX_HISTORY_EPOCHS);
        assert!(keys.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(keys.iter().all(|(e, _)| *e < epoch));
    }
}

fn seeds_history() -> Vec<Vec<u8>> {
    let keys: Vec<(u32, [u8; 32])> = vec![(1, [1; 32]), (4, [4; 32])];
    vec![postcard::to_allocvec(&keys).expect("encodes")]
}

// ---- automerge changes ----

/// One change from a peer or the disk, applied where every node path applies it; the
/// document is then read as the node reads it (kind, entries, album).
fn check_change(data: &[u8]) {
    let bounds = check_change_bounds(data, &ChangeLimits::DEFAULT);
    if let Ok(size) = bounds {
        assert!(size.body_bytes <= ChangeLimits::DEFAULT.max_change_bytes);
        assert!(size.ops <= ChangeLimits::DEFAULT.max_column_values);
    }
    let me = device(3).device_id();
    let genesis = Document::genesis_change(DocKind::Library, &DOC).expect("genesis");
    let mut doc = Document::new(&me);
    doc.apply_change(genesis.clone()).expect("genesis applies");
    let applied = doc.apply_change(data.to_vec());
    if applied.is_ok() {
        assert!(bounds.is_ok(), "automerge took a change the bounds refused");
    }
    let _ = doc.kind();
    let _ = doc.photos();
    let _ = doc.album();
    if let Ok(loaded) = Document::from_changes(&me, [data.to_vec(), genesis]) {
        let _ = loaded.photos();
    }
}

fn entry(n: u8) -> PhotoEntry {
    PhotoEntry {
        id: kith_protocol::keys::PhotoId([n; 32]),
        original: kith_protocol::library::BlobRef {
            hash: [1; 32],
            len: 10,
        },
        preview: kith_protocol::library::BlobRef {
            hash: [2; 32],
            len: 20,
        },
        thumbnail: kith_protocol::library::BlobRef {
            hash: [3; 32],
            len: 30,
        },
        file_key: FileKey::from_bytes([9; 32]),
        file_name: format!("IMG_{n}.jpg"),
        mime: "image/jpeg".into(),
        size: 1234,
        width: 4000,
        height: 3000,
        display_width: 3000,
        display_height: 4000,
        orientation: Some(6),
        taken_at: Some("2015-07-21T16:17:44".into()),
        make: Some("Canon".into()),
        model: None,
        gps: Some((-22.95, -43.21)),
        added_by: DeviceId([7; 32]),
        added_at_ms: 99,
        caption: Some("beach".into()),
        favourite: true,
        tags: vec!["family".into()],
        trashed_at_ms: None,
        trashed_by: None,
    }
}

/// Honest changes: the genesis, an entry added, an entry removed, an album, and the same
/// entries as a compressed chunk.
fn seeds_change() -> Vec<Vec<u8>> {
    let genesis = Document::genesis_change(DocKind::Library, &DOC).expect("genesis");
    let mut doc = Document::new(&device(1).device_id());
    doc.apply_change(genesis.clone()).expect("applies");
    doc.put_photos(&[entry(1), entry(2)]).expect("puts");
    let added = doc.commit(5).expect("a change");
    doc.remove_photo(&kith_protocol::keys::PhotoId([1; 32]))
        .expect("removes");
    let removed = doc.commit(6).expect("a change");
    let mut album = Document::new(&device(1).device_id());
    album.init(DocKind::Album).expect("init");
    album
        .set_album(&kith_protocol::library::AlbumMeta {
            title: "Summer".into(),
            parent: Some(DOC),
            created_at_ms: 5,
        })
        .expect("album");
    let album = album.commit(7).expect("a change");
    let compressed = automerge::Change::from_bytes(added.clone())
        .expect("decodes")
        .bytes()
        .to_vec();
    vec![genesis, added, removed, album, compressed]
}
