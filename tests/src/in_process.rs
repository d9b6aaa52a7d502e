//! A family of nodes inside the test process: each device is a `Library` and a `Network` on
//! its own temp data dir, listening on loopback port 0 — the same code `kith run` runs, without
//! a process per node, so a test can look at a device's state directly and start quickly.
//! Every wait has a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_node::net::{NetConfig, Network};
use kith_node::views::SyncView;
use kith_node::{DataDir, ImportRequest, Library};
use kith_protocol::membership::Role;

use crate::cluster::SYNC_DEADLINE;

pub struct Device {
    pub lib: Arc<Library>,
    pub net: Arc<Network>,
    pub dir: DataDir,
}

pub struct InProcessCluster {
    pub devices: Vec<Device>,
    _home: tempfile::TempDir,
}

fn loopback() -> Result<NetConfig> {
    Ok(NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        mdns: false,
    })
}

impl InProcessCluster {
    /// `n` running devices: device 0 founds the family (Ana, admin), device i joins with a
    /// member ticket from device 0 as a new person.
    pub async fn start(n: usize) -> Result<InProcessCluster> {
        let home = tempfile::tempdir()?;
        let dir = DataDir::new(home.path().join("device-0"));
        Library::init(&dir, "Ana", "device 0").await?;
        let lib = Library::open(&dir).await?;
        let net = Network::start(lib.clone(), loopback()?).await?;
        let mut cluster = InProcessCluster {
            devices: vec![Device { lib, net, dir }],
            _home: home,
        };
        for i in 1..n {
            cluster.join(i).await?;
        }
        Ok(cluster)
    }

    /// One more device, joining with a member ticket from device 0.
    pub async fn add_device(&mut self) -> Result<&Device> {
        self.join(self.devices.len()).await?;
        self.devices.last().context("just added")
    }

    async fn join(&mut self, i: usize) -> Result<()> {
        let inviter = &self.devices[0];
        let (ticket, _) = inviter
            .lib
            .create_invite(Role::Member, 3_600_000, inviter.net.ticket_addrs())
            .await?;
        let dir = DataDir::new(self._home.path().join(format!("device-{i}")));
        kith_node::net::invite::join(
            &dir,
            &ticket,
            &format!("Person {i}"),
            &format!("device {i}"),
        )
        .await
        .with_context(|| format!("device {i} joining"))?;
        let lib = Library::open(&dir).await?;
        let net = Network::start(lib.clone(), loopback()?).await?;
        self.devices.push(Device { lib, net, dir });
        Ok(())
    }

    /// Waits until every device holds the same documents and photos and lacks no rendition.
    pub async fn wait_converged(&self) -> Result<()> {
        let start = Instant::now();
        let mut last = Vec::new();
        loop {
            last.clear();
            for d in &self.devices {
                last.push((d.net.sync_view().await?, d.lib.photos(None).await?.len()));
            }
            let (first, photos) = &last[0];
            if last.iter().all(|(s, p)| {
                s.docs_digest == first.docs_digest && s.blobs_wanted == 0 && p == photos
            }) {
                return Ok(());
            }
            if start.elapsed() > SYNC_DEADLINE {
                let states: Vec<String> = last
                    .iter()
                    .map(|(s, p)| format!("{p} photos, {}", summary(s)))
                    .collect();
                bail!("the devices did not converge: {states:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes every device's library (the networks stop with the runtime).
    pub async fn close(self) {
        for d in &self.devices {
            d.lib.close().await;
        }
    }
}

impl Device {
    /// Imports files into an album and waits for the import to commit.
    pub async fn import(&self, paths: &[std::path::PathBuf], album: &str) -> Result<usize> {
        let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let request = ImportRequest {
            paths: paths.to_vec(),
            album: Some(album.to_owned()),
        };
        let lib = self.lib.clone();
        let import = tokio::spawn(async move { lib.import(request, events).await });
        while rx.recv().await.is_some() {}
        Ok(import.await??.imported)
    }
}

fn summary(s: &SyncView) -> String {
    format!(
        "docs {} wanted {} have {} peers {:?}",
        &s.docs_digest.get(..12).unwrap_or_default(),
        s.blobs_wanted,
        s.blobs_have,
        s.peers
            .iter()
            .map(|p| (p.name.as_str(), p.online, p.caught_up, p.blobs_fetched))
            .collect::<Vec<_>>()
    )
}
