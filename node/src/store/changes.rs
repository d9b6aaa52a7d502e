//! Sealed changes, and their headers kept apart. A library opens from snapshots that hold
//! most changes; what opening needs of those is who wrote them under which epoch, not their
//! bodies. The `change_heads` table holds exactly that (the header every sealed change carries
//! in the clear, so it says nothing the change does not), written and removed in the same
//! transaction as the change, so that opening reads kilobytes where the changes are megabytes.
//! A database of format 1, from before the table existed, is upgraded when it opens.
//!
//! A change's body is checked (its id is the hash of its bytes) whenever it is read; one that
//! fails is reported and left out. A change a snapshot holds is read when a peer asks for it or
//! its document is rebuilt, not at every open.

use kith_protocol::keys::{DeviceId, DocId};
use kith_protocol::seal::{ChangeId, SealedChange};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{Store, doc_id};
use crate::error::{Error, Result};

/// Key: doc id ‖ change id (64 bytes). Value: the sealed change as it travels.
pub(super) const CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("changes");
/// Key: as [`CHANGES`]. Value: the change's epoch (4 bytes, little-endian) ‖ author (32).
const CHANGE_HEADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("change_heads");

/// What opening reads of a stored change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeHead {
    pub id: ChangeId,
    pub epoch: u32,
    pub author: DeviceId,
}

impl ChangeHead {
    pub fn of(sealed: &SealedChange) -> ChangeHead {
        let header = sealed.header();
        ChangeHead {
            id: sealed.id(),
            epoch: header.epoch,
            author: header.author,
        }
    }

    fn to_value(self) -> [u8; 36] {
        let mut out = [0; 36];
        out[..4].copy_from_slice(&self.epoch.to_le_bytes());
        out[4..].copy_from_slice(&self.author.0);
        out
    }

    fn from_row(key: &[u8], value: &[u8]) -> Option<(DocId, ChangeHead)> {
        let doc = doc_id(key.get(..32)?).ok()?;
        let id = ChangeId(key.get(32..)?.try_into().ok()?);
        let epoch = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
        let author = DeviceId(value.get(4..)?.try_into().ok()?);
        Some((doc, ChangeHead { id, epoch, author }))
    }
}

fn key(doc: &DocId, id: &ChangeId) -> [u8; 64] {
    let mut out = [0; 64];
    out[..32].copy_from_slice(&doc.0);
    out[32..].copy_from_slice(&id.0);
    out
}

/// Checks a stored change's bytes against its key.
fn checked(key: &[u8], bytes: &[u8]) -> std::result::Result<SealedChange, String> {
    let label = data_encoding::HEXLOWER.encode(key.get(32..).unwrap_or_default());
    match SealedChange::from_bytes(bytes.to_vec()) {
        Ok(sealed) if key.get(32..) == Some(sealed.id().0.as_slice()) => Ok(sealed),
        Ok(_) => Err(format!(
            "change {label}: its bytes do not match its id (flipped bytes on disk?)"
        )),
        Err(e) => Err(format!("change {label}: {e}")),
    }
}

/// Upgrades a database of format 1 to `format`: the head of every stored change that reads is
/// written, in the transaction that records the new format. A damaged change gets no head: it
/// is left out of the library, as format 1 left it out at every open.
pub(super) fn upgrade_to_heads(db: &redb::Database, format: u8) -> Result<()> {
    let txn = db.begin_write()?;
    let mut written = 0usize;
    {
        let bodies = txn.open_table(CHANGES)?;
        let mut heads = txn.open_table(CHANGE_HEADS)?;
        for row in bodies.iter()? {
            let (k, v) = row?;
            let key = k.value();
            match checked(key, v.value()) {
                Ok(sealed) => {
                    heads.insert(key, ChangeHead::of(&sealed).to_value().as_slice())?;
                    written += 1;
                }
                Err(reason) => tracing::error!("{reason}"),
            }
        }
        txn.open_table(super::META)?
            .insert("format", [format].as_slice())?;
    }
    txn.commit()?;
    tracing::info!(
        changes = written,
        "upgraded the database: the changes' heads are kept apart"
    );
    Ok(())
}

/// Stored changes read back, and those that failed their checks.
#[derive(Debug, Default)]
pub struct ReadChanges {
    pub changes: Vec<SealedChange>,
    /// Those that failed, and why.
    pub damaged: Vec<(ChangeId, String)>,
}

impl Store {
    /// Creates the tables of a new database.
    pub(super) fn create_change_tables(txn: &WriteTransaction) -> Result<()> {
        txn.open_table(CHANGES)?;
        txn.open_table(CHANGE_HEADS)?;
        Ok(())
    }

    /// Writes changes and removes superseded ones, with their heads.
    pub(super) fn write_changes(
        txn: &WriteTransaction,
        changes: &[(DocId, SealedChange)],
        superseded: &[(DocId, ChangeId)],
    ) -> Result<()> {
        let mut bodies = txn.open_table(CHANGES)?;
        let mut heads = txn.open_table(CHANGE_HEADS)?;
        for (doc, change) in changes {
            let head = ChangeHead::of(change);
            let key = key(doc, &head.id);
            bodies.insert(key.as_slice(), change.as_bytes())?;
            heads.insert(key.as_slice(), head.to_value().as_slice())?;
        }
        for (doc, id) in superseded {
            let key = key(doc, id);
            bodies.remove(key.as_slice())?;
            heads.remove(key.as_slice())?;
        }
        Ok(())
    }

    /// Every stored change's head, by document. A malformed one is reported in `damaged`
    /// and its change left out (the check of the running node writes it again).
    pub fn change_heads(&self, damaged: &mut Vec<String>) -> Result<Vec<(DocId, ChangeHead)>> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(CHANGE_HEADS)?.iter()? {
            let (k, v) = row?;
            match ChangeHead::from_row(k.value(), v.value()) {
                Some(head) => out.push(head),
                None => damaged.push("a change head in the database is malformed".into()),
            }
        }
        Ok(out)
    }

    /// The heads of `doc`'s stored changes.
    pub fn change_heads_of(&self, doc: &DocId) -> Result<Vec<ChangeHead>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHANGE_HEADS)?;
        let (first, last) = (
            key(doc, &ChangeId([0; 32])),
            key(doc, &ChangeId([0xff; 32])),
        );
        let mut out = Vec::new();
        for row in table.range(first.as_slice()..=last.as_slice())? {
            let (k, v) = row?;
            if let Some((_, head)) = ChangeHead::from_row(k.value(), v.value()) {
                out.push(head);
            }
        }
        Ok(out)
    }

    /// The stored changes `ids` of `doc`, checked; ids not held are skipped.
    pub fn read_changes(&self, doc: &DocId, ids: &[ChangeId]) -> Result<ReadChanges> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHANGES)?;
        let mut out = ReadChanges::default();
        for id in ids {
            let key = key(doc, id);
            if let Some(v) = table.get(key.as_slice())? {
                match checked(&key, v.value()) {
                    Ok(sealed) => out.changes.push(sealed),
                    Err(reason) => out.damaged.push((*id, reason)),
                }
            }
        }
        Ok(out)
    }

    /// Checks every stored change, one at a time: those that fail, and why. A change whose
    /// head does not say what the change does (flipped bytes in the head) gets its head
    /// written again from the change.
    pub fn check_changes(&self) -> Result<Vec<(DocId, ChangeId, String)>> {
        let mut failed = Vec::new();
        let mut wrong_heads = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let heads = txn.open_table(CHANGE_HEADS)?;
            for row in txn.open_table(CHANGES)?.iter()? {
                let (k, v) = row?;
                let key = k.value();
                match checked(key, v.value()) {
                    Ok(sealed) => {
                        let head = ChangeHead::of(&sealed).to_value();
                        if heads.get(key)?.is_none_or(|h| h.value() != head.as_slice()) {
                            wrong_heads.push((key.to_vec(), head));
                        }
                    }
                    Err(reason) => {
                        let doc = doc_id(key.get(..32).unwrap_or_default())?;
                        let id = ChangeId(key.get(32..).unwrap_or_default().try_into().map_err(
                            |_| Error::Corrupt("a change key in the database is malformed".into()),
                        )?);
                        failed.push((doc, id, reason));
                    }
                }
            }
        }
        if !wrong_heads.is_empty() {
            tracing::error!(
                changes = wrong_heads.len(),
                "heads of stored changes did not match them; written again"
            );
            let txn = self.db.begin_write()?;
            {
                let mut heads = txn.open_table(CHANGE_HEADS)?;
                for (key, head) in &wrong_heads {
                    heads.insert(key.as_slice(), head.as_slice())?;
                }
            }
            txn.commit()?;
        }
        Ok(failed)
    }

    /// The stored bytes of these changes of `doc`, as they travel; ids not held are skipped,
    /// and so is one that fails its check (logged: a peer must not be sent flipped bytes).
    pub fn changes_by_id(&self, doc: &DocId, ids: &[ChangeId]) -> Result<Vec<Vec<u8>>> {
        let read = self.read_changes(doc, ids)?;
        for (_, reason) in &read.damaged {
            tracing::error!(%doc, "{reason}");
        }
        Ok(read
            .changes
            .into_iter()
            .map(SealedChange::into_bytes)
            .collect())
    }

    /// Every stored change, checked: for tests and tools that read the whole store. One that
    /// fails is reported in `damaged` and left out.
    pub(super) fn all_changes(
        &self,
        txn: &redb::ReadTransaction,
        damaged: &mut Vec<String>,
    ) -> Result<Vec<(DocId, SealedChange)>> {
        let mut changes = Vec::new();
        for row in txn.open_table(CHANGES)?.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let Ok(doc) = doc_id(key.get(..32).unwrap_or_default()) else {
                damaged.push("a change key in the database is malformed".into());
                continue;
            };
            match checked(key, v.value()) {
                Ok(sealed) => changes.push((doc, sealed)),
                Err(reason) => damaged.push(reason),
            }
        }
        Ok(changes)
    }

    /// Number of sealed changes stored.
    pub fn change_count(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(CHANGES)?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::keys::{DeviceSecret, SymmetricKey};
    use kith_protocol::seal::{ChangeHeader, seal_change};

    use super::*;
    use crate::store::WriteBatch;

    fn sealed(doc: DocId, epoch: u32, author: &DeviceSecret, body: &[u8]) -> SealedChange {
        let header = ChangeHeader {
            doc,
            epoch,
            author: author.device_id(),
        };
        seal_change(
            &SymmetricKey::from_bytes([9; 32]),
            &header,
            [epoch as u8; 24],
            body,
            author,
        )
    }

    #[test]
    fn heads_follow_the_changes_are_repaired_by_the_check_and_come_with_an_upgrade()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("db"), SymmetricKey::from_bytes([4; 32]))?;
        let author = DeviceSecret::from_seeds([1; 32], [2; 32]);
        let (a, b) = (DocId([1; 32]), DocId([2; 32]));
        let changes = vec![
            (a, sealed(a, 0, &author, b"one")),
            (a, sealed(a, 1, &author, b"two")),
            (b, sealed(b, 3, &author, b"three")),
        ];
        store.commit(&WriteBatch {
            changes: changes.clone(),
            ..WriteBatch::default()
        })?;
        let expected = |kept: &[(DocId, SealedChange)]| {
            let mut heads: Vec<(DocId, ChangeHead)> =
                kept.iter().map(|(d, c)| (*d, ChangeHead::of(c))).collect();
            heads.sort_by_key(|(d, h)| (d.0, h.id.0));
            heads
        };
        let heads = |store: &Store| -> Result<Vec<(DocId, ChangeHead)>> {
            let mut damaged = Vec::new();
            let heads = store.change_heads(&mut damaged)?;
            assert_eq!(damaged, Vec::<String>::new());
            Ok(heads)
        };
        assert_eq!(heads(&store)?, expected(&changes));
        assert_eq!(
            store.change_heads_of(&b)?,
            vec![ChangeHead::of(&changes[2].1)]
        );

        // A superseded change goes with its head.
        store.commit(&WriteBatch {
            superseded: vec![(a, changes[0].1.id())],
            ..WriteBatch::default()
        })?;
        assert_eq!(heads(&store)?, expected(&changes[1..]));

        // Flipped bytes in a head: the check writes it again from the change.
        let txn = store.db.begin_write()?;
        {
            let mut table = txn.open_table(CHANGE_HEADS)?;
            let id = changes[2].1.id();
            table.insert(key(&b, &id).as_slice(), [7u8; 36].as_slice())?;
        }
        txn.commit()?;
        assert_ne!(heads(&store)?, expected(&changes[1..]));
        assert_eq!(store.check_changes()?, Vec::new());
        assert_eq!(heads(&store)?, expected(&changes[1..]));

        // A database of format 1, from before heads were kept apart, is upgraded as it opens.
        let txn = store.db.begin_write()?;
        txn.delete_table(CHANGE_HEADS)?;
        txn.open_table(super::super::META)?
            .insert("format", [1u8].as_slice())?;
        txn.commit()?;
        drop(store);
        let store = Store::open(&dir.path().join("db"), SymmetricKey::from_bytes([4; 32]))?;
        assert_eq!(heads(&store)?, expected(&changes[1..]));
        let txn = store.db.begin_read()?;
        let format = txn
            .open_table(super::super::META)?
            .get("format")?
            .map(|v| v.value().to_vec());
        assert_eq!(format, Some(vec![2]));
        Ok(())
    }

    #[test]
    fn a_change_with_flipped_bytes_is_reported_when_read_and_never_handed_out() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("db"), SymmetricKey::from_bytes([4; 32]))?;
        let author = DeviceSecret::from_seeds([1; 32], [2; 32]);
        let doc = DocId([1; 32]);
        let good = sealed(doc, 0, &author, b"good");
        let bad = sealed(doc, 1, &author, b"flipped");
        store.commit(&WriteBatch {
            changes: vec![(doc, good.clone()), (doc, bad.clone())],
            ..WriteBatch::default()
        })?;
        let txn = store.db.begin_write()?;
        {
            let mut table = txn.open_table(CHANGES)?;
            let mut bytes = bad.as_bytes().to_vec();
            bytes[100] ^= 0x40;
            table.insert(key(&doc, &bad.id()).as_slice(), bytes.as_slice())?;
        }
        txn.commit()?;
        let read = store.read_changes(&doc, &[good.id(), bad.id()])?;
        assert_eq!(read.changes, vec![good.clone()]);
        assert_eq!(read.damaged.len(), 1, "{:?}", read.damaged);
        assert_eq!(read.damaged[0].0, bad.id());
        assert!(
            read.damaged[0].1.contains("flipped bytes"),
            "{:?}",
            read.damaged
        );
        let sent = store.changes_by_id(&doc, &[good.id(), bad.id()])?;
        assert_eq!(sent, vec![good.as_bytes().to_vec()]);
        Ok(())
    }
}
