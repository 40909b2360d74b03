//! The web UI: static files from `ui/`, embedded in the binary, served at `/` (the page) and
//! `/ui/...` (its script and style). The page reads the JSON API and the event stream of the
//! master it came from; a standby sends the browser to the leader, as for the API.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::HttpState;

const INDEX: &str = include_str!("../../../ui/index.html");
const SCRIPT: &str = include_str!("../../../ui/app.js");
const STYLE: &str = include_str!("../../../ui/style.css");

pub(super) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(|| file("text/html; charset=utf-8", INDEX)))
        .route(
            "/ui/app.js",
            get(|| file("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/ui/style.css",
            get(|| file("text/css; charset=utf-8", STYLE)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::api::leader_only,
        ))
        .with_state(state)
}

async fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Embedded in this build: a new master binary may serve new files.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
