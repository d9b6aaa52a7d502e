//! A compressed automerge change that would inflate to 2 GiB is refused quickly and with little
//! memory, by `check_change_bounds` and by `Document::apply_change` / `from_changes`, which
//! every node path goes through. Memory is measured by counting this test binary's allocations
//! (one test in the file, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress};
use kith_protocol::keys::{DeviceId, DocId};
use kith_protocol::library::{
    BoundError, ChangeLimits, DocKind, Document, LibraryError, check_change_bounds,
};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the system does it: in place when it can, so the peak is the larger size.
        let now = if new_size >= layout.size() {
            CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size()
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed)
        };
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result, how long it took and the most memory it held at once
/// beyond what was allocated before.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    (out, took, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

const MIB: usize = 1024 * 1024;

/// A raw DEFLATE stream of `mib` MiB of zeros, about 1 KB per MiB: one block of a MiB of
/// zeros, flushed to a byte boundary, repeated, then an empty final block.
fn deflate_bomb(mib: usize) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut segment = Vec::with_capacity(64 * 1024);
    compress
        .compress_vec(&vec![0u8; MIB], &mut segment, FlushCompress::Full)
        .unwrap();
    let mut out = segment.repeat(mib);
    out.extend_from_slice(&[0x03, 0x00]);
    out
}

/// An automerge chunk of type "compressed change" around `deflated`.
fn compressed_chunk(deflated: &[u8]) -> Vec<u8> {
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut len = deflated.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(deflated);
    out
}

#[test]
fn a_change_inflating_to_2_gib_is_refused_quickly_with_little_memory() {
    let bomb = compressed_chunk(&deflate_bomb(2048));
    println!("the bomb: {} bytes, inflating to 2 GiB", bomb.len());
    assert!(bomb.len() < 4 * MIB);
    let limit = ChangeLimits::DEFAULT.max_change_bytes;

    let (checked, took, peak) = measure(|| check_change_bounds(&bomb, &ChangeLimits::DEFAULT));
    println!("check_change_bounds: {took:?}, peak {} KiB", peak / 1024);
    assert_eq!(checked, Err(BoundError::InflatesTooFar { limit }));

    let me = DeviceId([1; 32]);
    let genesis = Document::genesis_change(DocKind::Library, &DocId([2; 32])).unwrap();
    let mut doc = Document::from_changes(&me, [genesis.clone()]).unwrap();
    let (applied, took, peak) = measure(|| doc.apply_change(bomb.clone()));
    println!("apply_change: {took:?}, peak {} KiB", peak / 1024);
    assert!(matches!(
        applied,
        Err(LibraryError::OutOfBounds(BoundError::InflatesTooFar { .. }))
    ));
    // The bomb itself is 2 MB and copied once; inflating stops at the 16 MiB limit.
    assert!(
        peak < limit + 8 * MIB,
        "applying the bomb held {} MiB",
        peak / MIB
    );
    assert!(
        took < Duration::from_secs(5),
        "applying the bomb took {took:?}"
    );

    let (loaded, _, peak) = measure(|| Document::from_changes(&me, [genesis, bomb.clone()]));
    assert!(matches!(loaded, Err(LibraryError::OutOfBounds(_))));
    assert!(
        peak < limit + 8 * MIB,
        "loading the bomb held {} MiB",
        peak / MIB
    );
}
