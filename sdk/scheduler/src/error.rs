//! The SDK's error type.

use corral_proto::ProtoError;
use tonic::Code;

/// What went wrong talking to the master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// The master could not be reached or the connection broke (also a master that is not
    /// the leader, or is shutting down: `UNAVAILABLE`). Retrying later may succeed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The master refused the call: malformed (`INVALID_ARGUMENT`), an unknown framework
    /// (`NOT_FOUND`), a stale stream (`FAILED_PRECONDITION`), ...
    #[error("rejected by the master ({code:?}): {message}")]
    Rejected {
        /// The gRPC code.
        code: Code,
        /// The master's explanation.
        message: String,
    },
    /// No subscription is active (not yet subscribed, or reconnecting).
    #[error("not subscribed")]
    NotSubscribed,
    /// The driver was stopped.
    #[error("driver stopped")]
    Stopped,
    /// The master removed the framework (teardown by an operator, failover timeout).
    #[error("framework removed by the master: {0}")]
    FrameworkRemoved(String),
    /// The configuration cannot work (no masters, a bad address, a bad role).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The master sent a message that does not validate.
    #[error("invalid message from the master: {0}")]
    Protocol(#[from] ProtoError),
}

impl SdkError {
    /// True when retrying after a reconnection may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transport(_) | Self::NotSubscribed)
    }
}

impl From<tonic::Status> for SdkError {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            // tonic reports connection failures as UNAVAILABLE (and sometimes UNKNOWN with a
            // transport source); both mean "try again, maybe elsewhere".
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => {
                Self::Transport(status.message().to_owned())
            }
            code => Self::Rejected {
                code,
                message: status.message().to_owned(),
            },
        }
    }
}

impl From<tonic::transport::Error> for SdkError {
    fn from(e: tonic::transport::Error) -> Self {
        Self::Transport(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_by_code() {
        let e = SdkError::from(tonic::Status::failed_precondition("stale stream"));
        assert_eq!(
            e,
            SdkError::Rejected {
                code: Code::FailedPrecondition,
                message: "stale stream".into()
            }
        );
        assert!(!e.is_transient());
        assert!(SdkError::from(tonic::Status::unavailable("down")).is_transient());
    }
}
