//! The node library's one error type. Each variant says what went wrong and, where a person can
//! do something about it, what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{} is not a kith data dir yet: run `kith init --name \"Your name\"` first", .0.display())]
    NotInitialised(PathBuf),
    #[error("{} is already initialised (device {device}); nothing was changed", .path.display())]
    AlreadyInitialised { path: PathBuf, device: String },
    #[error(
        "the library in {} is in use by another kith process (is `kith run` already running on it?); stop it or use another --data-dir",
        .0.display()
    )]
    Locked(PathBuf),
    #[error("{what} at {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the node's database failed: {0}")]
    Db(String),
    #[error("the blob store failed: {0}")]
    Blobs(String),
    #[error(
        "stored data is damaged: {0}; restore the data dir from a backup or re-sync it from another device"
    )]
    Corrupt(String),
    #[error("no album named {0:?}; `kith albums` lists them")]
    NoSuchAlbum(String),
    #[error("{count} albums are named {name:?}; rename one with `kith albums rename`")]
    AmbiguousAlbum { name: String, count: usize },
    #[error("an album named {0:?} already exists there")]
    AlbumExists(String),
    #[error("no photo matches {0:?}; `kith photos` lists ids")]
    NoSuchPhoto(String),
    #[error("{prefix:?} matches {count} photos; give more characters of the id")]
    AmbiguousPhoto { prefix: String, count: usize },
    #[error("photo {0} is not in the trash; `kith trash` lists what is")]
    NotInTrash(String),
    #[error("album {0:?} cannot be its own ancestor")]
    AlbumCycle(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error(
        "the original of photo {0} was set aside by `kith free-space` and is on another device; \
         start the node (`kith run`) so it can fetch it back, and try again"
    )]
    SetAside(String),
    #[error("no person matches {0:?}; `kith people` lists them")]
    NoSuchPerson(String),
    #[error("no current device matches {0:?}; `kith devices` lists them")]
    NoSuchDevice(String),
    #[error("networking: {0}")]
    Net(String),
    #[error("invite: {0}")]
    Invite(String),
    #[error(
        "this needs the running node: start it with `kith run` (in another terminal or as a service), then try again"
    )]
    NeedsNode,
    #[error("the running node answered with an error: {0}")]
    Remote(String),
}

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
