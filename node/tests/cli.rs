//! The `kith` binary starts and describes itself. Being an integration test of this package,
//! this file also makes `cargo test --workspace` build the `kith` binary that the multi-node
//! tests in `tests/` run.

use std::process::Command;

#[test]
fn kith_help_lists_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--help")
        .output()
        .expect("run kith --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "init", "run", "import", "photos", "albums", "people", "status", "export",
    ] {
        assert!(
            help.contains(command),
            "`kith --help` does not mention {command}:\n{help}"
        );
    }
}

#[test]
fn kith_version_is_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--version")
        .output()
        .expect("run kith --version");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}
