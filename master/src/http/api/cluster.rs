//! The cluster's endpoints: summary, agents (with drain and reactivate), frameworks, modules,
//! roles and tasks, in the documents `corral_proto::json` writes.

use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use corral_proto::{ServiceError, json as forms, v1};
use corral_types::{AgentId, FrameworkId, TaskId, TaskState};
use serde_json::json;

use super::{
    ApiError, ApiResult, MAX_PAGE, ask, id, params, params_repeating, query_of, unexpected,
};
use crate::auth::{Action, Caller};
use crate::core::{OperatorRequest, OperatorResponse};
use crate::http::HttpState;
use crate::wire;

pub(super) async fn summary(
    State(state): State<HttpState>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/summary"))?;
    let OperatorResponse::Master(m) = ask(&state, OperatorRequest::Master).await? else {
        return Err(unexpected());
    };
    let OperatorResponse::Gauges(gauges) = ask(&state, OperatorRequest::Gauges).await? else {
        return Err(unexpected());
    };
    let counts = |pairs: &[(&'static str, i64)]| {
        pairs
            .iter()
            .map(|(state, n)| ((*state).to_owned(), json!(n)))
            .collect::<serde_json::Map<_, _>>()
    };
    Ok(axum::Json(json!({
        "master": {
            "id": m.id,
            "address": m.address,
            "epoch": m.epoch,
            "started_at_millis": m.started_unix_millis,
        },
        "agents": counts(&gauges.agents_by_state),
        "frameworks": counts(&gauges.frameworks_by_state),
        "tasks": counts(&gauges.tasks_by_state),
        "offers_outstanding": gauges.offers_outstanding,
    })))
}

pub(super) async fn agents(
    State(state): State<HttpState>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/agents"))?;
    let OperatorResponse::Agents(agents) = ask(&state, OperatorRequest::ListAgents).await? else {
        return Err(unexpected());
    };
    let agents: Vec<v1::AgentSummary> = wire::each_into(&agents);
    Ok(axum::Json(
        json!({ "agents": agents.iter().map(forms::agent).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn agent(
    State(state): State<HttpState>,
    Path(raw): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/agents/{id}"))?;
    let id: AgentId = id("agent", &raw)?;
    let OperatorResponse::Agents(agents) = ask(&state, OperatorRequest::ListAgents).await? else {
        return Err(unexpected());
    };
    let found = agents
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(|| ServiceError::NotFound {
            kind: "agent",
            id: raw.clone(),
        })?;
    Ok(axum::Json(forms::agent(&v1::AgentSummary::from(found))))
}

pub(super) async fn drain(
    State(state): State<HttpState>,
    Path(raw): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let q = params(q, query_of("/api/v1/agents/{id}/drain"))?;
    let agent: AgentId = id("agent", &raw)?;
    let grace = match q.iter().find(|(k, _)| k == "deadline_seconds") {
        Some((_, v)) => Some(Duration::from_secs(v.parse().map_err(|_| {
            ApiError::bad_request(format!("deadline_seconds {v:?}: not a whole number"))
        })?)),
        None => None,
    };
    ask(
        &state,
        OperatorRequest::DrainAgent {
            agent,
            grace,
            mark_gone: false,
        },
    )
    .await?;
    Ok(axum::Json(json!({ "agent_id": raw, "draining": true })))
}

pub(super) async fn reactivate(
    State(state): State<HttpState>,
    Path(raw): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/agents/{id}/reactivate"))?;
    let agent: AgentId = id("agent", &raw)?;
    ask(&state, OperatorRequest::ReactivateAgent { agent }).await?;
    Ok(axum::Json(json!({ "agent_id": raw, "draining": false })))
}

pub(super) async fn frameworks(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let q = params(q, query_of("/api/v1/frameworks"))?;
    let include_completed = match q.iter().find(|(k, _)| k == "include_completed") {
        None => false,
        Some((_, v)) => v.parse().map_err(|_| {
            ApiError::bad_request(format!("include_completed {v:?}: true or false"))
        })?,
    };
    let OperatorResponse::Frameworks(frameworks) = ask(
        &state,
        OperatorRequest::ListFrameworks {
            include_completed,
            visible: state.auth.visibility(&caller, Action::ViewFrameworks),
        },
    )
    .await?
    else {
        return Err(unexpected());
    };
    let frameworks: Vec<v1::FrameworkSummary> = wire::each_into(&frameworks);
    Ok(axum::Json(json!({
        "frameworks": frameworks.iter().map(forms::framework).collect::<Vec<_>>(),
    })))
}

pub(super) async fn modules(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/modules"))?;
    let visible = state.auth.visibility(&caller, Action::ViewModules);
    let OperatorResponse::Modules(modules) =
        ask(&state, OperatorRequest::ListModules { visible }).await?
    else {
        return Err(unexpected());
    };
    let modules: Vec<v1::ModuleInfo> = wire::each_into(&modules);
    Ok(axum::Json(
        json!({ "modules": modules.iter().map(forms::module).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn roles(
    State(state): State<HttpState>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/roles"))?;
    let OperatorResponse::Roles(roles) = ask(&state, OperatorRequest::GetRoles).await? else {
        return Err(unexpected());
    };
    let roles: Vec<v1::RoleSummary> = wire::each_into(&roles);
    Ok(axum::Json(
        json!({ "roles": roles.iter().map(forms::role).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn tasks(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    // Several states are any of them; several labels, all of them.
    let q = params_repeating(q, query_of("/api/v1/tasks"), &["state", "label"])?;
    let mut request = TaskQuery::default();
    for (name, value) in q {
        match name.as_str() {
            "state" => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    let state = TaskState::from_name(&s.to_ascii_uppercase()).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "state {s:?}: not a task state (RUNNING, FINISHED, FAILED, ...)"
                        ))
                    })?;
                    request.states.push(state);
                }
            }
            "framework" => request.framework = Some(id("framework", &value)?),
            "agent" => request.agent = Some(id("agent", &value)?),
            "label" => {
                let (k, v) = value
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| ApiError::bad_request(format!("label {value:?}: key=value")))?;
                request.labels.push((k.to_owned(), v.to_owned()));
            }
            "job" => request.labels.push(("corral.job".to_owned(), value)),
            "page_size" => {
                request.page_size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "page_size {value:?}: a number from 1 to {MAX_PAGE}"
                        ))
                    })?;
            }
            "page_token" => request.page_token = value,
            _ => {}
        }
    }
    let OperatorResponse::Tasks(page) = ask(
        &state,
        OperatorRequest::ListTasks {
            task: None,
            framework: request.framework,
            agent: request.agent,
            states: request.states,
            labels: request.labels,
            page_size: request.page_size,
            page_token: request.page_token,
            visible: state.auth.visibility(&caller, Action::ViewTasks),
        },
    )
    .await?
    else {
        return Err(unexpected());
    };
    let page = v1::ListTasksResponse::from(&page);
    Ok(axum::Json(json!({
        "tasks": page.tasks.iter().map(forms::task).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })))
}

#[derive(Default)]
struct TaskQuery {
    framework: Option<FrameworkId>,
    agent: Option<AgentId>,
    states: Vec<TaskState>,
    labels: Vec<(String, String)>,
    page_size: usize,
    page_token: String,
}

pub(super) async fn task(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let q = params(q, query_of("/api/v1/tasks/{id}"))?;
    let task: TaskId = id("task", &raw)?;
    let framework = match q.iter().find(|(k, _)| k == "framework") {
        Some((_, v)) => Some(id::<FrameworkId>("framework", v)?),
        None => None,
    };
    let OperatorResponse::Tasks(page) = ask(
        &state,
        OperatorRequest::ListTasks {
            task: Some(task),
            framework,
            agent: None,
            states: Vec::new(),
            labels: Vec::new(),
            page_size: 2,
            page_token: String::new(),
            visible: state.auth.visibility(&caller, Action::ViewTasks),
        },
    )
    .await?
    else {
        return Err(unexpected());
    };
    match page.tasks.as_slice() {
        [] => Err(ServiceError::NotFound {
            kind: "task",
            id: raw,
        }
        .into()),
        [one] => Ok(axum::Json(forms::task(&v1::TaskSummary::from(one)))),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("several frameworks have a task {raw}: name one with ?framework="),
        )),
    }
}
