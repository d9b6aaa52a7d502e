//! Talking to the running node of a data dir, and choosing between that and opening the data
//! dir directly. Both paths return the same types, so every command prints the same either way.
//!
//! The node is found through `api.json` (its address) and `api.token` in the data dir. Before
//! the token goes anywhere, whoever answers at that address proves it holds the token
//! ([`crate::api::token_proof`] of a fresh nonce); one that cannot is refused, and the command
//! fails saying so. While a node starts (`node.lock` held, no API yet), commands wait for its
//! API instead of opening the library under it.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::api::{
    AlbumPhotos, ApiInfo, Count, CreateAlbum, ErrorBody, Hello, RenameAlbum, RenameMe,
};
use crate::datadir::DataDir;
use crate::edit::{EditRequest, PhotoFilter};
use crate::error::{Error, Result};
use crate::export::ExportRequest;
use crate::import::ImportRequest;
use crate::library::Library;
use crate::views::{
    AlbumView, ExportEvent, ExportSummary, FamilyDeviceView, ImportEvent, ImportSummary,
    InviteView, PersonView, PhotoView, StatusView, TrashedView,
};

pub fn read_api_info(data_dir: &DataDir) -> Option<ApiInfo> {
    let text = std::fs::read(data_dir.api_file()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// A client of a running node's local API. Blocking HTTP (ureq) on tokio's blocking pool: the
/// CLI makes one request at a time, and a plain HTTP/1.1 client needs no TLS stack.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// What answered at the address in `api.json`.
enum Answer {
    /// Nothing listens there: no node runs, or it has not written its address yet.
    Nobody,
    /// The node that wrote the token.
    Node,
    /// Something else: why it is not the node.
    Impostor(String),
}

impl ApiClient {
    /// Connects to the node serving `data_dir`, if one answers. Fails when what answers at
    /// the node's address cannot prove it is the node that wrote the token.
    pub async fn connect(data_dir: &DataDir) -> Result<Option<ApiClient>> {
        let Some(info) = read_api_info(data_dir) else {
            return Ok(None);
        };
        let Ok(token) = std::fs::read_to_string(data_dir.token_file()) else {
            return Ok(None);
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let client = ApiClient {
            base: format!("http://{}/api", info.addr),
            auth: format!("Bearer {}", token.trim()),
            agent,
        };
        let probe = client.clone();
        let token = token.trim().to_owned();
        let answer = tokio::task::spawn_blocking(move || probe.challenge(&token))
            .await
            .unwrap_or_else(|e| Answer::Impostor(format!("the check did not finish: {e}")));
        match answer {
            Answer::Nobody => Ok(None),
            Answer::Node => Ok(Some(client)),
            Answer::Impostor(why) => Err(Error::Remote(format!(
                "what answers at {} (the address in {}) is not the kith node of this data dir: \
                 {why}. Nothing was sent to it. If no `kith run` runs on this data dir, delete \
                 that file and try again",
                info.addr,
                data_dir.api_file().display()
            ))),
        }
    }

    /// Asks whoever listens at the node's address to prove it holds `token`; the token itself
    /// is not sent.
    fn challenge(&self, token: &str) -> Answer {
        let nonce: [u8; 32] = rand::random();
        let response = self
            .agent
            .get(format!(
                "{}/hello?nonce={}",
                self.base,
                data_encoding::HEXLOWER.encode(&nonce)
            ))
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .call();
        let mut response = match response {
            Ok(r) => r,
            Err(ureq::Error::ConnectionFailed) => return Answer::Nobody,
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Answer::Nobody;
            }
            Err(e) => return Answer::Impostor(format!("it did not answer the check ({e})")),
        };
        if !response.status().is_success() {
            return Answer::Impostor(format!("it answered the check with {}", response.status()));
        }
        let expected = data_encoding::HEXLOWER.encode(&crate::api::token_proof(token, &nonce));
        match response.body_mut().read_json::<Hello>() {
            Ok(hello) if hello.proof == expected => Answer::Node,
            Ok(_) => Answer::Impostor("it could not prove it holds the node's token".into()),
            Err(_) => Answer::Impostor("it did not answer the check as a kith node does".into()),
        }
    }

    fn check(
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        Err(Error::Remote(
            match response.body_mut().read_json::<ErrorBody>() {
                Ok(b) => b.error,
                Err(_) => status.to_string(),
            },
        ))
    }

    /// The JSON answer of a request, or the node's error message.
    fn read_json<T: DeserializeOwned>(
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        Self::check(response.map_err(remote)?)?
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_json()
            .map_err(remote)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(ApiClient) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let client = self.clone();
        tokio::task::spawn_blocking(move || work(client))
            .await
            .map_err(|e| Error::Remote(format!("the API request did not finish: {e}")))?
    }

    async fn get<T: DeserializeOwned + Send + 'static>(&self, path: &str) -> Result<T> {
        let path = path.to_owned();
        self.blocking(move |c| {
            let response = c
                .agent
                .get(format!("{}{path}", c.base))
                .header("Authorization", &c.auth)
                .call();
            Self::read_json(response)
        })
        .await
    }

    /// Posts a list of photo ids (or prefixes) to `path`.
    async fn post_photos<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        photos: &[String],
    ) -> Result<T> {
        let body = crate::api::PhotoList {
            photos: photos.to_vec(),
        };
        self.post(path, body).await
    }

    async fn post<B: Serialize + Send + 'static, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: B,
    ) -> Result<T> {
        let path = path.to_owned();
        self.blocking(move |c| {
            let response = c
                .agent
                .post(format!("{}{path}", c.base))
                .header("Authorization", &c.auth)
                .send_json(&body);
            Self::read_json(response)
        })
        .await
    }

    /// Posts a request whose answer is a stream of newline-delimited JSON events.
    async fn stream<B: Serialize + Send + 'static, E: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: B,
        events: &mpsc::UnboundedSender<E>,
    ) -> Result<()> {
        let path = path.to_owned();
        let events = events.clone();
        self.blocking(move |c| {
            let response = c
                .agent
                .post(format!("{}{path}", c.base))
                .header("Authorization", &c.auth)
                .config()
                .timeout_global(None)
                .build()
                .send_json(&body)
                .map_err(remote)?;
            let reader = BufReader::new(Self::check(response)?.into_body().into_reader());
            for line in reader.lines() {
                let line =
                    line.map_err(|e| Error::Remote(format!("the node stopped answering: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                let event = serde_json::from_str(&line)
                    .map_err(|e| Error::Remote(format!("bad event from the node: {e}")))?;
                let _ = events.send(event);
            }
            Ok(())
        })
        .await
    }
}

/// How long a command waits for a starting node's API, or for another command to close the
/// library, before it gives up.
const WAIT_FOR_DATA_DIR: Duration = Duration::from_secs(120);

/// The largest answer the CLI reads from its node: a listing of 100 000 photos is about 40 MB,
/// which ureq's default of 10 MB refused ("the response body is larger than request limit").
const ANSWER_LIMIT: u64 = 1 << 30;

fn remote(e: ureq::Error) -> Error {
    Error::Remote(e.to_string())
}

/// Where a command's work happens: in the running node, or in this process on the data dir.
pub enum Backend {
    Local(Arc<Library>),
    Remote(ApiClient),
}

impl Backend {
    /// The running node if there is one (waiting for its API while it starts), else the
    /// library opened here (waiting while another command has it open, briefly).
    pub async fn open(data_dir: &DataDir) -> Result<Backend> {
        let started = Instant::now();
        let mut said = false;
        loop {
            if let Some(client) = ApiClient::connect(data_dir).await? {
                return Ok(Backend::Remote(client));
            }
            let waiting_for = if data_dir.node_is_running() {
                // A node holds the data dir but its API is not up yet: it is starting.
                "the node to start"
            } else {
                match Library::open(data_dir).await {
                    Ok(library) => return Ok(Backend::Local(library)),
                    Err(Error::Locked(_)) => "another kith command to finish with the library",
                    Err(e) => return Err(e),
                }
            };
            let waited = started.elapsed();
            if waited > WAIT_FOR_DATA_DIR {
                return Err(Error::Locked(data_dir.root().to_path_buf()));
            }
            if waited > Duration::from_secs(2) && !said {
                eprintln!("kith: waiting for {waiting_for}…");
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn close(self) {
        if let Backend::Local(library) = self {
            library.close().await;
        }
    }

    pub async fn status(&self) -> Result<StatusView> {
        match self {
            Backend::Local(l) => l.status(false, None).await,
            Backend::Remote(c) => c.get("/status").await,
        }
    }

    pub async fn photos(&self, filter: &PhotoFilter) -> Result<Vec<PhotoView>> {
        match self {
            Backend::Local(l) => l.photos_matching(filter).await,
            Backend::Remote(c) => {
                let mut query = Vec::new();
                if let Some(a) = &filter.album {
                    query.push(format!("album={}", urlencode(a)));
                }
                if filter.favourites {
                    query.push("favourites=true".to_owned());
                }
                if let Some(t) = &filter.tag {
                    query.push(format!("tag={}", urlencode(t)));
                }
                c.get(&format!("/photos?{}", query.join("&"))).await
            }
        }
    }

    pub async fn photo(&self, photo: &str) -> Result<PhotoView> {
        match self {
            Backend::Local(l) => l.photo(photo).await,
            Backend::Remote(c) => {
                c.get(&format!("/photos/show?photo={}", urlencode(photo)))
                    .await
            }
        }
    }

    pub async fn edit_photo(&self, request: EditRequest) -> Result<PhotoView> {
        match self {
            Backend::Local(l) => l.edit_photo(&request).await,
            Backend::Remote(c) => c.post("/photos/edit", request).await,
        }
    }

    pub async fn trashed(&self) -> Result<Vec<TrashedView>> {
        match self {
            Backend::Local(l) => l.trashed().await,
            Backend::Remote(c) => c.get("/trash").await,
        }
    }

    pub async fn trash(&self, photos: &[String]) -> Result<Vec<TrashedView>> {
        match self {
            Backend::Local(l) => l.trash(photos).await,
            Backend::Remote(c) => c.post_photos("/trash", photos).await,
        }
    }

    pub async fn restore(&self, photos: &[String]) -> Result<Vec<PhotoView>> {
        match self {
            Backend::Local(l) => l.restore(photos).await,
            Backend::Remote(c) => c.post_photos("/trash/restore", photos).await,
        }
    }

    /// Purges the named photos in the trash now, or all of them when none is named.
    pub async fn empty_trash(&self, photos: &[String]) -> Result<Vec<PhotoView>> {
        match self {
            Backend::Local(l) => l.empty_trash(photos).await,
            Backend::Remote(c) => c.post_photos("/trash/empty", photos).await,
        }
    }

    pub async fn people(&self) -> Result<Vec<PersonView>> {
        match self {
            Backend::Local(l) => l.people().await,
            Backend::Remote(c) => c.get("/people").await,
        }
    }

    pub async fn rename_me(&self, name: &str) -> Result<PersonView> {
        match self {
            Backend::Local(l) => l.rename_me(name).await,
            Backend::Remote(c) => {
                let body = RenameMe {
                    name: name.to_owned(),
                };
                c.post("/people/rename", body).await
            }
        }
    }

    /// A new invite with its ticket. Needs the running node: the ticket holds its addresses.
    /// `person`: an existing person to add a device to, instead of a new person with `role`.
    pub async fn create_invite(
        &self,
        role: &str,
        person: Option<&str>,
        valid_for_ms: u64,
    ) -> Result<InviteView> {
        match self {
            Backend::Local(_) => Err(Error::NeedsNode),
            Backend::Remote(c) => {
                let body = crate::api::CreateInvite {
                    role: role.to_owned(),
                    valid_for_ms,
                    person: person.map(str::to_owned),
                };
                c.post("/invites", body).await
            }
        }
    }

    pub async fn invites(&self) -> Result<Vec<InviteView>> {
        match self {
            Backend::Local(l) => l.invites().await,
            Backend::Remote(c) => c.get("/invites").await,
        }
    }

    pub async fn cancel_invite(&self, id: &str) -> Result<InviteView> {
        match self {
            Backend::Local(l) => l.cancel_invite(id).await,
            Backend::Remote(c) => {
                let body = crate::api::InviteId { id: id.to_owned() };
                c.post("/invites/cancel", body).await
            }
        }
    }

    pub async fn share(
        &self,
        album: &str,
        person: &str,
        access: &str,
    ) -> Result<crate::sharing::ShareView> {
        match self {
            Backend::Local(l) => {
                let access = crate::sharing::parse_access(access)?;
                l.share(album, person, access).await
            }
            Backend::Remote(c) => {
                let body = crate::api::Share {
                    album: album.to_owned(),
                    person: person.to_owned(),
                    access: Some(access.to_owned()),
                };
                c.post("/albums/share", body).await
            }
        }
    }

    pub async fn unshare(&self, album: &str, person: &str) -> Result<crate::sharing::ShareView> {
        match self {
            Backend::Local(l) => l.unshare(album, person).await,
            Backend::Remote(c) => {
                let body = crate::api::Share {
                    album: album.to_owned(),
                    person: person.to_owned(),
                    access: None,
                };
                c.post("/albums/share", body).await
            }
        }
    }

    pub async fn set_role(&self, person: &str, role: &str) -> Result<PersonView> {
        match self {
            Backend::Local(l) => {
                let role = role.parse().map_err(|_| {
                    Error::Invalid(format!("{role:?} is not a role (admin, member, relative)"))
                })?;
                l.set_role(person, role).await
            }
            Backend::Remote(c) => {
                let body = crate::api::SetRole {
                    person: person.to_owned(),
                    role: role.to_owned(),
                };
                c.post("/people/set-role", body).await
            }
        }
    }

    pub async fn remove_person(&self, person: &str) -> Result<PersonView> {
        match self {
            Backend::Local(l) => l.remove_person(person).await,
            Backend::Remote(c) => {
                let body = crate::api::RemovePerson {
                    person: person.to_owned(),
                };
                c.post("/people/remove", body).await
            }
        }
    }

    /// Puts back what a removed device's changes removed (see [`Library::undo_removed_device`]).
    pub async fn undo_device(&self, device: &str) -> Result<crate::views::UndoView> {
        match self {
            Backend::Local(l) => l.undo_removed_device(device).await,
            Backend::Remote(c) => {
                let body = crate::api::RemoveDevice {
                    device: device.to_owned(),
                };
                c.post("/devices/undo", body).await
            }
        }
    }

    /// Removes a device from the family; returns it as `kith devices` now shows it.
    pub async fn remove_device(&self, device: &str) -> Result<FamilyDeviceView> {
        match self {
            Backend::Local(l) => {
                let id = l.remove_device(device).await?.to_string();
                l.devices(None)
                    .await?
                    .into_iter()
                    .find(|d| d.id == id)
                    .ok_or_else(|| Error::Corrupt("the removed device is gone from the log".into()))
            }
            Backend::Remote(c) => {
                let body = crate::api::RemoveDevice {
                    device: device.to_owned(),
                };
                c.post("/devices/remove", body).await
            }
        }
    }

    /// Sets aside local originals other devices hold. Needs the running node: it asks them.
    pub async fn free_space(
        &self,
        album: Option<&str>,
    ) -> Result<crate::free_space::FreeSpaceView> {
        match self {
            Backend::Local(_) => Err(Error::NeedsNode),
            Backend::Remote(c) => {
                let body = crate::api::FreeSpace {
                    album: album.map(str::to_owned),
                };
                c.post("/free-space", body).await
            }
        }
    }

    pub async fn devices(&self) -> Result<Vec<FamilyDeviceView>> {
        match self {
            Backend::Local(l) => l.devices(None).await,
            Backend::Remote(c) => c.get("/devices").await,
        }
    }

    pub async fn albums(&self) -> Result<Vec<AlbumView>> {
        match self {
            Backend::Local(l) => l.albums().await,
            Backend::Remote(c) => c.get("/albums").await,
        }
    }

    pub async fn create_album(&self, title: &str, parent: Option<&str>) -> Result<AlbumView> {
        match self {
            Backend::Local(l) => l.create_album(title, parent).await,
            Backend::Remote(c) => {
                let body = CreateAlbum {
                    title: title.to_owned(),
                    parent: parent.map(str::to_owned),
                };
                c.post("/albums", body).await
            }
        }
    }

    pub async fn rename_album(&self, album: &str, title: &str) -> Result<AlbumView> {
        match self {
            Backend::Local(l) => l.rename_album(album, title).await,
            Backend::Remote(c) => {
                let body = RenameAlbum {
                    album: album.to_owned(),
                    title: title.to_owned(),
                };
                c.post("/albums/rename", body).await
            }
        }
    }

    pub async fn add_to_album(&self, album: &str, photos: &[String]) -> Result<usize> {
        match self {
            Backend::Local(l) => l.add_to_album(album, photos).await,
            Backend::Remote(c) => {
                let body = AlbumPhotos {
                    album: album.to_owned(),
                    photos: photos.to_vec(),
                };
                Ok(c.post::<_, Count>("/albums/add", body).await?.count)
            }
        }
    }

    pub async fn remove_from_album(&self, album: &str, photos: &[String]) -> Result<usize> {
        match self {
            Backend::Local(l) => l.remove_from_album(album, photos).await,
            Backend::Remote(c) => {
                let body = AlbumPhotos {
                    album: album.to_owned(),
                    photos: photos.to_vec(),
                };
                Ok(c.post::<_, Count>("/albums/remove", body).await?.count)
            }
        }
    }

    /// Runs an import; events arrive on `events` as files are committed or skipped.
    pub async fn import(
        &self,
        request: ImportRequest,
        events: mpsc::UnboundedSender<ImportEvent>,
    ) -> Result<Option<ImportSummary>> {
        match self {
            Backend::Local(l) => l.import(request, events).await.map(Some),
            Backend::Remote(c) => c.stream("/import", request, &events).await.map(|()| None),
        }
    }

    pub async fn export(
        &self,
        request: ExportRequest,
        events: mpsc::UnboundedSender<ExportEvent>,
    ) -> Result<Option<ExportSummary>> {
        match self {
            Backend::Local(l) => l.export(request, events).await.map(Some),
            Backend::Remote(c) => c.stream("/export", request, &events).await.map(|()| None),
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo listing of a large library is read whole (ureq reads 10 MB by default).
    #[test]
    fn an_answer_larger_than_ten_megabytes_is_read() {
        let names: Vec<String> = (0..700_000).map(|n| format!("IMG_{n:08}.jpg")).collect();
        let body = serde_json::to_vec(&names).unwrap();
        assert!(body.len() > 10 << 20, "{} bytes", body.len());
        let response = ureq::http::Response::builder()
            .status(200)
            .body(
                ureq::Body::builder()
                    .mime_type("application/json")
                    .data(body),
            )
            .unwrap();
        let read: Vec<String> = ApiClient::read_json(Ok(response)).unwrap();
        assert_eq!(read, names);
    }
}
