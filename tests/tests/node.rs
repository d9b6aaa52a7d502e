//! `kith run`: the real daemon. Lock, API, same output through the node as without it, clean
//! stop on SIGTERM.

use anyhow::Result;
use std::time::Duration;

use kith_tests::{TestNode, corpus};
use serde_json::Value;

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

/// Stops a `kith run` this test spawned itself, with SIGTERM, and waits for it.
fn stop_spawned(child: &mut std::process::Child) -> Result<std::process::ExitStatus> {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let mut status = None;
    kith_tests::wait_until(Duration::from_secs(30), "kith run to stop", || {
        status = child.try_wait()?;
        Ok(status.is_some())
    })?;
    Ok(status.expect("waited for it"))
}

/// The issue's scenario, as a script would do it: start the node, and poll `kith status
/// --json` until it says running. Every poll answers, and the node starts, every time.
#[test]
fn run_waits_for_commands_polling_while_it_starts() -> Result<()> {
    let node = TestNode::initialised()?;
    let photo = corpus::dir().join("camera/nokia-n70_iptc.jpg");
    node.ok(&["import", photo.to_str().unwrap()])?;
    for attempt in 1..=4 {
        let mut run = node
            .command(&[
                "run",
                "--api",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut polls = 0;
        let waited =
            kith_tests::wait_until(Duration::from_secs(60), "status to say running", || {
                if let Some(exit) = run.try_wait()? {
                    let mut err = String::new();
                    use std::io::Read;
                    if let Some(mut e) = run.stderr.take() {
                        e.read_to_string(&mut err)?;
                    }
                    anyhow::bail!("attempt {attempt}: kith run exited with {exit}: {err}");
                }
                polls += 1;
                let out = node.run(&["status", "--json"])?;
                anyhow::ensure!(
                    out.status.success(),
                    "attempt {attempt}: kith status failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let status: Value = serde_json::from_slice(&out.stdout)?;
                Ok(status["running"] == true)
            });
        if waited.is_err() {
            let _ = stop_spawned(&mut run);
        }
        waited?;
        assert_eq!(
            node.json(&["photos", "--json"])?.as_array().map(Vec::len),
            Some(1)
        );
        let exit = stop_spawned(&mut run)?;
        assert!(
            exit.success(),
            "attempt {attempt}: kith run exited with {exit}"
        );
        assert!(polls >= 1);
    }
    Ok(())
}

#[test]
fn the_api_is_refused_on_a_non_loopback_address() -> Result<()> {
    let node = TestNode::initialised()?;
    for addr in ["0.0.0.0:0", "[::]:0", "192.168.1.10:4000"] {
        let mut run = node
            .command(&["run", "--api", addr, "--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut exit = None;
        let ended = kith_tests::wait_until(Duration::from_secs(20), "kith run to refuse", || {
            exit = run.try_wait()?;
            Ok(exit.is_some())
        });
        if ended.is_err() {
            let _ = stop_spawned(&mut run);
            anyhow::bail!("kith run --api {addr} started a node");
        }
        let exit = exit.expect("waited for it");
        assert!(!exit.success());
        let mut err = String::new();
        use std::io::Read;
        run.stderr.take().expect("piped").read_to_string(&mut err)?;
        assert!(
            err.contains("listens only on this machine"),
            "{addr}: {err}"
        );
        assert!(!node.data_dir.join("api.json").exists());
    }
    Ok(())
}

/// A program that took the node's port after it stopped (api.json still naming it) gets
/// neither the token nor any request with it: the CLI asks it to prove it holds the token,
/// and refuses it, saying why.
#[test]
fn the_cli_refuses_an_impostor_at_the_api_address() -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let node = TestNode::initialised()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let token = "f".repeat(64);
    std::fs::write(
        node.data_dir.join("api.json"),
        format!(r#"{{"addr":"{addr}","pid":1}}"#),
    )?;
    std::fs::write(node.data_dir.join("api.token"), &token)?;
    // Answers every request as a node would answer `status`, and records what it was sent.
    let impostor = std::thread::spawn(move || -> Vec<String> {
        let mut heard = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = String::new();
            let mut reader = BufReader::new(&stream);
            while let Ok(n) = reader.read_line(&mut request) {
                if n == 0 || request.ends_with("\r\n\r\n") {
                    break;
                }
            }
            if request.starts_with("QUIT") {
                break;
            }
            heard.push(request);
            let body = r#"{"proof":"00","running":true,"photos":0}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        heard
    });
    let out = node.run(&["photos"])?;
    let mut quit = std::net::TcpStream::connect(addr)?;
    quit.write_all(b"QUIT\r\n\r\n")?;
    let heard = impostor.join().expect("the impostor thread");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kith photos used the impostor: {err}"
    );
    assert!(
        err.contains("is not the kith node of this data dir") && err.contains(&addr.to_string()),
        "{err}"
    );
    assert!(!heard.is_empty(), "the CLI did not even ask");
    for request in &heard {
        assert!(!request.contains(&token), "the token was sent: {request}");
        assert!(!request.contains("Authorization"), "{request}");
    }
    Ok(())
}

/// The blob store's tags are the one index an onlooker of the data dir can read: each is the
/// blob's hash and nothing else, so it tells neither when a blob came nor which blobs are one
/// photo's renditions.
#[test]
fn blob_tags_tell_neither_time_nor_photo() -> Result<()> {
    let node = TestNode::initialised()?;
    for photo in [
        "camera/nokia-n70_iptc.jpg",
        "camera/sony-nex-3n_colorfulcups_gps.jpg",
    ] {
        let path = corpus::dir().join(photo);
        node.ok(&["import", path.to_str().unwrap()])?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let tags = runtime.block_on(async {
        let blobs = kith_node::blobs::Blobs::open(&node.data_dir.join("blobs")).await?;
        let tags = blobs.tags().await;
        blobs.shutdown().await;
        tags
    })?;
    assert_eq!(tags.len(), 6, "three renditions of two photos: {tags:?}");
    for (name, hash) in &tags {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            name,
            &format!("kith/{hex}"),
            "a tag says more than its blob's hash"
        );
    }
    Ok(())
}
