//! The node's redb database: identity, membership ops, document keys, sealed changes (with
//! their heads apart, [`changes`]) and document snapshots ([`snapshots`]).
//!
//! **Invariant:** no key or value holds a plaintext date, name, title or photo byte. Ids are
//! random or keyed hashes; values are either sealed changes (encrypted by their document's key)
//! or records sealed with the device's storage key and bound to their table and key.

use std::path::Path;

use data_encoding::HEXLOWER;
use kith_protocol::keys::{DeviceId, DocId, FamilyId, PersonId, SymmetricKey};
use kith_protocol::library::DocKind;
use kith_protocol::membership::{Role, SignedOp};
use kith_protocol::record;
use kith_protocol::seal::{ChangeId, SealedChange};
use kith_protocol::ticket::InviteId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod changes;
mod snapshots;
pub use changes::{ChangeHead, ReadChanges};
pub use snapshots::{Readout, Snapshot, key_fingerprints};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const MEMBERSHIP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("membership");
const DOCS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("docs");
/// The database's own page cache (reads and the pages a commit writes).
const DB_CACHE_BYTES: usize = 16 << 20;
/// Key: invite id (16 bytes). Value: sealed [`InviteRecord`].
const INVITES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invites");
/// Key: device id. Value: sealed [`PeerRecord`].
const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");
/// Key: hash of an original's ciphertext this device set aside (`kith free-space`) because
/// another device holds it. Value: empty. Blob hashes are not secret (they name blob files).
const SET_ASIDE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("set_aside");

/// Key: photo id. Value: sealed [`Kept`]: a photo entry that left this device's documents other
/// than by the trash, kept restorable with its blobs for 30 days.
const KEPT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kept");

/// Version of this database's layout: 2 keeps the changes' heads apart (`changes`); a kith
/// that reads only 1 refuses it rather than write changes without their heads.
const DB_FORMAT: u8 = 2;

/// Who this device is in which family. Sealed at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub family: FamilyId,
    pub family_secret: [u8; 32],
    pub person: PersonId,
    pub device_name: String,
    /// Key of this person's library documents (epoch 0; rotation comes with sharing).
    pub library_key: [u8; 32],
    /// Id of the family's root membership op (`CreateFamily`); the log is evaluated from it.
    pub root_op: [u8; 32],
}

pub const DOC_RECORD_FORMAT: u8 = 3;

/// A document this node holds the key of, at every epoch it knows. Sealed at rest. What the
/// document is (library shard or album) is written in the document itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRecord {
    /// [`DOC_RECORD_FORMAT`]: the first byte, which tells this layout from [`DocRecordV1`]'s
    /// (whose first byte, a document kind, is 0 or 1).
    pub format: u8,
    /// The current epoch and its key: new changes are sealed with it.
    pub epoch: u32,
    pub key: [u8; 32],
    /// For library shards: the month (`YYYY-MM`, or `undated`) the shard holds.
    pub shard: Option<String>,
    /// Keys of earlier epochs, to open changes sealed before the last rotation.
    pub older: Vec<(u32, [u8; 32])>,
    /// Keys this device rotated to that the log did not keep, while the history it started
    /// over with them is one the log cancelled (`fresh_start::cancelled`): what it sealed
    /// there still opens after a restart, until it cuts that history again or follows another.
    pub cancelled: Vec<(u32, [u8; 32])>,
}

impl DocRecord {
    /// A record of a document created here at `epoch` with a fresh key.
    pub fn new(epoch: u32, key: [u8; 32], shard: Option<String>) -> DocRecord {
        DocRecord {
            format: DOC_RECORD_FORMAT,
            epoch,
            key,
            shard,
            older: Vec::new(),
            cancelled: Vec::new(),
        }
    }

    /// The key of `epoch`, if this record holds it.
    pub fn key_for(&self, epoch: u32) -> Option<[u8; 32]> {
        if epoch == self.epoch {
            return Some(self.key);
        }
        self.older
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, key)| *key)
    }

    /// The key of `epoch` that the log did not keep, if this record holds one.
    pub fn cancelled_key_for(&self, epoch: u32) -> Option<[u8; 32]> {
        (self.cancelled.iter())
            .find(|(e, _)| *e == epoch)
            .map(|(_, key)| *key)
    }

    /// Every key held, oldest epoch first.
    pub fn all_keys(&self) -> Vec<(u32, [u8; 32])> {
        let mut keys = self.older.clone();
        keys.push((self.epoch, self.key));
        keys.sort_by_key(|(e, _)| *e);
        keys.dedup_by_key(|(e, _)| *e);
        keys
    }
}

/// [`DocRecord`] as written before it kept the keys of cancelled histories (format 2); read,
/// never written.
#[derive(Deserialize)]
struct DocRecordV2 {
    format: u8,
    epoch: u32,
    key: [u8; 32],
    shard: Option<String>,
    older: Vec<(u32, [u8; 32])>,
}

impl From<DocRecordV2> for DocRecord {
    fn from(v2: DocRecordV2) -> Self {
        DocRecord {
            older: v2.older,
            ..DocRecord::new(v2.epoch, v2.key, v2.shard)
        }
    }
}

/// [`DocRecord`] as written before key epochs came through the membership log; read, never
/// written.
#[derive(Deserialize)]
struct DocRecordV1 {
    _kind: DocKind,
    epoch: u32,
    key: [u8; 32],
    shard: Option<String>,
}

impl From<DocRecordV1> for DocRecord {
    fn from(v1: DocRecordV1) -> Self {
        DocRecord::new(v1.epoch, v1.key, v1.shard)
    }
}

/// An invite this device issued. The secret stays here; only a proof of it crosses the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteRecord {
    pub secret: [u8; 32],
    pub role: Role,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: InviteState,
    /// Failed proofs so far; the invite is locked after a few.
    pub failures: u32,
    /// The existing person the invite adds a device to; `None` for a new person.
    pub person: Option<PersonId>,
}

/// [`InviteRecord`] as written before invites could name a person; read, never written.
#[derive(Deserialize)]
struct InviteRecordV1 {
    secret: [u8; 32],
    role: Role,
    created_at_ms: u64,
    expires_at_ms: u64,
    state: InviteState,
    failures: u32,
}

impl From<InviteRecordV1> for InviteRecord {
    fn from(v1: InviteRecordV1) -> Self {
        InviteRecord {
            secret: v1.secret,
            role: v1.role,
            created_at_ms: v1.created_at_ms,
            expires_at_ms: v1.expires_at_ms,
            state: v1.state,
            failures: v1.failures,
            person: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InviteState {
    Pending,
    /// Used by this device, at this time: it confirmed it recorded its welcome.
    Used {
        device: DeviceId,
        at_ms: u64,
    },
    Cancelled {
        at_ms: u64,
    },
    // New variants go at the end: postcard encodes the variant index.
    /// This device proved the ticket and is in the log, but has not confirmed yet: it may ask
    /// again (its answer was lost); no other device may use the invite.
    Admitted {
        device: DeviceId,
        at_ms: u64,
    },
}

/// What this device knows of another family device: where it was last reachable, and when.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerRecord {
    pub addrs: Vec<String>,
    pub last_seen_ms: u64,
}

/// Everything read back when a node opens.
pub struct Loaded {
    pub identity: Identity,
    pub ops: Vec<SignedOp>,
    pub docs: Vec<(DocId, DocRecord)>,
    pub changes: Vec<(DocId, SealedChange)>,
    /// Changes that failed their checks and were left out.
    pub damaged: Vec<String>,
}

/// The records a node opens with (see [`Store::load_records`]).
pub struct Records {
    pub identity: Identity,
    pub ops: Vec<SignedOp>,
    pub docs: Vec<(DocId, DocRecord)>,
    /// Ops and records that failed their checks and were left out.
    pub damaged: Vec<String>,
}

/// What one transaction writes. Committed atomically and durably before anything is reported.
#[derive(Default)]
pub struct WriteBatch {
    pub identity: Option<Identity>,
    pub ops: Vec<SignedOp>,
    pub docs: Vec<(DocId, DocRecord)>,
    pub changes: Vec<(DocId, SealedChange)>,
    pub invites: Vec<(InviteId, InviteRecord)>,
    pub peers: Vec<(DeviceId, PeerRecord)>,
    /// Listen address as asked (port 0) → as bound, so a node keeps its ports across restarts.
    pub listen_ports: Option<Vec<(String, String)>>,
    /// Originals set aside here, and originals held here again.
    pub set_aside: Vec<[u8; 32]>,
    pub brought_back: Vec<[u8; 32]>,
    /// Changes this device sealed under a key that lost a rotation race, written again under
    /// the winning key in the same batch: the old copies nobody else can open go.
    pub superseded: Vec<(DocId, ChangeId)>,
    /// Entries kept restorable, and entries no longer kept (restored or expired).
    pub kept: Vec<Kept>,
    pub unkept: Vec<kith_protocol::keys::PhotoId>,
}

/// A photo entry that left the documents other than by a purge of the trash (a change deleted
/// or replaced it, or a removed device purged it): kept with its blobs, restorable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub entry: kith_protocol::library::PhotoEntry,
    /// The library shard it left, when it left one: where a restore puts it back.
    pub doc: Option<DocId>,
    /// When this device noticed (its own clock): the 30 days count from here.
    pub kept_at_ms: u64,
    /// The device whose change removed it, when known.
    pub removed_by: Option<DeviceId>,
}

/// Network bookkeeping, read when the swarm starts.
#[derive(Default)]
pub struct NetworkRecords {
    pub invites: Vec<(InviteId, InviteRecord)>,
    pub peers: Vec<(DeviceId, PeerRecord)>,
    pub listen_ports: Vec<(String, String)>,
}

pub struct Store {
    db: Database,
    storage_key: SymmetricKey,
}

fn nonce() -> [u8; 24] {
    rand::random()
}

impl Store {
    /// Opens (or creates) the database. Fails with [`Error::Locked`] when another process has it.
    pub fn open(path: &Path, storage_key: SymmetricKey) -> Result<Store> {
        // redb caches up to 1 GiB of pages by default: a large library read at open would stay
        // resident. The OS page cache holds the file anyway.
        let db = Database::builder()
            .set_cache_size(DB_CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    Error::Locked(path.parent().unwrap_or(path).to_path_buf())
                }
                other => Error::Db(format!("{}: {other}", path.display())),
            })?;
        // Only a new database is written to on open, and one of an older format upgraded (in
        // one transaction): opening must not otherwise change an existing one.
        let format = {
            let txn = db.begin_read()?;
            match txn.open_table(META) {
                Ok(meta) => meta.get("format")?.map(|v| v.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        match format.as_deref() {
            None => {
                let txn = db.begin_write()?;
                {
                    txn.open_table(META)?
                        .insert("format", [DB_FORMAT].as_slice())?;
                    txn.open_table(MEMBERSHIP)?;
                    txn.open_table(DOCS)?;
                    Store::create_change_tables(&txn)?;
                }
                txn.commit()?;
            }
            Some([DB_FORMAT]) => {}
            Some([1]) => changes::upgrade_to_heads(&db, DB_FORMAT)?,
            Some(other) => {
                return Err(Error::Corrupt(format!(
                    "{} has database format {other:?}, this kith reads {DB_FORMAT}; use a newer kith",
                    path.display()
                )));
            }
        }
        Ok(Store { db, storage_key })
    }

    fn seal<T: Serialize>(&self, context: &[u8], value: &T) -> Result<Vec<u8>> {
        let plain = postcard::to_allocvec(value).map_err(|e| Error::Db(e.to_string()))?;
        Ok(record::seal_record(
            &self.storage_key,
            context,
            nonce(),
            &plain,
        ))
    }

    /// A [`DocRecord`] in any format written so far. postcard ignores trailing bytes, so the
    /// format byte, not a failed decode, tells the layouts apart.
    fn open_doc_record(&self, ctx: &[u8], sealed: &[u8]) -> Result<DocRecord> {
        let current = self.open_sealed::<DocRecord>(ctx, sealed);
        if let Ok(record) = &current
            && record.format == DOC_RECORD_FORMAT
        {
            return current;
        }
        if let Ok(v2) = self.open_sealed::<DocRecordV2>(ctx, sealed)
            && v2.format == 2
        {
            return Ok(v2.into());
        }
        match self.open_sealed::<DocRecordV1>(ctx, sealed) {
            Ok(v1) => Ok(v1.into()),
            Err(e) => Err(current.err().unwrap_or(e)),
        }
    }

    fn open_sealed<T: for<'a> Deserialize<'a>>(&self, context: &[u8], sealed: &[u8]) -> Result<T> {
        let plain = record::open_record(&self.storage_key, context, sealed).map_err(|e| {
            Error::Corrupt(format!(
                "record {} cannot be opened ({e})",
                readable_context(context)
            ))
        })?;
        postcard::from_bytes(&plain)
            .map_err(|e| Error::Corrupt(format!("record {}: {e}", readable_context(context))))
    }

    /// Whether the database at `path` holds an identity, read without writing to the file.
    pub fn peek_has_identity(path: &Path) -> Result<bool> {
        let db = redb::ReadOnlyDatabase::open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                Error::Locked(path.parent().unwrap_or(path).to_path_buf())
            }
            other => Error::Db(format!("{}: {other}", path.display())),
        })?;
        let txn = db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(meta.get("identity")?.is_some())
    }

    /// Reads everything stored but documents' snapshots: the whole log, records and changes.
    pub fn load(&self, data_dir: &Path) -> Result<Loaded> {
        let txn = self.db.begin_read()?;
        let mut meta = self.load_meta(&txn, data_dir)?;
        let changes = self.all_changes(&txn, &mut meta.damaged)?;
        Ok(Loaded {
            identity: meta.identity,
            ops: meta.ops,
            docs: meta.docs,
            changes,
            damaged: meta.damaged,
        })
    }

    /// What a node opens with beside changes and snapshots: identity, the log, records.
    pub fn load_records(&self, data_dir: &Path) -> Result<Records> {
        let txn = self.db.begin_read()?;
        self.load_meta(&txn, data_dir)
    }

    fn load_meta(&self, txn: &redb::ReadTransaction, data_dir: &Path) -> Result<Records> {
        let meta = txn.open_table(META)?;
        let identity = match meta.get("identity")? {
            Some(v) => self.open_sealed(b"meta/identity", v.value())?,
            None => return Err(Error::NotInitialised(data_dir.to_path_buf())),
        };
        let mut damaged = Vec::new();
        let mut ops = Vec::new();
        for row in txn.open_table(MEMBERSHIP)?.iter()? {
            let (k, v) = row?;
            let ctx = [b"membership/".as_slice(), k.value()].concat();
            let op = self
                .open_sealed::<Vec<u8>>(&ctx, v.value())
                .and_then(|bytes| {
                    SignedOp::from_bytes(&bytes)
                        .map_err(|e| Error::Corrupt(format!("membership op: {e}")))
                });
            match op {
                Ok(op) => ops.push(op),
                Err(e) => damaged.push(e.to_string()),
            }
        }
        let mut docs = Vec::new();
        for row in txn.open_table(DOCS)?.iter()? {
            let (k, v) = row?;
            let ctx = [b"docs/".as_slice(), k.value()].concat();
            let record = self.open_doc_record(&ctx, v.value());
            match doc_id(k.value()).and_then(|id| Ok((id, record?))) {
                Ok(doc) => docs.push(doc),
                Err(e) => damaged.push(e.to_string()),
            }
        }
        Ok(Records {
            identity,
            ops,
            docs,
            damaged,
        })
    }

    /// Writes a batch in one durable transaction.
    pub fn commit(&self, batch: &WriteBatch) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            if let Some(identity) = &batch.identity {
                let mut meta = txn.open_table(META)?;
                let sealed = self.seal(b"meta/identity", identity)?;
                meta.insert("identity", sealed.as_slice())?;
            }
            let mut membership = txn.open_table(MEMBERSHIP)?;
            for op in &batch.ops {
                let id = op.id();
                let ctx = [b"membership/".as_slice(), id.0.as_slice()].concat();
                let sealed = self.seal(&ctx, &op.to_bytes())?;
                membership.insert(id.0.as_slice(), sealed.as_slice())?;
            }
            let mut docs = txn.open_table(DOCS)?;
            for (id, rec) in &batch.docs {
                let ctx = [b"docs/".as_slice(), id.0.as_slice()].concat();
                let sealed = self.seal(&ctx, rec)?;
                docs.insert(id.0.as_slice(), sealed.as_slice())?;
            }
            Store::write_changes(&txn, &batch.changes, &batch.superseded)?;
            if !batch.superseded.is_empty() {
                // A snapshot holding a change that goes is not used again: it goes too.
                let mut table = txn.open_table(snapshots::SNAPSHOTS)?;
                for (doc, _) in &batch.superseded {
                    table.remove(doc.0.as_slice())?;
                }
            }
            if !batch.invites.is_empty() {
                let mut invites = txn.open_table(INVITES)?;
                for (id, rec) in &batch.invites {
                    let ctx = [b"invites/".as_slice(), id.0.as_slice()].concat();
                    invites.insert(id.0.as_slice(), self.seal(&ctx, rec)?.as_slice())?;
                }
            }
            if !batch.peers.is_empty() {
                let mut peers = txn.open_table(PEERS)?;
                for (id, rec) in &batch.peers {
                    let ctx = [b"peers/".as_slice(), id.0.as_slice()].concat();
                    peers.insert(id.0.as_slice(), self.seal(&ctx, rec)?.as_slice())?;
                }
            }
            if let Some(ports) = &batch.listen_ports {
                let sealed = self.seal(b"meta/listen_ports", ports)?;
                txn.open_table(META)?
                    .insert("listen_ports", sealed.as_slice())?;
            }
            if !batch.kept.is_empty() || !batch.unkept.is_empty() {
                let mut table = txn.open_table(KEPT)?;
                for kept in &batch.kept {
                    let id = kept.entry.id.0;
                    let ctx = [b"kept/".as_slice(), id.as_slice()].concat();
                    table.insert(id.as_slice(), self.seal(&ctx, kept)?.as_slice())?;
                }
                for id in &batch.unkept {
                    table.remove(id.0.as_slice())?;
                }
            }
            if !batch.set_aside.is_empty() || !batch.brought_back.is_empty() {
                let mut table = txn.open_table(SET_ASIDE)?;
                for hash in &batch.set_aside {
                    table.insert(hash.as_slice(), [].as_slice())?;
                }
                for hash in &batch.brought_back {
                    table.remove(hash.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Entries kept restorable; one that does not open is reported in `damaged` and left out.
    pub fn load_kept(&self, damaged: &mut Vec<String>) -> Result<Vec<Kept>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(KEPT) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let ctx = [b"kept/".as_slice(), k.value()].concat();
            match self.open_sealed::<Kept>(&ctx, v.value()) {
                Ok(kept) => out.push(kept),
                Err(e) => damaged.push(format!("a kept photo entry: {e}")),
            }
        }
        Ok(out)
    }

    /// Originals this device set aside.
    pub fn load_set_aside(&self) -> Result<std::collections::HashSet<[u8; 32]>> {
        let txn = self.db.begin_read()?;
        let mut out = std::collections::HashSet::new();
        match txn.open_table(SET_ASIDE) {
            Ok(table) => {
                for row in table.iter()? {
                    let (k, _) = row?;
                    let hash = <[u8; 32]>::try_from(k.value()).map_err(|_| {
                        Error::Corrupt(
                            "a set-aside blob hash in the database is not 32 bytes".into(),
                        )
                    })?;
                    out.insert(hash);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(out)
    }

    /// Invites this device issued, and the devices it has met.
    pub fn load_network(&self) -> Result<NetworkRecords> {
        let txn = self.db.begin_read()?;
        let mut out = NetworkRecords::default();
        match txn.open_table(INVITES) {
            Ok(table) => {
                for row in table.iter()? {
                    let (k, v) = row?;
                    let id = InviteId(<[u8; 16]>::try_from(k.value()).map_err(|_| {
                        Error::Corrupt("an invite id in the database is not 16 bytes".into())
                    })?);
                    let ctx = [b"invites/".as_slice(), k.value()].concat();
                    let record = match self.open_sealed::<InviteRecord>(&ctx, v.value()) {
                        Ok(record) => record,
                        Err(e) => match self
                            .open_sealed::<InviteRecordV1>(&ctx, v.value())
                            .map(InviteRecord::from)
                        {
                            Ok(record) => record,
                            // A damaged invite only means that invite no longer works: the
                            // node still starts.
                            Err(_) => {
                                tracing::error!(invite = %HEXLOWER.encode(k.value()), "left out: {e}");
                                continue;
                            }
                        },
                    };
                    out.invites.push((id, record));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match txn.open_table(PEERS) {
            Ok(table) => {
                for row in table.iter()? {
                    let (k, v) = row?;
                    let id = DeviceId(<[u8; 32]>::try_from(k.value()).map_err(|_| {
                        Error::Corrupt("a peer id in the database is not 32 bytes".into())
                    })?);
                    let ctx = [b"peers/".as_slice(), k.value()].concat();
                    // Where a device was last seen is a hint: a damaged one is left out.
                    match self.open_sealed(&ctx, v.value()) {
                        Ok(peer) => out.peers.push((id, peer)),
                        Err(e) => tracing::error!(peer = %id, "left out: {e}"),
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let meta = txn.open_table(META)?;
        if let Some(v) = meta.get("listen_ports")? {
            match self.open_sealed(b"meta/listen_ports", v.value()) {
                Ok(ports) => out.listen_ports = ports,
                Err(e) => tracing::error!("the last listen ports are left out: {e}"),
            }
        }
        Ok(out)
    }
}

/// A record's context (`table/` then a binary id) as text: the table, then the id in hex.
fn readable_context(context: &[u8]) -> String {
    match context.iter().position(|&b| b == b'/') {
        Some(slash) if !context[slash + 1..].iter().all(u8::is_ascii_graphic) => format!(
            "{}{}",
            String::from_utf8_lossy(&context[..=slash]),
            HEXLOWER.encode(&context[slash + 1..])
        ),
        _ => String::from_utf8_lossy(context).into_owned(),
    }
}

fn doc_id(bytes: &[u8]) -> Result<DocId> {
    <[u8; 32]>::try_from(bytes)
        .map(DocId)
        .map_err(|_| Error::Corrupt("a document id in the database is not 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record in format 2, as an earlier kith wrote it.
    #[derive(Serialize)]
    struct WrittenV2 {
        format: u8,
        epoch: u32,
        key: [u8; 32],
        shard: Option<String>,
        older: Vec<(u32, [u8; 32])>,
    }

    #[test]
    fn doc_records_of_every_format_read_back() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Db(e.to_string()))?;
        let store = Store::open(&dir.path().join("db"), SymmetricKey::from_bytes([9; 32]))?;
        let ctx = b"docs/x";
        let current = DocRecord {
            older: vec![(1, [1; 32])],
            cancelled: vec![(2, [3; 32])],
            ..DocRecord::new(2, [2; 32], Some("2024-05".into()))
        };
        let read = store.open_doc_record(ctx, &store.seal(ctx, &current)?)?;
        assert_eq!(read, current);

        let v2 = WrittenV2 {
            format: 2,
            epoch: 2,
            key: [2; 32],
            shard: None,
            older: vec![(1, [1; 32])],
        };
        let read = store.open_doc_record(ctx, &store.seal(ctx, &v2)?)?;
        assert_eq!(
            (read.epoch, read.key, read.older),
            (2, [2; 32], vec![(1, [1; 32])])
        );
        assert!(read.cancelled.is_empty());
        assert_eq!(read.format, DOC_RECORD_FORMAT);

        let v1 = (DocKind::Album, 1u32, [4u8; 32], Option::<String>::None);
        let read = store.open_doc_record(ctx, &store.seal(ctx, &v1)?)?;
        assert_eq!((read.epoch, read.key), (1, [4; 32]));
        Ok(())
    }
}
