//! The operators' event stream as server-sent events: each event's `event:` is its type
//! (`TASK_UPDATED`) and its `data:` the JSON document `corral_proto::json::operator_event`
//! writes. A subscriber that falls behind gets an `ERROR` event and the stream ends.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use corral_proto::json as forms;
use serde_json::json;
use tokio_stream::{Stream, StreamExt};

use super::{ApiError, params, query_of};
use crate::auth::Caller;
use crate::http::HttpState;
use crate::service::{OperatorEvents, Sight};

pub(super) async fn events(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut max_tasks = 0;
    for (name, value) in params(q, query_of("/api/v1/events"))? {
        if name == "max_tasks" {
            max_tasks = value.parse().map_err(|_| {
                ApiError::bad_request(format!("max_tasks {value:?}: a number of tasks"))
            })?;
        }
    }
    let core = state.gate.core()?;
    let sight = Sight::of(&state.auth, &caller);
    let events = OperatorEvents::subscribe(&core, max_tasks, sight).await?;
    Ok(Sse::new(events.decoded().filter_map(|e| {
        match e {
            Ok(e) => forms::operator_event(&e)
                .map(|(kind, doc)| Ok(Event::default().event(kind).data(doc.to_string()))),
            Err(status) => Some(Ok(Event::default()
                .event("ERROR")
                .data(json!({ "type": "ERROR", "message": status.message() }).to_string()))),
        }
    })))
}
