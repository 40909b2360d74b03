//! HTTP on the agent's port, beside its gRPC services: `/metrics`, the Prometheus text
//! exposition.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::tasks::Node;

/// The OpenMetrics text format `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The agent's HTTP routes.
pub(super) fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(node)
}

async fn metrics_text(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let running = node.state().table.running().count();
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        node.executor.metrics().render(running),
    )
}
