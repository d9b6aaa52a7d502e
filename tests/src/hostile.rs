//! Helpers for tests of a hostile world around one node: its memory as the kernel counts it, a
//! membership log grown past one frame, and tickets pointed through a relay.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use kith_node::DataDir;
use kith_node::store::{Store, WriteBatch};
use kith_protocol::membership::{self, MembershipOp, OpBody, SignedOp};
use kith_protocol::ticket::Ticket;

use crate::TestNode;
use crate::cluster::multiaddr;

/// The pid of the running node, from its `api.json`.
pub fn node_pid(node: &TestNode) -> Result<u32> {
    let api: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.data_dir.join("api.json"))?)?;
    let pid = api["pid"].as_u64().context("api.json holds no pid")?;
    Ok(u32::try_from(pid)?)
}

/// The most memory the process has held so far (`VmHWM`, resident peak), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc status")?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM has no value")?;
    Ok(kib.parse()?)
}

/// Grows the (stopped) node's membership log by `renames` ops: its person renamed again and
/// again, as a long-lived family's log grows. Written straight into the store in one commit,
/// signed by the node's own key: the log the node would hold after that many `kith people
/// rename`s, made in a second. Returns the log's size in bytes.
pub fn grow_log(node: &TestNode, renames: usize) -> Result<usize> {
    let dir = DataDir::new(&node.data_dir);
    let device = dir.read_device_secret()?;
    let store = Store::open(&dir.db_file(), device.storage_key())?;
    let loaded = store.load(&node.data_dir)?;
    let person = loaded.identity.person;
    let mut parents = membership::heads(&loaded.ops);
    let mut ops = Vec::with_capacity(renames);
    for i in 0..renames {
        let op = SignedOp::sign(
            MembershipOp {
                version: 1,
                parents: parents.clone(),
                author: device.device_id(),
                time_ms: 1_700_000_000_000 + i as u64,
                body: OpBody::RenamePerson {
                    person,
                    name: format!("Ana, renamed for the {i}th time, to make a long log"),
                },
            },
            &device,
        );
        parents = vec![op.id()];
        ops.push(op);
    }
    let bytes = loaded
        .ops
        .iter()
        .chain(&ops)
        .map(|o| o.to_bytes().len())
        .sum();
    store.commit(&WriteBatch {
        ops,
        ..WriteBatch::default()
    })?;
    Ok(bytes)
}

/// `ticket` with its addresses replaced by `addr` (a relay in front of the inviter).
pub fn ticket_via(ticket: &str, addr: SocketAddr) -> Result<String> {
    let mut t = Ticket::decode(ticket)?;
    t.addrs = vec![multiaddr(addr).to_vec()];
    Ok(t.encode())
}
