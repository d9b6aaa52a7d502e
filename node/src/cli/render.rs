//! How results look on a terminal: tables, progress bars, JSON lines.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kith_node::views::{
    AlbumView, ExportEvent, ExportOutcome, ExportStatus, ExportSummary, FileOutcome, FileStatus,
    ImportEvent, ImportSummary, PersonView, PhotoView, StatusView, TrashedView,
};
use serde::Serialize;
use tokio::sync::mpsc;

/// Text from the library (names, captions, tags, titles, file names, EXIF fields: much of it
/// written by other devices) as it may reach a terminal: control, bidi and invisible characters
/// escaped, so an ANSI sequence or a right-to-left override prints as `\u{1b}` or `\u{202e}`
/// instead of acting. JSON output needs none of this: serde escapes control characters and the
/// bytes stay exact.
pub fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    kith_protocol::names::escape_hidden(text)
}

pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Prints `value` as JSON, or as `text` prints it for a person.
pub fn print_as<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) -> Result<()> {
    if json {
        print_json(value)
    } else {
        text(value);
        Ok(())
    }
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

/// One step of a long-running command (import, export) as the printer sees it.
enum Step<O, S> {
    Started(usize),
    File(O),
    Done(S),
    Failed(String),
}

impl From<ImportEvent> for Step<FileOutcome, ImportSummary> {
    fn from(event: ImportEvent) -> Self {
        match event {
            ImportEvent::Started { files } => Step::Started(files),
            ImportEvent::File(outcome) => Step::File(outcome),
            ImportEvent::Done(summary) => Step::Done(summary),
            ImportEvent::Failed { error } => Step::Failed(error),
        }
    }
}

impl From<ExportEvent> for Step<ExportOutcome, ExportSummary> {
    fn from(event: ExportEvent) -> Self {
        match event {
            ExportEvent::Started { files } => Step::Started(files),
            ExportEvent::File(outcome) => Step::File(outcome),
            ExportEvent::Done(summary) => Step::Done(summary),
            ExportEvent::Failed { error } => Step::Failed(error),
        }
    }
}

/// How one command's files and summary read on a terminal.
struct Wording<O, S> {
    verb: &'static str,
    /// The line for a file that went wrong, or None for one that went fine.
    problem: fn(&O) -> Option<String>,
    summary: fn(&S) -> String,
}

/// Prints a command's events as they come (JSON lines, or a progress bar and the problems);
/// returns the summary.
async fn print_events<E, O, S>(
    mut rx: mpsc::UnboundedReceiver<E>,
    json: bool,
    wording: Wording<O, S>,
) -> Result<S>
where
    E: Into<Step<O, S>>,
    O: Serialize,
    S: Serialize,
{
    let mut progress: Option<ProgressBar> = None;
    let mut problems = Vec::new();
    while let Some(event) = rx.recv().await {
        match event.into() {
            Step::Started(files) => {
                if !json {
                    progress = Some(bar(files, wording.verb));
                }
            }
            Step::File(outcome) => {
                if json {
                    print_json(&outcome)?;
                } else {
                    if let Some(p) = &progress {
                        p.inc(1);
                    }
                    problems.extend((wording.problem)(&outcome));
                }
            }
            Step::Done(summary) => {
                if let Some(p) = progress.take() {
                    p.finish_and_clear();
                }
                if json {
                    print_json(&summary)?;
                } else {
                    for line in &problems {
                        println!("{line}");
                    }
                    println!("{}", (wording.summary)(&summary));
                }
                return Ok(summary);
            }
            Step::Failed(error) => {
                if let Some(p) = progress.take() {
                    p.abandon();
                }
                bail!("{} stopped: {error}", wording.verb);
            }
        }
    }
    bail!(
        "{} ended without a summary (did the node stop?)",
        wording.verb
    )
}

pub async fn import_events(
    rx: mpsc::UnboundedReceiver<ImportEvent>,
    json: bool,
) -> Result<ImportSummary> {
    let wording = Wording {
        verb: "importing",
        problem: |o: &FileOutcome| {
            (o.status == FileStatus::Skipped).then(|| {
                let reason = o.reason.as_deref().unwrap_or("no reason given");
                format!("skipped  {}: {}", esc(&o.path), esc(reason))
            })
        },
        summary: |s: &ImportSummary| {
            format!(
                "{} imported, {} duplicate(s), {} skipped",
                s.imported, s.duplicates, s.skipped
            )
        },
    };
    print_events(rx, json, wording).await
}

pub async fn export_events(
    rx: mpsc::UnboundedReceiver<ExportEvent>,
    json: bool,
) -> Result<ExportSummary> {
    let wording = Wording {
        verb: "exporting",
        problem: |o: &ExportOutcome| {
            (o.status == ExportStatus::Failed).then(|| {
                let reason = o.reason.as_deref().unwrap_or("no reason given");
                format!("failed   {}: {}", esc(&o.path), esc(reason))
            })
        },
        summary: |s: &ExportSummary| {
            format!(
                "{} written, {} already there, {} failed",
                s.written, s.present, s.failed
            )
        },
    };
    print_events(rx, json, wording).await
}

/// The first 12 characters of an id, as tables show it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub fn photos_table(photos: &[PhotoView]) {
    if photos.is_empty() {
        println!("No photos here: `kith import PATH` adds some (`kith trash` lists trashed ones).");
        return;
    }
    println!(
        "{:<12}  {:<1}  {:<19}  {:>11}  {:<28}  {:<20}  {:<30}  ALBUMS / TAGS",
        "ID", "*", "TAKEN", "SIZE", "CAMERA", "GPS", "NAME"
    );
    for p in photos {
        let gps = p
            .gps
            .as_ref()
            .map(|g| format!("{:.5},{:.5}", g.lat, g.lon))
            .unwrap_or_default();
        let mut last = esc(&p.albums.join(", ")).into_owned();
        for tag in &p.tags {
            last.push_str(&format!(" #{}", esc(tag)));
        }
        println!(
            "{:<12}  {:<1}  {:<19}  {:>11}  {:<28}  {:<20}  {:<30}  {}",
            short_id(&p.id),
            if p.favourite { "*" } else { "" },
            p.taken_at.as_deref().unwrap_or("-"),
            format!("{}x{}", p.display_width, p.display_height),
            esc(p.camera.as_deref().unwrap_or("-")),
            gps,
            esc(&p.file_name),
            last.trim_start()
        );
    }
}

/// One photo, a field a line.
pub fn photo_text(p: &PhotoView) {
    println!("id:        {}", p.id);
    println!("name:      {}", esc(&p.file_name));
    println!("taken:     {}", esc(p.taken_at.as_deref().unwrap_or("-")));
    println!("size:      {}x{}", p.display_width, p.display_height);
    println!("camera:    {}", esc(p.camera.as_deref().unwrap_or("-")));
    println!("caption:   {}", esc(p.caption.as_deref().unwrap_or("-")));
    println!("favourite: {}", if p.favourite { "yes" } else { "no" });
    println!("tags:      {}", esc(&p.tags.join(", ")));
    println!("albums:    {}", esc(&p.albums.join(", ")));
    if let Some(t) = p.trashed_at_ms {
        println!("trashed:   {}", utc_time(t));
    }
}

pub fn trash_table(trashed: &[TrashedView]) {
    if trashed.is_empty() {
        println!("The trash is empty.");
        return;
    }
    println!(
        "{:<12}  {:<20}  {:<20}  NAME",
        "ID", "TRASHED", "PURGED AFTER"
    );
    for t in trashed {
        println!(
            "{:<12}  {:<20}  {:<20}  {}",
            short_id(&t.photo.id),
            t.photo.trashed_at_ms.map(utc_time).unwrap_or_default(),
            utc_time(t.purge_at_ms),
            esc(&t.photo.file_name)
        );
    }
}

pub fn people_table(people: &[PersonView]) {
    for p in people {
        if p.removed {
            println!("{} (removed)", esc(&p.name));
        } else {
            println!("{} ({})", esc(&p.name), p.role);
        }
        for d in &p.devices {
            println!(
                "  {}  {}{}{}",
                &d.id[..12.min(d.id.len())],
                esc(&d.name),
                if d.this { "  (this device)" } else { "" },
                if d.revoked { "  (removed)" } else { "" }
            );
        }
    }
}

pub fn albums_table(albums: &[AlbumView]) {
    if albums.is_empty() {
        println!("No albums yet: `kith albums create NAME` makes one.");
        return;
    }
    println!("{:<12}  {:>6}  ALBUM", "ID", "PHOTOS");
    for a in albums {
        let mut notes = Vec::new();
        if a.access == "view" {
            notes.push("view only".to_owned());
        }
        if !a.shared_with.is_empty() {
            let with: Vec<String> = a
                .shared_with
                .iter()
                .map(|g| format!("{} ({})", esc(&g.person), g.access))
                .collect();
            notes.push(format!("shared with {}", with.join(", ")));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  [{}]", notes.join("; "))
        };
        println!(
            "{:<12}  {:>6}  {}{notes}",
            &a.id[..12.min(a.id.len())],
            a.photos,
            esc(&a.path)
        );
    }
}

/// What `kith share` / `kith unshare` did, in a sentence.
pub fn shared(view: &kith_node::sharing::ShareView) {
    let (first, rest) = match view.albums.split_first() {
        Some((first, rest)) => (first.as_str(), rest.len()),
        None => ("", 0),
    };
    let under = match rest {
        0 => String::new(),
        1 => " and the album under it".to_owned(),
        n => format!(" and the {n} albums under it"),
    };
    match &view.access {
        Some(access) => println!(
            "Shared {first:?}{under} with {}, who can {access}.",
            esc(&view.person)
        ),
        None => println!(
            "Stopped sharing {first:?}{under} with {}. What their devices already received, they keep.",
            esc(&view.person)
        ),
    }
}

pub fn human_bytes(n: u64) -> String {
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
    println!("device:    {} ({})", esc(&s.device_name), s.device_id);
    println!("person:    {} ({})", esc(&s.person), s.role);
    println!("photos:    {}", s.photos);
    if s.kept > 0 {
        println!(
            "kept:      {} photo(s) left the library other than by the trash; restorable for \
             30 days (`kith trash`, `kith trash restore`)",
            s.kept
        );
    }
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
            println!("  {}", esc(d));
        }
    }
}

/// A unix time in ms as `YYYY-MM-DD HH:MM UTC` (days-from-civil, Howard Hinnant's algorithm).
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02} UTC")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_time_formats_known_instants() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc_time(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }
}
