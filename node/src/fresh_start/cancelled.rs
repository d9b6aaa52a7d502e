//! A fresh start the log cancelled. Two admins acting on one album while apart can both rotate
//! its key to the same epoch; the log keeps one rotation, and a `FreshStart` made with the
//! other is not applied. Its author has already moved to the new history (and deleted the old
//! one), and so may a device that followed it before it learned of the other rotation: their
//! open history is *orphaned*. Nothing of it is ever sealed again into the history the family
//! stayed on, and nothing of that history is applied to it. While nobody has rotated since, the
//! author is the device responsible for the next rotation and makes it a new cut of the same
//! history ([`Library::cut_again`]); every other device then follows as it follows any fresh
//! start, an orphaned one carrying over all it wrote.

use std::collections::HashSet;

use kith_protocol::keys::{DeviceId, DocId, SymmetricKey};
use kith_protocol::membership::{FamilyState, OpBody, SignedOp};
use kith_protocol::seal::{self, ChangeHeader, ChangeId, SealedChange};

use super::Started;
use crate::doc_keys::OpChain;
use crate::error::{Error, Result};
use crate::library::{Library, State};
use crate::store::DocRecord;

/// This device's own cut of a document that the log cancelled, to be made again.
pub(crate) struct CancelledCut {
    /// The clock of the history it was cut from.
    pub clock: Vec<(DeviceId, u64)>,
}

impl State {
    /// Whether the open history of `doc` started with a fresh start the log did not apply (see
    /// the module docs): changes wait, and its author cuts it again or it follows another cut.
    pub(crate) fn is_orphaned(&self, doc: &DocId) -> bool {
        !self.family.was_cut_at(doc, self.lineage_of(doc)) || self.lost_to_kept_cut(doc)
    }

    /// Whether the open history of `doc` is this device's cut at the epoch of the log's
    /// newest fresh start, with another base: two cuts at one epoch (two admins sharing while
    /// apart), and the log kept the other one, which this device follows.
    pub(crate) fn lost_to_kept_cut(&self, doc: &DocId) -> bool {
        self.family.fresh_start(doc).is_some_and(|f| {
            f.epoch == self.lineage_of(doc) && self.lineage_base(doc).is_some_and(|b| b != f.base)
        })
    }

    /// The device whose fresh start of `doc` at its current epoch the log cancelled (a cut
    /// that counts, see [`cuts_in_log`]). It makes the next rotation: another device rotating
    /// meanwhile would race it again.
    pub(crate) fn pending_cut_by(&self, doc: &DocId) -> Option<DeviceId> {
        let current = self.family.current_epoch(doc);
        if current == 0 || self.family.was_cut_at(doc, current) {
            return None;
        }
        (cuts_in_log(&self.ops, &self.family).into_iter())
            .filter(|c| c.doc == *doc && c.epoch == current)
            .map(|c| c.author)
            .min()
    }

    /// This device's cut of `doc` to make again: its open history is orphaned, starts at the
    /// document's current epoch (nobody rotated since the rotation that won), and it may
    /// rotate the document.
    pub(crate) fn cut_to_make_again(&self, me: &DeviceId, doc: &DocId) -> Option<CancelledCut> {
        let lineage = self.lineage_of(doc);
        // When the rotation that won is itself a cut, this device follows it instead.
        if !self.is_orphaned(doc)
            || self.family.was_cut_at(doc, lineage)
            || lineage != self.family.current_epoch(doc)
            || !self.family.may_rotate_doc(doc, me)
        {
            return None;
        }
        (cuts_in_log(&self.ops, &self.family).into_iter())
            .find(|c| c.doc == *doc && c.epoch == lineage && c.author == *me)
            .map(|c| CancelledCut {
                clock: c.clock.to_vec(),
            })
    }
}

/// A `FreshStart` op of the log that counts as a cut of its document.
pub(crate) struct Cut<'a> {
    pub author: DeviceId,
    pub doc: DocId,
    pub epoch: u32,
    pub base: ChangeId,
    pub clock: &'a [(DeviceId, u64)],
}

/// The `FreshStart` ops of `ops` that count as cuts: those the log applied, and those the log
/// cancelled whose author may rotate the document and signed the rotation to that epoch
/// without earlier keys (the one that lost a race). Any other such op, which any device
/// could post, counts for nothing: it makes nobody responsible and no history orphaned.
pub(crate) fn cuts_in_log<'a>(ops: &'a [SignedOp], family: &FamilyState) -> Vec<Cut<'a>> {
    let bare_rotations: HashSet<(DocId, u32, DeviceId)> = (ops.iter())
        .filter_map(|op| match &op.op().body {
            OpBody::RotateKey {
                doc,
                epoch,
                history: None,
                ..
            } => Some((*doc, *epoch, op.op().author)),
            _ => None,
        })
        .collect();
    (ops.iter())
        .filter_map(|op| {
            let author = op.op().author;
            match &op.op().body {
                OpBody::FreshStart {
                    doc,
                    epoch,
                    base,
                    clock,
                } if family.was_cut_at(doc, *epoch)
                    || (bare_rotations.contains(&(*doc, *epoch, author))
                        && family.may_rotate_doc(doc, &author)) =>
                {
                    Some(Cut {
                        author,
                        doc: *doc,
                        epoch: *epoch,
                        base: *base,
                        clock,
                    })
                }
                _ => None,
            }
        })
        .collect()
}

impl Library {
    /// Cuts `doc`'s history over again when the fresh start this device made was cancelled
    /// (its rotation lost a race with another device's, two admins acting while apart): the
    /// same base and the changes this device wrote on top of it, sealed again under `record`'s
    /// key (just rotated to, with no earlier keys), and a new `FreshStart` naming them with the
    /// clock of the old history the first cut was made from. The document stays as it is;
    /// others follow as they follow any fresh start.
    pub(crate) fn cut_again(
        &self,
        state: &mut State,
        chain: &mut OpChain,
        doc: &DocId,
        record: &DocRecord,
        cut: &CancelledCut,
    ) -> Result<Started> {
        let me = self.device_id();
        let retired = state.change_ids_of(doc);
        let Some((_, open)) = state.loaded_mut(doc) else {
            return Err(Error::Invalid(format!("document {doc} is not open here")));
        };
        let mine = open.sealed_changes_of(&me);
        if mine.first().is_none_or(|base| !base.deps().is_empty()) {
            return Err(Error::Corrupt(format!(
                "document {doc} does not start with the base this device cut"
            )));
        }
        let key = SymmetricKey::from_bytes(record.key);
        let header = ChangeHeader {
            doc: *doc,
            epoch: record.epoch,
            author: me,
        };
        let changes: Vec<SealedChange> = (mine.iter())
            .map(|c| seal::seal_change(&key, &header, rand::random(), c.raw_bytes(), &self.device))
            .collect();
        let body = OpBody::FreshStart {
            doc: *doc,
            epoch: record.epoch,
            base: changes[0].id(),
            clock: cut.clock.clone(),
        };
        if !chain.push(&self.device, body)? {
            return Err(Error::NotAllowed(format!(
                "the log does not let this device start {} over again",
                state.doc_name(doc)
            )));
        }
        tracing::warn!(%doc, "the new history of {} lost a key rotation race; cut it again at epoch {}", state.doc_name(doc), record.epoch);
        Ok(Started {
            doc: *doc,
            changes,
            copy: None,
            retired,
            epoch: record.epoch,
        })
    }
}
