//! The running node's check of the stored changes. Opening reads only the changes a snapshot
//! lacks (`store::changes`), so flipped bytes in one a snapshot holds would go unseen until a
//! peer asks for it. Once after it starts, the node reads every stored change, one at a time
//! and without the state lock, and checks each against its id. One that fails is
//! reported in `damaged` and no longer counted among the changes this device holds, so it is
//! not offered to peers (they would refuse it); what the library shows is unchanged, since
//! the document's snapshot (sealed, authenticated) holds it.

use std::sync::Arc;

use kith_protocol::keys::DocId;

use super::Library;
use crate::error::Result;

/// How a damaged change is named in `damaged`.
fn damaged_note(doc: &DocId, reason: &str) -> String {
    format!("document {doc}: {reason}")
}

impl Library {
    /// Reads and checks every stored change (see the module); returns how many failed.
    pub async fn check_stored_changes(self: &Arc<Self>) -> Result<usize> {
        let library = Arc::clone(self);
        let found = tokio::task::spawn_blocking(move || library.store.check_changes())
            .await
            .map_err(|e| crate::error::Error::Invalid(format!("the check stopped: {e}")))??;
        let count = found.len();
        if count > 0 {
            let mut state = self.state.lock().await;
            for (doc, id, reason) in found {
                tracing::error!(%doc, change = %id, "{reason}");
                if let Some(held) = state.change_ids.get_mut(&doc) {
                    held.remove(&id);
                }
                let note = damaged_note(&doc, &reason);
                if !state.damaged.contains(&note) {
                    state.damaged.push(note);
                }
            }
        }
        Ok(count)
    }
}
