//! HTTP on the master's port, beside gRPC (one listener: a request that is not gRPC comes
//! here): `/metrics`, the Prometheus text exposition (a standby serves its own metrics; the
//! cluster's gauges come from the leader), the JSON API under `/api/v1/` ([`api`]) with its
//! event stream, and the web UI at `/` ([`ui`]).

mod api;
mod ui;

pub(crate) use api::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use corral_proto::introspection::OPENMETRICS_CONTENT_TYPE;
use corral_proto::tls::Dialer;

use crate::auth::action::Gatekeeping;
use crate::auth::{Action, Auth};
use crate::core::{Event, OperatorRequest, OperatorResponse, Reply};
use crate::leadership::Gate;
use crate::metrics::MasterMetrics;
use crate::service::OperatorService;

#[derive(Clone)]
pub(crate) struct HttpState {
    gate: Gate,
    /// The gRPC service the API's task files and event stream go through.
    operator: OperatorService,
    /// Where the Jobs service answers when the jobs framework runs inside this master.
    jobs_on_master: String,
    metrics: Arc<MasterMetrics>,
    auth: Arc<Auth>,
    /// How this master calls the Jobs service it serves (as itself: the caller passed the
    /// gate already).
    as_master: Dialer,
}

/// Where a request that matches no route is pointed.
pub(crate) const SERVED_HERE: &str = "the web UI is at /, the JSON API under /api/v1/ (see \
    /api/v1/openapi.json), the metrics at /metrics";

/// The master's HTTP routes.
pub(crate) fn router(
    gate: Gate,
    operator: OperatorService,
    jobs_on_master: String,
    metrics: Arc<MasterMetrics>,
    auth: Arc<Auth>,
    as_master: Dialer,
) -> Router {
    let state = HttpState {
        gate,
        operator,
        jobs_on_master,
        metrics,
        auth,
        as_master,
    };
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(state.clone())
        .merge(api::router(state.clone()))
        .merge(ui::router(state))
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    let gauges = match state.gate.core() {
        Ok(core) => match core
            .ask(Event::Operator(OperatorRequest::Gauges), None)
            .await
        {
            Ok(Reply::Operator(Ok(OperatorResponse::Gauges(gauges)))) => Some(*gauges),
            _ => None,
        },
        Err(_) => None,
    };
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.render(gauges.as_ref()),
    )
}

/// How a request for `path` is checked at the gate: the UI's files are open, `/metrics`
/// needs `view_metrics`, the API's routes say what they need, anything else is for
/// authenticated callers (who get its 404).
pub(crate) fn gatekeeping(method: &axum::http::Method, path: &str) -> Gatekeeping {
    if path == "/" || path.starts_with("/ui/") {
        return Gatekeeping::Open;
    }
    if path == "/metrics" {
        return Gatekeeping::Action(Action::ViewMetrics);
    }
    api::ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method.as_str()) && api::matches_path(r.path, path))
        .map_or(Gatekeeping::Handler, |r| r.access)
}
