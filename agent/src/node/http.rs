//! HTTP on the agent's port, beside its gRPC services: `/metrics`, the Prometheus text
//! exposition.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use corral_proto::introspection::OPENMETRICS_CONTENT_TYPE;

use super::tasks::Node;

/// Where a request that matches no route is pointed.
pub(super) const SERVED_HERE: &str = "the metrics are at /metrics";

/// The agent's HTTP routes.
pub(super) fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(node)
}

async fn metrics_text(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let running = node.state().table.running().count();
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        node.executor.metrics().render(running),
    )
}
