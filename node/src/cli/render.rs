//! How results look on a terminal: tables, progress bars, JSON lines.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kith_node::views::{
    AlbumView, ExportEvent, ExportStatus, ExportSummary, FileStatus, ImportEvent, ImportSummary,
    PhotoView, StatusView,
};
use serde::Serialize;
use tokio::sync::mpsc;

pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// Prints import events as they come; returns the summary.
pub async fn import_events(
    mut rx: mpsc::UnboundedReceiver<ImportEvent>,
    json: bool,
) -> Result<ImportSummary> {
    let mut progress: Option<ProgressBar> = None;
    let mut problems = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            ImportEvent::Started { files } => {
                if !json {
                    progress = Some(bar(files, "importing"));
                }
            }
            ImportEvent::File(outcome) => {
                if json {
                    print_json(&outcome)?;
                } else {
                    if let Some(p) = &progress {
                        p.inc(1);
                    }
                    if outcome.status == FileStatus::Skipped {
                        problems.push(outcome);
                    }
                }
            }
            ImportEvent::Done(summary) => {
                if let Some(p) = progress.take() {
                    p.finish_and_clear();
                }
                if json {
                    print_json(&summary)?;
                } else {
                    for p in &problems {
                        println!(
                            "skipped  {}: {}",
                            p.path,
                            p.reason.as_deref().unwrap_or("no reason given")
                        );
                    }
                    println!(
                        "{} imported, {} duplicate(s), {} skipped",
                        summary.imported, summary.duplicates, summary.skipped
                    );
                }
                return Ok(summary);
            }
            ImportEvent::Failed { error } => {
                if let Some(p) = progress.take() {
                    p.abandon();
                }
                bail!("import stopped: {error}");
            }
        }
    }
    bail!("the import ended without a summary (did the node stop?)")
}

pub async fn export_events(
    mut rx: mpsc::UnboundedReceiver<ExportEvent>,
    json: bool,
) -> Result<ExportSummary> {
    let mut progress: Option<ProgressBar> = None;
    let mut failures = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            ExportEvent::Started { files } => {
                if !json {
                    progress = Some(bar(files, "exporting"));
                }
            }
            ExportEvent::File(outcome) => {
                if json {
                    print_json(&outcome)?;
                } else {
                    if let Some(p) = &progress {
                        p.inc(1);
                    }
                    if outcome.status == ExportStatus::Failed {
                        failures.push(outcome);
                    }
                }
            }
            ExportEvent::Done(summary) => {
                if let Some(p) = progress.take() {
                    p.finish_and_clear();
                }
                if json {
                    print_json(&summary)?;
                } else {
                    for f in &failures {
                        println!(
                            "failed   {}: {}",
                            f.path,
                            f.reason.as_deref().unwrap_or("no reason given")
                        );
                    }
                    println!(
                        "{} written, {} already there, {} failed",
                        summary.written, summary.present, summary.failed
                    );
                }
                return Ok(summary);
            }
            ExportEvent::Failed { error } => {
                if let Some(p) = progress.take() {
                    p.abandon();
                }
                bail!("export stopped: {error}");
            }
        }
    }
    bail!("the export ended without a summary (did the node stop?)")
}

pub fn photos_table(photos: &[PhotoView]) {
    if photos.is_empty() {
        println!("No photos yet: `kith import PATH` adds some.");
        return;
    }
    println!(
        "{:<12}  {:<19}  {:>11}  {:<28}  {:<20}  {:<30}  ALBUMS",
        "ID", "TAKEN", "SIZE", "CAMERA", "GPS", "NAME"
    );
    for p in photos {
        let gps = p
            .gps
            .as_ref()
            .map(|g| format!("{:.5},{:.5}", g.lat, g.lon))
            .unwrap_or_default();
        println!(
            "{:<12}  {:<19}  {:>11}  {:<28}  {:<20}  {:<30}  {}",
            &p.id[..12.min(p.id.len())],
            p.taken_at.as_deref().unwrap_or("-"),
            format!("{}x{}", p.display_width, p.display_height),
            p.camera.as_deref().unwrap_or("-"),
            gps,
            p.file_name,
            p.albums.join(", ")
        );
    }
}

pub fn albums_table(albums: &[AlbumView]) {
    if albums.is_empty() {
        println!("No albums yet: `kith albums create NAME` makes one.");
        return;
    }
    println!("{:<12}  {:>6}  ALBUM", "ID", "PHOTOS");
    for a in albums {
        println!(
            "{:<12}  {:>6}  {}",
            &a.id[..12.min(a.id.len())],
            a.photos,
            a.path
        );
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn status_text(s: &StatusView) {
    println!(
        "node:      {}",
        if s.running {
            format!("running (API {})", s.api.as_deref().unwrap_or("?"))
        } else {
            "not running".to_owned()
        }
    );
    println!("data dir:  {}", s.data_dir);
    println!("device:    {} ({})", s.device_name, s.device_id);
    println!("person:    {} ({})", s.person, s.role);
    println!("photos:    {}", s.photos);
    println!("albums:    {}", s.albums);
    println!("documents: {} ({} changes)", s.documents, s.changes);
    println!("database:  {}", human_bytes(s.db_bytes));
    println!("blobs:     {}", human_bytes(s.blob_bytes));
    if !s.damaged.is_empty() {
        println!(
            "DAMAGED:   {} item(s) failed their checks:",
            s.damaged.len()
        );
        for d in &s.damaged {
            println!("  {d}");
        }
    }
}
