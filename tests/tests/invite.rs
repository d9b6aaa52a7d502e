//! Tickets that must not admit anyone: used, expired, cancelled, altered. Each refusal says
//! which, and leaves the joiner's data dir as it was.

use std::time::Duration;

use anyhow::Result;
use kith_tests::cluster::Cluster;
use kith_tests::{TestNode, wait_until};

/// Tries to join with `ticket`; requires failure whose message contains `expect`, and that the
/// joiner's data dir was not created.
fn refused(ticket: &str, expect: &str) -> Result<()> {
    let joiner = TestNode::new();
    let out = joiner.run(&["join", ticket, "--name", "laptop"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "join with a bad ticket succeeded");
    assert!(
        stderr.contains(expect),
        "expected {expect:?} in the error, got: {stderr}"
    );
    assert!(
        !joiner.data_dir.exists(),
        "a refused join left files in the data dir"
    );
    Ok(())
}

#[test]
fn used_expired_cancelled_and_altered_tickets_are_refused() -> Result<()> {
    let cluster = Cluster::start(2)?;
    let a = &cluster.nodes[0];

    // The ticket Cluster used for node 1 is spent; a new one used twice admits only once.
    let ticket = a.invite()?;
    let first = TestNode::new();
    first.ok(&["join", &ticket, "--name", "first"])?;
    refused(&ticket, "already used")?;

    // Altered: one character changed.
    let fresh = a.invite()?;
    let mut chars: Vec<char> = fresh.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
    let altered: String = chars.into_iter().collect();
    refused(&altered, "altered or mistyped")?;
    refused("hello", "not a kith invite")?;

    // Cancelled.
    let v = a.json(&["invite", "--json"])?;
    let id = v["id"].as_str().unwrap().to_owned();
    a.ok(&["invites", "cancel", &id])?;
    refused(v["ticket"].as_str().unwrap(), "cancelled")?;

    // Expired: valid for one second; wait (with a deadline) until the node lists it expired.
    let v = a.json(&["invite", "--expires", "1s", "--json"])?;
    let id = v["id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(30), "the invite to expire", || {
        let list = a.json(&["invites", "--json"])?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["id"] == id.as_str() && i["state"] == "expired"))
    })?;
    refused(v["ticket"].as_str().unwrap(), "expired")?;

    // The devices: Ana's, node 1 and `first`; nobody else got in.
    let devices = a.json(&["devices", "--json"])?;
    assert_eq!(devices.as_array().map(Vec::len), Some(3), "{devices}");
    let invites = a.json(&["invites", "--json"])?;
    let used = invites
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["state"] == "used")
        .count();
    assert_eq!(used, 2);
    Ok(())
}

#[test]
fn invite_needs_the_running_node_and_an_admin() -> Result<()> {
    let node = TestNode::initialised()?;
    let out = node.run(&["invite"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kith run"));

    // A member (not admin) cannot invite.
    let cluster = Cluster::start(2)?;
    let out = cluster.nodes[1].run(&["invite"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an admin"));
    Ok(())
}

#[test]
fn invite_prints_a_qr_code_and_writes_svg() -> Result<()> {
    let mut node = TestNode::initialised()?;
    node.start()?;
    let dir = tempfile::tempdir()?;
    let svg = dir.path().join("invite.svg");
    let out = node.ok(&["invite", "--svg", svg.to_str().unwrap()])?;
    assert!(
        out.contains('▀') || out.contains('▄'),
        "no QR drawing in: {out}"
    );
    assert!(out.contains("kith1"));
    let svg = std::fs::read_to_string(&svg)?;
    assert!(svg.contains("<svg"));
    Ok(())
}
