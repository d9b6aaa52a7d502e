//! Documents made before kinds were declared in the membership log.
//!
//! A document's kind comes from the log (`DeclareDoc`), which every device writes in the
//! commit that creates a document. A document made before that has no declaration and counts
//! as an album everywhere, as the log's rules say; its own `kind` field is never read, because
//! any writer could set it. So that a library made back then shows as a library again, its
//! person's devices declare its shards, here. A shard's id is derived from the person's library
//! key and the month it holds (`library::shard_doc_id`). Only that person's devices hold the
//! key, so the id itself proves what the document is, and no field is trusted.

use std::collections::BTreeSet;

use kith_protocol::keys::DocId;
use kith_protocol::library::DocKind;
use kith_protocol::membership::OpBody;

use crate::doc_keys::OpChain;
use crate::error::Result;
use crate::library::{Library, OpenDoc, State, shard_doc_id, shard_of};

impl Library {
    /// Declares, in one commit, those of `docs` that the log has not declared and that are
    /// this person's library shards. Returns the documents declared, for the caller to
    /// re-index. Costs nothing for a document already declared, which every document made
    /// since kinds are declared is.
    pub(crate) fn declare_own_shards(
        &self,
        state: &mut State,
        docs: &[DocId],
    ) -> Result<Vec<DocId>> {
        let library_key = state.identity.library_key;
        let undeclared: Vec<DocId> = (docs.iter())
            .filter(|id| state.family.doc_kind(id).is_none())
            .copied()
            .collect();
        state.load_docs(&undeclared);
        let shards: Vec<DocId> = undeclared
            .iter()
            .filter(|id| {
                state
                    .docs
                    .get(id)
                    .is_some_and(|open| is_shard_of(&library_key, id, open))
            })
            .copied()
            .collect();
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut chain = OpChain::new(state);
        let mut declared = Vec::new();
        for doc in shards {
            let body = OpBody::DeclareDoc {
                doc,
                kind: DocKind::Library,
            };
            if chain.push(&self.device, body)? {
                declared.push(doc);
            } else {
                // Someone else named the document first: it stays what the log says.
                tracing::warn!(%doc, "a library shard of this person was not declared: the log does not let this device declare it");
            }
        }
        if chain.fresh.is_empty() {
            return Ok(declared);
        }
        chain.commit_alone(self, state)?;
        tracing::info!(
            shards = declared.len(),
            "declared this person's library shards made before kinds were declared"
        );
        Ok(declared)
    }

    /// At open: declares this person's undeclared library shards and re-indexes them.
    pub(crate) fn declare_legacy_shards(&self, state: &mut State) -> Result<()> {
        let docs: Vec<DocId> = state.docs.keys().copied().collect();
        let declared = self.declare_own_shards(state, &docs)?;
        if !declared.is_empty() {
            state.reindex_docs(&declared);
        }
        Ok(())
    }
}

/// Whether `doc` is the shard of one of the months it could hold under `library_key`: the
/// month its record names, `undated`, or the month of any of its entries (a device of the
/// same person that received the shard has no month in its record).
fn is_shard_of(library_key: &[u8; 32], doc: &DocId, open: &OpenDoc) -> bool {
    let mut months: BTreeSet<String> = open.record.shard.iter().cloned().collect();
    months.insert("undated".to_owned());
    if months.iter().any(|m| shard_doc_id(library_key, m) == *doc) {
        return true;
    }
    let Some(Ok(entries)) = open.doc().map(|doc| doc.photos()) else {
        return false;
    };
    entries
        .iter()
        .map(shard_of)
        .collect::<BTreeSet<String>>()
        .iter()
        .any(|m| shard_doc_id(library_key, m) == *doc)
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::datadir::DataDir;
    use crate::import::ImportRequest;

    /// A small JPEG with no EXIF: it goes to the `undated` shard.
    fn jpeg(shade: u8) -> Vec<u8> {
        let pixels: Vec<u8> = (0..16 * 16).flat_map(|i| [shade, i as u8, 90]).collect();
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 90)
            .encode(&pixels, 16, 16, jpeg_encoder::ColorType::Rgb)
            .map(|()| bytes)
            .unwrap_or_else(|e| panic!("cannot encode the test JPEG: {e}"))
    }

    /// Forgets what the log declared of `docs`, in memory only: the state of a library whose
    /// documents were made before kinds were declared.
    fn forget_kinds(state: &mut State, docs: &[DocId]) {
        for doc in docs {
            if let Some(sharing) = state.family.docs.get_mut(doc) {
                sharing.kind = None;
            }
        }
    }

    #[tokio::test]
    async fn an_undeclared_document_is_an_album_until_its_person_declares_their_shards()
    -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let dir = DataDir::new(home.path().join("ana"));
        Library::init(&dir, "Ana", "laptop").await?;
        let photo = home.path().join("one.jpg");
        std::fs::write(&photo, jpeg(10))?;
        let (shard, album) = {
            let lib = Library::open(&dir).await?;
            let request = ImportRequest {
                paths: vec![photo],
                album: Some("Trip".into()),
            };
            let summary = lib.import(request, mpsc::unbounded_channel().0).await?;
            anyhow::ensure!(summary.imported == 1, "import: {summary:?}");
            let mut state = lib.state.lock().await;
            let shard = shard_doc_id(&state.identity.library_key, "undated");
            let album = state.find_album("Trip")?;
            anyhow::ensure!(state.family.doc_kind(&shard) == Some(DocKind::Library));
            anyhow::ensure!(
                state.library_of.values().all(|d| *d == shard) && state.library_of.len() == 1,
                "the photo is in the library shard"
            );

            // Made before kinds were declared: the shard's own field still says `library`,
            // which must not count.
            forget_kinds(&mut state, &[shard, album]);
            anyhow::ensure!(state.doc_mut(&shard)?.kind() == Some(DocKind::Library));
            state.reindex_docs(&[shard, album]);
            anyhow::ensure!(
                state.library_of.is_empty(),
                "an undeclared document whose field says `library` was indexed as a library"
            );
            anyhow::ensure!(
                state.albums.contains_key(&shard),
                "an undeclared document counts as an album"
            );

            // What opening does: the person's shard is declared, the album is not.
            let ops_before = state.ops.len();
            lib.declare_legacy_shards(&mut state)?;
            let declared: Vec<&OpBody> = state.ops[ops_before..]
                .iter()
                .map(|op| &op.op().body)
                .collect();
            anyhow::ensure!(
                declared
                    == [&OpBody::DeclareDoc {
                        doc: shard,
                        kind: DocKind::Library
                    }],
                "declared {declared:?}"
            );
            anyhow::ensure!(state.family.doc_kind(&shard) == Some(DocKind::Library));
            anyhow::ensure!(
                state.library_of.values().all(|d| *d == shard) && state.library_of.len() == 1,
                "the photo is back in the library shard"
            );
            anyhow::ensure!(!state.albums.contains_key(&shard));
            drop(state);
            lib.close().await;
            (shard, album)
        };
        // The declaration was committed: it is in the log when the library opens again.
        let lib = Library::open(&dir).await?;
        let state = lib.state.lock().await;
        anyhow::ensure!(state.family.doc_kind(&shard) == Some(DocKind::Library));
        anyhow::ensure!(state.family.doc_kind(&album) == Some(DocKind::Album));
        anyhow::ensure!(state.library_of.len() == 1);
        Ok(())
    }

    #[test]
    fn another_persons_shard_is_not_this_persons() {
        let open = OpenDoc::new(
            crate::store::DocRecord::new(1, [0; 32], Some("2024-05".into())),
            kith_protocol::library::Document::new(&kith_protocol::keys::DeviceId([1; 32])),
        );
        let mine = [7; 32];
        let theirs = [8; 32];
        let doc = shard_doc_id(&theirs, "2024-05");
        assert!(is_shard_of(&theirs, &doc, &open));
        assert!(!is_shard_of(&mine, &doc, &open));
        assert!(is_shard_of(&mine, &shard_doc_id(&mine, "undated"), &open));
    }
}
