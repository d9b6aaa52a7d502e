//! Who belongs to the family, answered without the library's lock.
//!
//! Every request from a peer that is not (or no longer) a device of the family — a connection,
//! an invite stream, a stream it may not open — is judged against [`Members`], a snapshot of
//! the log's current devices published on a `watch` channel. The snapshot is taken (under the
//! lock) only when this node commits ops, never because a peer asked; so a flood of strangers
//! never waits on, or holds up, the library. Family devices' requests are checked again under
//! the lock where it matters (what they may read), so a snapshot a moment old grants nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kith_protocol::keys::{DeviceId, FamilyId};
use kith_protocol::membership::Role;
use tokio::sync::watch;

use crate::library::{Library, State};

/// The family's devices as the log says at one moment.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// `None` only for a swarm that serves no family (the joiner's).
    pub family: Option<FamilyId>,
    /// Current devices (this one included) and their person's role.
    pub roles: HashMap<DeviceId, Role>,
    /// Devices the log once held and has removed.
    pub removed: HashSet<DeviceId>,
}

impl Members {
    pub(crate) fn of(state: &State) -> Members {
        let mut members = Members {
            family: Some(state.identity.family),
            ..Members::default()
        };
        for person in state.family.persons.values() {
            for device in person.devices.keys() {
                match state.current_role(device) {
                    Some(role) => {
                        members.roles.insert(*device, role);
                    }
                    None => {
                        members.removed.insert(*device);
                    }
                }
            }
        }
        members
    }

    pub fn role(&self, device: &DeviceId) -> Option<Role> {
        self.roles.get(device).copied()
    }

    pub fn is_current(&self, device: &DeviceId) -> bool {
        self.roles.contains_key(device)
    }

    pub fn was_removed(&self, device: &DeviceId) -> bool {
        self.removed.contains(device)
    }
}

pub type MembersRx = watch::Receiver<Arc<Members>>;

/// A receiver that never changes: for a swarm that serves no family (the joiner's).
pub fn nobody() -> MembersRx {
    watch::channel(Arc::new(Members::default())).1
}

/// Takes a fresh snapshot of the log's devices and publishes it.
pub(crate) async fn refresh(lib: &Library, tx: &watch::Sender<Arc<Members>>) {
    let members = Members::of(&*lib.state.lock().await);
    tx.send_replace(Arc::new(members));
}

/// Publishes a new snapshot after every commit of ops (the only way the devices change).
pub(crate) async fn keep_fresh(lib: Arc<Library>, tx: watch::Sender<Arc<Members>>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut updates = lib.subscribe();
    loop {
        match updates.recv().await {
            Ok(crate::library::Update::Ops(_)) | Err(RecvError::Lagged(_)) => {
                refresh(&lib, &tx).await;
            }
            Ok(_) => {}
            Err(RecvError::Closed) => return,
        }
    }
}
