//! Documents read into automerge when first used. A library opens from snapshots
//! (`store::snapshots`); a document with no change after its snapshot is indexed from what the
//! snapshot read out of it, and its automerge document is built only when something reads or
//! writes it. Loading automerge is most of what opening a large library costs, in time and
//! memory, and most documents (library shards of past months) are not touched in a session.
//!
//! A snapshot that does not load when first used is left aside: the document is rebuilt from
//! its stored changes, as opening does without a usable snapshot, and indexed again from
//! them. One that cannot be rebuilt either leaves the open documents and is reported in
//! `damaged`, as at open.

use std::collections::HashSet;

use kith_protocol::keys::{DeviceId, DocId};
use kith_protocol::library::Document;
use rayon::prelude::*;

use super::State;
use super::load::Context;
use crate::error::{Error, Result};
use crate::store::DocRecord;

/// A document this node holds, with its key; its automerge document once loaded.
pub(crate) struct OpenDoc {
    pub record: DocRecord,
    doc: Slot,
}

enum Slot {
    Loaded(Box<Document>),
    /// Its snapshot's `save()`, and the base of its history when it started over.
    Saved {
        bytes: Vec<u8>,
        base: Option<[u8; 32]>,
    },
}

impl OpenDoc {
    pub fn new(record: DocRecord, doc: Document) -> OpenDoc {
        OpenDoc {
            record,
            doc: Slot::Loaded(Box::new(doc)),
        }
    }

    /// A document that loads from `bytes` (a snapshot's `save()`) when first used.
    pub fn saved(record: DocRecord, bytes: Vec<u8>, base: Option<[u8; 32]>) -> OpenDoc {
        OpenDoc {
            record,
            doc: Slot::Saved { bytes, base },
        }
    }

    /// The document, once loaded ([`State::load_docs`]).
    pub fn doc(&self) -> Option<&Document> {
        match &self.doc {
            Slot::Loaded(doc) => Some(doc),
            Slot::Saved { .. } => None,
        }
    }

    /// The document, once loaded ([`State::load_docs`]).
    pub fn doc_mut(&mut self) -> Option<&mut Document> {
        self.split_mut().1
    }

    /// Its record, and its document once loaded.
    pub fn split_mut(&mut self) -> (&mut DocRecord, Option<&mut Document>) {
        let doc = match &mut self.doc {
            Slot::Loaded(doc) => Some(doc.as_mut()),
            Slot::Saved { .. } => None,
        };
        (&mut self.record, doc)
    }

    /// Reads the document with `f`, loading a copy for the call when it is not loaded: for a
    /// pass over every document (a whole re-index, garbage collection) that should not keep
    /// them all loaded.
    pub fn read<R>(
        &self,
        me: &DeviceId,
        f: impl FnOnce(&Document) -> R,
    ) -> std::result::Result<R, String> {
        match &self.doc {
            Slot::Loaded(doc) => Ok(f(doc)),
            Slot::Saved { bytes, .. } => Document::from_snapshot(me, bytes, [])
                .map(|doc| f(&doc))
                .map_err(|e| format!("its snapshot does not load: {e}")),
        }
    }

    pub fn set_doc(&mut self, doc: Document) {
        self.doc = Slot::Loaded(Box::new(doc));
    }

    pub fn is_loaded(&self) -> bool {
        matches!(self.doc, Slot::Loaded(_))
    }
}

impl State {
    /// Loads those of `ids` not loaded yet, on every core.
    pub(crate) fn load_docs<'a>(&mut self, ids: impl IntoIterator<Item = &'a DocId>) {
        let wanted: HashSet<DocId> = (ids.into_iter())
            .filter(|id| self.docs.get(id).is_some_and(|open| !open.is_loaded()))
            .copied()
            .collect();
        if wanted.is_empty() {
            return;
        }
        let me = self.me;
        let failed: Vec<DocId> = (self.docs.iter_mut())
            .filter(|(id, _)| wanted.contains(id))
            .collect::<Vec<_>>()
            .into_par_iter()
            .filter_map(|(id, open)| {
                let Slot::Saved { bytes, base } = &open.doc else {
                    return None;
                };
                match Document::from_snapshot(&me, bytes, []) {
                    Ok(mut doc) => {
                        if let Some(base) = base {
                            doc.set_base(*base);
                        }
                        open.doc = Slot::Loaded(Box::new(doc));
                        None
                    }
                    Err(e) => {
                        tracing::warn!(doc = %id, "rebuilding the document from its changes, its snapshot does not load: {e}");
                        Some(*id)
                    }
                }
            })
            .collect();
        for id in failed {
            self.rebuild_doc(&id);
        }
    }

    /// Rebuilds a document whose snapshot did not load from its stored changes; one that
    /// does not load from them either leaves the open documents, reported in `damaged`.
    fn rebuild_doc(&mut self, id: &DocId) {
        let rebuilt = self.store.change_heads_of(id).and_then(|stored| {
            let Some(open) = self.docs.get(id) else {
                return Err(Error::Corrupt(format!("document {id} is not open")));
            };
            let context = Context {
                store: &self.store,
                family: &self.family,
                lineage: &self.lineage,
                me: self.me,
            };
            context.rebuild(id, &open.record, &stored)
        });
        match rebuilt {
            Ok((doc, damaged)) => {
                self.damaged.extend(damaged);
                self.snapshotted.remove(id);
                if let Some(open) = self.docs.get_mut(id) {
                    open.doc = Slot::Loaded(Box::new(doc));
                }
                // The index read the snapshot's readout; the changes are what counts.
                self.reindex_docs(&[*id]);
            }
            Err(e) => {
                tracing::error!(doc = %id, "document does not load: {e}");
                self.damaged.push(format!("document {id}: {e}"));
                self.docs.remove(id);
            }
        }
    }

    /// The document `id`, loaded if it was not; an error when it is not open (no key here,
    /// or it does not load).
    pub(crate) fn doc_mut(&mut self, id: &DocId) -> Result<&mut Document> {
        self.load_docs([id]);
        self.docs
            .get_mut(id)
            .and_then(OpenDoc::doc_mut)
            .ok_or_else(|| Error::Corrupt(format!("document {id} is not open")))
    }

    /// The open document `id` with its automerge document loaded, if it is open.
    pub(crate) fn loaded_mut(&mut self, id: &DocId) -> Option<(&mut DocRecord, &mut Document)> {
        self.load_docs([id]);
        let (record, doc) = self.docs.get_mut(id)?.split_mut();
        Some((record, doc?))
    }
}
