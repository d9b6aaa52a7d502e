//! People and devices: listing them, and the membership ops an admin (or a person for
//! themselves) makes — renaming, roles, removing a device.
//!
//! Every change here is a signed op appended to the membership log. It is evaluated with the
//! rest of the log before it is committed, and refused when the evaluation would not apply it,
//! so the command never reports a change the family will ignore.

use kith_protocol::keys::{DeviceId, PersonId};
use kith_protocol::membership::{FamilyState, OpBody, Role};

use crate::error::{Error, Result};
use crate::library::{Library, State};
use crate::views::{DeviceView, PersonView};

impl Library {
    /// The family's people with their roles and devices.
    pub async fn people(&self) -> Result<Vec<PersonView>> {
        let state = self.state.lock().await;
        Ok(people_of(&state.family, &self.device_id()))
    }

    /// Renames the person this device belongs to.
    pub async fn rename_me(&self, new_name: &str) -> Result<PersonView> {
        let name = new_name.trim();
        if name.is_empty() {
            return Err(Error::Invalid("a name must not be empty".into()));
        }
        let mut state = self.state.lock().await;
        let me = self.device_id();
        let (person, _) = state
            .family
            .active_person(&me)
            .ok_or_else(|| Error::Corrupt("this device is not in its family's log".into()))?;
        if state
            .family
            .persons
            .get(&person)
            .is_some_and(|p| p.name == name)
        {
            return person_view(&state.family, &person, &me);
        }
        let body = OpBody::RenamePerson {
            person,
            name: name.to_owned(),
        };
        self.append_ops(&mut state, vec![body])?;
        person_view(&state.family, &person, &me)
    }

    /// Gives a person another role (admins only). `who` is a name or an id prefix.
    pub async fn set_role(&self, who: &str, role: Role) -> Result<PersonView> {
        let mut state = self.state.lock().await;
        let me = self.device_id();
        if state.current_role(&me) != Some(Role::Admin) {
            return Err(Error::NotAllowed(
                "only an admin can change roles; ask an admin of your family".into(),
            ));
        }
        let person = find_person(&state.family, who)?;
        let current = state.family.persons.get(&person).map(|p| p.role);
        if current == Some(role) {
            return Err(Error::Invalid(format!("{who:?} is already {role}")));
        }
        self.append_admin_op(&mut state, OpBody::SetRole { person, role }, who)?;
        person_view(&state.family, &person, &me)
    }

    /// Removes a person from the family (admins only): all their devices are revoked and
    /// their album access dropped. `who` is a name or an id prefix.
    pub async fn remove_person(&self, who: &str) -> Result<PersonView> {
        let mut state = self.state.lock().await;
        let me = self.device_id();
        if state.current_role(&me) != Some(Role::Admin) {
            return Err(Error::NotAllowed(
                "only an admin can remove people; ask an admin of your family".into(),
            ));
        }
        let person = find_person(&state.family, who)?;
        if state.family.active_person(&me).map(|(p, _)| p) == Some(person) {
            return Err(Error::Invalid(format!(
                "{who:?} is you; another admin removes you from their device"
            )));
        }
        if state.family.persons.get(&person).is_some_and(|p| p.removed) {
            return Err(Error::Invalid(format!("{who:?} was already removed")));
        }
        self.append_admin_op(&mut state, OpBody::RemovePerson { person }, who)?;
        person_view(&state.family, &person, &me)
    }

    /// Removes a device from the family (admins for any device, anyone for their own other
    /// devices). `which` is a device name or an id prefix. The removed device is refused from
    /// then on by every device that has the op; what it already holds, it keeps.
    pub async fn remove_device(&self, which: &str) -> Result<DeviceId> {
        let mut state = self.state.lock().await;
        let me = self.device_id();
        let device = find_device(&state.family, which)?;
        if device == me {
            return Err(Error::Invalid(format!(
                "{which:?} is this device; remove it from another device of the family"
            )));
        }
        let is_admin = state.current_role(&me) == Some(Role::Admin);
        let owner = state.family.device(&device).map(|(p, _)| p);
        let mine = state.family.active_person(&me).map(|(p, _)| p);
        if !is_admin && owner != mine {
            return Err(Error::NotAllowed(
                "only an admin can remove another person's device".into(),
            ));
        }
        self.append_ops(&mut state, vec![OpBody::RevokeDevice { device }])?;
        Ok(device)
    }

    /// [`Library::append_ops`] for an admin's op about person `who`: the rules skip it only when
    /// it would leave the family without an admin (the caller checked the rest).
    fn append_admin_op(&self, state: &mut State, body: OpBody, who: &str) -> Result<()> {
        match self.append_ops(state, vec![body]) {
            Err(Error::NotAllowed(_)) => Err(Error::NotAllowed(format!(
                "{who:?} is the family's last admin; make someone else admin first"
            ))),
            other => other,
        }
    }
}

fn people_of(family: &FamilyState, me: &DeviceId) -> Vec<PersonView> {
    let mut people: Vec<PersonView> = family
        .persons
        .keys()
        .filter_map(|id| person_view(family, id, me).ok())
        .collect();
    people.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    people
}

fn person_view(family: &FamilyState, id: &PersonId, me: &DeviceId) -> Result<PersonView> {
    let p = family
        .persons
        .get(id)
        .ok_or_else(|| Error::Corrupt(format!("person {id} is not in the family's log")))?;
    Ok(PersonView {
        id: id.to_string(),
        name: p.name.clone(),
        role: p.role.to_string(),
        removed: p.removed,
        devices: p
            .devices
            .iter()
            .map(|(d, dev)| DeviceView {
                id: d.to_string(),
                name: dev.name.clone(),
                revoked: dev.revoked,
                this: d == me,
            })
            .collect(),
    })
}

/// A person by exact name (case-insensitive) or by a unique prefix of their id.
pub(crate) fn find_person(family: &FamilyState, who: &str) -> Result<PersonId> {
    let people = family.persons.iter().map(|(id, p)| (*id, p.name.as_str()));
    match by_name_or_id(people, who).as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NoSuchPerson(who.to_owned())),
        more => Err(Error::Invalid(format!(
            "{who:?} names {} people; give their id from `kith people --json`",
            more.len()
        ))),
    }
}

/// A device by exact name (case-insensitive) or by a unique prefix of its id; revoked devices
/// are not candidates.
fn find_device(family: &FamilyState, which: &str) -> Result<DeviceId> {
    let devices = family
        .persons
        .values()
        .flat_map(|p| p.devices.iter())
        .filter(|(_, d)| !d.revoked)
        .map(|(id, d)| (*id, d.name.as_str()));
    match by_name_or_id(devices, which).as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NoSuchDevice(which.to_owned())),
        more => Err(Error::Invalid(format!(
            "{which:?} names {} devices; give its id from `kith devices --json`",
            more.len()
        ))),
    }
}

/// Of `(id, name)` candidates, those named `text` (case-insensitive); if none is, those whose
/// id starts with it.
fn by_name_or_id<'a, Id: Copy + std::fmt::Display>(
    candidates: impl Iterator<Item = (Id, &'a str)>,
    text: &str,
) -> Vec<Id> {
    let wanted = text.trim();
    let candidates: Vec<(Id, &str)> = candidates.collect();
    let by_name: Vec<Id> = candidates
        .iter()
        .filter(|(_, name)| name.eq_ignore_ascii_case(wanted))
        .map(|(id, _)| *id)
        .collect();
    let prefix = wanted.to_ascii_lowercase();
    if !by_name.is_empty() || prefix.is_empty() {
        return by_name;
    }
    candidates
        .iter()
        .filter(|(id, _)| id.to_string().starts_with(&prefix))
        .map(|(id, _)| *id)
        .collect()
}
