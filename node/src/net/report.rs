//! What `kith devices` and `kith status` show of the network.

use std::sync::atomic::Ordering;

use kith_protocol::wire::digest_ids;

use super::Network;
use crate::error::Result;
use crate::library::Library;
use crate::views::{FamilyDeviceView, PeerSyncView, SyncView};

impl Library {
    /// The family's devices; `online` and fresh `last_seen` only when `net` runs.
    pub async fn devices(&self, net: Option<&Network>) -> Result<Vec<FamilyDeviceView>> {
        let seen = match net {
            Some(net) => net.peer_status(),
            None => self
                .store
                .load_network()?
                .peers
                .into_iter()
                .map(|(d, r)| {
                    (
                        d,
                        super::PeerStatus {
                            last_seen_ms: r.last_seen_ms,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        };
        let me = self.device_id();
        let state = self.state.lock().await;
        let mut out: Vec<FamilyDeviceView> = state
            .family
            .persons
            .values()
            .flat_map(|p| {
                p.devices.iter().map(|(id, d)| {
                    let status = seen.get(id);
                    FamilyDeviceView {
                        id: id.to_string(),
                        person: p.name.clone(),
                        name: d.name.clone(),
                        revoked: d.revoked,
                        online: *id == me || status.is_some_and(|s| s.connected),
                        last_seen_ms: status.map(|s| s.last_seen_ms).filter(|t| *t > 0),
                        this: *id == me,
                        undoable: if d.revoked {
                            state.kept_from_device(id).len()
                        } else {
                            0
                        },
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.this
                .cmp(&a.this)
                .then(a.person.cmp(&b.person))
                .then(a.name.cmp(&b.name))
        });
        Ok(out)
    }

    /// A digest over every document's change set: two devices holding the same documents
    /// and changes show the same value.
    pub async fn docs_digest(&self) -> String {
        let state = self.state.lock().await;
        let mut hasher = blake3::Hasher::new_derive_key("kith library digest v1");
        let held: std::collections::BTreeSet<_> = state.held_docs().collect();
        for id in &held {
            hasher.update(&id.0);
            let ids = state.change_ids.get(id);
            hasher.update(&digest_ids(ids.into_iter().flatten()));
        }
        hasher.finalize().to_hex().to_string()
    }
}

impl Network {
    pub async fn sync_view(&self) -> Result<SyncView> {
        let names: std::collections::HashMap<_, _> = self
            .lib
            .devices(Some(self))
            .await?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect();
        let peers = self
            .peer_status()
            .into_iter()
            .filter(|(d, _)| names.contains_key(&d.to_string()))
            .map(|(d, s)| PeerSyncView {
                name: names.get(&d.to_string()).cloned().unwrap_or_default(),
                device: d.to_string(),
                online: s.connected,
                caught_up: s.caught_up,
                changes_received: s.changes_received,
                changes_rejected: s.changes_rejected,
                blobs_fetched: s.blobs_fetched,
                bytes_fetched: s.bytes_fetched,
            })
            .collect();
        // Photos that arrived after the fetcher last counted are assumed to lack all three
        // renditions, so "nothing wanted" is never reported before the fetcher has looked.
        let total = self.lib.rendition_count().await;
        let counted = 3 * self.transfer.counted_photos.load(Ordering::Relaxed);
        let wanted = (self.transfer.wanted.load(Ordering::Relaxed) + total.saturating_sub(counted))
            .min(total);
        Ok(SyncView {
            listen: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            blobs_wanted: wanted,
            blobs_have: total.saturating_sub(wanted),
            blobs_fetched: self.transfer.fetched.load(Ordering::Relaxed),
            blobs_failed: self.transfer.failed.load(Ordering::Relaxed),
            docs_digest: self.lib.docs_digest().await,
            peers,
        })
    }
}
