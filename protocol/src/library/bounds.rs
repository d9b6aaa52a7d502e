//! A pre-check of automerge change bytes that bounds what decoding them can cost, run before
//! automerge sees them.
//!
//! An automerge change is small on the wire but can ask for much more once decoded: a chunk of
//! type "compressed change" is one DEFLATE stream (1 MB of it can inflate to gigabytes inside
//! `automerge::Change::from_bytes`), and the op columns are run-length encoded, so a few bytes
//! can declare a billion ops, or one op with a billion predecessors, which automerge then
//! iterates and allocates. Some run counts also make automerge 0.12 panic (a literal run of
//! `i64::MIN` values overflows `abs()` in builds with overflow checks).
//!
//! [`check_change_bounds`] walks the chunk header, the change header and every column with
//! checked arithmetic, inflates a compressed chunk with a streaming decoder that stops at
//! [`ChangeLimits::max_change_bytes`], and counts the values of every column without
//! materialising them. It accepts every change automerge writes within the limits; what it
//! refuses, automerge would either refuse too or pay for beyond the limits.
//!
//! The format (automerge 0.12, `src/storage/{chunk,change}.rs`, `src/columnar/encoding`):
//!
//! ```text
//! chunk   = magic 85 6f 4a 83 ‖ checksum [4] ‖ type u8 (1 change, 2 compressed change)
//!           ‖ len uLEB ‖ body [len]          (type 2: body is DEFLATE of a type-1 body)
//! body    = deps (uLEB n, n × 32) ‖ actor (uLEB len, bytes) ‖ seq uLEB ‖ start_op uLEB
//!           ‖ time sLEB ‖ message (uLEB len, bytes) ‖ other actors (uLEB n, n × actor)
//!           ‖ columns (uLEB n, n × (spec uLEB32 ‖ len uLEB)) ‖ column data ‖ extra bytes
//! spec    = id << 4 | deflate << 3 | type (0 group, 1 actor, 2 int, 3 delta, 4 bool,
//!           5 string, 6 value metadata, 7 value)
//! RLE     = runs of: sLEB n > 0, one value (n copies) | n < 0, -n values | 0, uLEB nulls
//! bool    = uLEB run lengths, alternating, starting with false
//! ```

use std::io::Read;

/// The magic bytes that open every automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED: u8 = 2;
/// Column id of the action column: one value per op.
const ACTION_COLUMN: u32 = 4;
const HASH_LEN: usize = 32;

/// How much a single change may cost to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeLimits {
    /// Largest change body, after inflating a compressed chunk.
    pub max_change_bytes: usize,
    /// Largest number of values any one column may declare (ops, keys, predecessors...).
    pub max_column_values: u64,
}

impl ChangeLimits {
    /// The limits every [`super::Document`] applies.
    ///
    /// The largest change kith writes is an import batch or an album filled in one command; one
    /// photo entry is 29 ops and about 640 bytes of change (measured by the
    /// `largest_honest_change_fits_the_bounds` test: an import batch of 256 entries, the import
    /// pipeline's largest, is 7 400 ops and 163 KB). The limits are about 100 times that, room
    /// for a single change of some 25 000 entries (an album of a whole library), and stay within
    /// what a phone can hold for one change: 16 MiB of change bytes and 2^20 values per column
    /// (automerge keeps on the order of 100 bytes per op).
    pub const DEFAULT: ChangeLimits = ChangeLimits {
        max_change_bytes: 16 * 1024 * 1024,
        max_column_values: 1 << 20,
    };
}

impl Default for ChangeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a change that passed [`check_change_bounds`] will cost to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeSize {
    /// Length of the change body (inflated, when the chunk was compressed).
    pub body_bytes: usize,
    /// Number of ops (values of the action column).
    pub ops: u64,
    /// Whether the chunk was a compressed change.
    pub compressed: bool,
}

/// Why change bytes were refused before automerge decoded them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundError {
    #[error("not an automerge change chunk ({0})")]
    NotAChange(&'static str),
    #[error("the change is cut short in its {0}")]
    Truncated(&'static str),
    #[error("a number in the change's {0} does not fit in 64 bits")]
    Overflow(&'static str),
    #[error("the chunk says its body has {declared} bytes but {actual} follow")]
    LengthMismatch { declared: u64, actual: usize },
    #[error("the change would inflate past the limit of {limit} bytes")]
    InflatesTooFar { limit: usize },
    #[error("the change is {len} bytes, more than the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("the compressed change is not a valid DEFLATE stream")]
    Deflate,
    #[error("the change has a compressed column, which automerge does not accept in a change")]
    CompressedColumn,
    #[error("column {column} declares more than {limit} values")]
    TooManyValues { column: u32, limit: u64 },
}

/// Checks that decoding `bytes` as one automerge change stays within `limits`, without
/// allocating more than `limits.max_change_bytes` (and only for a compressed chunk).
pub fn check_change_bounds(bytes: &[u8], limits: &ChangeLimits) -> Result<ChangeSize, BoundError> {
    let mut chunk = Reader::new(bytes, "chunk header");
    if chunk.take(4)? != MAGIC {
        return Err(BoundError::NotAChange("bad magic"));
    }
    chunk.take(4)?; // checksum: automerge checks it
    let chunk_type = chunk.byte()?;
    let declared = chunk.uleb()?;
    let body = chunk.rest();
    if u64::try_from(body.len()).ok() != Some(declared) {
        return Err(BoundError::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    match chunk_type {
        CHUNK_CHANGE => {
            if body.len() > limits.max_change_bytes {
                return Err(BoundError::TooLarge {
                    len: body.len(),
                    limit: limits.max_change_bytes,
                });
            }
            check_body(body, limits, false)
        }
        CHUNK_COMPRESSED => {
            let inflated = inflate_bounded(body, limits.max_change_bytes)?;
            check_body(&inflated, limits, true)
        }
        _ => Err(BoundError::NotAChange("not a change chunk")),
    }
}

/// Inflates a raw DEFLATE stream, stopping with an error once it passes `limit` bytes. Reads
/// a block at a time so the output never holds more than `limit` bytes (nor, growing, more than
/// twice that for an instant).
fn inflate_bounded(deflated: &[u8], limit: usize) -> Result<Vec<u8>, BoundError> {
    let mut decoder = flate2::bufread::DeflateDecoder::new(deflated);
    let mut out = Vec::new();
    let mut block = [0u8; 16 * 1024];
    loop {
        let n = decoder.read(&mut block).map_err(|_| BoundError::Deflate)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len().saturating_add(n) > limit {
            return Err(BoundError::InflatesTooFar { limit });
        }
        out.extend_from_slice(&block[..n]);
    }
}

/// Walks a change body: the header fields, then every column's run structure.
fn check_body(
    body: &[u8],
    limits: &ChangeLimits,
    compressed: bool,
) -> Result<ChangeSize, BoundError> {
    let mut r = Reader::new(body, "change header");
    let deps = r.uleb()?;
    let deps_len = usize::try_from(deps)
        .ok()
        .and_then(|n| n.checked_mul(HASH_LEN))
        .ok_or(BoundError::Truncated("dependencies"))?;
    r.take(deps_len)?;
    r.length_prefixed()?; // actor
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    r.length_prefixed()?; // message
    let other_actors = r.uleb()?;
    for _ in 0..other_actors {
        // Each one takes at least a byte, so a lying count runs out of input first.
        r.length_prefixed()?;
    }
    let columns = r.uleb()?;
    let mut specs = Vec::new();
    let mut total: usize = 0;
    for _ in 0..columns {
        let spec = u32::try_from(r.uleb()?).map_err(|_| BoundError::Overflow("column spec"))?;
        let len = usize::try_from(r.uleb()?).map_err(|_| BoundError::Truncated("columns"))?;
        total = total
            .checked_add(len)
            .ok_or(BoundError::Truncated("columns"))?;
        specs.push((spec, len));
    }
    r.what = "column data";
    let mut data = Reader::new(r.take(total)?, "column data");
    let mut ops = 0;
    for (spec, len) in specs {
        if spec & 0b1000 != 0 {
            return Err(BoundError::CompressedColumn);
        }
        let column = Column {
            id: spec >> 4,
            limit: limits.max_column_values,
        };
        let values = column.check(spec & 0b111, data.take(len)?)?;
        if column.id == ACTION_COLUMN && spec & 0b111 == TYPE_INTEGER {
            ops = values;
        }
    }
    Ok(ChangeSize {
        body_bytes: body.len(),
        ops,
        compressed,
    })
}

const TYPE_GROUP: u32 = 0;
const TYPE_ACTOR: u32 = 1;
const TYPE_INTEGER: u32 = 2;
const TYPE_DELTA: u32 = 3;
const TYPE_BOOLEAN: u32 = 4;
const TYPE_STRING: u32 = 5;
const TYPE_VALUE_METADATA: u32 = 6;

/// One column of a change, and the bound on how many values it may declare.
#[derive(Clone, Copy)]
struct Column {
    id: u32,
    limit: u64,
}

/// How one value of a run-length encoded column is written.
#[derive(Clone, Copy, PartialEq)]
enum Value {
    Unsigned,
    Signed,
    String,
}

impl Column {
    /// Counts the values `data` declares, refusing past the limit. A group column's values
    /// are the lengths of the groups that follow in other columns, so their sum is bounded too.
    fn check(self, column_type: u32, data: &[u8]) -> Result<u64, BoundError> {
        let mut r = Reader::new(data, "column data");
        match column_type {
            TYPE_BOOLEAN => self.booleans(&mut r),
            TYPE_GROUP => self.runs(&mut r, Value::Unsigned, true),
            TYPE_ACTOR | TYPE_INTEGER | TYPE_VALUE_METADATA => {
                self.runs(&mut r, Value::Unsigned, false)
            }
            TYPE_DELTA => self.runs(&mut r, Value::Signed, false),
            TYPE_STRING => self.runs(&mut r, Value::String, false),
            // Raw values: their lengths come from the value metadata column, checked above.
            _ => Ok(0),
        }
    }

    fn add(self, count: u64, more: u64) -> Result<u64, BoundError> {
        count
            .checked_add(more)
            .filter(|&n| n <= self.limit)
            .ok_or(BoundError::TooManyValues {
                column: self.id,
                limit: self.limit,
            })
    }

    fn booleans(self, r: &mut Reader<'_>) -> Result<u64, BoundError> {
        let mut count = 0;
        while !r.is_empty() {
            count = self.add(count, r.uleb()?)?;
        }
        Ok(count)
    }

    fn runs(self, r: &mut Reader<'_>, value: Value, group: bool) -> Result<u64, BoundError> {
        let mut count = 0;
        let mut grouped = 0;
        while !r.is_empty() {
            let n = r.sleb()?;
            if n > 0 {
                let n = n.unsigned_abs();
                count = self.add(count, n)?;
                let v = r.value(value)?;
                if group {
                    grouped = self.add(grouped, v.saturating_mul(n))?;
                }
            } else if n < 0 {
                count = self.add(count, n.unsigned_abs())?;
                // Each literal takes at least one byte: a lying count runs out of input.
                for _ in 0..n.unsigned_abs() {
                    let v = r.value(value)?;
                    if group {
                        grouped = self.add(grouped, v)?;
                    }
                }
            } else {
                count = self.add(count, r.uleb()?)?;
            }
        }
        Ok(count)
    }
}

/// A cursor over bytes that names what it reads in its errors.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BoundError> {
        if n > self.bytes.len() {
            return Err(BoundError::Truncated(self.what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, BoundError> {
        Ok(self.take(1)?[0])
    }

    fn uleb(&mut self) -> Result<u64, BoundError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(BoundError::Overflow(self.what));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BoundError::Overflow(self.what))
    }

    fn sleb(&mut self) -> Result<i64, BoundError> {
        let mut value: i64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= i64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift < 57 && byte & 0x40 != 0 {
                    value |= -1 << (shift + 7);
                }
                return Ok(value);
            }
        }
        Err(BoundError::Overflow(self.what))
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], BoundError> {
        let len = usize::try_from(self.uleb()?).map_err(|_| BoundError::Truncated(self.what))?;
        self.take(len)
    }

    /// Reads one value of a run and returns it as a number (a string's length).
    fn value(&mut self, value: Value) -> Result<u64, BoundError> {
        match value {
            Value::Unsigned => self.uleb(),
            Value::Signed => self.sleb().map(i64::unsigned_abs),
            Value::String => Ok(self.length_prefixed()?.len() as u64),
        }
    }
}

#[cfg(test)]
mod tests;
