//! The HTTP JSON API under `/api/v1/`: what the Operator gRPC service tells, as the JSON
//! documents `corral ... -o json` prints (`corral_proto::json`). Errors are JSON
//! (`{"error": {"status": 404, "message": "..."}}`) with the matching status; a standby
//! answers 307 with the leader's address. [`ROUTES`] makes both the router and the OpenAPI
//! document (`/api/v1/openapi.json`), so the two cannot disagree.

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use corral_proto::ServiceError;
use serde_json::{Value, json};

mod cluster;
mod events;
mod files;
mod jobs;
mod session;

use super::HttpState;
use crate::auth::Action;
use crate::auth::action::Gatekeeping::{self, Action as A, Handler, Open};
use crate::core::{Event, OperatorRequest, OperatorResponse, Reply};

/// One endpoint of the API.
pub(crate) struct Route {
    pub(crate) method: &'static str,
    /// In axum's and OpenAPI's syntax: `{id}` is a path parameter.
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    /// Query parameters: name and what it does.
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// The media type of its answer.
    pub(crate) produces: &'static str,
    endpoint: Endpoint,
    /// Who may call it (see `auth::gate`).
    pub(crate) access: Gatekeeping,
}

const JSON: &str = "application/json";

impl Route {
    /// The media types of the request body it reads; `None`: it reads none, and refuses one
    /// rather than ignore what the body asked for.
    fn request_body(&self) -> Option<&'static [&'static str]> {
        match self.endpoint {
            Endpoint::Submit => Some(&["application/toml", "application/yaml", JSON]),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Summary,
    Agents,
    Agent,
    Drain,
    Reactivate,
    Frameworks,
    Modules,
    Roles,
    Tasks,
    Task,
    Files,
    ReadFile,
    Follow,
    Download,
    Events,
    Jobs,
    Submit,
    Job,
    Scale,
    KillJob,
    RunJob,
    SuspendJob,
    ResumeJob,
    Session,
    SignIn,
    SignOut,
    OpenApi,
}

/// Every endpoint.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/api/v1/summary",
        summary: "The master, and counts of agents, frameworks and tasks by state",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Summary,
        access: A(Action::ViewAgents),
    },
    Route {
        method: "get",
        path: "/api/v1/agents",
        summary: "Every agent: total and used resources, attributes, state",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Agents,
        access: A(Action::ViewAgents),
    },
    Route {
        method: "get",
        path: "/api/v1/agents/{id}",
        summary: "One agent",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Agent,
        access: A(Action::ViewAgents),
    },
    Route {
        method: "post",
        path: "/api/v1/agents/{id}/drain",
        summary: "Drain an agent: no new offers; running tasks are killed at the deadline",
        query: &[(
            "deadline_seconds",
            "How long running tasks may go on before they are killed (default: killed at once)",
        )],
        produces: JSON,
        endpoint: Endpoint::Drain,
        access: A(Action::DrainAgents),
    },
    Route {
        method: "post",
        path: "/api/v1/agents/{id}/reactivate",
        summary: "Undo a drain",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Reactivate,
        access: A(Action::DrainAgents),
    },
    Route {
        method: "get",
        path: "/api/v1/frameworks",
        summary: "Frameworks: roles, allocation, tasks",
        query: &[("include_completed", "true to list removed frameworks too")],
        produces: JSON,
        endpoint: Endpoint::Frameworks,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/modules",
        summary: "Modules in the artifact store: size, tasks running them, agents caching them",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Modules,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/roles",
        summary: "Roles: weight, quota, allocation, dominant share",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Roles,
        access: A(Action::ViewRoles),
    },
    Route {
        method: "get",
        path: "/api/v1/tasks",
        summary: "Tasks, one page at a time (ordered by framework, then task ID)",
        query: &[
            (
                "state",
                "Only tasks in these states (RUNNING; repeat or comma-separate)",
            ),
            ("framework", "Only this framework's tasks"),
            ("agent", "Only tasks on this agent"),
            (
                "label",
                "Only tasks with this label (key=value; repeat for all of several)",
            ),
            ("job", "Only the instances of this built-in job"),
            ("page_size", "Tasks per page, 1 to 10000 (default 1000)"),
            ("page_token", "The next_page_token of the previous page"),
        ],
        produces: JSON,
        endpoint: Endpoint::Tasks,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/tasks/{id}",
        summary: "One task: state, usage, progress, result, outputs",
        query: &[(
            "framework",
            "Its framework, when several have a task of this ID",
        )],
        produces: JSON,
        endpoint: Endpoint::Task,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/tasks/{id}/files",
        summary: "A directory of a task's sandbox",
        query: &[
            (
                "path",
                "The directory, relative to the sandbox (default: its root)",
            ),
            (
                "framework",
                "The task's framework, when several have a task of this ID",
            ),
        ],
        produces: JSON,
        endpoint: Endpoint::Files,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/tasks/{id}/files/read",
        summary: "Part of a sandbox file as text (stdout, stderr, outputs/...); follow a file by reading from next_offset until complete",
        query: &[
            ("path", "The file, relative to the sandbox (required)"),
            ("offset", "Where to start, in bytes (default 0)"),
            (
                "length",
                "At most this many bytes, up to 1 MiB (default 64 KiB)",
            ),
            (
                "framework",
                "The task's framework, when several have a task of this ID",
            ),
        ],
        produces: JSON,
        endpoint: Endpoint::ReadFile,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/tasks/{id}/files/follow",
        summary: "A sandbox file as it grows, as server-sent events: `data` events carry new text ({offset, data}); `complete` ends the stream once the task has ended and the file is read",
        query: &[
            ("path", "The file, relative to the sandbox (required)"),
            ("offset", "Where to start, in bytes (default 0)"),
            (
                "framework",
                "The task's framework, when several have a task of this ID",
            ),
        ],
        produces: "text/event-stream",
        endpoint: Endpoint::Follow,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/tasks/{id}/files/download",
        summary: "A whole sandbox file, as bytes",
        query: &[
            ("path", "The file, relative to the sandbox (required)"),
            (
                "framework",
                "The task's framework, when several have a task of this ID",
            ),
        ],
        produces: "application/octet-stream",
        endpoint: Endpoint::Download,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/events",
        summary: "Server-sent events: SUBSCRIBED with the state, then TASK_ADDED/UPDATED, AGENT_ADDED/UPDATED/REMOVED, FRAMEWORK_ADDED/UPDATED/REMOVED and HEARTBEAT",
        query: &[(
            "max_tasks",
            "At most this many tasks in SUBSCRIBED's state (default 1000)",
        )],
        produces: "text/event-stream",
        endpoint: Endpoint::Events,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/jobs",
        summary: "The built-in jobs (batch, service, cron): state, instance counts, version",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Jobs,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/jobs",
        summary: "Submit a job spec file (the body; modules and inputs named by sha256 digest); answers 201 with the jobs",
        query: &[(
            "format",
            "toml, yaml or json (default: from Content-Type, else toml)",
        )],
        produces: JSON,
        endpoint: Endpoint::Submit,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/jobs/{name}",
        summary: "One job",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Job,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/jobs/{name}/scale",
        summary: "Change a job's number of instances",
        query: &[("instances", "The new number of instances (required)")],
        produces: JSON,
        endpoint: Endpoint::Scale,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/jobs/{name}/kill",
        summary: "Kill a job: its tasks are killed and it runs no more",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::KillJob,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/jobs/{name}/run",
        summary: "Run a cron job now, outside its schedule",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::RunJob,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/jobs/{name}/suspend",
        summary: "Suspend a cron job's schedule",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::SuspendJob,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/jobs/{name}/resume",
        summary: "Resume a suspended cron job's schedule",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::ResumeJob,
        access: Handler,
    },
    Route {
        method: "get",
        path: "/api/v1/session",
        summary: "Who the caller is: its principal (null when the master does not authenticate)",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::Session,
        access: Handler,
    },
    Route {
        method: "post",
        path: "/api/v1/session",
        summary: "Sign a browser in: the token in the Authorization header is checked and kept in an HttpOnly, SameSite=Strict cookie; answers the principal",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::SignIn,
        access: Handler,
    },
    Route {
        method: "delete",
        path: "/api/v1/session",
        summary: "Sign a browser out: its token cookie is removed",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::SignOut,
        access: Open,
    },
    Route {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        query: &[],
        produces: JSON,
        endpoint: Endpoint::OpenApi,
        access: Open,
    },
];

/// Most tasks in one page.
const MAX_PAGE: usize = 10_000;

/// The API's routes, behind the leader check.
pub(super) fn router(state: HttpState) -> Router {
    // One method router per path: a path may take several methods.
    let mut paths: Vec<(&str, MethodRouter<HttpState>)> = Vec::new();
    for route in ROUTES {
        let handler = match route.request_body() {
            Some(_) => handler(route),
            None => handler(route).layer(axum::middleware::from_fn(
                move |request: Request, next: Next| no_body(route, request, next),
            )),
        };
        match paths.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => paths.push((route.path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, methods) in paths {
        router = router.route(path, methods);
    }
    // Not a fallback: tonic's routes have theirs (UNIMPLEMENTED for unknown gRPC methods).
    router
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            leader_only,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Answers as JSON an error that axum answered as text: its own rejections of a request no
/// handler saw (a path that is not UTF-8, a body past its limit).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::new(status, message).into_response()
}

/// Refuses a request body on `route`, which reads none: a drain's deadline or a scale's
/// instances sent as JSON would otherwise be dropped, and the call done without them.
async fn no_body(route: &'static Route, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let empty = axum::body::to_bytes(body, 4 << 10)
        .await
        .is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace));
    if empty {
        return next
            .run(Request::from_parts(parts, axum::body::Body::empty()))
            .await;
    }
    let names: Vec<&str> = route.query.iter().map(|(n, _)| *n).collect();
    ApiError::bad_request(format!(
        "{} {} takes no request body{}",
        route.method.to_ascii_uppercase(),
        route.path,
        if names.is_empty() {
            String::new()
        } else {
            format!("; its parameters go in the query: {}", names.join(", "))
        }
    ))
    .into_response()
}

fn handler(route: &Route) -> MethodRouter<HttpState> {
    match route.endpoint {
        Endpoint::Summary => get(cluster::summary),
        Endpoint::Agents => get(cluster::agents),
        Endpoint::Agent => get(cluster::agent),
        Endpoint::Drain => post(cluster::drain),
        Endpoint::Reactivate => post(cluster::reactivate),
        Endpoint::Frameworks => get(cluster::frameworks),
        Endpoint::Modules => get(cluster::modules),
        Endpoint::Roles => get(cluster::roles),
        Endpoint::Tasks => get(cluster::tasks),
        Endpoint::Task => get(cluster::task),
        Endpoint::Files => get(files::list),
        Endpoint::ReadFile => get(files::read),
        Endpoint::Follow => get(files::follow),
        Endpoint::Download => get(files::download),
        Endpoint::Events => get(events::events),
        Endpoint::Jobs => get(jobs::list),
        Endpoint::Submit => post(jobs::submit),
        Endpoint::Job => get(jobs::get),
        Endpoint::Scale => post(jobs::scale),
        Endpoint::KillJob => post(jobs::kill),
        Endpoint::RunJob => {
            post(|State(s), who, Path(n), Query(q)| jobs::cron(s, who, n, q, jobs::Cron::RunNow))
        }
        Endpoint::SuspendJob => {
            post(|State(s), who, Path(n), Query(q)| jobs::cron(s, who, n, q, jobs::Cron::Suspend))
        }
        Endpoint::ResumeJob => {
            post(|State(s), who, Path(n), Query(q)| jobs::cron(s, who, n, q, jobs::Cron::Resume))
        }
        Endpoint::Session => get(session::who),
        Endpoint::SignIn => post(session::sign_in),
        Endpoint::SignOut => axum::routing::delete(session::sign_out),
        Endpoint::OpenApi => get(openapi),
    }
}

/// An error as the API answers it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// When a rate-limited caller may retry (the `Retry-After` header).
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let retry_after = match &e {
            ServiceError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(http_status(e.code()), e.to_string())
        }
    }
}

/// A gRPC service's refusal (the task-file calls go through the Operator service).
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        Self {
            retry_after: corral_proto::status::retry_after(&s),
            ..Self::new(http_status(s.code()), s.message())
        }
    }
}

/// The HTTP status for a gRPC code.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = corral_proto::one_port::json_error(self.status, &self.message);
        if let Some(wait) = self.retry_after {
            // Whole seconds (RFC 9110), rounded up so that the retry is not refused again.
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(seconds as u64),
            );
        }
        response
    }
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no {} {} in the API (see /api/v1/openapi.json)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    let path = request.uri().path();
    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|r| matches_path(r.path, path))
        .map(|r| r.method.to_ascii_uppercase())
        .collect();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {path} (allowed: {})",
            request.method(),
            allowed.join(", ")
        ),
    )
}

/// Whether `path` is an instance of the route pattern `pattern` (`{id}` matches a segment).
pub(crate) fn matches_path(pattern: &str, path: &str) -> bool {
    let (pattern, path): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| p.starts_with('{') || p == s)
}

/// A standby sends the request to the leader (307 keeps the method and body), or answers
/// 503 while no leader is known.
pub(super) async fn leader_only(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    match state.gate.core() {
        Ok(_) => next.run(request).await,
        Err(ServiceError::NotLeader {
            leader: Some(leader),
        }) => {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("http://{leader}{target}"))],
                axum::Json(json!({ "error": {
                    "status": 307,
                    "message": format!("not the leader; the leader is {leader}"),
                }})),
            )
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn ask(state: &HttpState, request: OperatorRequest) -> Result<OperatorResponse, ApiError> {
    match state
        .gate
        .core()?
        .ask(Event::Operator(request), None)
        .await?
    {
        Reply::Operator(r) => Ok(r?),
        _ => Err(unexpected()),
    }
}

fn unexpected() -> ApiError {
    ApiError::from(ServiceError::Internal(
        "unexpected reply from the core".into(),
    ))
}

/// The query's parameters, refusing any not in `known` and any given twice.
fn params(
    query: Vec<(String, String)>,
    known: &[(&str, &str)],
) -> Result<Vec<(String, String)>, ApiError> {
    params_repeating(query, known, &[])
}

/// [`params`], where the parameters named in `repeating` may be given more than once.
fn params_repeating(
    query: Vec<(String, String)>,
    known: &[(&str, &str)],
    repeating: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let repeated = query.iter().enumerate().find(|(i, (name, _))| {
        !repeating.contains(&name.as_str()) && query[..*i].iter().any(|(seen, _)| seen == name)
    });
    if let Some((_, (name, _))) = repeated {
        return Err(ApiError::bad_request(format!(
            "query parameter {name:?} is given more than once; it takes one value"
        )));
    }
    if let Some((name, _)) = query
        .iter()
        .find(|(k, _)| !known.iter().any(|(n, _)| n == k))
    {
        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::bad_request(if names.is_empty() {
            format!("unknown query parameter {name:?}: this endpoint takes none")
        } else {
            format!(
                "unknown query parameter {name:?} (known: {})",
                names.join(", ")
            )
        }));
    }
    Ok(query)
}

/// The query parameters of the `GET` (or only) route at `endpoint`.
fn query_of(endpoint: &str) -> &'static [(&'static str, &'static str)] {
    ROUTES
        .iter()
        .find(|r| r.path == endpoint)
        .map_or(&[], |r| r.query)
}

/// The query parameters of the `method` route at `endpoint`.
fn query_of_method(method: &str, endpoint: &str) -> &'static [(&'static str, &'static str)] {
    ROUTES
        .iter()
        .find(|r| r.path == endpoint && r.method == method)
        .map_or(&[], |r| r.query)
}

fn id<T: std::str::FromStr>(kind: &str, raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e| ApiError::bad_request(format!("{kind} {raw:?}: {e}")))
}

async fn openapi() -> ApiResult {
    Ok(axum::Json(openapi_document()))
}

/// The type of the query parameter `name`, as the handlers parse it.
fn query_schema(name: &str) -> Value {
    match name {
        "page_size" => json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE }),
        "offset" | "length" | "max_tasks" | "deadline_seconds" | "instances" => {
            json!({ "type": "integer", "minimum": 0 })
        }
        "include_completed" => json!({ "type": "boolean" }),
        "format" => json!({ "type": "string", "enum": ["toml", "yaml", "json"] }),
        _ => json!({ "type": "string" }),
    }
}

/// The OpenAPI 3 document of [`ROUTES`].
pub(crate) fn openapi_document() -> Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        parameters.extend(route.query.iter().map(|(name, what)| {
            json!({
                "name": name,
                "in": "query",
                "required": what.ends_with("(required)"),
                "description": what,
                "schema": query_schema(name),
            })
        }));
        let mut operation = json!({
            "summary": route.summary,
            "parameters": parameters,
            "responses": {
                "200": { "description": "The answer", "content": { route.produces: {} } },
                "307": { "description": "Not the leader: the same request at the leader (Location)" },
                "4XX": error,
                "5XX": error,
            },
        });
        if let Some(media) = route.request_body() {
            let content: serde_json::Map<String, Value> = media
                .iter()
                .map(|m| ((*m).to_owned(), json!({ "schema": { "type": "string" } })))
                .collect();
            operation["requestBody"] = json!({ "required": true, "content": content });
        }
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Corral master", "version": "v1" },
        "paths": paths,
        "components": {
            "responses": {
                "Error": {
                    "description": "What went wrong",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": {
                            "type": "object",
                            "properties": {
                                "status": { "type": "integer" },
                                "message": { "type": "string" },
                            },
                        }},
                    }}},
                },
            },
        },
    })
}
