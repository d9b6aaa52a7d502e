//! Where a node keeps its files, and the device's secret key file.
//!
//! ```text
//! DATA_DIR/
//!   keys/device.key   ed25519 seed ‖ X25519 seed (mode 0600)
//!   kith.redb         node state: identity, membership ops, document keys, sealed changes
//!   blobs/            iroh-blobs store: encrypted originals, previews, thumbnails
//!   api.json          address and pid of the running node (removed when it stops)
//!   api.token         bearer token for the local API (mode 0600)
//!   node.lock         locked by `kith run` for as long as it runs
//! ```
//!
//! Two locks: redb's own lock on `kith.redb` is held by whichever process has the library open
//! (the node, or a command run without it, briefly); `node.lock` is held by `kith run` alone,
//! from before it opens the library until it exits. A command that finds `node.lock` held
//! talks to the node (waiting for its API while it starts) and never opens the library itself,
//! so a starting node waits only for the commands that opened the library before it came.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kith_protocol::keys::DeviceSecret;

use crate::error::{Error, Result};

/// The data dir of one node.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The platform's data dir for kith (e.g. `~/.local/share/kith` on Linux).
    pub fn platform_default() -> Result<Self> {
        let dirs = directories::ProjectDirs::from("", "", "kith").ok_or_else(|| {
            Error::Invalid("no home directory found; pass --data-dir or set KITH_DATA_DIR".into())
        })?;
        Ok(DataDir::new(dirs.data_dir()))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn key_file(&self) -> PathBuf {
        self.root.join("keys").join("device.key")
    }
    pub fn db_file(&self) -> PathBuf {
        self.root.join("kith.redb")
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
    pub fn api_file(&self) -> PathBuf {
        self.root.join("api.json")
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api.token")
    }
    pub fn node_lock_file(&self) -> PathBuf {
        self.root.join("node.lock")
    }

    /// Takes `node.lock` for `kith run`: held until the returned file is dropped. Fails with
    /// [`Error::Locked`] when another node holds it. A command looking whether a node runs holds
    /// it shared for an instant ([`DataDir::node_is_running`]), so a taken lock is tried again
    /// for a moment before it counts as another node's.
    pub fn hold_node_lock(&self) -> Result<fs::File> {
        let path = self.node_lock_file();
        let file = open_lock_file(&path)?;
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked(self.root.clone()));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::io("cannot lock", &path)(e));
                }
            }
        }
    }

    /// Whether a `kith run` holds this data dir (running, or still starting).
    pub fn node_is_running(&self) -> bool {
        let path = self.node_lock_file();
        let Ok(file) = fs::File::open(&path) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(e)) => {
                tracing::warn!("cannot look at {}: {e}", path.display());
                false
            }
        }
    }

    /// Creates the data dir (mode 0700) if missing.
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.root)?;
        create_private_dir(&self.root.join("keys"))
    }

    pub fn read_device_secret(&self) -> Result<DeviceSecret> {
        let path = self.key_file();
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotInitialised(self.root.clone())
            } else {
                Error::io("cannot read the device key", &path)(e)
            }
        })?;
        let (ed, x) = match (bytes.get(..32), bytes.get(32..64), bytes.len()) {
            (Some(ed), Some(x), 64) => (ed, x),
            _ => {
                return Err(Error::Corrupt(format!(
                    "{} is not a kith device key",
                    path.display()
                )));
            }
        };
        let mut ed_seed = [0u8; 32];
        let mut x_seed = [0u8; 32];
        ed_seed.copy_from_slice(ed);
        x_seed.copy_from_slice(x);
        Ok(DeviceSecret::from_seeds(ed_seed, x_seed))
    }

    pub fn write_device_secret(&self, secret: &DeviceSecret) -> Result<()> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&secret.ed25519_seed());
        bytes.extend_from_slice(&secret.x25519_seed());
        write_private_file(&self.key_file(), &bytes)
    }
}

fn open_lock_file(path: &Path) -> Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(Error::io("cannot open", path))
}

fn create_private_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(Error::io("cannot create the directory", path))?;
    set_mode(path, 0o700)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(Error::io("cannot set permissions on", path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// Writes a secret atomically (temp file of mode 0600, fsync, rename), so a crash leaves either
/// the old file or the new one, and no moment exists where the secret is world-readable.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(Error::io("cannot create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("cannot write", &tmp))?;
    set_mode(&tmp, 0o600)?;
    fs::rename(&tmp, path).map_err(Error::io("cannot move into place", path))?;
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Flushes a folder's entries (new and renamed files) to disk. A folder that does not exist
/// yet has nothing to flush.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    match fs::File::open(dir) {
        Ok(handle) => handle
            .sync_all()
            .map_err(Error::io("cannot flush the folder", dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot open the folder", dir)(e)),
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
