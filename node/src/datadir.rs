//! Where a node keeps its files, and the device's secret key file.
//!
//! ```text
//! DATA_DIR/
//!   keys/device.key   ed25519 seed ‖ X25519 seed (mode 0600)
//!   kith.redb         node state: identity, membership ops, document keys, sealed changes
//!   blobs/            iroh-blobs store: encrypted originals, previews, thumbnails
//!   api.json          address and pid of the running node (removed when it stops)
//!   api.token         bearer token for the local API (mode 0600)
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
