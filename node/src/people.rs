//! People and devices: listing them, and the membership ops an admin (or a person for
//! themselves) makes — renaming, roles, removing a device.
//!
//! Every change here is a signed op appended to the membership log. It is evaluated with the
//! rest of the log before it is committed, and refused when the evaluation would not apply it,
//! so the command never reports a change the family will ignore.

use kith_protocol::keys::{DeviceId, PersonId};
use kith_protocol::membership::{FamilyState, OpBody, Role};
use kith_protocol::names::{check_name, is_id_prefix};

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
        check_name(name).map_err(|e| Error::Invalid(e.to_string()))?;
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

/// Checks the names of a new person and device against the rule of names
/// ([`kith_protocol::names`]), saying which one is refused.
pub(crate) fn check_new_names(person_name: &str, device_name: &str) -> Result<()> {
    check_name(person_name)
        .map_err(|e| Error::Invalid(format!("your name {person_name:?}: {e}")))?;
    check_name(device_name)
        .map_err(|e| Error::Invalid(format!("the device name {device_name:?}: {e}")))
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
    match by_name_or_id(people, who, "person")?.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NoSuchPerson(who.to_owned())),
        more => Err(Error::Invalid(format!(
            "{who:?} names {} people; give their id from `kith people --json`",
            more.len()
        ))),
    }
}

/// A current device by exact name (case-insensitive) or by a unique prefix of its id.
fn find_device(family: &FamilyState, which: &str) -> Result<DeviceId> {
    find_device_where(family, which, false)
}

/// A removed device, named like [`find_device`].
pub(crate) fn find_removed_device(family: &FamilyState, which: &str) -> Result<DeviceId> {
    find_device_where(family, which, true)
}

fn find_device_where(family: &FamilyState, which: &str, revoked: bool) -> Result<DeviceId> {
    let devices = family
        .persons
        .values()
        .flat_map(|p| p.devices.iter())
        .filter(|(_, d)| d.revoked == revoked)
        .map(|(id, d)| (*id, d.name.as_str()));
    match by_name_or_id(devices, which, "device")?.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NoSuchDevice(which.to_owned())),
        more => Err(Error::Invalid(format!(
            "{which:?} names {} devices; give its id from `kith devices --json`",
            more.len()
        ))),
    }
}

/// Of `(id, name)` candidates, those named `text` (case-insensitive), or those whose id starts
/// with it when it is an id prefix ([`is_id_prefix`]: 6 or more hex digits). When `text` is
/// both the name of one and an id prefix of another, it is refused with both listed: a name
/// made to look like someone's id (refused by the rule of names, but a log may hold one from
/// before it) must not take the place of what the id names.
fn by_name_or_id<'a, Id: Copy + Ord + std::fmt::Display>(
    candidates: impl Iterator<Item = (Id, &'a str)>,
    text: &str,
    what: &str,
) -> Result<Vec<Id>> {
    let wanted = text.trim();
    let candidates: Vec<(Id, &str)> = candidates.collect();
    let by_name: Vec<(Id, &str)> = candidates
        .iter()
        .filter(|(_, name)| !wanted.is_empty() && name.eq_ignore_ascii_case(wanted))
        .copied()
        .collect();
    let by_id: Vec<(Id, &str)> = if is_id_prefix(wanted) {
        let prefix = wanted.to_ascii_lowercase();
        candidates
            .iter()
            .filter(|(id, _)| id.to_string().starts_with(&prefix))
            .copied()
            .collect()
    } else {
        Vec::new()
    };
    let same = |a: &[(Id, &str)], b: &[(Id, &str)]| {
        let mut a: Vec<Id> = a.iter().map(|(id, _)| *id).collect();
        let mut b: Vec<Id> = b.iter().map(|(id, _)| *id).collect();
        a.sort();
        b.sort();
        a == b
    };
    if !by_name.is_empty() && !by_id.is_empty() && !same(&by_name, &by_id) {
        let list = |found: &[(Id, &str)]| {
            found
                .iter()
                .map(|(id, name)| format!("{name:?} ({id})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Error::Invalid(format!(
            "{wanted:?} is ambiguous: it is the name of {what} {} and a prefix of the id of {what} {}; \
             give more characters of the id you mean",
            list(&by_name),
            list(&by_id)
        )));
    }
    let found = if by_name.is_empty() { by_id } else { by_name };
    Ok(found.into_iter().map(|(id, _)| id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8) -> DeviceId {
        let mut bytes = [0u8; 32];
        bytes[0] = first;
        DeviceId(bytes)
    }

    #[test]
    fn a_name_that_is_another_ones_id_prefix_is_refused_naming_both() {
        let real = id(0xab);
        let decoy = id(0x01);
        let prefix = &real.to_string()[..8];
        let candidates = [(real, "Ana's phone"), (decoy, prefix)];
        let err = by_name_or_id(candidates.into_iter(), prefix, "device")
            .expect_err("ambiguous")
            .to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(err.contains(&real.to_string()), "{err}");
        assert!(err.contains(&decoy.to_string()), "{err}");
        assert!(err.contains("Ana's phone"), "{err}");
    }

    #[test]
    fn names_and_long_enough_id_prefixes_still_find_one() -> Result<()> {
        let ana = id(0xab);
        let bo = id(0xcd);
        let candidates = [(ana, "Ana's phone"), (bo, "Ebba")];
        let find = |text: &str| by_name_or_id(candidates.into_iter(), text, "device");
        assert_eq!(find("ana's PHONE")?, vec![ana]);
        assert_eq!(find(&bo.to_string()[..6])?, vec![bo]);
        assert_eq!(find(&bo.to_string().to_uppercase())?, vec![bo]);
        // Shorter than an id prefix: only names count.
        assert_eq!(find("ab")?, Vec::<DeviceId>::new());
        assert_eq!(find("ebba")?, vec![bo]);
        Ok(())
    }
}
