//! Tickets that must not admit anyone: used, expired, cancelled, altered. Each refusal says
//! which, and leaves the joiner's data dir as it was. And joins that must work: into a family
//! whose log is larger than a frame, and again after the answer was lost.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use kith_protocol::wire::MAX_FRAME;
use kith_tests::cluster::Cluster;
use kith_tests::hostile::{grow_log, ticket_via};
use kith_tests::relay::Relay;
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

/// Renames that make Ana's log larger than one frame (about 220 bytes each).
const RENAMES: usize = 25_000;

/// Ana's node, initialised, its log grown past one frame, running.
fn ana_with_a_long_log() -> Result<TestNode> {
    let mut ana = TestNode::initialised()?;
    let bytes = grow_log(&ana, RENAMES)?;
    assert!(bytes > MAX_FRAME, "the log is only {bytes} bytes");
    ana.start()?;
    Ok(ana)
}

fn invite_state(node: &TestNode, id: &str) -> Result<serde_json::Value> {
    let list = node.json(&["invites", "--json"])?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|i| i["id"] == id)
        .cloned()
        .context("the invite is not listed")
}

#[test]
fn a_family_whose_log_is_larger_than_a_frame_is_joined() -> Result<()> {
    let ana = ana_with_a_long_log()?;
    let joiner = TestNode::new();
    joiner.ok(&["join", &ana.invite()?, "--name", "laptop", "--person", "Bo"])?;
    // The joiner holds the whole log: it knows Ana by the last of her names.
    let people = joiner.json(&["people", "--json"])?.to_string();
    let last = format!("renamed for the {}th time", RENAMES - 1);
    assert!(people.contains(&last), "{people}");
    Ok(())
}

#[test]
fn a_join_whose_answer_was_cut_is_asked_again_with_the_same_ticket() -> Result<()> {
    // The long log makes the answer several MiB, so the relay can cut it half way.
    let ana = ana_with_a_long_log()?;
    let relay = Relay::new();
    let relay_addr = relay.listen("127.0.0.1:0".parse()?)?;
    relay.set_target(ana.listen_addr()?);
    relay.hold_back_after(Some(1 << 20));
    let v = ana.json(&["invite", "--json"])?;
    let id = v["id"].as_str().context("invite id")?.to_owned();
    let ticket = v["ticket"].as_str().context("ticket")?.to_owned();
    let via_relay = ticket_via(&ticket, relay_addr)?;

    let joiner = TestNode::new();
    let first = joiner
        .command(&["join", &via_relay, "--name", "laptop", "--person", "Bo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_until(
        Duration::from_secs(60),
        "the answer to be half sent",
        || Ok(relay.holding() && invite_state(&ana, &id)?["state"] == "admitted"),
    )?;
    relay.cut();
    let out = first.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a join without its answer succeeded");
    assert!(
        stderr.contains("run the same `kith join` again"),
        "{stderr}"
    );

    // Asked again with the same ticket (and the key kept from the first try): admitted.
    relay.hold_back_after(None);
    joiner.ok(&["join", &via_relay, "--name", "laptop", "--person", "Bo"])?;
    let status = joiner.json(&["status", "--json"])?;
    let invite = invite_state(&ana, &id)?;
    assert_eq!(invite["state"], "used", "{invite}");
    assert_eq!(invite["used_by"], status["device_id"], "{invite}");
    let devices = ana.json(&["devices", "--json"])?;
    assert_eq!(devices.as_array().map(Vec::len), Some(2), "{devices}");

    // Any other device with the used ticket is refused.
    refused(&ticket, "already used")?;
    Ok(())
}
