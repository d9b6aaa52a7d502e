//! Document snapshots: a document as one compact automerge save, sealed with the storage key,
//! with the ids of the stored changes it holds. Opening a library loads a document's snapshot
//! and applies only the stored changes it does not hold, instead of replaying every change
//! ever made (`library::load`).
//!
//! A snapshot also carries what the index reads out of the document ([`Readout`]), so a
//! document with no change after its snapshot is indexed without reading automerge.
//!
//! A snapshot is a cache of what the stored changes already say: it is written after them,
//! in its own transaction, and losing it loses nothing. The changes stay stored (peers pull
//! them by id). A snapshot naming a change that is no longer stored is not used.

use std::collections::HashMap;

use kith_protocol::keys::DocId;
use kith_protocol::library::{AlbumMeta, PhotoEntry};
use kith_protocol::record;
use kith_protocol::seal::ChangeId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{DocRecord, Store, doc_id, nonce};
use crate::error::{Error, Result};

/// Key: document id. Value: a [`Snapshot`] sealed with the storage key, bound to its key.
pub(super) const SNAPSHOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("snapshots");

/// Version of the snapshot layout: a snapshot of another version is not used (the document
/// is rebuilt from its changes and snapshotted again). Bump it whenever [`Readout`]'s types
/// (`PhotoEntry`, `AlbumMeta`) or how the index reads them out of a document change: a
/// readout is what an older kith read.
const SNAPSHOT_FORMAT: u8 = 2;

/// A document as of some of its stored changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stored changes the document holds, sorted.
    pub changes: Vec<ChangeId>,
    /// automerge's `save` of the document.
    pub doc: Vec<u8>,
    /// What the index reads out of it, when it read (`None`: read it from `doc`).
    pub readout: Option<Readout>,
    /// The document keys it was made with ([`key_fingerprints`]): a snapshot is not used once
    /// one of them is no longer held (a rotation that lost a race), since changes it holds
    /// may not open any more.
    pub keys: Vec<[u8; 32]>,
}

/// A fingerprint of each key `record` holds, for [`Snapshot::keys`]: the keys themselves are
/// never written twice.
pub fn key_fingerprints(record: &DocRecord) -> Vec<[u8; 32]> {
    (record.all_keys().iter())
        .map(|(epoch, key)| {
            let mut material = epoch.to_le_bytes().to_vec();
            material.extend_from_slice(key);
            blake3::derive_key("kith snapshot key fingerprint v1", &material)
        })
        .collect()
}

/// What a document says for the index: its album fields (when it reads as an album) and its
/// photo entries, as `Document::album` and `Document::photos` read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readout {
    pub album: Option<AlbumMeta>,
    pub entries: Vec<PhotoEntry>,
}

/// What is sealed: this header, then the document's bytes as they are (no per-byte encoding
/// of a snapshot that may be megabytes).
#[derive(Serialize, Deserialize)]
struct Header {
    format: u8,
    changes: Vec<ChangeId>,
    readout: Option<Readout>,
    keys: Vec<[u8; 32]>,
}

fn context(doc: &DocId) -> Vec<u8> {
    [b"snapshots/".as_slice(), doc.0.as_slice()].concat()
}

impl Store {
    /// Every snapshot held. One that does not open (another layout, damaged bytes) is left
    /// out with a warning: its document is rebuilt from its changes.
    pub fn load_snapshots(&self) -> Result<HashMap<DocId, Snapshot>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(SNAPSHOTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let opened =
                doc_id(k.value()).and_then(|doc| Ok((doc, self.open_snapshot(&doc, v.value())?)));
            match opened {
                Ok((doc, snapshot)) => {
                    out.insert(doc, snapshot);
                }
                Err(e) => tracing::warn!("a document snapshot is not used: {e}"),
            }
        }
        Ok(out)
    }

    fn open_snapshot(&self, doc: &DocId, sealed: &[u8]) -> Result<Snapshot> {
        let plain = record::open_record(&self.storage_key, &context(doc), sealed)
            .map_err(|e| Error::Corrupt(format!("snapshot of document {doc}: {e}")))?;
        let (header, rest) = postcard::take_from_bytes::<Header>(&plain)
            .map_err(|e| Error::Corrupt(format!("snapshot of document {doc}: {e}")))?;
        if header.format != SNAPSHOT_FORMAT {
            return Err(Error::Corrupt(format!(
                "snapshot of document {doc} has format {}, this kith writes {SNAPSHOT_FORMAT}",
                header.format
            )));
        }
        Ok(Snapshot {
            changes: header.changes,
            doc: rest.to_vec(),
            readout: header.readout,
            keys: header.keys,
        })
    }

    /// Writes snapshots in one durable transaction, replacing earlier ones.
    pub fn put_snapshots(&self, snapshots: &[(DocId, Snapshot)]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SNAPSHOTS)?;
            for (doc, snapshot) in snapshots {
                let header = Header {
                    format: SNAPSHOT_FORMAT,
                    changes: snapshot.changes.clone(),
                    readout: snapshot.readout.clone(),
                    keys: snapshot.keys.clone(),
                };
                let mut plain =
                    postcard::to_allocvec(&header).map_err(|e| Error::Db(e.to_string()))?;
                plain.extend_from_slice(&snapshot.doc);
                let sealed = record::seal_record(&self.storage_key, &context(doc), nonce(), &plain);
                table.insert(doc.0.as_slice(), sealed.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::keys::SymmetricKey;

    use super::*;

    #[test]
    fn rewriting_snapshots_reuses_the_space_of_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path, SymmetricKey::from_bytes([4; 32])).unwrap();
        let doc = DocId([1; 32]);
        let size = |n: usize| Snapshot {
            changes: vec![ChangeId([3; 32]); n / 1000],
            doc: vec![7; n],
            readout: None,
            keys: Vec::new(),
        };
        // A document growing to 8 MB, snapshotted again and again.
        for round in 1..=40 {
            store
                .put_snapshots(&[(doc, size(200_000 * round))])
                .unwrap();
        }
        let file = std::fs::metadata(&path).unwrap().len();
        eprintln!("database file after 40 snapshots of up to 8 MB: {file} bytes");
        assert!(file < 64 << 20, "the database grew to {file} bytes");
    }

    #[test]
    fn snapshots_read_back_sealed_and_bound_to_their_document() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), SymmetricKey::from_bytes([4; 32])).unwrap();
        let (a, b) = (DocId([1; 32]), DocId([2; 32]));
        let snapshot = Snapshot {
            changes: vec![ChangeId([3; 32]), ChangeId([5; 32])],
            doc: b"the-plaintext-document-bytes".to_vec(),
            readout: Some(Readout {
                album: Some(AlbumMeta {
                    title: "the-plaintext-title".into(),
                    parent: None,
                    created_at_ms: 1,
                }),
                entries: Vec::new(),
            }),
            keys: vec![[6; 32]],
        };
        store.put_snapshots(&[(a, snapshot.clone())]).unwrap();
        assert_eq!(
            store.load_snapshots().unwrap(),
            HashMap::from([(a, snapshot)])
        );
        let raw = std::fs::read(dir.path().join("db")).unwrap();
        assert!(
            !raw.windows(12).any(|w| w == b"the-plaintex"),
            "a snapshot is stored in plaintext"
        );
        // A snapshot moved under another document's key does not open, and is left out.
        let txn = store.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(SNAPSHOTS).unwrap();
            let sealed = table.get(a.0.as_slice()).unwrap().unwrap().value().to_vec();
            table.insert(b.0.as_slice(), sealed.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        assert_eq!(
            store.load_snapshots().unwrap().keys().collect::<Vec<_>>(),
            vec![&a]
        );
    }
}
