//! The built-in jobs over HTTP: list, submit (a spec file as the body), scale, kill, run now,
//! suspend and resume, through the jobs framework's Jobs gRPC service wherever it serves
//! (`corral_proto::jobs`): on this master's port, or at the address of a framework running as
//! a process of its own.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use corral_proto::auth::{AUTHORIZATION, Conn, Token};
use corral_proto::jobs::JobsAt;
use corral_proto::tls::Dialer;
use corral_proto::{ServiceError, json as forms, limits, v1};
use serde_json::json;
use tonic::metadata::{Ascii, MetadataValue};

use super::{ApiError, ApiResult, ask, params, query_of, query_of_method, unexpected};
use crate::auth::{Caller, ON_BEHALF_OF, PresentedToken, Visibility, trusted_jobs_address};
use crate::core::{OperatorRequest, OperatorResponse};
use crate::http::HttpState;
use crate::wire;

type JobsClient = v1::jobs_client::JobsClient<Conn>;

/// Who calls the jobs' API: the caller the gate authenticated, and the token it presented.
pub(super) struct HttpCaller {
    caller: Caller,
    token: Option<PresentedToken>,
}

impl<S: Send + Sync> FromRequestParts<S> for HttpCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self {
            caller: parts
                .extensions
                .get::<Caller>()
                .cloned()
                .ok_or_else(unexpected)?,
            token: parts.extensions.get::<PresentedToken>().cloned(),
        })
    }
}

/// A client of the Jobs service for one HTTP caller.
struct Jobs {
    client: JobsClient,
    /// Who the call is made for: the principal the Jobs service inside this master is
    /// called for, or the token a jobs framework running on its own decides on.
    made_for: Option<(&'static str, MetadataValue<Ascii>)>,
}

impl Jobs {
    /// The client, and `message` as a request made for the HTTP caller.
    fn call<T>(self, message: T) -> (JobsClient, tonic::Request<T>) {
        let mut request = tonic::Request::new(message);
        if let Some((key, value)) = self.made_for {
            request.metadata_mut().insert(key, value);
        }
        (self.client, request)
    }
}

/// A client of the Jobs service for `who`, wherever the jobs framework says it serves.
async fn client(state: &HttpState, who: &HttpCaller) -> Result<Jobs, ApiError> {
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
    let at = match trusted_jobs_address(&state.auth, &frameworks) {
        Some(address) => JobsAt::Address(address),
        None => JobsAt::Master,
    };
    // The Jobs service inside this master is called as the master, for the caller's
    // principal, whose rights it then applies. A jobs framework running on its own is
    // called with the caller's token (over TLS when this master uses it), on which it asks
    // the masters.
    let (address, dialer, made_for) = match at {
        JobsAt::Master => {
            let principal = who.caller.principal().and_then(|p| p.parse().ok());
            (
                state.jobs_on_master.clone(),
                state.as_master.clone(),
                principal.map(|p| (ON_BEHALF_OF, p)),
            )
        }
        JobsAt::Address(a) => {
            let token =
                (who.token.as_ref()).and_then(|t| MetadataValue::try_from(t.0.as_bytes()).ok());
            let dialer = Dialer::new(state.as_master.tls().cloned(), Token::none());
            (a, dialer, token.map(|t| (AUTHORIZATION, t)))
        }
    };
    let conn = dialer.connect(&address).await.map_err(|e| {
        ApiError::from(ServiceError::Unavailable(format!(
            "the jobs framework's Jobs service at {address}: {e}"
        )))
    })?;
    Ok(Jobs {
        client: limits::jobs_client(conn),
        made_for,
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
    who: HttpCaller,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/jobs"))?;
    let (mut jobs, request) = client(&state, &who).await?.call(v1::ListJobsRequest {});
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
    who: HttpCaller,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/jobs/{name}"))?;
    let (mut jobs, request) = client(&state, &who).await?.call(v1::GetJobRequest { name });
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
    who: HttpCaller,
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
    let (mut jobs, request) = client(&state, &who).await?.call(v1::SubmitJobsRequest {
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
    who: HttpCaller,
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
    let (mut jobs, request) = client(&state, &who)
        .await?
        .call(v1::ScaleJobRequest { name, instances });
    let job = jobs.scale_job(request).await.map_err(refused)?.into_inner();
    Ok(axum::Json(forms::job(&job)))
}

pub(super) async fn kill(
    State(state): State<HttpState>,
    who: HttpCaller,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    params(q, query_of("/api/v1/jobs/{name}/kill"))?;
    let (mut jobs, request) = client(&state, &who)
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
    who: HttpCaller,
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
    let (mut jobs, request) = client(&state, &who)
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
