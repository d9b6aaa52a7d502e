//! `kith photos` (list, show, edit) and `kith trash` (move to, list, restore, empty).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kith_node::Backend;
use kith_node::edit::{EditRequest, PhotoFilter};

use crate::cli::render;

#[derive(Debug, Subcommand)]
pub enum PhotosAction {
    /// One photo (id or unique id prefix) with its caption, favourite mark and tags.
    Show {
        #[arg(value_name = "PHOTO_ID")]
        photo: String,
    },
    /// Change a photo's caption, favourite mark or tags, on every device.
    Edit {
        #[arg(value_name = "PHOTO_ID")]
        photo: String,
        /// Set the caption.
        #[arg(long, value_name = "TEXT", conflicts_with = "no_caption")]
        caption: Option<String>,
        /// Remove the caption.
        #[arg(long)]
        no_caption: bool,
        /// Mark as a favourite.
        #[arg(long, conflicts_with = "no_favourite")]
        favourite: bool,
        /// Unmark as a favourite.
        #[arg(long)]
        no_favourite: bool,
        /// Add a tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Remove a tag (repeatable).
        #[arg(long = "untag", value_name = "TAG")]
        untags: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrashAction {
    /// List the photos in the trash and when each is purged.
    List,
    /// Take photos out of the trash (ids or unique id prefixes).
    Restore {
        #[arg(required = true, value_name = "PHOTO_ID")]
        photos: Vec<String>,
    },
    /// Purge photos from the trash now, on every device, instead of after 30 days: all of
    /// them, or only those named. Their encrypted files are deleted on each device as the
    /// change reaches it. This cannot be undone.
    Empty {
        /// Photos in the trash to purge (ids or unique id prefixes); none means all.
        #[arg(value_name = "PHOTO_ID")]
        photos: Vec<String>,
    },
}

pub async fn photos(
    backend: &Backend,
    action: Option<PhotosAction>,
    filter: PhotoFilter,
    json: bool,
) -> Result<ExitCode> {
    match action {
        None => {
            let photos = backend.photos(&filter).await?;
            render::print_as(json, &photos, |p| render::photos_table(p))?;
        }
        Some(PhotosAction::Show { photo }) => {
            let photo = backend.photo(&photo).await?;
            render::print_as(json, &photo, render::photo_text)?;
        }
        Some(PhotosAction::Edit {
            photo,
            caption,
            no_caption,
            favourite,
            no_favourite,
            tags,
            untags,
        }) => {
            let request = EditRequest {
                photo,
                caption,
                no_caption,
                favourite: match (favourite, no_favourite) {
                    (true, _) => Some(true),
                    (false, true) => Some(false),
                    (false, false) => None,
                },
                tag: tags,
                untag: untags,
            };
            let photo = backend.edit_photo(request).await?;
            render::print_as(json, &photo, render::photo_text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn trash(
    backend: &Backend,
    action: Option<TrashAction>,
    photos: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    match action {
        None if !photos.is_empty() => {
            let trashed = backend.trash(&photos).await?;
            render::print_as(json, &trashed, |trashed| {
                for t in trashed {
                    println!(
                        "Moved {} ({}) to the trash; purged after {}",
                        render::short_id(&t.photo.id),
                        render::esc(&t.photo.file_name),
                        render::utc_time(t.purge_at_ms)
                    );
                }
            })?;
        }
        None | Some(TrashAction::List) => {
            let trashed = backend.trashed().await?;
            render::print_as(json, &trashed, |t| render::trash_table(t))?;
        }
        Some(TrashAction::Restore { photos }) => {
            let restored = backend.restore(&photos).await?;
            render::print_as(json, &restored, |restored| {
                for p in restored {
                    println!(
                        "Restored {} ({})",
                        render::short_id(&p.id),
                        render::esc(&p.file_name)
                    );
                }
            })?;
        }
        Some(TrashAction::Empty { photos }) => {
            let purged = backend.empty_trash(&photos).await?;
            render::print_as(json, &purged, |purged| {
                if purged.is_empty() {
                    println!("The trash is empty: nothing to purge.");
                    return;
                }
                for p in purged {
                    println!(
                        "Purged {} ({})",
                        render::short_id(&p.id),
                        render::esc(&p.file_name)
                    );
                }
                println!(
                    "{} photo(s) purged on every device; their files are deleted here, and on \
                     each other device when it next syncs.",
                    purged.len()
                );
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
