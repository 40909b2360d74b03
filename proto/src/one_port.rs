//! gRPC and HTTP on one port, as masters and agents serve them: one router for both, which
//! answers a request neither side serves in the protocol it was made in.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `grpc`'s services and `http`'s routes as one router. A gRPC call to an unknown service
/// gets UNIMPLEMENTED, as from any gRPC server; any other request that matches no route gets
/// a 404 with a JSON error naming `served_here` (say, "the metrics are at /metrics"), not the
/// empty gRPC reply a browser or `curl` would show as a blank 200.
pub fn router(
    grpc: tonic::service::Routes,
    http: axum::Router,
    served_here: &'static str,
) -> axum::Router {
    grpc.into_axum_router()
        .merge(http)
        .fallback(move |request: Request| async move { not_served(&request, served_here) })
}

/// Whether a request is a gRPC call (its content type is `application/grpc`, with or without
/// a `+proto` or other suffix).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"))
}

fn not_served(request: &Request, served_here: &str) -> Response {
    if is_grpc(request.headers()) {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    let message = format!(
        "no {} {} on this server: {served_here}",
        request.method(),
        request.uri().path()
    );
    json_error(StatusCode::NOT_FOUND, &message)
}

/// An HTTP error as masters and agents answer every one: `{"error": {"status", "message"}}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "status": status.as_u16(), "message": message } });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower_service::Service;

    async fn send(request: Request) -> (StatusCode, HeaderMap, String) {
        let (_, health) = crate::introspection::health();
        let http = axum::Router::new().route("/metrics", get(|| async { "ok" }));
        let mut router = router(
            tonic::service::Routes::new(health),
            http,
            "look at /metrics",
        );
        std::future::poll_fn(|cx| Service::<Request>::poll_ready(&mut router, cx))
            .await
            .unwrap();
        let response = router.call(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn get_request(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_request_no_route_serves_is_answered_in_its_own_protocol() {
        let (status, _, body) = send(get_request("/metrics")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

        for path in ["/", "/nothing", "/api/v1"] {
            let (status, headers, body) = send(get_request(path)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(doc["error"]["status"], 404, "{path}");
            assert_eq!(
                doc["error"]["message"],
                format!("no GET {path} on this server: look at /metrics")
            );
        }

        let call = Request::post("/no.such.Service/Call")
            .header(header::CONTENT_TYPE, "application/grpc+proto")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(call).await;
        assert_eq!(status, StatusCode::OK, "gRPC errors travel in its trailers");
        assert!(is_grpc(&headers), "{headers:?}");
        assert_eq!(headers["grpc-status"], "12", "UNIMPLEMENTED: {headers:?}");
        assert!(body.is_empty(), "{body:?}");
    }
}
