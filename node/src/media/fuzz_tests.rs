//! A property harness over the media walkers: arbitrary bytes and mutations of
//! real corpus files (bit flips, cuts, length fields set to extremes) go to
//! every walker and to the sniff / metadata / analyse entry points, which must
//! never panic, must return, and must allocate no more than a bound linear in
//! the input (the walkers) or than the decode limits allow (`analyze`).
//!
//! The allocation bound is measured with a counting global allocator for this
//! test binary: per thread, so tests running in parallel do not see each
//! other's allocations. A fixed number of cases keeps the run to a few seconds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::*;

// ---------------------------------------------------------------- counting allocator

struct Counting;

thread_local! {
    /// Bytes live on this thread since the last reset, and the highest it reached.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // try_with: allocations during thread teardown are simply not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters
// are const-initialised thread-locals without destructors, so touching them
// never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same layout, as the caller guarantees for us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: ptr came from System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: ptr came from System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result and the most bytes it had allocated at once
/// on this thread (Rust allocations only: libheif's own are not seen).
pub(super) fn peak_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get) - start;
    (out, peak.max(0) as usize)
}

// ---------------------------------------------------------------- seeds

fn corpus() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_CORPUS") {
        return PathBuf::from(dir);
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared").join("corpus"))
        .find(|d| d.join("MANIFEST.tsv").is_file())
        .unwrap_or_else(|| panic!("the photo corpus was not found (set KITH_CORPUS)"))
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS_READ: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS_READ.get_or_init(|| {
        let dir = corpus();
        let read = |rel: &str| {
            std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
        };
        let mut all: Vec<Vec<u8>> = crafted::FUZZ_SEEDS.iter().map(|rel| read(rel)).collect();
        let mut heic = read(crafted::FUZZ_HEIC_SEED);
        heic.truncate(crafted::FUZZ_HEIC_SEED_BYTES);
        all.push(heic);
        all.extend(crafted::hostile_set().into_iter().map(|c| c.bytes));
        all
    })
}

// ---------------------------------------------------------------- mutations

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    FlipBit { at: usize, bit: u8 },
    /// Set a byte to a value an attacker likes.
    SetByte { at: usize, value: u8 },
    /// Write a 16- or 32-bit big- or little-endian extreme where a length may be.
    Extreme {
        at: usize,
        width: u8,
        value: u32,
        big: bool,
    },
    /// Cut the file.
    Truncate { at: usize },
    /// Repeat a stretch (segments, boxes, IFD entries many times over).
    Repeat { at: usize, len: usize, times: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let extreme = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(7),
        Just(8),
        Just(0x7FFF),
        Just(0xFFFF),
        Just(0x7FFF_FFFF),
        Just(u32::MAX),
        any::<u32>(),
    ];
    // Offsets are taken modulo the file's length when applied.
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0xFF), Just(0x7F), Just(0x80), any::<u8>()]
        )
            .prop_map(|(at, value)| Mutation::SetByte { at, value }),
        (
            // Header fields sit near the start: favour the first 512 bytes.
            prop_oneof![0usize..512, any::<usize>()],
            prop_oneof![Just(2u8), Just(4)],
            extreme,
            any::<bool>()
        )
            .prop_map(|(at, width, value, big)| Mutation::Extreme {
                at,
                width,
                value,
                big
            }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (0usize..512, 1usize..64, 2usize..2000).prop_map(|(at, len, times)| Mutation::Repeat {
            at,
            len,
            times
        }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *m {
        Mutation::FlipBit { at, bit } => bytes[at % n] ^= 1 << bit,
        Mutation::SetByte { at, value } => bytes[at % n] = value,
        Mutation::Extreme {
            at,
            width,
            value,
            big,
        } => {
            let field = match (width, big) {
                (2, true) => (value as u16).to_be_bytes().to_vec(),
                (2, false) => (value as u16).to_le_bytes().to_vec(),
                (_, true) => value.to_be_bytes().to_vec(),
                (_, false) => value.to_le_bytes().to_vec(),
            };
            let at = at % n;
            for (i, b) in field.into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = b;
                }
            }
        }
        Mutation::Truncate { at } => bytes.truncate(at % n),
        Mutation::Repeat { at, len, times } => {
            let at = at % n;
            let end = (at + len).min(n);
            let piece = bytes[at..end].to_vec();
            let tail = bytes.split_off(end);
            for _ in 0..times {
                bytes.extend_from_slice(&piece);
            }
            bytes.extend_from_slice(&tail);
        }
    }
}

/// A mutated seed (1 to 4 mutations), or arbitrary bytes behind a real magic number.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let seed_count = seeds().len();
    let mutated = (0..seed_count, prop::collection::vec(mutation(), 1..5)).prop_map(|(i, ms)| {
        let mut bytes = seeds()[i].clone();
        for m in &ms {
            apply(&mut bytes, m);
        }
        bytes
    });
    let magics: &[&[u8]] = &[
        &[0xFF, 0xD8, 0xFF],
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"RIFF\xff\xff\xff\xffWEBP",
        b"II*\0",
        b"MM\0*",
        b"\0\0\0\x18ftypheic",
        b"\0\0\0\x01ftypmif1",
        b"Exif\0\0II*\0",
    ];
    let arbitrary = (
        prop::sample::select(magics.to_vec()),
        prop::collection::vec(any::<u8>(), 0..4096),
    )
        .prop_map(|(magic, rest)| {
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(&rest);
            bytes
        });
    prop_oneof![4 => mutated, 1 => arbitrary]
}

// ---------------------------------------------------------------- the properties

/// Every walker on its own: linear allocation, no panic.
fn walkers_are_bounded(bytes: &[u8]) -> Result<(), TestCaseError> {
    let bound = 2 * bytes.len() + (1 << 20);
    let (_, peak) = peak_alloc_during(|| fuzz_container_walkers(bytes));
    prop_assert!(
        peak <= bound,
        "walkers allocated {peak} bytes for {}",
        bytes.len()
    );
    // The EXIF reader keeps one copy of the block and a small record per entry
    // (at most 8 IFDs plus their sub-IFDs, each of its 12-byte entries once).
    let (_, peak) = peak_alloc_during(|| fuzz_exif(bytes));
    prop_assert!(
        peak <= 16 * bytes.len() + (1 << 20),
        "EXIF allocated {peak} bytes for {}",
        bytes.len()
    );
    Ok(())
}

/// The entry points: metadata stays linear; a full analysis stays within the
/// decode limits; both return within a generous deadline.
fn entry_points_are_bounded(bytes: &[u8]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let (meta, peak) = peak_alloc_during(|| read_meta(bytes));
    prop_assert!(
        peak <= 16 * bytes.len() + (1 << 20),
        "read_meta allocated {peak} bytes for {}",
        bytes.len()
    );
    let (full, peak) = peak_alloc_during(|| analyze(bytes));
    // The decoded image, its RGB copy and the renditions: never more than the
    // memory limit twice over plus the renditions' working space.
    prop_assert!(
        peak as u64 <= 2 * MAX_ALLOC + (64 << 20),
        "analyze allocated {peak} bytes"
    );
    if let (Err(e), Ok(_)) = (&meta, &full) {
        prop_assert!(false, "read_meta refused ({e}) but analyze accepted");
    }
    let took = started.elapsed();
    prop_assert!(took < Duration::from_secs(20), "took {took:?}");
    Ok(())
}

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    // A fixed seed: CI runs the same cases every time, and a failure reproduces.
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

#[test]
fn walkers_never_panic_and_allocate_linearly_on_mutated_files() {
    let started = Instant::now();
    let result = runner(3000, 7).run(&input(), |bytes| walkers_are_bounded(&bytes));
    eprintln!("walkers: 3000 cases in {:?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn read_meta_and_analyze_never_panic_and_stay_bounded_on_mutated_files() {
    let started = Instant::now();
    let result = runner(400, 11).run(&input(), |bytes| entry_points_are_bounded(&bytes));
    eprintln!("entry points: 400 cases in {:?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}
