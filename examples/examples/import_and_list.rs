//! Imports a folder of photos into a fresh, throwaway kith library and lists what it holds:
//! the library API without the CLI.
//!
//! Run: `cargo run -p kith-examples --example import_and_list -- PATH_TO_PHOTOS`

use anyhow::{Context, Result};
use kith_node::views::{FileStatus, ImportEvent};
use kith_node::{DataDir, ImportRequest, Library};

#[tokio::main]
async fn main() -> Result<()> {
    let folder = std::env::args_os()
        .nth(1)
        .context("usage: import_and_list PATH_TO_PHOTOS")?;
    let home = std::env::temp_dir().join(format!("kith-example-{}", std::process::id()));
    let data_dir = DataDir::new(&home);

    // A new device identity and family, as `kith init` makes them.
    Library::init(&data_dir, "Example", "example device").await?;
    let library = Library::open(&data_dir).await?;

    // Import sends one event per file once it is committed (or skipped).
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let request = ImportRequest {
        paths: vec![folder.into()],
        album: Some("Example album".into()),
    };
    let import = {
        let library = library.clone();
        tokio::spawn(async move { library.import(request, events).await })
    };
    while let Some(event) = rx.recv().await {
        if let ImportEvent::File(file) = event
            && file.status == FileStatus::Skipped
        {
            println!("skipped {}: {}", file.path, file.reason.unwrap_or_default());
        }
    }
    let summary = import.await??;
    println!(
        "{} imported, {} duplicates, {} skipped\n",
        summary.imported, summary.duplicates, summary.skipped
    );

    for photo in library.photos(None).await? {
        println!(
            "{}  {:<19}  {:>5}x{:<5}  {}",
            &photo.id[..12],
            photo.taken_at.as_deref().unwrap_or("-"),
            photo.display_width,
            photo.display_height,
            photo.file_name
        );
    }
    library.close().await;
    std::fs::remove_dir_all(&home).ok();
    Ok(())
}
