//! Browser sessions: the UI cannot put a token in an `EventSource`'s headers, so a signed-in
//! browser keeps its token in a cookie the gate reads (`auth::TOKEN_COOKIE`). The cookie is
//! `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site's page sends it).

use axum::extract::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Caller, TOKEN_COOKIE};

/// The caller's principal.
pub(super) async fn who(Extension(caller): Extension<Caller>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "principal": caller.principal() }))
}

/// The gate authenticated the request's `Authorization` header; that token becomes the
/// cookie.
pub(super) async fn sign_in(
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(corral_proto::auth::bearer);
    let body = axum::Json(json!({ "principal": caller.principal() }));
    match token {
        Some(token) => (
            [(
                header::SET_COOKIE,
                format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
            )],
            body,
        )
            .into_response(),
        // The master does not authenticate (or the cookie was presented): nothing to keep.
        None => body.into_response(),
    }
}

pub(super) async fn sign_out() -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        axum::Json(json!({ "principal": null })),
    )
        .into_response()
}
