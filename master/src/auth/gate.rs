//! The check every request of the master's port passes before routing: gRPC and HTTP alike.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_proto::{ServiceError, one_port};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::action::{self, Gatekeeping, ObjectKind};
use super::jobs::{ON_BEHALF_OF, jobs_caller};
use super::rate::{Kind, Subject};
use super::{Action, Auth, Caller, Object, TOKEN_COOKIE, check_principal};
use crate::http;
use crate::leadership::Gate;

/// The path prefix of the Jobs service's methods.
const JOBS_SERVICE: &str = "/corral.v1.Jobs/";
/// The path prefix of the jobs' HTTP API.
const JOBS_API: &str = "/api/v1/jobs";

/// The `authorization` header an HTTP caller of the jobs' API presented (or made from its
/// cookie), for the API to present in turn to a jobs framework running as a process of its
/// own. It is the caller's own secret: it goes nowhere else.
#[derive(Clone)]
pub(crate) struct PresentedToken(pub(crate) header::HeaderValue);

impl std::fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedToken(<redacted>)")
    }
}

/// What the gate decides with.
#[derive(Clone)]
pub(crate) struct GateState {
    pub(crate) auth: Arc<Auth>,
    /// Whether this master leads (a standby redirects before authenticating).
    pub(crate) leadership: Gate,
    /// The master serves TLS: agents and other masters must present a certificate the
    /// cluster's CA signed (verified in the handshake).
    pub(crate) mutual_tls: bool,
}

/// Authenticates the caller (unless the path is open), decides the actions that need no
/// request body, spends its request (and upload) rate, and hands the
/// [`Caller`](super::Caller) and its rate limit [`Subject`] on to the handler in the
/// request's extensions.
pub(crate) async fn gate(
    State(GateState {
        auth,
        leadership,
        mutual_tls,
    }): State<GateState>,
    mut request: Request,
    next: Next,
) -> Response {
    let grpc = one_port::is_grpc(request.headers());
    let path = request.uri().path();
    let keeping = if grpc {
        action::grpc(path)
    } else {
        http::gatekeeping(request.method(), path)
    };
    // A standby names the leader before anything else, as it does without authentication;
    // only MasterPeer is served by every master.
    if grpc
        && keeping != Gatekeeping::Open
        && keeping != Gatekeeping::Action(Action::ReplicateModules)
        && let Err(not_leader) = leadership.core()
    {
        return tonic::Status::from(not_leader)
            .into_http::<axum::body::Body>()
            .into_response();
    }
    if mutual_tls
        && matches!(
            keeping,
            Gatekeeping::Action(Action::RegisterAgent | Action::ReplicateModules)
        )
        && !presented_certificate(&request)
    {
        let refusal = ServiceError::Unauthenticated(
            "agents and masters must present a certificate the cluster's CA signed \
             (--tls-cert, --tls-key)"
                .into(),
        );
        auth.audit_refused(keeping, "no client certificate");
        return tonic::Status::from(refusal)
            .into_http::<axum::body::Body>()
            .into_response();
    }
    let label = match keeping {
        Gatekeeping::Open => return next.run(request).await,
        Gatekeeping::Action(action) => action.name().to_owned(),
        Gatekeeping::Handler => path.to_owned(),
    };
    // A browser's token comes in its cookie; gRPC clients send the header.
    let cookie = (!grpc)
        .then(|| cookie_token(request.headers()))
        .flatten()
        .map(|token| format!("Bearer {token}"));
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|h| h.as_bytes())
        .or(cookie.as_deref().map(str::as_bytes));
    // A jobs framework running as a process of its own decides on the HTTP caller's token.
    let presented = (!grpc && path.starts_with(JOBS_API))
        .then(|| header.and_then(|h| header::HeaderValue::from_bytes(h).ok()))
        .flatten()
        .map(PresentedToken);
    let named = grpc.then(|| request.headers().get(ON_BEHALF_OF)).flatten();
    let decided = auth.authenticate(header, &label).and_then(|authenticated| {
        // The request was paid for by whoever made it, not by whom it is made for.
        let subject = Subject::of(&authenticated, remote_ip(&request));
        let caller = acting_for(authenticated, named)?;
        if let Gatekeeping::Action(action) = keeping {
            let object = match action.object_kind() {
                ObjectKind::Owner => Object::Everyone,
                ObjectKind::Nothing | ObjectKind::Role => Object::Nothing,
            };
            auth.authorize(&caller, action, object)?;
        }
        // Agents and peer masters are trusted by certificate, and their calls follow the
        // cluster's work: limiting them would throttle every tenant at once.
        if !matches!(
            keeping,
            Gatekeeping::Action(Action::RegisterAgent | Action::ReplicateModules)
        ) {
            auth.throttle(subject.as_ref(), Kind::Requests, 1)?;
        }
        if keeping == Gatekeeping::Action(Action::UploadModules) {
            auth.throttle(subject.as_ref(), Kind::Uploads, 1)?;
        }
        Ok((caller, subject))
    });
    match decided {
        Ok((caller, subject)) => {
            if grpc && request.uri().path().starts_with(JOBS_SERVICE) {
                request.extensions_mut().insert(jobs_caller(&auth, &caller));
            }
            if let Some(presented) = presented {
                request.extensions_mut().insert(presented);
            }
            request.extensions_mut().insert(caller);
            if let Some(subject) = subject {
                request.extensions_mut().insert(subject);
            }
            next.run(request).await
        }
        Err(refusal) if grpc => tonic::Status::from(refusal)
            .into_http::<axum::body::Body>()
            .into_response(),
        Err(refusal) => refuse_http(refusal),
    }
}

/// Whom a call is made for: the master's own calls may name a principal (its HTTP API
/// calling the Jobs service for its caller); a principal may not name another.
fn acting_for(caller: Caller, named: Option<&header::HeaderValue>) -> Result<Caller, ServiceError> {
    let Some(named) = named else {
        return Ok(caller);
    };
    match caller {
        Caller::Master => {
            let principal = named
                .to_str()
                .ok()
                .filter(|p| check_principal(p).is_ok())
                .ok_or_else(|| {
                    ServiceError::InvalidArgument(format!("{ON_BEHALF_OF}: not a principal"))
                })?;
            Ok(Caller::Principal(principal.into()))
        }
        Caller::Principal(_) => Err(ServiceError::PermissionDenied(format!(
            "{ON_BEHALF_OF}: only the master makes calls for another principal"
        ))),
        Caller::Anyone => Ok(caller),
    }
}

/// Whether the client presented a certificate in the TLS handshake (rustls verified it
/// against the cluster's CA, or the handshake failed).
fn presented_certificate(request: &Request) -> bool {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}

/// The client's address, as the connection's TCP (or TLS over TCP) info has it.
fn remote_ip(request: &Request) -> Option<std::net::IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
        .map(|a| a.ip())
}

/// The token in a `corral_token` cookie.
fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
        .map(str::to_owned)
}

fn refuse_http(refusal: ServiceError) -> Response {
    let unauthenticated = matches!(refusal, ServiceError::Unauthenticated(_));
    let mut response = http::ApiError::from(refusal).into_response();
    if unauthenticated {
        // RFC 9110: a 401 names the scheme it wants.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"corral\""),
        );
    }
    response
}
