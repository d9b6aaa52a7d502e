//! `kith free-space`: sets aside this device's copies of originals that another device holds
//! in full, keeping thumbnails and previews; and bringing them back when a user needs them.
//!
//! Not the trash: the photos stay in the library on every device. Only the local copy of the
//! original goes, after a connected device that keeps originals *proved* it holds that
//! original complete (`/kith/have/2`, see [`crate::net`]'s `have`): a claim is not enough.
//! A device keeps originals of a photo when it is a current device of an admin or member who
//! may write a document carrying the photo; a relative's device (view-only, or contributing to
//! an album) never counts, whatever it holds. A set-aside original is not fetched by the
//! background transfer; export (and anything else that needs the original) fetches it again
//! first.

use std::collections::{BTreeMap, HashSet};

use kith_protocol::keys::DeviceId;
use kith_protocol::library::BlobRef;
use kith_protocol::membership::Role;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::library::Library;
use crate::net::Network;
use crate::store::WriteBatch;

/// What `kith free-space` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreeSpaceView {
    /// Originals set aside now.
    pub originals: usize,
    /// Their size in bytes (ciphertext, as stored).
    pub bytes: u64,
    /// Originals held here that no connected device confirmed holding, so they stay.
    pub kept: usize,
    /// Originals of these photos set aside earlier.
    pub already_set_aside: usize,
    /// Why connected devices' copies did not count, one sentence each (names escaped).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Network {
    /// Sets aside the local copies of originals (of `album`, or of every photo) that a
    /// connected family device holds in full. The space is freed within seconds.
    pub async fn free_space(&self, album: Option<&str>) -> Result<FreeSpaceView> {
        let (originals, already) = {
            let state = self.lib.state.lock().await;
            let scope = originals_in(&state, album)?;
            let already = scope
                .iter()
                .filter(|b| state.set_aside.contains(&b.hash))
                .count();
            let held: Vec<BlobRef> = scope
                .into_iter()
                .filter(|b| !state.set_aside.contains(&b.hash))
                .collect();
            (held, already)
        };
        let mut here = Vec::new();
        for blob in originals {
            if self.lib.blobs.has(&blob).await? {
                here.push(blob);
            }
        }
        let proven = self.proven_elsewhere(&here).await;
        let notes = self
            .lib
            .notes_on(&proven.unproven, &proven.not_keepers)
            .await;
        for note in &notes {
            tracing::warn!("kith free-space: {note}");
        }
        let (release, kept): (Vec<BlobRef>, Vec<BlobRef>) = here
            .into_iter()
            .partition(|b| proven.held.contains(&b.hash));
        if !release.is_empty() {
            let mut state = self.lib.state.lock().await;
            self.lib.persist(WriteBatch {
                set_aside: release.iter().map(|b| b.hash).collect(),
                ..WriteBatch::default()
            })?;
            state.set_aside.extend(release.iter().map(|b| b.hash));
            let keep = live_blobs(&state);
            let released: HashSet<[u8; 32]> = release.iter().map(|b| b.hash).collect();
            drop(state);
            self.lib.blobs.release(&released, keep).await?;
            tracing::info!(
                "set aside {} originals that other devices proved they hold",
                release.len()
            );
        }
        Ok(FreeSpaceView {
            originals: release.len(),
            bytes: release.iter().map(|b| b.len).sum(),
            kept: kept.len(),
            already_set_aside: already,
            notes,
        })
    }

    /// Fetches back the set-aside originals of `album` (or of every photo) from connected
    /// devices; they are held here again from then on. Returns how many came back.
    pub async fn bring_back(&self, album: Option<&str>) -> Result<usize> {
        let wanted: Vec<BlobRef> = {
            let state = self.lib.state.lock().await;
            originals_in(&state, album)?
                .into_iter()
                .filter(|b| state.set_aside.contains(&b.hash))
                .collect()
        };
        if wanted.is_empty() {
            return Ok(0);
        }
        let sources = self.sources().await;
        let mut back: Vec<BlobRef> = Vec::new();
        for blob in &wanted {
            for device in &sources {
                match crate::net::transfer::fetch_one(self, device, blob).await {
                    Ok(_) => {
                        back.push(*blob);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %device, "cannot fetch a set-aside original: {e}")
                    }
                }
            }
        }
        if !back.is_empty() {
            self.lib.blobs.make_durable(back.clone()).await?;
            let mut state = self.lib.state.lock().await;
            self.lib.persist(WriteBatch {
                brought_back: back.iter().map(|b| b.hash).collect(),
                ..WriteBatch::default()
            })?;
            for blob in &back {
                state.set_aside.remove(&blob.hash);
            }
        }
        if back.len() < wanted.len() {
            return Err(Error::Net(format!(
                "{} of {} set-aside originals could not be fetched back: no connected device \
                 holds them; start the device that does and try again",
                wanted.len() - back.len(),
                wanted.len()
            )));
        }
        Ok(back.len())
    }
}

/// The originals of `album`'s photos, or of every photo.
fn originals_in(state: &crate::library::State, album: Option<&str>) -> Result<Vec<BlobRef>> {
    Ok(match album {
        Some(name) => {
            let id = state.find_album(name)?;
            state
                .albums
                .get(&id)
                .map(|(_, photos)| {
                    photos
                        .iter()
                        .filter_map(|p| state.photos.get(p))
                        .map(|e| e.original)
                        .collect()
                })
                .unwrap_or_default()
        }
        None => state.photos.values().map(|e| e.original).collect(),
    })
}

/// Every blob the library references and this device keeps: all but set-aside originals.
fn live_blobs(state: &crate::library::State) -> HashSet<[u8; 32]> {
    state
        .photos
        .values()
        .flat_map(|e| e.blobs())
        .map(|b| b.hash)
        .filter(|h| !state.set_aside.contains(h))
        .collect()
}

impl Library {
    /// Whether `device`'s copy of blob `hash` counts for `kith free-space`: it is a current
    /// device of an admin or member who may read a document carrying the photo (household
    /// devices replicate every original they may read). A relative's device never counts, even
    /// with contribute access: relatives choose what they keep.
    pub(crate) async fn keeps_originals(&self, device: &DeviceId, hash: &[u8; 32]) -> bool {
        let state = self.state.lock().await;
        if !matches!(state.current_role(device), Some(Role::Admin | Role::Member)) {
            return false;
        }
        state.blob_owner.get(hash).is_some_and(|photo| {
            state
                .docs_holding(photo)
                .iter()
                .any(|doc| state.family.may_hold_key(doc, device))
        })
    }

    /// Sentences saying which devices' copies did not count for `kith free-space`, and why.
    pub(crate) async fn notes_on(
        &self,
        unproven: &BTreeMap<DeviceId, usize>,
        not_keepers: &[DeviceId],
    ) -> Vec<String> {
        let state = self.state.lock().await;
        let name = |device: &DeviceId| match state.family.device(device) {
            Some((person, d)) => {
                let person = state
                    .family
                    .persons
                    .get(&person)
                    .map_or(String::new(), |p| p.name.clone());
                format!("{:?} ({:?}'s device {device})", d.name, person)
            }
            None => format!("{device}"),
        };
        let mut notes: Vec<String> = unproven
            .iter()
            .map(|(device, n)| {
                format!(
                    "device {} could not prove it holds {n} originals it answered for; they stay here",
                    name(device)
                )
            })
            .collect();
        notes.extend(not_keepers.iter().map(|device| {
            format!(
                "device {} keeps no originals of these photos (not the device of an admin \
                 or member who may read them), so its copies do not count",
                name(device)
            )
        }));
        notes
    }
}
