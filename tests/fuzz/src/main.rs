//! One binary for every fuzz target of kith's decoders, built by `cargo afl build`.
//!
//! - `kith-fuzz TARGET`: the target as afl-fuzz runs it (input on standard input, in AFL's
//!   persistent mode when run under afl-fuzz).
//! - `kith-fuzz seeds DIR`: writes every target's seeds (valid encodings) to `DIR/TARGET/`.
//! - `kith-fuzz list`: the target names, one a line.
//!
//! The targets and their properties are those of the property harnesses: the protocol's
//! decoders shared by path, the media walkers through `kith_node::media` (see `media.rs`).

#[path = "../../../protocol/tests/fuzz_targets/mod.rs"]
mod fuzz_targets;
mod media;

use std::path::Path;
use std::process::ExitCode;

/// Every target: the protocol's decoders, then the media walkers.
fn targets() -> impl Iterator<Item = &'static fuzz_targets::Target> {
    fuzz_targets::TARGETS.iter().chain(media::TARGETS)
}

fn write_seeds(dir: &Path) -> std::io::Result<()> {
    for target in targets() {
        let sub = dir.join(target.name);
        std::fs::create_dir_all(&sub)?;
        for (n, seed) in (target.seeds)().iter().enumerate() {
            std::fs::write(sub.join(format!("seed-{n}")), seed)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] => {
            for target in targets() {
                println!("{}", target.name);
            }
            ExitCode::SUCCESS
        }
        ["seeds", dir] => match write_seeds(Path::new(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the seeds to {dir}: {e}");
                ExitCode::FAILURE
            }
        },
        [name] => {
            let Some(target) = targets().find(|t| t.name == *name) else {
                eprintln!("no fuzz target {name}: `kith-fuzz list` names them");
                return ExitCode::FAILURE;
            };
            let check = target.check;
            // Without afl's abort-at-panic hook: a panic that kith catches (`library::guard`) is not a
            // crash; one that escapes the check still aborts the run, which AFL counts.
            afl::fuzz_nohook!(|data: &[u8]| {
                check(data);
            });
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: kith-fuzz TARGET | kith-fuzz seeds DIR | kith-fuzz list");
            ExitCode::FAILURE
        }
    }
}
