//! A family of real `kith` processes on loopback: the first device founds the family and
//! invites the others, which join and run. Every wait has a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde_json::Value;

use crate::{TestNode, wait_until, walk};

pub struct Cluster {
    pub nodes: Vec<TestNode>,
}

/// Long enough for a slow CI machine; a healthy run takes a few seconds.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(120);

impl Cluster {
    /// `n` devices: node 0 is Ana's (admin), node i is a new member's. All running.
    pub fn start(n: usize) -> Result<Cluster> {
        let mut first = TestNode::initialised()?;
        first.start()?;
        let mut nodes = vec![first];
        for i in 1..n {
            let mut node = TestNode::new();
            let ticket = nodes[0].invite()?;
            node.ok(&[
                "join",
                &ticket,
                "--name",
                &format!("device {i}"),
                "--person",
                &format!("Person {i}"),
            ])
            .with_context(|| format!("--- inviter's log:\n{}", tail(&nodes[0].log(), 60)))?;
            node.start()?;
            nodes.push(node);
        }
        Ok(Cluster { nodes })
    }

    /// Waits until every running node holds the same documents and lacks no rendition.
    pub fn wait_converged(&self) -> Result<()> {
        self.wait_converged_among(&(0..self.nodes.len()).collect::<Vec<_>>())
    }

    pub fn wait_converged_among(&self, which: &[usize]) -> Result<()> {
        let mut last = Vec::new();
        let result = wait_until(SYNC_DEADLINE, "the devices to converge", || {
            last.clear();
            for &i in which {
                last.push(self.nodes[i].sync_state()?);
            }
            let first = &last[0];
            Ok(last.iter().all(|s| {
                s.docs_digest == first.docs_digest
                    && s.blobs_wanted == 0
                    && s.photos == first.photos
            }))
        });
        if let Err(e) = result {
            let logs: Vec<String> = which
                .iter()
                .map(|&i| format!("--- node {i} log:\n{}", tail(&self.nodes[i].log(), 40)))
                .collect();
            bail!("{e}\nlast states: {last:?}\n{}", logs.join("\n"));
        }
        Ok(())
    }
}

/// A new device named `device`, joined to the family of the running `inviter` as the device of
/// a new relative named `person`; not started.
pub fn join_relative(inviter: &TestNode, device: &str, person: &str) -> Result<TestNode> {
    let ticket = inviter.invite_with(&["--role", "relative"])?;
    let node = TestNode::new();
    node.ok(&["join", &ticket, "--name", device, "--person", person])?;
    Ok(node)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What convergence is judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub docs_digest: String,
    pub blobs_wanted: u64,
    pub photos: u64,
}

impl TestNode {
    /// A fresh member ticket from this (running) node.
    pub fn invite(&self) -> Result<String> {
        self.invite_with(&[])
    }

    /// A fresh ticket from this (running) node, made with `options` for `kith invite` (such as
    /// `["--role", "relative"]` or `["--person", NAME]`).
    pub fn invite_with(&self, options: &[&str]) -> Result<String> {
        let mut args = vec!["invite"];
        args.extend_from_slice(options);
        args.push("--json");
        let v = self.json(&args)?;
        v["ticket"]
            .as_str()
            .map(str::to_owned)
            .context("invite --json printed no ticket")
    }

    pub fn sync_state(&self) -> Result<SyncState> {
        let s: Value = self.json(&["status", "--json"])?;
        let sync = &s["sync"];
        Ok(SyncState {
            docs_digest: sync["docs_digest"].as_str().unwrap_or_default().to_owned(),
            // Not yet computed counts as wanted: the fetcher has not looked.
            blobs_wanted: sync["blobs_wanted"].as_u64().unwrap_or(u64::MAX),
            photos: s["photos"].as_u64().unwrap_or_default(),
        })
    }

    /// The (first) TCP address the running node listens on for other devices.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        let status = self.json(&["status", "--json"])?;
        let addr: Multiaddr = status["sync"]["listen"][0]
            .as_str()
            .context("the node listens nowhere")?
            .parse()?;
        socket_addr(&addr).with_context(|| format!("{addr} is not an IPv4 TCP address"))
    }

    /// File name → bytes of every original in an export (sidecars left out).
    pub fn exported(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let out = tempfile::tempdir()?;
        let dir = out.path().join("export");
        self.ok(&["export", dir.to_str().context("utf-8 path")?])?;
        let mut files = BTreeMap::new();
        for path in walk(&dir) {
            let name = path.strip_prefix(&dir)?.display().to_string();
            if !name.ends_with(".kith.json") {
                files.insert(name, std::fs::read(&path)?);
            }
        }
        Ok(files)
    }
}

/// `/ip4/A/tcp/P` as a socket address.
pub fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::from((ip?, port?)))
}

/// A socket address as the multiaddr libp2p dials.
pub fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(match addr.ip() {
            std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
            std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
        })
        .with(Protocol::Tcp(addr.port()))
}
