//! The family as the membership log describes it, and the questions the node asks of it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{DocSharing, Role};
use crate::keys::{DeviceId, DocId, FamilyId, PersonId};
use crate::seal::ChangeId;

/// A device as the log describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    /// Where album keys for this device are wrapped to.
    pub x25519: [u8; 32],
    /// Revoked devices stay listed so that their old ops and signatures can be explained.
    pub revoked: bool,
}

/// A person as the log describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub role: Role,
    pub devices: BTreeMap<DeviceId, Device>,
    /// Set by `RemovePerson`; the person stays listed so their old ops can be explained.
    #[serde(default)]
    pub removed: bool,
}

/// The family as a set of ops describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyState {
    pub family: FamilyId,
    pub persons: BTreeMap<PersonId, Person>,
    /// Documents a grant or rotation has named.
    #[serde(default)]
    pub docs: BTreeMap<DocId, DocSharing>,
    /// Changes of removed devices that current devices vouched for (`Vouch`).
    #[serde(default)]
    pub vouched: BTreeSet<ChangeId>,
}

impl FamilyState {
    /// The person a device belongs to and the device, revoked or not.
    pub fn device(&self, id: &DeviceId) -> Option<(PersonId, &Device)> {
        self.persons
            .iter()
            .find_map(|(p, person)| person.devices.get(id).map(|d| (*p, d)))
    }

    /// The person behind an unrevoked device: who may connect and act.
    pub fn active_person(&self, id: &DeviceId) -> Option<(PersonId, &Person)> {
        self.persons
            .iter()
            .find(|(_, person)| person.devices.get(id).is_some_and(|d| !d.revoked))
            .map(|(p, person)| (*p, person))
    }

    /// The role of an unrevoked device's person.
    pub fn role_of(&self, device: &DeviceId) -> Option<Role> {
        self.active_person(device).map(|(_, p)| p.role)
    }

    pub(super) fn admin_count(&self) -> usize {
        self.persons
            .values()
            .filter(|p| p.role == Role::Admin && !p.removed)
            .count()
    }
}
