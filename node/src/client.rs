//! Talking to the running node of a data dir, and choosing between that and opening the data
//! dir directly. Both paths return the same types, so every command prints the same either way.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::api::{AlbumPhotos, ApiInfo, Count, CreateAlbum, ErrorBody, RenameAlbum};
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::export::ExportRequest;
use crate::import::ImportRequest;
use crate::library::Library;
use crate::views::{
    AlbumView, ExportEvent, ExportSummary, ImportEvent, ImportSummary, PhotoView, StatusView,
};

pub fn read_api_info(data_dir: &DataDir) -> Option<ApiInfo> {
    let text = std::fs::read(data_dir.api_file()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// A client of a running node's local API.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// Connects to the node serving `data_dir`, if one answers.
    pub async fn connect(data_dir: &DataDir) -> Option<ApiClient> {
        let info = read_api_info(data_dir)?;
        let token = std::fs::read_to_string(data_dir.token_file()).ok()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let client = ApiClient {
            base: format!("http://{}/api", info.addr),
            token: token.trim().to_owned(),
            http,
        };
        let probe = client
            .http
            .get(format!("{}/status", client.base))
            .bearer_auth(&client.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        probe.status().is_success().then_some(client)
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.json::<ErrorBody>().await;
        Err(Error::Remote(match body {
            Ok(b) => b.error,
            Err(_) => status.to_string(),
        }))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(remote)?;
        Self::check(response).await?.json().await.map_err(remote)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(remote)?;
        Self::check(response).await?.json().await.map_err(remote)
    }

    /// Posts a request whose answer is a stream of newline-delimited JSON events.
    async fn stream<B: Serialize, E: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        events: &mpsc::UnboundedSender<E>,
    ) -> Result<()> {
        let mut response = Self::check(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
                .map_err(remote)?,
        )
        .await?;
        let mut buf = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(remote)? {
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let event = serde_json::from_slice(&line)
                    .map_err(|e| Error::Remote(format!("bad event from the node: {e}")))?;
                let _ = events.send(event);
            }
        }
        Ok(())
    }
}

fn remote(e: reqwest::Error) -> Error {
    Error::Remote(e.to_string())
}

/// Where a command's work happens: in the running node, or in this process on the data dir.
pub enum Backend {
    Local(Arc<Library>),
    Remote(ApiClient),
}

impl Backend {
    pub async fn open(data_dir: &DataDir) -> Result<Backend> {
        if let Some(client) = ApiClient::connect(data_dir).await {
            return Ok(Backend::Remote(client));
        }
        Ok(Backend::Local(Library::open(data_dir).await?))
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

    pub async fn photos(&self, album: Option<&str>) -> Result<Vec<PhotoView>> {
        match self {
            Backend::Local(l) => l.photos(album).await,
            Backend::Remote(c) => {
                let path = match album {
                    Some(a) => format!("/photos?album={}", urlencode(a)),
                    None => "/photos".to_owned(),
                };
                c.get(&path).await
            }
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
                c.post("/albums", &body).await
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
                c.post("/albums/rename", &body).await
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
                Ok(c.post::<_, Count>("/albums/add", &body).await?.count)
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
                Ok(c.post::<_, Count>("/albums/remove", &body).await?.count)
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
            Backend::Remote(c) => c.stream("/import", &request, &events).await.map(|()| None),
        }
    }

    pub async fn export(
        &self,
        request: ExportRequest,
        events: mpsc::UnboundedSender<ExportEvent>,
    ) -> Result<Option<ExportSummary>> {
        match self {
            Backend::Local(l) => l.export(request, events).await.map(Some),
            Backend::Remote(c) => c.stream("/export", &request, &events).await.map(|()| None),
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
