//! Command-line arguments and what each command does with them.

mod network;
mod photos;
mod render;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kith_node::views::{ExportEvent, ImportEvent};
use kith_node::{Backend, DataDir, ExportRequest, ImportRequest, Library};
use tokio::sync::mpsc;

/// kith: a peer-to-peer, end-to-end encrypted photo library for one family.
#[derive(Debug, Parser)]
#[command(name = "kith", version, propagate_version = true)]
pub struct Args {
    /// The node's data dir (default: the platform data dir, e.g. ~/.local/share/kith).
    #[arg(long, global = true, env = "KITH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Args {
    /// Whether this runs the node (`kith run`), rather than a command that prints and exits.
    pub fn runs_the_node(&self) -> bool {
        matches!(self.command, Command::Run { .. })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this device's identity and a new family in which you are admin.
    Init {
        /// Your name, as your family will see it.
        #[arg(long)]
        name: String,
        /// This device's name (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the node: stores, local API; stops on Ctrl-C or SIGTERM.
    Run {
        /// Address of the local HTTP API (default: 127.0.0.1 on a random port).
        #[arg(long, value_name = "ADDR")]
        api: Option<SocketAddr>,
        /// Where to listen for other devices, as a multiaddr (repeatable), e.g.
        /// /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1. Default: all interfaces, TCP
        /// and QUIC, on ports picked at the first start and kept.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
    },
    /// Invite a new person, or a new device of someone already in the family: prints a ticket
    /// and its QR code (needs the running node).
    Invite {
        /// The new person's role.
        #[arg(long, default_value = "member", value_parser = ["member", "relative"])]
        role: String,
        /// Add a device to this person (a name or an id prefix) instead of inviting a new
        /// person. Admins may do it for anyone, everyone for themselves.
        #[arg(long, value_name = "NAME", conflicts_with = "role")]
        person: Option<String>,
        /// How long the ticket stays valid (e.g. 24h, 7d, 30m).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        expires: String,
        /// Also write the QR code to this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List invites this device made, or cancel one.
    Invites {
        #[command(subcommand)]
        action: Option<InvitesAction>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Join a family with a ticket from `kith invite` (on a data dir without a library).
    Join {
        /// The ticket (kith1…), as printed or scanned.
        ticket: String,
        /// This device's name, as the family will see it (e.g. "Ana's laptop").
        #[arg(long)]
        name: String,
        /// Your name, as the family will see it (default: your user name).
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The family's devices: who owns them, whether they are online, when last seen; or remove
    /// one.
    Devices {
        #[command(subcommand)]
        action: Option<DevicesAction>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Import photos from files and folders (recursively).
    Import {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Also add the photos to this album (created if missing).
        #[arg(long, value_name = "NAME")]
        album: Option<String>,
        /// One JSON object per file, then a summary object.
        #[arg(long)]
        json: bool,
    },
    /// List photos, newest first (not those in the trash); show or edit one.
    Photos {
        #[command(subcommand)]
        action: Option<photos::PhotosAction>,
        /// Only the photos of this album (title or Parent/Child path).
        #[arg(long, value_name = "ALBUM")]
        album: Option<String>,
        /// Only favourites.
        #[arg(long)]
        favourites: bool,
        /// Only photos with this tag.
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Move photos to the trash (`kith trash PHOTO_ID...`), list it, restore from it, or empty it.
    #[command(args_conflicts_with_subcommands = true)]
    Trash {
        #[command(subcommand)]
        action: Option<photos::TrashAction>,
        /// Photos to move to the trash (ids or unique id prefixes of 6+ characters).
        #[arg(value_name = "PHOTO_ID")]
        photos: Vec<String>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// List albums, or change them.
    Albums {
        #[command(subcommand)]
        action: Option<AlbumAction>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// List the family's people and their devices, or rename yourself.
    People {
        #[command(subcommand)]
        action: Option<PeopleAction>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Counts, store sizes, and whether the node runs.
    Status {
        #[arg(long)]
        json: bool,
        /// Keep showing sync progress as a progress bar until Ctrl-C.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Share an album, and the albums under it, with a person (e.g. a relative): their
    /// devices receive those albums' keys and photos, and nothing else.
    Share {
        /// The album: its title, `Parent/Child` path or id prefix.
        album: String,
        /// The person's name, or a prefix of their id, 6+ hex digits (see `kith people`).
        person: String,
        /// `view`: see the album and its photos; `contribute`: also add photos to it.
        #[arg(long, value_parser = ["view", "contribute"], default_value = "view")]
        can: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop sharing an album (and its sub-albums) with a person. Their devices get no key of
    /// what is added afterwards; what they already received, they keep.
    Unshare {
        album: String,
        person: String,
        #[arg(long)]
        json: bool,
    },
    /// Free disk space: set aside this device's copies of originals that another connected
    /// device holds in full. Thumbnails and previews stay; an original comes back when needed
    /// (e.g. by `kith export`). Not the trash: the photos stay everywhere. Needs the running node.
    FreeSpace {
        /// Only the originals of this album's photos.
        #[arg(long, value_name = "ALBUM")]
        album: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write every original back out, byte-identical, with a JSON sidecar each.
    Export {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Only this album.
        #[arg(long, value_name = "ALBUM")]
        album: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum InvitesAction {
    /// Cancel a pending invite (its id, or a unique prefix of it).
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
enum PeopleAction {
    /// Change your own name, as your family sees it.
    Rename { new_name: String },
    /// Remove a person from the family (admin only): all their devices are refused from then
    /// on and their album access ends. What their devices already hold, they keep.
    Remove {
        /// The person's name, or a prefix of their id (6+ hex digits).
        person: String,
    },
    /// Give a person another role (admin only).
    SetRole {
        /// The person's name, or a prefix of their id (6+ hex digits).
        person: String,
        #[arg(value_parser = ["admin", "member", "relative"])]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesAction {
    /// Remove a device from the family (admin, or the device's own person): it is refused and
    /// disconnected from then on. What it already holds, it keeps.
    Remove {
        /// The device's name, or a prefix of its id (6+ hex digits).
        device: String,
    },
    /// Undo what a removed device did to the library (admins): every photo its changes
    /// removed or replaced, kept restorable here, goes back, in one commit.
    Undo {
        /// The removed device's name, or a prefix of its id (6+ hex digits).
        device: String,
    },
}

#[derive(Debug, Subcommand)]
enum AlbumAction {
    /// Create an album, optionally inside another.
    Create {
        name: String,
        #[arg(long, value_name = "ALBUM")]
        parent: Option<String>,
    },
    /// Rename an album.
    Rename { album: String, new_name: String },
    /// Add photos (ids or unique id prefixes) to an album.
    Add {
        album: String,
        #[arg(required = true, value_name = "PHOTO_ID")]
        photos: Vec<String>,
    },
    /// Remove photos from an album (they stay in the library).
    Remove {
        album: String,
        #[arg(required = true, value_name = "PHOTO_ID")]
        photos: Vec<String>,
    },
}

/// Exit status when a command finished but left something undone (files skipped or failed).
const EXIT_PARTIAL: u8 = 2;

pub async fn execute(args: Args) -> Result<ExitCode> {
    let data_dir = match args.data_dir {
        Some(dir) => DataDir::new(dir),
        None => DataDir::platform_default()?,
    };
    match args.command {
        Command::Init {
            name,
            device_name,
            json,
        } => {
            let device_name = device_name.unwrap_or_else(kith_node::daemon::host_name);
            let view = Library::init(&data_dir, &name, &device_name).await?;
            if json {
                render::print_json(&view)?;
            } else {
                println!(
                    "Created device {} for {} (admin of a new family) in {}",
                    view.device_id,
                    render::esc(&view.person),
                    view.data_dir
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { api, listen } => {
            let listen = listen
                .iter()
                .map(|a| {
                    a.parse().with_context(|| {
                        format!("--listen {a:?} is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/4001)")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let config = kith_node::net::NetConfig { listen, mdns: true };
            kith_node::daemon::run(&data_dir, api, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Join {
            ticket,
            name,
            person,
            json,
        } => {
            let person = person.unwrap_or_else(kith_node::daemon::os_user_name);
            network::join(&data_dir, &ticket, &name, &person, json).await
        }
        command => {
            let backend = Backend::open(&data_dir).await?;
            let result = data_command(&backend, command).await;
            backend.close().await;
            result
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

async fn data_command(backend: &Backend, command: Command) -> Result<ExitCode> {
    match command {
        Command::Import { paths, album, json } => {
            let paths = paths
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<Vec<_>>>()?;
            let (tx, rx) = mpsc::unbounded_channel::<ImportEvent>();
            let printer = tokio::spawn(render::import_events(rx, json));
            let result = backend.import(ImportRequest { paths, album }, tx).await;
            let summary = printer.await.context("the progress printer failed")?;
            result?;
            let summary = summary?;
            Ok(if summary.skipped > 0 {
                ExitCode::from(EXIT_PARTIAL)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Export { dir, album, json } => {
            let dir = absolute(&dir)?;
            let (tx, rx) = mpsc::unbounded_channel::<ExportEvent>();
            let printer = tokio::spawn(render::export_events(rx, json));
            let result = backend.export(ExportRequest { dir, album }, tx).await;
            let summary = printer.await.context("the progress printer failed")?;
            result?;
            let summary = summary?;
            Ok(if summary.failed > 0 {
                ExitCode::from(EXIT_PARTIAL)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Photos {
            action,
            album,
            favourites,
            tag,
            json,
        } => {
            let filter = kith_node::edit::PhotoFilter {
                album,
                favourites,
                tag,
            };
            photos::photos(backend, action, filter, json).await
        }
        Command::Trash {
            action,
            photos,
            json,
        } => photos::trash(backend, action, photos, json).await,
        Command::Albums { action, json } => {
            match action {
                None => {
                    let albums = backend.albums().await?;
                    if json {
                        render::print_json(&albums)?;
                    } else {
                        render::albums_table(&albums);
                    }
                }
                Some(AlbumAction::Create { name, parent }) => {
                    let album = backend.create_album(&name, parent.as_deref()).await?;
                    if json {
                        render::print_json(&album)?;
                    } else {
                        println!(
                            "Created album {} ({})",
                            render::esc(&album.path),
                            album.id.get(..12).unwrap_or(&album.id)
                        );
                    }
                }
                Some(AlbumAction::Rename { album, new_name }) => {
                    let view = backend.rename_album(&album, &new_name).await?;
                    if json {
                        render::print_json(&view)?;
                    } else {
                        println!("Renamed {album:?} to {}", render::esc(&view.path));
                    }
                }
                Some(AlbumAction::Add { album, photos }) => {
                    let count = backend.add_to_album(&album, &photos).await?;
                    if json {
                        render::print_json(&serde_json::json!({ "added": count }))?;
                    } else {
                        println!("Added {count} photo(s) to {}", render::esc(&album));
                    }
                }
                Some(AlbumAction::Remove { album, photos }) => {
                    let count = backend.remove_from_album(&album, &photos).await?;
                    if json {
                        render::print_json(&serde_json::json!({ "removed": count }))?;
                    } else {
                        println!("Removed {count} photo(s) from {}", render::esc(&album));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::People { action, json } => {
            match action {
                None => {
                    let people = backend.people().await?;
                    if json {
                        render::print_json(&people)?;
                    } else {
                        render::people_table(&people);
                    }
                }
                Some(PeopleAction::Remove { person }) => {
                    let person = backend.remove_person(&person).await?;
                    if json {
                        render::print_json(&person)?;
                    } else {
                        println!(
                            "Removed {} and their {} device(s) from the family. They are refused \
                             from now on; what their devices already hold, they keep.",
                            render::esc(&person.name),
                            person.devices.len()
                        );
                    }
                }
                Some(PeopleAction::SetRole { person, role }) => {
                    let person = backend.set_role(&person, &role).await?;
                    if json {
                        render::print_json(&person)?;
                    } else {
                        println!("{} is now {}", render::esc(&person.name), person.role);
                    }
                }
                Some(PeopleAction::Rename { new_name }) => {
                    let person = backend.rename_me(&new_name).await?;
                    if json {
                        render::print_json(&person)?;
                    } else {
                        println!("You are now {:?} to your family", person.name);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            json: _,
            watch: true,
        } => network::watch(backend).await,
        Command::Status { json, watch: false } => {
            let status = backend.status().await?;
            if json {
                render::print_json(&status)?;
            } else {
                render::status_text(&status);
                if let Some(sync) = &status.sync {
                    network::sync_text(sync);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Invite {
            role,
            person,
            expires,
            svg,
            json,
        } => {
            let expires = network::parse_duration(&expires)?;
            network::invite(
                backend,
                &role,
                person.as_deref(),
                expires,
                json,
                svg.as_deref(),
            )
            .await
        }
        Command::Invites { action, json } => {
            match action {
                None => {
                    let invites = backend.invites().await?;
                    if json {
                        render::print_json(&invites)?;
                    } else {
                        network::invites_table(&invites);
                    }
                }
                Some(InvitesAction::Cancel { id }) => {
                    let view = backend.cancel_invite(&id).await?;
                    if json {
                        render::print_json(&view)?;
                    } else {
                        println!("Cancelled invite {}", view.id);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Share {
            album,
            person,
            can,
            json,
        } => {
            let view = backend.share(&album, &person, &can).await?;
            if json {
                render::print_json(&view)?;
            } else {
                render::shared(&view);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unshare {
            album,
            person,
            json,
        } => {
            let view = backend.unshare(&album, &person).await?;
            if json {
                render::print_json(&view)?;
            } else {
                render::shared(&view);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::FreeSpace { album, json } => {
            let view = backend.free_space(album.as_deref()).await?;
            if json {
                render::print_json(&view)?;
            } else {
                println!(
                    "Set aside {} originals ({:.1} MB) that other devices proved they hold; \
                     thumbnails and previews stay. {} originals no connected device proved it \
                     holds stayed here.",
                    view.originals,
                    view.bytes as f64 / 1e6,
                    view.kept
                );
                for note in &view.notes {
                    println!("Not counted: {note}.");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices {
            action: Some(DevicesAction::Remove { device }),
            json,
        } => {
            let removed = backend.remove_device(&device).await?;
            if json {
                render::print_json(&removed)?;
            } else {
                println!(
                    "Removed {:?} ({}'s device {}) from the family. It is refused from now on; \
                     what it already holds, it keeps.",
                    removed.name,
                    render::esc(&removed.person),
                    removed.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices {
            action: Some(DevicesAction::Undo { device }),
            json,
        } => {
            let undone = backend.undo_device(&device).await?;
            render::print_as(json, &undone, |u| {
                println!(
                    "Put back {} photo(s) that removed device {} had removed; every device \
                     gets them back as it syncs.",
                    u.restored, u.device
                );
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices { action: None, json } => {
            let devices = backend.devices().await?;
            if json {
                render::print_json(&devices)?;
            } else {
                network::devices_table(&devices);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { .. } | Command::Run { .. } | Command::Join { .. } => {
            anyhow::bail!("init, run and join are not data commands")
        }
    }
}
