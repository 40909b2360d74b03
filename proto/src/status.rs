//! The one mapping from domain errors to gRPC status codes (STYLE.md, "domain errors map to
//! gRPC codes in exactly one place").
//!
//! Services classify a failure as a [`ServiceError`] — from a [`ProtoError`] (malformed
//! input), or the master's own errors (the allocator's among them) through a conversion in
//! the master — and the conversion to [`tonic::Status`] happens here:
//!
//! | ServiceError                  | code                  |
//! |-------------------------------|-----------------------|
//! | `Invalid` (most)              | `INVALID_ARGUMENT`    |
//! | `Invalid` (`TooLarge`)        | `RESOURCE_EXHAUSTED`  |
//! | `InvalidArgument`             | `INVALID_ARGUMENT`    |
//! | `NotFound`                    | `NOT_FOUND`           |
//! | `AlreadyExists`               | `ALREADY_EXISTS`      |
//! | `FailedPrecondition`          | `FAILED_PRECONDITION` |
//! | `ResourceExhausted`           | `RESOURCE_EXHAUSTED`  |
//! | `RateLimited`                 | `RESOURCE_EXHAUSTED` + `corral-retry-after-ms` metadata |
//! | `Unauthenticated`             | `UNAUTHENTICATED`     |
//! | `PermissionDenied`            | `PERMISSION_DENIED`   |
//! | `NotLeader`                   | `UNAVAILABLE` + `corral-leader` metadata |
//! | `Unavailable`                 | `UNAVAILABLE`         |
//! | `Internal`                    | `INTERNAL`            |
//!
//! In a handler: `?` directly on a `Result<_, ServiceError>` or `Result<_, ProtoError>`.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::ProtoError;

/// Response metadata key carrying the leader's address (`host:port`) on `UNAVAILABLE` from a
/// master that is not the leader. Clients reconnect there.
pub const LEADER_METADATA_KEY: &str = "corral-leader";

/// Response metadata key carrying, on `RESOURCE_EXHAUSTED` from a rate limit, how many
/// milliseconds to wait before retrying (HTTP answers 429 with `Retry-After` instead).
pub const RETRY_AFTER_METADATA_KEY: &str = "corral-retry-after-ms";

/// Why a request failed, classified by what the client should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; retrying it unchanged cannot succeed.
    #[error(transparent)]
    Invalid(#[from] ProtoError),
    /// The request is well-formed but asks for something impossible regardless of state (a
    /// framework with no roles, a guarantee above its own limit).
    #[error("{0}")]
    InvalidArgument(String),
    /// Something the request names does not exist.
    #[error("unknown {kind} {id}")]
    NotFound {
        /// `"agent"`, `"framework"`, `"task"`, `"offer"`, `"role"`, `"module"`, ...
        kind: &'static str,
        /// Its ID or name.
        id: String,
    },
    /// Something the request creates exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// Its ID or name.
        id: String,
    },
    /// The system is not in a state where the request can succeed (a stale stream ID, an
    /// offer already used, resources no longer available); the client must change
    /// something first.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A quota, limit or capacity is exhausted.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller is over one of its rate limits; the same call succeeds after
    /// `retry_after`.
    #[error("{message}; retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// Which limit.
        message: String,
        /// How long until the call would be allowed.
        retry_after: Duration,
    },
    /// The caller presented no credentials, or ones that are not (or no longer) valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// This master is not the leader; `leader` is the leader's address when known.
    #[error("not the leader{}", leader.as_deref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's address (`host:port`).
        leader: Option<String>,
    },
    /// Temporarily unable to serve (shutting down, store unreachable); retry with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure on the server.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::Invalid(ProtoError::TooLarge { .. }) => Code::ResourceExhausted,
            Self::Invalid(_) | Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) | Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotLeader { .. } | Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let mut status = Status::new(e.code(), e.to_string());
        match &e {
            ServiceError::NotLeader {
                leader: Some(leader),
            } => {
                // An address that is not valid header text is left out rather than failing
                // the error path; the message still names it.
                if let Ok(value) = MetadataValue::try_from(leader.as_str()) {
                    status.metadata_mut().insert(LEADER_METADATA_KEY, value);
                }
            }
            ServiceError::RateLimited { retry_after, .. } => {
                let millis = MetadataValue::from(retry_after.as_millis() as u64);
                status
                    .metadata_mut()
                    .insert(RETRY_AFTER_METADATA_KEY, millis);
            }
            _ => {}
        }
        status
    }
}

impl From<ProtoError> for Status {
    fn from(e: ProtoError) -> Self {
        ServiceError::from(e).into()
    }
}

/// Anything that classifies as a [`ServiceError`] becomes a [`Status`] the same way.
///
/// Exists because `From<E> for Status` cannot be written for an error type of another crate.
pub trait IntoStatus {
    /// The status for this error.
    fn into_status(self) -> Status;
}

impl<E: Into<ServiceError>> IntoStatus for E {
    fn into_status(self) -> Status {
        Status::from(self.into())
    }
}

/// The leader's address from a `NotLeader` status, for clients that follow the leader.
pub fn leader_hint(status: &Status) -> Option<&str> {
    if status.code() != Code::Unavailable {
        return None;
    }
    status.metadata().get(LEADER_METADATA_KEY)?.to_str().ok()
}

/// `head`, then each cause in the chain from `cause` that it does not already show.
pub fn with_causes(
    mut head: String,
    mut cause: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(c) = cause {
        let shown = c.to_string();
        if !head.contains(&shown) {
            head.push_str(": ");
            head.push_str(&shown);
        }
        cause = c.source();
    }
    head
}

/// A status's message with the causes of a transport failure behind it (a refused TLS
/// handshake says why only there).
pub fn describe(status: &Status) -> String {
    with_causes(
        status.message().to_owned(),
        std::error::Error::source(status),
    )
}

/// How long a rate-limited call asks to wait before retrying, from a `RateLimited` status.
pub fn retry_after(status: &Status) -> Option<Duration> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    let millis = status
        .metadata()
        .get(RETRY_AFTER_METADATA_KEY)?
        .to_str()
        .ok()?;
    millis.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_errors_are_invalid_argument_except_oversized() {
        let s = Status::from(ProtoError::missing("resources").within("tasks[0]"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "tasks[0].resources: required field is missing");

        let s = Status::from(ProtoError::TooLarge {
            field: "data".into(),
            size: 2,
            limit: 1,
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
    }

    #[test]
    fn not_leader_carries_the_leader_address() {
        let s = Status::from(ServiceError::NotLeader {
            leader: Some("10.0.0.2:5050".into()),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(leader_hint(&s), Some("10.0.0.2:5050"));
        assert!(s.message().contains("10.0.0.2:5050"));

        let s = Status::from(ServiceError::NotLeader { leader: None });
        assert_eq!(leader_hint(&s), None);
        assert_eq!(s.message(), "not the leader");
        assert_eq!(leader_hint(&Status::internal("x")), None);
    }

    #[test]
    fn rate_limited_carries_when_to_retry() {
        let s = Status::from(ServiceError::RateLimited {
            message: "principal alice is over its rate".into(),
            retry_after: Duration::from_millis(250),
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(retry_after(&s), Some(Duration::from_millis(250)));
        assert_eq!(
            s.message(),
            "principal alice is over its rate; retry after 250 ms"
        );
        // A quota or size refusal is not retried by waiting.
        let quota = Status::from(ServiceError::ResourceExhausted("quota".into()));
        assert_eq!(retry_after(&quota), None);
    }
}
