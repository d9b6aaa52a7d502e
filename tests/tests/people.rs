//! People and devices across real nodes: roles set by admins only, and a removed device cut
//! off by every other device.

use anyhow::{Context, Result};
use kith_tests::cluster::{Cluster, SYNC_DEADLINE};
use kith_tests::{TestNode, corpus, wait_until};
use serde_json::Value;

fn stderr_of(node: &TestNode, args: &[&str]) -> Result<String> {
    let out = node.run(args)?;
    assert!(!out.status.success(), "kith {args:?} should have failed");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn role_of(people: &Value, name: &str) -> Option<String> {
    people
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["role"].as_str())
        .map(str::to_owned)
}

fn device<'a>(devices: &'a Value, name: &str) -> Option<&'a Value> {
    devices.as_array()?.iter().find(|d| d["name"] == name)
}

#[test]
fn roles_are_set_by_admins_only_and_the_last_admin_stays() -> Result<()> {
    let cluster = Cluster::start(2)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    let refused = stderr_of(b, &["people", "set-role", "Ana", "member"])?;
    assert!(refused.contains("only an admin"), "{refused}");
    let last = stderr_of(a, &["people", "set-role", "Ana", "member"])?;
    assert!(last.contains("last admin"), "{last}");
    let unknown = stderr_of(a, &["people", "set-role", "Nobody", "admin"])?;
    assert!(unknown.contains("Nobody"), "{unknown}");

    let promoted = a.json(&["people", "set-role", "person 1", "admin", "--json"])?;
    assert_eq!(promoted["role"], "admin");
    wait_until(SYNC_DEADLINE, "B to see its promotion", || {
        Ok(role_of(&b.json(&["people", "--json"])?, "Person 1").as_deref() == Some("admin"))
    })?;
    // Now that there are two admins, B (an admin) may make Ana a member.
    b.ok(&["people", "set-role", "Ana", "member"])?;
    wait_until(SYNC_DEADLINE, "A to see Ana made a member", || {
        Ok(role_of(&a.json(&["people", "--json"])?, "Ana").as_deref() == Some("member"))
    })?;
    let no_longer = stderr_of(a, &["people", "set-role", "Person 1", "member"])?;
    assert!(no_longer.contains("only an admin"), "{no_longer}");
    Ok(())
}

#[test]
fn a_removed_device_is_disconnected_refused_and_gets_nothing_new() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let files = corpus::some_photos(2)?;
    a.ok(&["import", &files[0]])?;
    cluster.wait_converged()?;

    // A member may not remove another person's device.
    let refused = stderr_of(b, &["devices", "remove", "device 2"])?;
    assert!(refused.contains("only an admin"), "{refused}");

    let removed = a.json(&["devices", "remove", "device 2", "--json"])?;
    assert_eq!(removed["revoked"], true);
    for (name, node) in [("A", a), ("B", b)] {
        let mut last = Value::Null;
        wait_until(SYNC_DEADLINE, "C to be revoked and offline", || {
            last = node.json(&["devices", "--json"])?;
            Ok(device(&last, "device 2")
                .is_some_and(|d| d["revoked"] == true && d["online"] == false))
        })
        .with_context(|| format!("{name}'s devices: {last}"))?;
    }

    // What is added afterwards reaches B and not C.
    a.ok(&["import", &files[1]])?;
    cluster.wait_converged_among(&[0, 1])?;
    let on_c = c.json(&["photos", "--json"])?;
    assert_eq!(on_c.as_array().map(Vec::len), Some(1), "C: {on_c}");
    // C does not know it was removed and dials again: it is turned away.
    wait_until(SYNC_DEADLINE, "A to refuse C's connection", || {
        Ok(a.log()
            .contains("refused a connection from a device removed from the family"))
    })?;
    Ok(())
}

#[test]
fn a_person_invites_another_device_of_their_own() -> Result<()> {
    let cluster = Cluster::start(2)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    // A member may add devices to themselves only.
    let refused = stderr_of(b, &["invite", "--person", "Ana"])?;
    assert!(refused.contains("only an admin"), "{refused}");
    let invite = b.json(&["invite", "--person", "Person 1", "--json"])?;
    assert_eq!(invite["person"], "Person 1");
    let ticket = invite["ticket"].as_str().context("a ticket")?;

    let mut c = TestNode::new();
    c.ok(&["join", ticket, "--name", "Bo's tablet"])?;
    c.start()?;
    let mut last = Value::Null;
    wait_until(SYNC_DEADLINE, "A to list the tablet under Person 1", || {
        last = a.json(&["people", "--json"])?;
        Ok(last.as_array().is_some_and(|people| {
            people.len() == 2
                && people.iter().any(|p| {
                    p["name"] == "Person 1"
                        && p["devices"]
                            .as_array()
                            .is_some_and(|d| d.iter().any(|d| d["name"] == "Bo's tablet"))
                })
        }))
    })
    .with_context(|| format!("A's people: {last}"))?;
    let on_c = c.json(&["status", "--json"])?;
    assert_eq!(on_c["person"], "Person 1", "{on_c}");
    Ok(())
}

#[test]
fn a_removed_person_loses_every_device() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    let refused = stderr_of(b, &["people", "remove", "Person 2"])?;
    assert!(refused.contains("only an admin"), "{refused}");
    let myself = stderr_of(a, &["people", "remove", "Ana"])?;
    assert!(myself.contains("is you"), "{myself}");

    let removed = a.json(&["people", "remove", "Person 2", "--json"])?;
    assert_eq!(removed["removed"], true, "{removed}");
    assert!(
        removed["devices"]
            .as_array()
            .is_some_and(|d| d.iter().all(|d| d["revoked"] == true)),
        "{removed}"
    );
    let mut last = Value::Null;
    wait_until(
        SYNC_DEADLINE,
        "B to see Person 2 removed and offline",
        || {
            last = b.json(&["devices", "--json"])?;
            Ok(device(&last, "device 2")
                .is_some_and(|d| d["revoked"] == true && d["online"] == false))
        },
    )
    .with_context(|| format!("B's devices: {last}"))?;
    let again = stderr_of(a, &["people", "remove", "Person 2"])?;
    assert!(again.contains("already removed"), "{again}");
    Ok(())
}
