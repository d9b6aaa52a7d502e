//! `kith run`: the real daemon. Lock, API, same output through the node as without it, clean
//! stop on SIGTERM.

use anyhow::Result;
use kith_tests::{TestNode, corpus};

#[test]
fn commands_print_the_same_with_and_without_the_node() -> Result<()> {
    let mut node = TestNode::initialised()?;
    let photo = corpus::dir().join("camera/sony-nex-3n_colorfulcups_gps.jpg");
    node.ok(&["import", photo.to_str().unwrap(), "--album", "Cups"])?;
    node.ok(&["albums", "create", "Inner", "--parent", "Cups"])?;
    let offline = [
        node.ok(&["photos", "--json"])?,
        node.ok(&["photos", "--album", "Cups"])?,
        node.ok(&["albums"])?,
    ];
    node.start()?;
    let online = [
        node.ok(&["photos", "--json"])?,
        node.ok(&["photos", "--album", "Cups"])?,
        node.ok(&["albums"])?,
    ];
    assert_eq!(offline, online);
    let status = node.json(&["status", "--json"])?;
    assert_eq!(status["running"], true);
    assert_eq!(status["photos"], 1);

    // Writes through the node land too, and are there after it stops.
    let more = corpus::dir().join("camera/nokia-n70_iptc.jpg");
    let (out, lines) = node.json_lines(&[
        "import",
        more.to_str().unwrap(),
        "--album",
        "Inner",
        "--json",
    ])?;
    assert!(out.status.success(), "{lines:?}");
    assert_eq!(lines.last().unwrap()["imported"], 1);
    let status = node.stop()?;
    assert!(status.success(), "kith run exited with {status} on SIGTERM");
    assert!(!node.data_dir.join("api.json").exists());
    let albums = node.json(&["albums", "--json"])?;
    assert_eq!(albums[1]["path"], "Cups/Inner");
    assert_eq!(albums[1]["photos"], 1);
    assert_eq!(node.json(&["status", "--json"])?["running"], false);
    Ok(())
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() -> Result<()> {
    let mut node = TestNode::initialised()?;
    node.start()?;
    let second = node.run(&["run"])?;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another kith process"), "{err}");
    assert!(node.is_running());
    Ok(())
}

#[test]
fn run_on_a_new_data_dir_sets_it_up_first() -> Result<()> {
    let mut node = TestNode::new();
    node.start()?;
    let status = node.json(&["status", "--json"])?;
    assert_eq!(status["role"], "admin");
    assert!(!status["person"].as_str().unwrap_or("").is_empty());
    Ok(())
}

#[test]
fn the_api_refuses_requests_without_the_token() -> Result<()> {
    let mut node = TestNode::initialised()?;
    node.start()?;
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.data_dir.join("api.json"))?)?;
    let addr = info["addr"].as_str().unwrap();
    let mut stream = std::net::TcpStream::connect(addr)?;
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /api/photos HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    Ok(())
}

#[cfg(unix)]
#[test]
fn the_token_file_is_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut node = TestNode::initialised()?;
    node.start()?;
    let mode = std::fs::metadata(node.data_dir.join("api.token"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}
