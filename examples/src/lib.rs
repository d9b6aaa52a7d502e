//! Library side of kith's runnable examples: helpers the benchmarks share.
//!
//! [`photos`] generates the tiny dated JPEGs the library benchmarks import;
//! [`transfer_anchors`] builds the photo set for the transfer benchmark and measures the two
//! anchors kith's figure is printed next to (a raw TCP copy and Syncthing, both on loopback).

pub mod photos;
pub mod transfer_anchors;

use std::path::PathBuf;
use std::sync::Arc;

use kith_node::views::ImportSummary;
use kith_node::{ImportRequest, Library};

/// Imports `paths` (files or folders) into `lib`, optionally into `album`, and waits for the
/// import to commit. The per-file events are dropped: the benchmarks only need the summary.
pub async fn import(
    lib: &Arc<Library>,
    paths: Vec<PathBuf>,
    album: Option<&str>,
) -> anyhow::Result<ImportSummary> {
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let request = ImportRequest {
        paths,
        album: album.map(str::to_owned),
    };
    let import = tokio::spawn({
        let lib = lib.clone();
        async move { lib.import(request, events).await }
    });
    while rx.recv().await.is_some() {}
    Ok(import.await??)
}
