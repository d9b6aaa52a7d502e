//! Two devices in one process: Ana's node invites a second device, which joins with the ticket;
//! Ana imports a folder of photos, and the second device receives the documents and every
//! encrypted rendition over libp2p on loopback. The same steps as `kith invite`, `kith join`,
//! `kith run` and `kith import` on two computers, through the library API.
//!
//! Run: `cargo run -p kith-examples --example two_devices -- PATH_TO_PHOTOS`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_node::net::{NetConfig, Network};
use kith_node::{DataDir, Library};
use kith_protocol::membership::Role;

#[tokio::main]
async fn main() -> Result<()> {
    let folder = std::env::args_os()
        .nth(1)
        .context("usage: two_devices PATH_TO_PHOTOS")?;
    let home = tempfile::tempdir()?;
    let loopback = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        mdns: false,
    };

    // Device A: a new family, its node on the network.
    let dir_a = DataDir::new(home.path().join("a"));
    Library::init(&dir_a, "Ana", "Ana's desktop").await?;
    let lib_a = Library::open(&dir_a).await?;
    let net_a = Network::start(lib_a.clone(), loopback.clone()).await?;

    // A makes an invite; the ticket text is what `kith invite` prints and draws as a QR code.
    let (ticket, _) = lib_a
        .create_invite(Role::Member, 3_600_000, net_a.ticket_addrs())
        .await?;
    println!("ticket: {}", ticket.encode());

    // Device B joins with it, then runs.
    let dir_b = DataDir::new(home.path().join("b"));
    let joined = kith_node::net::invite::join(&dir_b, &ticket, "Bo", "Bo's laptop").await?;
    println!(
        "B joined as {} (device {})",
        joined.person, joined.device_id
    );
    let lib_b = Library::open(&dir_b).await?;
    let net_b = Network::start(lib_b.clone(), loopback).await?;

    // A imports; B receives.
    let summary =
        kith_examples::import(&lib_a, vec![std::path::absolute(&folder)?], Some("From A")).await?;
    println!("A imported {} photo(s)", summary.imported);

    let start = Instant::now();
    loop {
        let status = net_b.sync_view().await?;
        let photos = lib_b.photos(None).await?.len();
        if photos == summary.imported && status.blobs_wanted == 0 {
            println!(
                "B holds {photos} photo(s) and all {} renditions after {:.1?}",
                status.blobs_have,
                start.elapsed()
            );
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("B did not catch up within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in lib_b.photos(None).await? {
        println!("  on B: {} {}", &p.id[..12], p.file_name);
    }
    lib_a.close().await;
    lib_b.close().await;
    Ok(())
}
