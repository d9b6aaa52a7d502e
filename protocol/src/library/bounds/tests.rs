use super::*;
use crate::keys::DeviceId;
use crate::library::tests::entry;
use crate::library::{DocKind, Document, LibraryError};

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0) {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A change chunk around `body` (checksum zero: the bounds come before automerge checks it).
fn chunk(chunk_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend([0; 4]);
    out.push(chunk_type);
    uleb(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// A change body of one actor whose columns are `columns` (spec, data), in order.
fn body(columns: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    uleb(&mut out, 0); // deps
    uleb(&mut out, 16);
    out.extend([7; 16]); // actor
    uleb(&mut out, 1); // seq
    uleb(&mut out, 1); // start op
    sleb(&mut out, 0); // time
    uleb(&mut out, 0); // message
    uleb(&mut out, 0); // other actors
    uleb(&mut out, columns.len() as u64);
    for (spec, data) in columns {
        uleb(&mut out, u64::from(*spec));
        uleb(&mut out, data.len() as u64);
    }
    for (_, data) in columns {
        out.extend_from_slice(data);
    }
    out
}

/// `n` ops that each set the root key "a" to null: every column is one run of `n`, the action
/// column's written by `action` (a run of `n` sets unless given).
fn ops_with_action(n: i64, action: Option<Vec<u8>>) -> Vec<u8> {
    let run = |value: &dyn Fn(&mut Vec<u8>)| {
        let mut col = Vec::new();
        sleb(&mut col, n);
        value(&mut col);
        col
    };
    let mut insert = Vec::new();
    uleb(&mut insert, n as u64);
    chunk(
        CHUNK_CHANGE,
        &body(&[
            (
                (1 << 4) | TYPE_STRING,
                run(&|c| {
                    uleb(c, 1);
                    c.push(b'a');
                }),
            ),
            ((3 << 4) | TYPE_BOOLEAN, insert),
            (
                (4 << 4) | TYPE_INTEGER,
                action.unwrap_or_else(|| run(&|c| uleb(c, 1))),
            ),
            ((5 << 4) | TYPE_VALUE_METADATA, run(&|c| uleb(c, 0))),
            ((7 << 4) | TYPE_GROUP, run(&|c| uleb(c, 0))),
        ]),
    )
}

fn many_ops(n: i64) -> Vec<u8> {
    ops_with_action(n, None)
}

fn honest_import_change(entries: u16) -> Vec<u8> {
    let mut doc = Document::new(&DeviceId([5; 32]));
    doc.init(DocKind::Library).unwrap();
    let batch: Vec<_> = (0..entries)
        .map(|n| {
            let mut e = entry(0);
            e.id = crate::keys::PhotoId(*blake3::hash(&n.to_le_bytes()).as_bytes());
            e.file_name = format!("IMG_{n:04}.jpg");
            e.tags = vec!["beach".into(), "family".into()];
            e.caption = Some("A long enough caption about the day at the beach".into());
            e
        })
        .collect();
    doc.put_photos(&batch).unwrap();
    doc.commit(1).unwrap()
}

#[test]
fn largest_honest_change_fits_the_bounds() {
    // 256 entries: the import pipeline's largest batch (node/src/import.rs, MAX_BATCH).
    let change = honest_import_change(256);
    let size = check_change_bounds(&change, &ChangeLimits::DEFAULT).unwrap();
    println!(
        "an import change of 256 entries: {} bytes, {} ops",
        change.len(),
        size.ops
    );
    assert!(!size.compressed);
    assert!(size.ops >= 256 * 25, "{size:?}");
    // The limits leave a wide margin over it.
    assert!(size.ops * 100 < ChangeLimits::DEFAULT.max_column_values);
    assert!(change.len() * 100 < ChangeLimits::DEFAULT.max_change_bytes);
    let mut doc = Document::new(&DeviceId([6; 32]));
    doc.apply_change(change).unwrap();
    assert_eq!(doc.photos().unwrap().len(), 256);
}

#[test]
fn honest_compressed_changes_pass() {
    // Automerge compresses changes of 256 bytes or more when it writes them with `bytes()`.
    let raw = honest_import_change(40);
    let change = automerge::Change::from_bytes(raw.clone()).unwrap();
    let compressed = change.clone().bytes().to_vec();
    assert_eq!(compressed[8], CHUNK_COMPRESSED);
    let size = check_change_bounds(&compressed, &ChangeLimits::DEFAULT).unwrap();
    assert!(size.compressed);
    assert_eq!(size.ops, change.len() as u64);
    assert_eq!(
        size.body_bytes,
        check_change_bounds(&raw, &ChangeLimits::DEFAULT)
            .unwrap()
            .body_bytes
    );
    let mut doc = Document::new(&DeviceId([6; 32]));
    doc.apply_change(compressed).unwrap();
    assert_eq!(doc.photos().unwrap().len(), 40);
}

#[test]
fn genesis_and_small_changes_pass_and_count_their_ops() {
    let genesis = Document::genesis_change(DocKind::Library, &crate::keys::DocId([1; 32])).unwrap();
    let size = check_change_bounds(&genesis, &ChangeLimits::DEFAULT).unwrap();
    assert_eq!(size.ops, 3);
    // Hand-made: automerge agrees on what the walker counts.
    let ten = many_ops(10);
    assert_eq!(
        check_change_bounds(&ten, &ChangeLimits::DEFAULT)
            .unwrap()
            .ops,
        10
    );
    assert_eq!(automerge::Change::from_bytes(ten).unwrap().len(), 10);
}

#[test]
fn a_run_of_too_many_ops_is_refused_before_automerge_iterates_it() {
    let limit = ChangeLimits::DEFAULT.max_column_values;
    let bomb = many_ops(i64::try_from(limit).unwrap() + 1);
    assert_eq!(
        check_change_bounds(&bomb, &ChangeLimits::DEFAULT),
        Err(BoundError::TooManyValues { column: 1, limit })
    );
    let mut doc = Document::new(&DeviceId([6; 32]));
    assert!(matches!(
        doc.apply_change(bomb),
        Err(LibraryError::OutOfBounds(_))
    ));
    // 2^40 ops in under 100 bytes: refused at once, where automerge would iterate for hours.
    let bomb = many_ops(1 << 40);
    assert!(bomb.len() < 100, "{}", bomb.len());
    assert!(matches!(
        Document::from_changes(&DeviceId([6; 32]), [bomb]),
        Err(LibraryError::OutOfBounds(BoundError::TooManyValues { .. }))
    ));
}

#[test]
fn a_literal_run_of_i64_min_is_refused_not_a_panic() {
    // automerge 0.12 takes `abs()` of a literal run's count: i64::MIN overflows (a panic in
    // builds with overflow checks, which is how kith's tests and debug builds run).
    let mut action = Vec::new();
    sleb(&mut action, i64::MIN);
    uleb(&mut action, 1);
    let bomb = ops_with_action(1, Some(action));
    let mut doc = Document::new(&DeviceId([6; 32]));
    assert!(matches!(
        doc.apply_change(bomb),
        Err(LibraryError::OutOfBounds(BoundError::TooManyValues {
            column: 4,
            ..
        }))
    ));
}

#[test]
fn one_op_with_too_many_predecessors_is_refused() {
    // One op whose predecessor group says 2^40: automerge would fill a Vec with them.
    let mut group = Vec::new();
    sleb(&mut group, 1);
    uleb(&mut group, 1 << 40);
    let bomb = chunk(CHUNK_CHANGE, &body(&[((7 << 4) | TYPE_GROUP, group)]));
    assert_eq!(
        check_change_bounds(&bomb, &ChangeLimits::DEFAULT),
        Err(BoundError::TooManyValues {
            column: 7,
            limit: ChangeLimits::DEFAULT.max_column_values
        })
    );
}

#[test]
fn compressed_columns_and_other_chunks_are_refused() {
    let col = ((4 << 4) | 0b1000 | TYPE_INTEGER, vec![1, 1]);
    let bomb = chunk(CHUNK_CHANGE, &body(&[col]));
    assert_eq!(
        check_change_bounds(&bomb, &ChangeLimits::DEFAULT),
        Err(BoundError::CompressedColumn)
    );
    let document = chunk(0, &body(&[]));
    assert_eq!(
        check_change_bounds(&document, &ChangeLimits::DEFAULT),
        Err(BoundError::NotAChange("not a change chunk"))
    );
    let mut long = chunk(CHUNK_CHANGE, &body(&[]));
    long.push(0);
    assert!(matches!(
        check_change_bounds(&long, &ChangeLimits::DEFAULT),
        Err(BoundError::LengthMismatch { .. })
    ));
}

#[test]
fn leb128_reads_the_extremes_and_refuses_overflow() {
    for v in [0, 1, 127, 128, u64::MAX] {
        let mut b = Vec::new();
        uleb(&mut b, v);
        assert_eq!(Reader::new(&b, "t").uleb(), Ok(v));
    }
    for v in [0, -1, 63, -64, 64, i64::MIN, i64::MAX] {
        let mut b = Vec::new();
        sleb(&mut b, v);
        assert_eq!(Reader::new(&b, "t").sleb(), Ok(v));
    }
    let too_big = [0xff; 10];
    assert!(Reader::new(&too_big, "t").uleb().is_err());
    assert!(Reader::new(&[0x80; 11], "t").sleb().is_err());
}
