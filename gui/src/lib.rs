//! kith's web UI. For now one static page that says the node runs; the full web app (timeline,
//! albums, viewer, sharing) builds on the node's JSON API.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

const INDEX: &str = include_str!("../assets/index.html");

/// Routes of the web app's static assets.
pub fn router() -> Router {
    Router::new().route("/", get(|| async { Html(INDEX) }))
}
