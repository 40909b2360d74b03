//! etcd's user/password authentication. etcd answers `Auth.Authenticate` with a token that
//! every later call carries as `token` metadata; tokens expire (etcd's `--auth-token-ttl`,
//! five minutes by default) and an etcd restart forgets simple tokens. So the channel asks
//! for a token before the first call, asks again once it is [`TOKEN_REUSE`] old, and drops it
//! at once when etcd answers UNAUTHENTICATED, so the caller's retry gets a new one.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::transport::Channel;

use super::etcd::pb::etcdserverpb::{AuthenticateRequest, auth_client::AuthClient};

/// A user etcd knows by password (`etcdctl user add`). The password is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    /// The user's name.
    pub name: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How long a token is used before another is asked for: well within etcd's default TTL, at
/// the cost of one `Authenticate` a minute.
const TOKEN_REUSE: Duration = Duration::from_secs(60);

/// A channel to etcd that authenticates as a user when given one. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct EtcdChannel {
    inner: Channel,
    login: Option<Arc<Login>>,
}

impl EtcdChannel {
    pub(super) fn new(inner: Channel, user: Option<&EtcdUser>) -> Self {
        Self {
            inner,
            login: user.map(|user| {
                Arc::new(Login {
                    user: user.clone(),
                    token: Mutex::new(None),
                    asking: tokio::sync::Mutex::new(()),
                })
            }),
        }
    }
}

#[derive(Debug)]
struct Login {
    user: EtcdUser,
    /// The token and when it was given.
    token: Mutex<Option<(HeaderValue, Instant)>>,
    /// One `Authenticate` at a time: callers arriving meanwhile use its token.
    asking: tokio::sync::Mutex<()>,
}

impl Login {
    fn fresh(&self) -> Option<HeaderValue> {
        let token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        token
            .as_ref()
            .filter(|(_, given)| given.elapsed() < TOKEN_REUSE)
            .map(|(token, _)| token.clone())
    }

    fn forget(&self) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A token, asking etcd (over `channel`, which sends none) for a new one when needed.
    async fn token(&self, channel: Channel) -> Result<HeaderValue, tonic::Status> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _one = self.asking.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let answer = AuthClient::new(channel)
            .authenticate(AuthenticateRequest {
                name: self.user.name.clone(),
                password: self.user.password.clone(),
            })
            .await
            .map_err(|status| {
                tonic::Status::new(
                    status.code(),
                    format!(
                        "authenticating to etcd as user {:?}: {}",
                        self.user.name,
                        status.message()
                    ),
                )
            })?;
        let token = HeaderValue::from_str(&answer.into_inner().token).map_err(|_| {
            tonic::Status::internal("etcd sent an authentication token that is not a header value")
        })?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

/// gRPC's UNAUTHENTICATED, as a trailers-only answer carries it in its headers.
const UNAUTHENTICATED: &str = "16";

impl Service<Request<Body>> for EtcdChannel {
    type Response = Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The channel made ready by `poll_ready` serves this call; a clone stays for the next.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let Some(login) = self.login.clone() else {
            return Box::pin(async move { ready.call(request).await.map_err(Into::into) });
        };
        let plain = self.inner.clone();
        Box::pin(async move {
            // A refusal to authenticate is the call's answer (tonic finds the status inside).
            let token = login.token(plain).await.map_err(Box::new)?;
            request.headers_mut().insert("token", token);
            let response = ready.call(request).await?;
            if response
                .headers()
                .get("grpc-status")
                .is_some_and(|status| status == UNAUTHENTICATED)
            {
                login.forget();
            }
            Ok(response)
        })
    }
}
