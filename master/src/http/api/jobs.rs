//! The built-in jobs over HTTP: list, submit (a spec file as the body), scale, kill, run now,
//! suspend and resume, through the jobs framework's Jobs gRPC service wherever it serves
//! (`corral_proto::jobs`): on this master's port, or at the address of a framework running as
//! a process of its own.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use corral_proto::auth::{Conn, Token};
use corral_proto::jobs::{JobsAt, jobs_at};
use corral_proto::tls::Dialer;
use corral_proto::{ServiceError, json as forms, limits, v1};
use serde_json::json;
use tonic::metadata::{Ascii, MetadataValue};

use super::{ApiError, ApiResult, ask, params, query_of, query_of_method, unexpected};
use crate::auth::{Caller, ON_BEHALF_OF, Visibility};
use crate::core::{OperatorRequest, OperatorResponse};
use crate::http::HttpState;
use crate::wire;

type JobsClient = v1::jobs_client::JobsClient<Conn>;

/// A client of the Jobs service for one HTTP caller.
struct Jobs {
    client: JobsClient,
    /// The principal the Jobs service inside this master is called for.
    on_behalf_of: Option<MetadataValue<Ascii>>,
}

impl Jobs {
    /// The client, and `message` as a request made for the HTTP caller.
    fn call<T>(self, message: T) -> (JobsClient, tonic::Request<T>) {
        let mut request = tonic::Request::new(message);
        if let Some(principal) = self.on_behalf_of {
            request.metadata_mut().insert(ON_BEHALF_OF, principal);
        }
        (self.client, request)
    }
}

/// A client of the Jobs service for `caller`, wherever the jobs framework says it serves.
async fn client(state: &HttpState, caller: &Caller) -> Result<Jobs, ApiError> {
    let OperatorResponse::Frameworks(frameworks) = ask(
        state,
        OperatorRequest::ListFrameworks {
            include_completed: false,
            visible: Visibility::All,
        },
    )
    .await?
    else {
        return Err(unexpected());
    };
    let frameworks: Vec<v1::FrameworkSummary> = wire::each_into(&frameworks);
    // The Jobs service inside this master is called as the master, for the caller's
    // principal, whose rights it then applies. A standalone jobs framework (plaintext) is
    // sent no token: it trusts whoever reaches it.
    let (address, dialer, on_behalf_of) = match jobs_at(&frameworks) {
        JobsAt::Master => {
            let on_behalf_of = caller.principal().and_then(|p| p.parse().ok());
            (
                state.jobs_on_master.clone(),
                state.as_master.clone(),
                on_behalf_of,
            )
        }
        JobsAt::Address(a) => (a, Dialer::plaintext(Token::none()), None),
    };
    let conn = dialer.connect(&address).await.map_err(|e| {
        ApiError::from(ServiceError::Unavailable(format!(
            "the jobs framework's Jobs service at {address}: {e}"
        )))
    })?;
    Ok(Jobs {
        client: limits::jobs_client(conn),
        on_behalf_of,
    })
}

/// The Jobs service's refusal; UNIMPLEMENTED means no jobs framework serves there.
fn refused(status: tonic::Status) -> ApiError {
    if status.code() == tonic::Code::Unimplemented {
        return ServiceError::Unavailable(
            "no jobs framework is running: a master started with --no-builtin-frameworks \
             serves no jobs until `corral frameworks run` runs"
                .into(),
        )
        .into();
    }
    status.into()
}

pub(super) async fn list(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/jobs"))?;
    let (mut jobs, request) = client(&state, &caller).await?.call(v1::ListJobsRequest {});
    let jobs = jobs
        .list_jobs(request)
        .await
        .map_err(refused)?
        .into_inner()
        .jobs;
    Ok(axum::Json(
        json!({ "jobs": jobs.iter().map(forms::job).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn get(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/jobs/{name}"))?;
    let (mut jobs, request) = client(&state, &caller)
        .await?
        .call(v1::GetJobRequest { name });
    let job = jobs.get_job(request).await.map_err(refused)?.into_inner();
    Ok(axum::Json(forms::job(&job)))
}

/// The spec's format: `?format=`, else the body's media type, else TOML.
fn format_of(query: &[(String, String)], headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "format") {
        return match f.as_str() {
            "toml" | "yaml" | "json" => Ok(f.clone()),
            _ => Err(ApiError::bad_request(format!(
                "format {f:?}: toml, yaml or json"
            ))),
        };
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        m if m.ends_with("json") => "json",
        m if m.ends_with("yaml") => "yaml",
        _ => "toml",
    }
    .to_owned())
}

pub(super) async fn submit(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let q = params(q, query_of_method("post", "/api/v1/jobs"))?;
    if body.len() > limits::MAX_JOB_SPEC_BYTES {
        return Err(ApiError::bad_request(format!(
            "the spec is {} bytes; at most {}",
            body.len(),
            limits::MAX_JOB_SPEC_BYTES
        )));
    }
    let source = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the spec is not UTF-8 text"))?;
    if source.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send a job spec (TOML, YAML or JSON)",
        ));
    }
    let format = format_of(&q, &headers)?;
    let (mut jobs, request) = client(&state, &caller).await?.call(v1::SubmitJobsRequest {
        source,
        file: format!("request body ({format})"),
        format,
        // Nothing was uploaded with the request: modules and inputs are named by digest.
        uploaded: Default::default(),
    });
    let jobs = jobs
        .submit_jobs(request)
        .await
        .map_err(refused)?
        .into_inner()
        .jobs;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "jobs": jobs.iter().map(forms::job).collect::<Vec<_>>() })),
    ))
}

pub(super) async fn scale(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let q = params(q, query_of("/api/v1/jobs/{name}/scale"))?;
    let instances = q
        .iter()
        .find(|(k, _)| k == "instances")
        .ok_or_else(|| ApiError::bad_request("instances is required"))?
        .1
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("instances: a whole number"))?;
    let (mut jobs, request) = client(&state, &caller)
        .await?
        .call(v1::ScaleJobRequest { name, instances });
    let job = jobs.scale_job(request).await.map_err(refused)?.into_inner();
    Ok(axum::Json(forms::job(&job)))
}

pub(super) async fn kill(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/jobs/{name}/kill"))?;
    let (mut jobs, request) = client(&state, &caller)
        .await?
        .call(v1::KillJobRequest { name });
    let killed = jobs.kill_job(request).await.map_err(refused)?.into_inner();
    Ok(axum::Json(
        killed.job.as_ref().map_or(json!({}), forms::job),
    ))
}

/// Run now, suspend or resume: calls that take only the job's name.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cron {
    RunNow,
    Suspend,
    Resume,
}

pub(super) async fn cron(
    state: HttpState,
    caller: Caller,
    name: String,
    q: Vec<(String, String)>,
    call: Cron,
) -> ApiResult {
    let path = match call {
        Cron::RunNow => "/api/v1/jobs/{name}/run",
        Cron::Suspend => "/api/v1/jobs/{name}/suspend",
        Cron::Resume => "/api/v1/jobs/{name}/resume",
    };
    params(q, query_of(path))?;
    let (mut jobs, request) = client(&state, &caller)
        .await?
        .call(v1::JobNameRequest { name });
    let job = match call {
        Cron::RunNow => jobs.run_job_now(request).await,
        Cron::Suspend => jobs.suspend_job(request).await,
        Cron::Resume => jobs.resume_job(request).await,
    }
    .map_err(refused)?
    .into_inner();
    Ok(axum::Json(forms::job(&job)))
}
