//! kith-node: the kith daemon and CLI as a library.
//!
//! # Layout
//! - [`datadir`]: where a node keeps its files; the device key file.
//! - [`store`]: the redb database (identity, membership ops, document keys, sealed changes).
//! - [`blobs`]: the iroh-blobs store of encrypted renditions.
//! - [`media`]: decoding, EXIF, thumbnails and previews (pure: bytes in, results out).
//! - [`library`]: an opened data dir and its in-memory index; album and photo operations.
//! - [`edit`]: captions, favourites, tags and the trash.
//! - [`purge`]: the trash emptied (after 30 days, or on demand) and purged photos' blobs deleted.
//! - [`import`] and [`export`]: photos in and out.
//! - [`api`] and [`client`]: the local HTTP API and the client that picks it or the data dir.
//! - [`daemon`]: `kith run`.
//! - [`views`]: the shapes printed by the CLI and returned by the API.

pub mod adopt;
pub mod api;
pub mod blobs;
pub mod client;
pub mod daemon;
pub mod datadir;
pub mod doc_keys;
pub mod edit;
pub mod error;
pub mod export;
pub mod free_space;
pub mod fresh_start;
pub mod import;
pub mod index;
pub mod invites;
pub mod keep;
pub mod legacy_kinds;
pub mod library;
pub mod media;
pub mod net;
pub mod people;
pub mod purge;
pub mod qr;
pub mod replica;
pub mod sharing;
pub mod store;
pub mod views;
pub mod vouch;

pub use client::Backend;
pub use datadir::DataDir;
pub use error::{Error, Result};
pub use export::ExportRequest;
pub use import::ImportRequest;
pub use library::Library;
