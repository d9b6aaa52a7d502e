//! Invites this device issues, and admitting the device that presents one.
//!
//! **Invariant:** an invite is bound to the joining device in the same redb transaction that
//! records the new person and device in the membership log, so a ticket admits exactly one
//! device even when the node dies mid-way. That device may ask again (its answer was lost)
//! until it confirms it recorded the answer; then the invite is used up.
//!
//! A request is checked against the stored invite without the library's lock
//! ([`Library::check_join`]); only a request with a valid proof goes on to [`Library::admit`].

use kith_protocol::keys::{DeviceId, FamilyId, PersonId};
use kith_protocol::membership::{self, MembershipOp, OpBody, OpId, Role, SignedOp};
use kith_protocol::ticket::{InviteId, Ticket, verify_invite_proof};
use kith_protocol::wire::{Refusal, Welcome};

use crate::error::{Error, Result};
use crate::library::{Library, State, now_ms};
use crate::store::{InviteRecord, InviteState, WriteBatch};
use crate::views::InviteView;

/// Failed proofs after which an invite is locked.
pub const MAX_FAILURES: u32 = 5;

/// What a joining device sent, after Noise authenticated its device id.
#[derive(Clone)]
pub struct JoinRequest {
    pub device: DeviceId,
    pub invite: InviteId,
    pub family: FamilyId,
    pub x25519: [u8; 32],
    pub person_name: String,
    pub device_name: String,
    pub proof: [u8; 32],
}

impl Library {
    /// Creates an invite for a new person with `role`; the ticket carries `addrs`.
    pub async fn create_invite(
        &self,
        role: Role,
        valid_for_ms: u64,
        addrs: Vec<Vec<u8>>,
    ) -> Result<(Ticket, InviteView)> {
        let state = self.state.lock().await;
        if state.current_role(&self.device_id()) != Some(Role::Admin) {
            return Err(Error::Invite(
                "only an admin can invite people; ask an admin of your family".into(),
            ));
        }
        if role == Role::Admin {
            return Err(Error::Invite(
                "invite as member or relative; make someone admin later with `kith people set-role`"
                    .into(),
            ));
        }
        self.issue_invite(&state, role, None, valid_for_ms, addrs)
    }

    /// Creates an invite that adds a device to an existing person (`who`: a name or an id
    /// prefix). Admins may invite a device for anyone, everyone for themselves.
    pub async fn create_device_invite(
        &self,
        who: &str,
        valid_for_ms: u64,
        addrs: Vec<Vec<u8>>,
    ) -> Result<(Ticket, InviteView)> {
        let state = self.state.lock().await;
        let me = self.device_id();
        let person = crate::people::find_person(&state.family, who)?;
        let mine = state.family.active_person(&me).map(|(p, _)| p);
        if state.current_role(&me) != Some(Role::Admin) && mine != Some(person) {
            return Err(Error::Invite(
                "only an admin can add a device to someone else; invite a device for yourself with `kith invite --person` and your own name".into(),
            ));
        }
        let role = state
            .family
            .persons
            .get(&person)
            .map(|p| p.role)
            .ok_or_else(|| Error::NoSuchPerson(who.to_owned()))?;
        self.issue_invite(&state, role, Some(person), valid_for_ms, addrs)
    }

    fn issue_invite(
        &self,
        state: &State,
        role: Role,
        person: Option<PersonId>,
        valid_for_ms: u64,
        addrs: Vec<Vec<u8>>,
    ) -> Result<(Ticket, InviteView)> {
        let now = now_ms();
        let id = InviteId(rand::random());
        let record = InviteRecord {
            secret: rand::random(),
            role,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(valid_for_ms),
            state: InviteState::Pending,
            failures: 0,
            person,
        };
        let ticket = Ticket {
            family: state.identity.family,
            inviter: self.device_id(),
            addrs,
            invite: id,
            secret: record.secret,
            role,
            expires_at_ms: record.expires_at_ms,
        };
        self.persist(WriteBatch {
            invites: vec![(id, record.clone())],
            ..WriteBatch::default()
        })?;
        Ok((ticket, invite_view(&id, &record, now, &state.family)))
    }

    pub async fn invites(&self) -> Result<Vec<InviteView>> {
        let now = now_ms();
        let state = self.state.lock().await;
        let mut out: Vec<InviteView> = self
            .store
            .load_network()?
            .invites
            .iter()
            .map(|(id, r)| invite_view(id, r, now, &state.family))
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.created_at_ms));
        Ok(out)
    }

    pub async fn cancel_invite(&self, id_text: &str) -> Result<InviteView> {
        let state = self.state.lock().await;
        let wanted = id_text.trim().to_ascii_lowercase();
        let invites = self.store.load_network()?.invites;
        let matches: Vec<_> = invites
            .into_iter()
            .filter(|(id, _)| !wanted.is_empty() && id.to_string().starts_with(&wanted))
            .collect();
        let (id, mut record) = match matches.len() {
            1 => matches
                .into_iter()
                .next()
                .ok_or(Error::Invite("no such invite".into()))?,
            0 => {
                return Err(Error::Invite(format!(
                    "no invite matches {id_text:?}; `kith invites` lists them"
                )));
            }
            n => {
                return Err(Error::Invite(format!(
                    "{id_text:?} matches {n} invites; give more characters of the id"
                )));
            }
        };
        if record.state != InviteState::Pending {
            return Err(Error::Invite(format!(
                "invite {id} is {} and cannot be cancelled",
                state_name(&record, now_ms())
            )));
        }
        record.state = InviteState::Cancelled { at_ms: now_ms() };
        self.persist(WriteBatch {
            invites: vec![(id, record.clone())],
            ..WriteBatch::default()
        })?;
        Ok(invite_view(&id, &record, now_ms(), &state.family))
    }

    /// Checks a join request against the invite from the store alone, without the library's
    /// lock: this is what a stranger reaches. A wrong proof counts against the invite (the
    /// stored count, or `failed_here` if larger: failures counted in memory since start).
    pub(crate) fn check_join(
        &self,
        family: Option<FamilyId>,
        req: &JoinRequest,
        failed_here: u32,
    ) -> Result<(), Refusal> {
        if family != Some(req.family) {
            return Err(Refusal::WrongFamily);
        }
        let (id, mut record) = self.find_invite(&req.invite)?;
        let failures = record.failures.max(failed_here);
        usable(&record, &req.device, failures, now_ms())?;
        if !verify_invite_proof(
            &record.secret,
            &id,
            &self.device_id(),
            &req.device,
            &req.x25519,
            &req.proof,
        ) {
            record.failures = failures + 1;
            if let Err(e) = self.persist(WriteBatch {
                invites: vec![(id, record)],
                ..WriteBatch::default()
            }) {
                tracing::warn!("cannot count a failed proof for invite {id}: {e}");
            }
            return Err(Refusal::WrongSecret);
        }
        Ok(())
    }

    fn find_invite(&self, wanted: &InviteId) -> Result<(InviteId, InviteRecord), Refusal> {
        let invites = self
            .store
            .load_network()
            .map_err(|_| Refusal::Busy)?
            .invites;
        invites
            .into_iter()
            .find(|(id, _)| id == wanted)
            .ok_or(Refusal::UnknownInvite)
    }

    /// Admits the device of a request [`Library::check_join`] passed: records the new person and
    /// device and marks the invite admitted for that device, in one transaction (the same device
    /// asking again gets the same answer). Returns the welcome and the whole log to send.
    pub(crate) async fn admit(&self, req: JoinRequest) -> Result<(Welcome, Vec<Vec<u8>>), Refusal> {
        let mut state = self.state.lock().await;
        let me = self.device_id();
        if req.family != state.identity.family {
            return Err(Refusal::WrongFamily);
        }
        // Checked again under the lock: another request may have used the invite meanwhile.
        let (id, mut record) = self.find_invite(&req.invite)?;
        let now = now_ms();
        usable(&record, &req.device, record.failures, now)?;
        if !verify_invite_proof(
            &record.secret,
            &id,
            &me,
            &req.device,
            &req.x25519,
            &req.proof,
        ) {
            return Err(Refusal::WrongSecret);
        }
        let already = state.family.device(&req.device).is_some();
        if !already {
            // Only admins admit new people; the evaluation below checks a device for an
            // existing person (admins for anyone, everyone for themselves).
            if record.person.is_none() && state.current_role(&me) != Some(Role::Admin) {
                return Err(Refusal::NotAllowed);
            }
            // A new person, or another device of the person the invite names.
            let (person, add_person) = match record.person {
                Some(person) => (person, None),
                None => {
                    let person = PersonId(rand::random());
                    let op = SignedOp::sign(
                        MembershipOp {
                            version: 1,
                            parents: membership::heads(&state.ops),
                            author: me,
                            time_ms: now,
                            body: OpBody::AddPerson {
                                person,
                                name: clean_name(&req.person_name, "new member"),
                                role: record.role,
                            },
                        },
                        &self.device,
                    );
                    (person, Some(op))
                }
            };
            let add_device = SignedOp::sign(
                MembershipOp {
                    version: 1,
                    parents: match &add_person {
                        Some(op) => vec![op.id()],
                        None => membership::heads(&state.ops),
                    },
                    author: me,
                    time_ms: now,
                    body: OpBody::AddDevice {
                        person,
                        device: req.device,
                        device_x25519: req.x25519,
                        device_name: clean_name(&req.device_name, "new device"),
                    },
                },
                &self.device,
            );
            let new_ops: Vec<SignedOp> = add_person.into_iter().chain([add_device]).collect();
            let mut ops = state.ops.clone();
            ops.extend(new_ops.iter().cloned());
            let family = membership::evaluate_with_root(OpId(state.identity.root_op), &ops)
                .map_err(|_| Refusal::Busy)?;
            if family.device(&req.device).is_none() {
                return Err(Refusal::NotAllowed);
            }
            record.state = InviteState::Admitted {
                device: req.device,
                at_ms: now,
            };
            self.persist(WriteBatch {
                ops: new_ops,
                invites: vec![(id, record)],
                ..WriteBatch::default()
            })
            .map_err(|e| {
                tracing::error!("cannot record a join: {e}");
                Refusal::Busy
            })?;
            state.ops = ops;
            state.family = family;
            tracing::info!(device = %req.device, "admitted a new device with invite {id}");
            // Wrap the keys of what the new device may read to it now, so the log it gets
            // below already holds its envelopes. The join stands even if this fails: the
            // rotation is made again whenever the log changes.
            if let Err(e) = self.settle_keys(&mut state, true) {
                tracing::error!(device = %req.device, "cannot wrap document keys to a new device yet: {e}");
            }
        }
        let ops: Vec<Vec<u8>> = state.ops.iter().map(|o| o.to_bytes()).collect();
        let welcome = Welcome {
            family: state.identity.family,
            root_op: OpId(state.identity.root_op),
            family_secret: state.identity.family_secret,
            ops: u32::try_from(ops.len()).map_err(|_| Refusal::Busy)?,
            // Filled in by the network, which knows the addresses.
            peers: Vec::new(),
        };
        Ok((welcome, ops))
    }

    /// The joiner recorded its welcome: the invite is used up.
    pub(crate) async fn confirm_join(&self, invite: &InviteId, device: &DeviceId) -> Result<()> {
        let _state = self.state.lock().await;
        let (id, mut record) = self
            .find_invite(invite)
            .map_err(|r| Error::Invite(r.explain().into()))?;
        match record.state {
            InviteState::Admitted { device: d, .. } if d == *device => {
                record.state = InviteState::Used {
                    device: d,
                    at_ms: now_ms(),
                };
                self.persist(WriteBatch {
                    invites: vec![(id, record)],
                    ..WriteBatch::default()
                })
            }
            InviteState::Used { device: d, .. } if d == *device => Ok(()),
            _ => Err(Error::Invite(format!(
                "{device} confirmed invite {id}, which did not admit it"
            ))),
        }
    }
}

/// Whether `record` may still admit `device`: pending (and neither expired nor locked by
/// failed proofs), or admitted for this same device and not yet confirmed.
fn usable(
    record: &InviteRecord,
    device: &DeviceId,
    failures: u32,
    now: u64,
) -> Result<(), Refusal> {
    match record.state {
        // The joiner lost our answer and asks again: it is already in; answer again.
        InviteState::Admitted { device: d, .. } if d == *device => Ok(()),
        InviteState::Admitted { .. } | InviteState::Used { .. } => Err(Refusal::AlreadyUsed),
        InviteState::Cancelled { .. } => Err(Refusal::Cancelled),
        InviteState::Pending if now >= record.expires_at_ms => Err(Refusal::Expired),
        InviteState::Pending if failures >= MAX_FAILURES => Err(Refusal::TooManyAttempts),
        InviteState::Pending => Ok(()),
    }
}

fn clean_name(name: &str, fallback: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    // A joiner's name that breaks the rule of names (looks like an id…) is not taken as is.
    match kith_protocol::names::check_name(&name) {
        Ok(()) => name,
        Err(_) => fallback.to_owned(),
    }
}

fn state_name(record: &InviteRecord, now: u64) -> &'static str {
    match record.state {
        InviteState::Pending if now >= record.expires_at_ms => "expired",
        InviteState::Pending => "pending",
        InviteState::Admitted { .. } => "admitted",
        InviteState::Used { .. } => "used",
        InviteState::Cancelled { .. } => "cancelled",
    }
}

fn invite_view(
    id: &InviteId,
    record: &InviteRecord,
    now: u64,
    family: &membership::FamilyState,
) -> InviteView {
    InviteView {
        id: id.to_string(),
        role: record.role.to_string(),
        person: record
            .person
            .and_then(|p| family.persons.get(&p))
            .map(|p| p.name.clone()),
        state: state_name(record, now).to_owned(),
        created_at_ms: record.created_at_ms,
        expires_at_ms: record.expires_at_ms,
        used_by: match &record.state {
            InviteState::Used { device, .. } | InviteState::Admitted { device, .. } => {
                Some(device.to_string())
            }
            _ => None,
        },
        ticket: None,
    }
}
