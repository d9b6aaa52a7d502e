//! The commands that involve other devices: invite, invites, join, devices, status --watch.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kith_node::views::{FamilyDeviceView, InviteView, StatusView, SyncView};
use kith_node::{Backend, DataDir};
use kith_protocol::ticket::Ticket;

use super::render::{esc, human_bytes, print_json};

/// Parses `24h`, `7d`, `30m`, `90s` (a number alone is hours).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration: use e.g. 24h, 7d, 30m"))?;
    let secs = match unit {
        "" | "h" => n * 3600,
        "d" => n * 86_400,
        "m" => n * 60,
        "s" => n,
        other => bail!("unknown duration unit {other:?} in {text:?}: use d, h, m or s"),
    };
    if secs == 0 {
        bail!("an invite must be valid for some time: use e.g. 24h");
    }
    Ok(Duration::from_secs(secs))
}

pub async fn invite(
    backend: &Backend,
    role: &str,
    person: Option<&str>,
    expires: Duration,
    json: bool,
    svg: Option<&Path>,
) -> Result<ExitCode> {
    let view = backend
        .create_invite(role, person, expires.as_millis() as u64)
        .await?;
    let text = view
        .ticket
        .clone()
        .context("the node answered without a ticket")?;
    let ticket = Ticket::decode(&text).context("the node made an unreadable ticket")?;
    if let Some(path) = svg {
        let svg = kith_node::qr::svg(&ticket.encode_for_qr())?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        print_json(&serde_json::json!({
            "ticket": text,
            "id": view.id,
            "role": view.role,
            "person": view.person,
            "expires_at": view.expires_at_ms,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", kith_node::qr::terminal(&ticket.encode_for_qr())?);
    println!("{text}");
    println!();
    let whom = match &view.person {
        Some(name) => format!("a new device of {}", esc(name)),
        None => format!("a new {}", view.role),
    };
    println!(
        "Invite {} for {whom} — valid until {} (single use).",
        view.id,
        super::render::utc_time(view.expires_at_ms)
    );
    println!("On the new device: kith join <ticket> --name \"Its name\"");
    if let Some(path) = svg {
        println!("QR code written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn invites_table(invites: &[InviteView]) {
    if invites.is_empty() {
        println!("No invites. `kith invite` makes one.");
        return;
    }
    println!(
        "{:<34} {:<9} {:<10} {:<20} USED BY",
        "ID", "ROLE", "STATE", "EXPIRES"
    );
    for i in invites {
        println!(
            "{:<34} {:<9} {:<10} {:<20} {}",
            i.id,
            i.role,
            i.state,
            super::render::utc_time(i.expires_at_ms),
            i.used_by
                .as_deref()
                .map(|d| &d[..d.len().min(12)])
                .unwrap_or("")
        );
    }
}

pub async fn join(
    data_dir: &DataDir,
    ticket_text: &str,
    device_name: &str,
    person: &str,
    json: bool,
) -> Result<ExitCode> {
    let ticket = Ticket::decode(ticket_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Checked here too, before anything is sent: the admin's device would not take these names.
    for (what, name) in [("the device name", device_name), ("your name", person)] {
        kith_protocol::names::check_name(name)
            .map_err(|e| anyhow::anyhow!("{what} {name:?}: {e}"))?;
    }
    let view = kith_node::net::invite::join(data_dir, &ticket, person, device_name).await?;
    if json {
        print_json(&view)?;
    } else {
        println!(
            "Joined the family as {} with device {} in {}.",
            esc(&view.person),
            view.device_id,
            view.data_dir
        );
        if let Some(kept) = &view.kept {
            println!(
                "Your library came along: {} photo(s) ({} the family already had) and {} album(s) are now part of the family's library.",
                kept.photos + kept.already_there,
                kept.already_there,
                kept.albums
            );
            for skipped in &kept.skipped {
                println!("  not carried over (damaged): {}", esc(skipped));
            }
            println!(
                "The data dir as it was is kept in {}; delete it once you have checked the photos.",
                kept.previous_data_dir
            );
        }
        println!("Start the node with `kith run`: it finds the family's devices and syncs.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn devices_table(devices: &[FamilyDeviceView]) {
    println!(
        "{:<14} {:<16} {:<20} {:<8} LAST SEEN",
        "ID", "PERSON", "NAME", "ONLINE"
    );
    for d in devices {
        let mut name = esc(&d.name).into_owned();
        if d.this {
            name.push_str(" (this)");
        }
        let online = if d.revoked {
            "removed"
        } else if d.online {
            "yes"
        } else {
            "no"
        };
        let seen = match (d.this, d.last_seen_ms) {
            (true, _) => "now".to_owned(),
            (false, Some(ms)) => super::render::utc_time(ms),
            (false, None) => "never".to_owned(),
        };
        println!(
            "{:<14} {:<16} {:<20} {:<8} {seen}",
            &d.id[..12],
            esc(&d.person),
            name,
            online
        );
        if d.undoable > 0 {
            println!(
                "{:<14} after its removal it removed {} photo(s), kept here: `kith devices undo {}` puts them back",
                "",
                d.undoable,
                &d.id[..12]
            );
        }
    }
}

pub fn sync_text(s: &SyncView) {
    println!(
        "blobs:     {} held, {} wanted ({} fetched, {} failed)",
        s.blobs_have, s.blobs_wanted, s.blobs_fetched, s.blobs_failed
    );
    for a in &s.listen {
        println!("listening: {a}");
    }
    for p in &s.peers {
        println!(
            "peer:      {} {} — {}, {} changes in ({} rejected), {} blobs ({}) fetched",
            esc(&p.name),
            &p.device[..12],
            match (p.online, p.caught_up) {
                (true, true) => "online, caught up",
                (true, false) => "online, syncing",
                _ => "offline",
            },
            p.changes_received,
            p.changes_rejected,
            p.blobs_fetched,
            human_bytes(p.bytes_fetched)
        );
    }
}

/// `kith status --watch`: a progress bar of renditions held until Ctrl-C.
pub async fn watch(backend: &Backend) -> Result<ExitCode> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} blobs [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let status: StatusView = backend.status().await?;
        let Some(sync) = status.sync else {
            bar.finish_and_clear();
            bail!("the node is not running: start it with `kith run` to sync");
        };
        bar.set_length(sync.blobs_have + sync.blobs_wanted);
        bar.set_position(sync.blobs_have);
        let online = sync.peers.iter().filter(|p| p.online).count();
        let caught_up = sync
            .peers
            .iter()
            .filter(|p| p.online && p.caught_up)
            .count();
        bar.set_message(format!(
            "{} photos, {online} peer(s) online, {caught_up} caught up",
            status.photos
        ));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.finish();
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
