//! kith's pure core: identities and keys, encrypted blob and record formats, sealed changes,
//! the membership log and the library schema over automerge.
//!
//! # Layout
//! - [`keys`]: device identity (ed25519 + X25519), symmetric keys, ids, key derivation labels.
//! - [`blob`]: chunked XChaCha20-Poly1305 encryption of photo renditions (originals, previews,
//!   thumbnails), padded to size buckets.
//! - [`record`]: small encrypted records a node keeps at rest (sealed with the device's storage key).
//! - [`envelope`]: document keys wrapped to one device's X25519 key, and the history of a
//!   document's earlier keys sealed under its newest one.
//! - [`seal`]: sealed changes, the signed and encrypted unit of document replication.
//! - [`membership`]: the signed operations of the family's membership log and their evaluation.
//! - [`library`]: the photo and album schema stored in automerge documents.
//! - [`names`]: the rule for person and device names (never like an id) and escaping text to print.
//!
//! **Invariant:** nothing here does I/O. Time and randomness come in as arguments, so every rule
//! is deterministic and testable without a disk or a network.

pub mod blob;
pub mod envelope;
pub mod keys;
pub mod library;
pub mod membership;
pub mod names;
pub mod padding;
pub mod record;
pub mod seal;
pub mod ticket;
pub mod wire;
