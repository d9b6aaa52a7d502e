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
        "init", "run", "import", "photos", "trash", "albums", "people", "status", "export",
    ] {
        assert!(
            help.contains(command),
            "`kith --help` does not mention {command}:\n{help}"
        );
    }
}

#[test]
fn kith_photos_help_lists_show_and_edit_with_their_flags() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(args)
            .output()
            .expect("run kith help");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let photos = help(&["photos", "--help"]);
    for word in ["show", "edit", "--favourites", "--tag"] {
        assert!(photos.contains(word), "{word}:\n{photos}");
    }
    let edit = help(&["photos", "edit", "--help"]);
    for word in [
        "--caption",
        "--no-caption",
        "--favourite",
        "--no-favourite",
        "--untag",
    ] {
        assert!(edit.contains(word), "{word}:\n{edit}");
    }
    let trash = help(&["trash", "--help"]);
    for word in ["list", "restore"] {
        assert!(trash.contains(word), "{word}:\n{trash}");
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
