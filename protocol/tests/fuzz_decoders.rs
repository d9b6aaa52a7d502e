//! Property fuzzing of every decoder of bytes from disk or network, run by `cargo test`.
//!
//! For each target of `fuzz_targets` (wire frames and messages, tickets as text and bytes,
//! signed membership ops and their bodies, sealed changes, blobs, records, envelopes, key
//! histories, automerge changes), two properties over its check (no panic, bounded results,
//! canonical re-encoding):
//! - arbitrary bytes;
//! - mutations of valid encodings: bit flips, byte overwrites, truncation, extension,
//!   insertions and removals, and length-like fields set to 0 or the maximum (a 32-bit
//!   big-endian or little-endian word, or a LEB128/postcard varint, written over any offset).
//!
//! The coverage-guided fuzzer in `tests/fuzz` runs the same checks (see its README).

mod fuzz_targets;

use fuzz_targets::{TARGETS, Target};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One edit of a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    Truncate {
        to: usize,
    },
    Extend(Vec<u8>),
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// A 32-bit word (a frame prefix, a sealed length) set to 0 or the maximum.
    Word {
        at: usize,
        value: u32,
        big_endian: bool,
    },
    /// A varint (postcard lengths, automerge LEB128 counts) written over the bytes at `at`.
    Varint {
        at: usize,
        value: u64,
    },
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn overwrite(bytes: &mut Vec<u8>, at: usize, with: &[u8]) {
    let end = (at + with.len()).min(bytes.len());
    bytes.splice(at..end, with.iter().copied());
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
        let len = bytes.len();
        match self {
            Mutation::FlipBit { at, bit } if len > 0 => bytes[pos(*at, len)] ^= 1 << (bit % 8),
            Mutation::SetByte { at, value } if len > 0 => bytes[pos(*at, len)] = *value,
            Mutation::Truncate { to } => bytes.truncate(pos(*to, len + 1)),
            Mutation::Extend(more) => bytes.extend_from_slice(more),
            Mutation::Insert { at, bytes: more } => {
                let at = pos(*at, len + 1);
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Remove { at, len: n } if len > 0 => {
                let at = pos(*at, len);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Word {
                at,
                value,
                big_endian,
            } => {
                let word = if *big_endian {
                    value.to_be_bytes()
                } else {
                    value.to_le_bytes()
                };
                overwrite(bytes, pos(*at, len + 1), &word);
            }
            Mutation::Varint { at, value } => overwrite(bytes, pos(*at, len + 1), &varint(*value)),
            _ => {}
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    let extreme_u32 = prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(64 * 1024 * 1024),
        any::<u32>()
    ];
    let extreme_u64 = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(1u64 << 40),
        any::<u64>()
    ];
    prop_oneof![
        4 => (at, any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => at.prop_map(|to| Mutation::Truncate { to }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        1 => (at, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at, 1usize..32).prop_map(|(at, len)| Mutation::Remove { at, len }),
        2 => (at, extreme_u32, any::<bool>())
            .prop_map(|(at, value, big_endian)| Mutation::Word { at, value, big_endian }),
        2 => (at, extreme_u64).prop_map(|(at, value)| Mutation::Varint { at, value }),
    ]
}

/// Runs `target`'s check over `cases` inputs of arbitrary bytes and as many mutated seeds.
fn fuzz(target: &Target, cases: u32) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config.clone());
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            (target.check)(&bytes);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{} over arbitrary bytes: {e}", target.name));

    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "{} has no seeds", target.name);
    for seed in &seeds {
        (target.check)(seed);
    }
    let mut runner = TestRunner::new(config);
    runner
        .run(
            &(0..seeds.len(), proptest::collection::vec(mutation(), 1..4)),
            |(seed, mutations)| {
                let mut bytes = seeds[seed].clone();
                for m in &mutations {
                    m.apply(&mut bytes);
                }
                (target.check)(&bytes);
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{} over mutated encodings: {e}", target.name));
}

fn target(name: &str) -> &'static Target {
    fuzz_targets::target(name).unwrap_or_else(|| panic!("no target {name}"))
}

#[test]
fn every_target_is_fuzzed_here() {
    let here = [
        "frames",
        "sync",
        "invite",
        "have",
        "ticket_text",
        "ticket_bytes",
        "signed_op",
        "op_body",
        "sealed_change",
        "blob",
        "record",
        "envelope",
        "history",
        "change",
    ];
    let all: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(all, here);
}

#[test]
fn wire_frames_never_panic() {
    fuzz(target("frames"), 512);
}

#[test]
fn sync_messages_never_panic_and_round_trip() {
    fuzz(target("sync"), 1024);
}

#[test]
fn invite_messages_never_panic_and_round_trip() {
    fuzz(target("invite"), 1024);
}

#[test]
fn have_messages_never_panic_and_round_trip() {
    fuzz(target("have"), 512);
}

#[test]
fn ticket_text_never_panics_and_is_canonical() {
    fuzz(target("ticket_text"), 1024);
}

#[test]
fn ticket_bytes_never_panic_and_are_canonical() {
    fuzz(target("ticket_bytes"), 1024);
}

#[test]
fn signed_ops_never_panic_and_are_canonical() {
    fuzz(target("signed_op"), 512);
}

#[test]
fn op_bodies_never_panic_and_are_canonical() {
    fuzz(target("op_body"), 512);
}

#[test]
fn sealed_changes_never_panic_and_are_canonical() {
    fuzz(target("sealed_change"), 256);
}

#[test]
fn blobs_never_panic() {
    fuzz(target("blob"), 256);
}

#[test]
fn records_never_panic() {
    fuzz(target("record"), 512);
}

#[test]
fn envelopes_never_panic() {
    fuzz(target("envelope"), 512);
}

#[test]
fn key_histories_never_panic_and_stay_ordered() {
    fuzz(target("history"), 512);
}

#[test]
fn automerge_changes_never_panic_and_stay_bounded() {
    fuzz(target("change"), 1024);
}

/// Inputs the coverage-guided fuzzer found (`tests/fuzz`), kept as regressions: automerge 0.12
/// panics on them inside `apply_changes` (a change whose seq does not follow its actor's last,
/// `change_graph.rs` `assert_eq!`, in release builds too; and ops out of order, a debug
/// assertion). `Document::apply_change` and `from_changes` refuse them instead.
#[test]
fn changes_the_fuzzer_found_are_refused_not_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the regressions folder") {
        let bytes = std::fs::read(entry.expect("an entry").path()).expect("a regression input");
        (target("change").check)(&bytes);
        n += 1;
    }
    assert!(n >= 2);
}
