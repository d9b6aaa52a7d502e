//! The media targets: the container walkers, the EXIF reader and the two entry points of
//! import (`read_meta`, `analyze`), as `node/src/media/fuzz_tests.rs` runs them under the
//! property harness. A panic, an allocation past afl-fuzz's memory limit or a run past its
//! timeout is a crash: a crafted file must be refused in bounded time and memory.
//!
//! Seeds are small real files of every format from the photo corpus (`KITH_CORPUS`, or
//! `shared/corpus` beside the repository) and every crafted hostile file the tests build.

use std::path::PathBuf;

use kith_node::media;
use kith_node::media::crafted;

use crate::fuzz_targets::Target;

/// The media targets, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "media_walkers",
        check: check_walkers,
        seeds,
    },
    Target {
        name: "media_meta",
        check: check_meta,
        seeds,
    },
    Target {
        name: "media_analyze",
        check: check_analyze,
        seeds,
    },
];

fn check_walkers(data: &[u8]) {
    media::fuzz_container_walkers(data);
    media::fuzz_exif(data);
}

fn check_meta(data: &[u8]) {
    let _ = media::read_meta(data);
}

/// `analyze` must never accept what `read_meta` refuses: import reads the metadata first.
fn check_analyze(data: &[u8]) {
    let meta = media::read_meta(data);
    let full = media::analyze(data);
    if let (Err(e), Ok(_)) = (&meta, &full) {
        panic!("read_meta refused ({e}) but analyze accepted");
    }
}

fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KITH_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared").join("corpus"))
        .find(|d| d.join("MANIFEST.tsv").is_file())
}

/// The corpus files that can be read (a missing corpus leaves the crafted files alone, and
/// says so) and every crafted hostile file.
fn seeds() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    match corpus() {
        Some(dir) => {
            for rel in crafted::FUZZ_SEEDS {
                match std::fs::read(dir.join(rel)) {
                    Ok(bytes) => all.push(bytes),
                    Err(e) => eprintln!("media seed {rel} left out: {e}"),
                }
            }
            match std::fs::read(dir.join(crafted::FUZZ_HEIC_SEED)) {
                Ok(mut heic) => {
                    heic.truncate(crafted::FUZZ_HEIC_SEED_BYTES);
                    all.push(heic);
                }
                Err(e) => eprintln!("media seed {} left out: {e}", crafted::FUZZ_HEIC_SEED),
            }
        }
        None => eprintln!("no photo corpus found (set KITH_CORPUS): media seeds are the crafted files only"),
    }
    all.extend(crafted::hostile_set().into_iter().map(|c| c.bytes));
    all
}
