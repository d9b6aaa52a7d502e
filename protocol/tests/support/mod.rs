//! Helpers shared by the membership and sharing tests: deterministic devices and ops.

// Each test binary uses its own subset of these.
#![allow(dead_code)]

use kith_protocol::envelope::Envelope;
use kith_protocol::keys::{DeviceSecret, DocId, FamilyId, PersonId, SymmetricKey};
use kith_protocol::membership::{FamilyState, MembershipOp, OpBody, Role, SignedOp};

pub fn device(n: u8) -> DeviceSecret {
    DeviceSecret::from_seeds([n; 32], [n.wrapping_add(100); 32])
}

pub fn person(n: u8) -> PersonId {
    PersonId([n; 32])
}

pub fn op(author: &DeviceSecret, parents: &[&SignedOp], body: OpBody) -> SignedOp {
    let op = MembershipOp {
        version: 1,
        parents: parents.iter().map(|p| p.id()).collect(),
        author: author.device_id(),
        time_ms: 1_700_000_000_000,
        body,
    };
    SignedOp::sign(op, author)
}

pub fn create(founder: &DeviceSecret) -> SignedOp {
    op(
        founder,
        &[],
        OpBody::CreateFamily {
            family: FamilyId([9; 32]),
            person: person(0),
            name: "Ada".into(),
            device_x25519: founder.x25519_public(),
            device_name: "laptop".into(),
        },
    )
}

pub fn add_person(n: u8, role: Role) -> OpBody {
    OpBody::AddPerson {
        person: person(n),
        name: format!("p{n}"),
        role,
    }
}

pub fn add_device(p: u8, d: &DeviceSecret) -> OpBody {
    OpBody::AddDevice {
        person: person(p),
        device: d.device_id(),
        device_x25519: d.x25519_public(),
        device_name: "phone".into(),
    }
}

pub fn active(state: &FamilyState, d: &DeviceSecret) -> bool {
    state.active_person(&d.device_id()).is_some()
}

/// The key of `doc` at `epoch` in these tests.
pub fn doc_key(doc: &DocId, epoch: u32) -> SymmetricKey {
    let mut k = *doc.as_bytes();
    k[..4].copy_from_slice(&epoch.to_be_bytes());
    SymmetricKey::from_bytes(k)
}

/// A `RotateKey` of `doc` to `epoch` with [`doc_key`] wrapped to each of `to`.
pub fn rotate(doc: DocId, epoch: u32, to: &[&DeviceSecret]) -> OpBody {
    let envelopes = to
        .iter()
        .map(|d| {
            let env = Envelope::seal(
                &doc_key(&doc, epoch),
                &doc,
                epoch,
                &d.device_id(),
                &d.x25519_public(),
                [epoch.to_le_bytes()[0].wrapping_add(1); 32],
            );
            (d.device_id(), env.expect("test keys are not low order"))
        })
        .collect();
    OpBody::RotateKey {
        doc,
        epoch,
        envelopes,
        history: None,
    }
}
