//! The local HTTP JSON API on 127.0.0.1, used by the CLI (and the web app) while a node runs.
//! Every `/api` route needs the bearer token the node wrote into its data dir, but one:
//! `/api/hello`, where the node proves it holds that token before a client sends it (see
//! [`token_proof`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::edit::{EditRequest, PhotoFilter};
use crate::error::Error;
use crate::export::ExportRequest;
use crate::import::ImportRequest;
use crate::library::Library;
use crate::net::Network;
use crate::views::{ExportEvent, ImportEvent};

/// Written to `api.json` in the data dir while the node runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    pub addr: String,
    pub pid: u32,
}

#[derive(Clone)]
struct AppState {
    library: Arc<Library>,
    net: Arc<Network>,
    token: Arc<str>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PhotoQuery {
    pub photo: String,
}

/// Photos named on a command line (ids or unique id prefixes).
#[derive(Debug, Serialize, Deserialize)]
pub struct PhotoList {
    pub photos: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateAlbum {
    pub title: String,
    pub parent: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RenameAlbum {
    pub album: String,
    pub title: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AlbumPhotos {
    pub album: String,
    pub photos: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RenameMe {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SetRole {
    /// A person's name or id prefix.
    pub person: String,
    pub role: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Share {
    pub album: String,
    /// A person's name or id prefix.
    pub person: String,
    /// `view` or `contribute`; `None` to unshare.
    pub access: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RemovePerson {
    /// A person's name or id prefix.
    pub person: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RemoveDevice {
    /// A device's name or id prefix.
    pub device: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Count {
    pub count: usize,
}

struct ApiError(Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::NoSuchAlbum(_)
            | Error::NoSuchPhoto(_)
            | Error::NoSuchPerson(_)
            | Error::NoSuchDevice(_) => StatusCode::NOT_FOUND,
            Error::NotAllowed(_) => StatusCode::FORBIDDEN,
            Error::AlbumExists(_) => StatusCode::CONFLICT,
            Error::Invalid(_)
            | Error::Invite(_)
            | Error::AmbiguousAlbum { .. }
            | Error::AmbiguousPhoto { .. }
            | Error::AlbumCycle(_) => StatusCode::BAD_REQUEST,
            Error::NotInTrash(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(ErrorBody {
                error: self.0.to_string(),
            }),
        )
            .into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `GET /api/hello?nonce=<64 hex digits>`: a client's fresh random challenge.
#[derive(Debug, Serialize, Deserialize)]
pub struct HelloQuery {
    pub nonce: String,
}

/// The answer to `/api/hello`: [`token_proof`] of the client's nonce, in hex.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub proof: String,
}

/// What proves that whoever answers at the address in `api.json` is the node that wrote
/// `api.token`: a keyed BLAKE3 hash of the client's nonce under a key derived from the token.
/// The client sends its token only after checking it. Whoever took the port after the node
/// stopped cannot compute it (the token file is readable by its owner alone, and a new random
/// token is written at each start), and the answer tells nothing of the token.
pub fn token_proof(token: &str, nonce: &[u8; 32]) -> [u8; 32] {
    let key = blake3::derive_key("kith local api token proof v1", token.trim().as_bytes());
    *blake3::keyed_hash(&key, nonce).as_bytes()
}

async fn hello(
    State(app): State<AppState>,
    Query(q): Query<HelloQuery>,
) -> Result<Json<Hello>, ApiError> {
    let nonce: [u8; 32] = data_encoding::HEXLOWER_PERMISSIVE
        .decode(q.nonce.as_bytes())
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| ApiError(Error::Invalid("the nonce is 64 hex digits".into())))?;
    Ok(Json(Hello {
        proof: data_encoding::HEXLOWER.encode(&token_proof(&app.token, &nonce)),
    }))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token_matches(given.as_bytes(), app.token.as_bytes()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                error: "missing or wrong bearer token (see api.token in the data dir)".into(),
            }),
        )
            .into_response()
    }
}

/// The API routes plus the web app's static pages.
pub fn router(library: Arc<Library>, net: Arc<Network>, token: String) -> Router {
    let app = AppState {
        library,
        net,
        token: token.into(),
    };
    let api = Router::new()
        .route("/status", get(status))
        .route("/photos", get(photos))
        .route("/photos/show", get(show_photo))
        .route("/photos/edit", post(edit_photo))
        .route("/trash", get(trashed).post(trash))
        .route("/trash/restore", post(restore))
        .route("/trash/empty", post(empty_trash))
        .route("/albums", get(albums).post(create_album))
        .route("/albums/rename", post(rename_album))
        .route("/albums/add", post(add_to_album))
        .route("/albums/remove", post(remove_from_album))
        .route("/people", get(people))
        .route("/people/rename", post(rename_me))
        .route("/people/set-role", post(set_role))
        .route("/people/remove", post(remove_person))
        .route("/devices/remove", post(remove_device))
        .route("/devices/undo", post(undo_device))
        .route("/devices", get(devices))
        .route("/invites", get(invites).post(create_invite))
        .route("/invites/cancel", post(cancel_invite))
        .route("/import", post(import))
        .route("/export", post(export))
        .route("/free-space", post(free_space))
        .route("/albums/share", post(share))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token))
        .route("/hello", get(hello))
        .with_state(app);
    Router::new().nest("/api", api).merge(kith_gui::router())
}

async fn status(State(app): State<AppState>) -> ApiResult<crate::views::StatusView> {
    let addr = crate::client::read_api_info(app.library.data_dir()).map(|i| i.addr);
    let mut status = app.library.status(true, addr).await?;
    status.sync = Some(app.net.sync_view().await?);
    Ok(Json(status))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateInvite {
    pub role: String,
    pub valid_for_ms: u64,
    /// An existing person to add a device to, instead of a new person with `role`.
    #[serde(default)]
    pub person: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InviteId {
    pub id: String,
}

async fn devices(State(app): State<AppState>) -> ApiResult<Vec<crate::views::FamilyDeviceView>> {
    Ok(Json(app.library.devices(Some(&app.net)).await?))
}

async fn invites(State(app): State<AppState>) -> ApiResult<Vec<crate::views::InviteView>> {
    Ok(Json(app.library.invites().await?))
}

async fn create_invite(
    State(app): State<AppState>,
    Json(body): Json<CreateInvite>,
) -> ApiResult<crate::views::InviteView> {
    let addrs = app.net.ticket_addrs();
    let (ticket, mut view) = match &body.person {
        Some(person) => {
            app.library
                .create_device_invite(person, body.valid_for_ms, addrs)
                .await?
        }
        None => {
            let role = body.role.parse().map_err(|_| {
                Error::Invalid(format!(
                    "unknown role {:?}: use member or relative",
                    body.role
                ))
            })?;
            app.library
                .create_invite(role, body.valid_for_ms, addrs)
                .await?
        }
    };
    view.ticket = Some(ticket.encode());
    Ok(Json(view))
}

async fn cancel_invite(
    State(app): State<AppState>,
    Json(body): Json<InviteId>,
) -> ApiResult<crate::views::InviteView> {
    Ok(Json(app.library.cancel_invite(&body.id).await?))
}

async fn photos(
    State(app): State<AppState>,
    Query(filter): Query<PhotoFilter>,
) -> ApiResult<Vec<crate::views::PhotoView>> {
    Ok(Json(app.library.photos_matching(&filter).await?))
}

async fn show_photo(
    State(app): State<AppState>,
    Query(q): Query<PhotoQuery>,
) -> ApiResult<crate::views::PhotoView> {
    Ok(Json(app.library.photo(&q.photo).await?))
}

async fn edit_photo(
    State(app): State<AppState>,
    Json(body): Json<EditRequest>,
) -> ApiResult<crate::views::PhotoView> {
    Ok(Json(app.library.edit_photo(&body).await?))
}

async fn trashed(State(app): State<AppState>) -> ApiResult<Vec<crate::views::TrashedView>> {
    Ok(Json(app.library.trashed().await?))
}

async fn trash(
    State(app): State<AppState>,
    Json(body): Json<PhotoList>,
) -> ApiResult<Vec<crate::views::TrashedView>> {
    Ok(Json(app.library.trash(&body.photos).await?))
}

async fn restore(
    State(app): State<AppState>,
    Json(body): Json<PhotoList>,
) -> ApiResult<Vec<crate::views::PhotoView>> {
    Ok(Json(app.library.restore(&body.photos).await?))
}

async fn empty_trash(
    State(app): State<AppState>,
    Json(body): Json<PhotoList>,
) -> ApiResult<Vec<crate::views::PhotoView>> {
    Ok(Json(app.library.empty_trash(&body.photos).await?))
}

async fn people(State(app): State<AppState>) -> ApiResult<Vec<crate::views::PersonView>> {
    Ok(Json(app.library.people().await?))
}

async fn rename_me(
    State(app): State<AppState>,
    Json(body): Json<RenameMe>,
) -> ApiResult<crate::views::PersonView> {
    Ok(Json(app.library.rename_me(&body.name).await?))
}

async fn set_role(
    State(app): State<AppState>,
    Json(body): Json<SetRole>,
) -> ApiResult<crate::views::PersonView> {
    let role = body.role.parse().map_err(|_| {
        Error::Invalid(format!(
            "{:?} is not a role (admin, member, relative)",
            body.role
        ))
    })?;
    Ok(Json(app.library.set_role(&body.person, role).await?))
}

async fn remove_person(
    State(app): State<AppState>,
    Json(body): Json<RemovePerson>,
) -> ApiResult<crate::views::PersonView> {
    Ok(Json(app.library.remove_person(&body.person).await?))
}

async fn remove_device(
    State(app): State<AppState>,
    Json(body): Json<RemoveDevice>,
) -> ApiResult<crate::views::FamilyDeviceView> {
    // The network disconnects the device when the op is committed (see `Network::start`).
    let device = app.library.remove_device(&body.device).await?;
    let view = app
        .library
        .devices(Some(&app.net))
        .await?
        .into_iter()
        .find(|d| d.id == device.to_string())
        .ok_or_else(|| Error::Corrupt("the removed device is gone from the log".into()))?;
    Ok(Json(view))
}

async fn undo_device(
    State(app): State<AppState>,
    Json(body): Json<RemoveDevice>,
) -> ApiResult<crate::views::UndoView> {
    Ok(Json(app.library.undo_removed_device(&body.device).await?))
}

async fn albums(State(app): State<AppState>) -> ApiResult<Vec<crate::views::AlbumView>> {
    Ok(Json(app.library.albums().await?))
}

async fn create_album(
    State(app): State<AppState>,
    Json(body): Json<CreateAlbum>,
) -> ApiResult<crate::views::AlbumView> {
    Ok(Json(
        app.library
            .create_album(&body.title, body.parent.as_deref())
            .await?,
    ))
}

async fn rename_album(
    State(app): State<AppState>,
    Json(body): Json<RenameAlbum>,
) -> ApiResult<crate::views::AlbumView> {
    Ok(Json(
        app.library.rename_album(&body.album, &body.title).await?,
    ))
}

async fn add_to_album(
    State(app): State<AppState>,
    Json(body): Json<AlbumPhotos>,
) -> ApiResult<Count> {
    let count = app.library.add_to_album(&body.album, &body.photos).await?;
    Ok(Json(Count { count }))
}

async fn remove_from_album(
    State(app): State<AppState>,
    Json(body): Json<AlbumPhotos>,
) -> ApiResult<Count> {
    let count = app
        .library
        .remove_from_album(&body.album, &body.photos)
        .await?;
    Ok(Json(Count { count }))
}

/// Streams events as newline-delimited JSON while the work runs.
fn ndjson<E: Serialize + Send + 'static>(rx: mpsc::UnboundedReceiver<E>) -> Response {
    let stream = futures_lite::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn import(State(app): State<AppState>, Json(request): Json<ImportRequest>) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Err(e) = app.library.import(request, tx.clone()).await {
            tracing::error!("import failed: {e}");
            let _ = tx.send(ImportEvent::Failed {
                error: e.to_string(),
            });
        }
    });
    ndjson(rx)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FreeSpace {
    pub album: Option<String>,
}

async fn share(
    State(app): State<AppState>,
    Json(body): Json<Share>,
) -> ApiResult<crate::sharing::ShareView> {
    let view = match &body.access {
        Some(access) => {
            let access = crate::sharing::parse_access(access)?;
            app.library.share(&body.album, &body.person, access).await?
        }
        None => app.library.unshare(&body.album, &body.person).await?,
    };
    Ok(Json(view))
}

async fn free_space(
    State(app): State<AppState>,
    Json(body): Json<FreeSpace>,
) -> ApiResult<crate::free_space::FreeSpaceView> {
    Ok(Json(app.net.free_space(body.album.as_deref()).await?))
}

async fn export(State(app): State<AppState>, Json(request): Json<ExportRequest>) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Originals set aside by `kith free-space` come back first.
        if let Err(e) = app.net.bring_back(request.album.as_deref()).await {
            tracing::warn!("export: {e}");
        }
        if let Err(e) = app.library.export(request, tx.clone()).await {
            tracing::error!("export failed: {e}");
            let _ = tx.send(ExportEvent::Failed {
                error: e.to_string(),
            });
        }
    });
    ndjson(rx)
}
