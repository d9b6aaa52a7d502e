//! Looking for plaintext in bytes kith wrote or sent: EXIF strings, file names, album titles,
//! and runs of [`RUN`] bytes of an original or of the preview and thumbnail kith renders
//! from it.

use std::collections::HashMap;

use anyhow::Result;

use crate::corpus::Row;

/// Length of the runs of original bytes that must not appear.
pub const RUN: usize = 32;
const BLOCK: usize = RUN / 2;
/// Bits of the prefilter over indexed blocks (a 16 MiB bitmap): it spares a hash-map lookup
/// at nearly every position of the scanned bytes.
const FILTER_BITS: u32 = 27;

/// A run made of few distinct bytes (padding, fill, quantisation tables of zeros) identifies
/// nothing and also occurs in any database file; such runs are not counted as leaks, and such
/// blocks are not indexed (a 32-byte run of photo data has high-entropy aligned blocks).
fn is_low_entropy(run: &[u8], min_distinct: usize) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for b in run {
        if !seen[*b as usize] {
            seen[*b as usize] = true;
            distinct += 1;
        }
    }
    distinct < min_distinct
}

fn filter_slot(block: &[u8]) -> usize {
    let mut head = [0u8; 8];
    head.copy_from_slice(&block[..8]);
    (u64::from_le_bytes(head).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS)) as usize
}

/// What must not be found, ready to scan for.
pub struct Needles {
    strings: Vec<(String, Vec<u8>)>,
    finder: aho_corasick::AhoCorasick,
    originals: Vec<(String, Vec<u8>)>,
    blocks: HashMap<[u8; BLOCK], Vec<(usize, usize)>>,
    filter: Vec<u64>,
}

impl Needles {
    /// `titles` (album titles and other names typed by a person), the file names of `named`,
    /// and for each of `photos`: its EXIF strings (make, model, date, taken-at; 4 bytes or
    /// more), its bytes and those of the preview and thumbnail kith renders from it (rendering
    /// is deterministic, so these are the plaintext renditions that were encrypted).
    pub fn new(titles: &[&str], named: &[Row], photos: &[Row]) -> Result<Needles> {
        let mut strings: Vec<(String, Vec<u8>)> = titles
            .iter()
            .map(|t| (format!("album title {t:?}"), t.as_bytes().to_vec()))
            .collect();
        for row in named {
            strings.push((
                format!("file name of {}", row.path),
                row.file_name().as_bytes().to_vec(),
            ));
        }
        let mut originals: Vec<(String, Vec<u8>)> = Vec::new();
        for row in photos {
            for (what, value) in [
                ("make", row.make.clone()),
                ("model", row.model.clone()),
                ("date", row.datetime_original.clone()),
                ("taken-at", row.taken_at()),
            ] {
                if let Some(v) = value.filter(|v| v.len() >= 4) {
                    strings.push((format!("{what} of {}", row.path), v.into_bytes()));
                }
            }
            let bytes = std::fs::read(row.abs_path())?;
            if let Ok(rendered) = kith_node::media::analyze(&bytes) {
                originals.push((
                    format!("the preview of {}", row.path),
                    rendered.preview.bytes,
                ));
                originals.push((
                    format!("the thumbnail of {}", row.path),
                    rendered.thumbnail.bytes,
                ));
            }
            originals.push((row.path.clone(), bytes));
        }
        // Index every aligned 16-byte block: any 32-byte run contains one whole aligned block.
        let mut blocks: HashMap<[u8; BLOCK], Vec<(usize, usize)>> = HashMap::new();
        let mut filter = vec![0u64; (1usize << FILTER_BITS) / 64];
        for (index, (_, bytes)) in originals.iter().enumerate() {
            for (n, chunk) in bytes.chunks_exact(BLOCK).enumerate() {
                if let Ok(block) = <[u8; BLOCK]>::try_from(chunk)
                    && !is_low_entropy(&block, 6)
                {
                    let slot = filter_slot(&block);
                    filter[slot / 64] |= 1 << (slot % 64);
                    blocks.entry(block).or_default().push((index, n * BLOCK));
                }
            }
        }
        let finder = aho_corasick::AhoCorasick::new(strings.iter().map(|(_, n)| n))?;
        Ok(Needles {
            strings,
            finder,
            originals,
            blocks,
            filter,
        })
    }

    /// Bytes of originals and renditions indexed.
    pub fn original_bytes(&self) -> usize {
        self.originals.iter().map(|(_, b)| b.len()).sum()
    }

    /// Every plaintext found in `data` (named `name` in the lines returned). Strings shorter
    /// than `min_string_len` are not looked for: in enough ciphertext they turn up by chance.
    pub fn scan(&self, name: &str, data: &[u8], min_string_len: usize) -> Vec<String> {
        let mut leaks = Vec::new();
        for m in self.finder.find_overlapping_iter(data) {
            let (what, needle) = &self.strings[m.pattern().as_usize()];
            if needle.len() < min_string_len {
                continue;
            }
            leaks.push(format!(
                "{name} contains the {what} at offset {}",
                m.start()
            ));
        }
        for at in 0..data.len().saturating_sub(BLOCK - 1) {
            let window = &data[at..at + BLOCK];
            let slot = filter_slot(window);
            if self.filter[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let Ok(block) = <[u8; BLOCK]>::try_from(window) else {
                continue;
            };
            let Some(hits) = self.blocks.get(&block) else {
                continue;
            };
            for &(index, offset) in hits {
                let original = &self.originals[index].1;
                // Extend the match both ways and see whether it reaches RUN bytes.
                let mut back = 0;
                while back < at
                    && back < offset
                    && data[at - back - 1] == original[offset - back - 1]
                {
                    back += 1;
                }
                let mut fwd = BLOCK;
                while at + fwd < data.len()
                    && offset + fwd < original.len()
                    && data[at + fwd] == original[offset + fwd]
                {
                    fwd += 1;
                }
                let run = &data[at - back..at + fwd];
                if run.len() >= RUN && !is_low_entropy(run, 8) {
                    leaks.push(format!(
                        "{name} holds {} bytes of {} at offset {}",
                        run.len(),
                        self.originals[index].0,
                        at - back
                    ));
                }
            }
        }
        leaks.sort();
        leaks.dedup();
        leaks
    }
}
