//! The tonic services. Each handler validates its request into a core [`Event`](crate::core::Event)
//! (typed IDs, resources, roles: STYLE.md "typed IDs at the edge"), sends it to the core task
//! and translates the answer back; errors become `tonic::Status` only through
//! `corral_proto::status`. Nothing here touches master state.

pub(crate) mod agent_link;
#[cfg(test)]
mod bounds;
mod events;
mod operator;
mod peer;
pub(crate) mod scheduler;
mod subscribe;

pub(crate) use agent_link::AgentLinkService;
pub(crate) use events::{OperatorEvents, Sight};
pub(crate) use operator::OperatorService;
pub(crate) use peer::MasterPeerService;
pub(crate) use scheduler::SchedulerService;
pub(crate) use subscribe::SubscribeRoute;

use std::pin::Pin;
use std::task::{Context, Poll};

use corral_proto::{ProtoError, ServiceError};
use corral_types::Digest;
use tokio_stream::Stream;
use tonic::Status;

use crate::artifacts::ArtifactStore;
use crate::auth::{Caller, Visibility};
use crate::core::{ConnId, Event, OperatorRequest, OperatorResponse, Reply};
use crate::peers::Peers;
use crate::queue::QueueReceiver;
use crate::runtime::CoreHandle;

/// A stream of an artifact's chunks.
pub(crate) type ArtifactStream =
    tokio_stream::wrappers::ReceiverStream<Result<corral_proto::v1::ModuleChunk, Status>>;

/// Streams artifact `digest` from `offset` out of this master's store; one the index records
/// but this master lacks (stored through another master, which led then) is fetched from a
/// master that holds it first (see `peers`).
pub(crate) async fn serve_artifact(
    core: &CoreHandle,
    artifacts: &ArtifactStore,
    peers: &Peers,
    digest: Digest,
    offset: u64,
) -> Result<ArtifactStream, Status> {
    if !artifacts.contains(&digest).await {
        let indexed = core
            .ask(
                Event::Operator(OperatorRequest::ArtifactIndexed {
                    digest,
                    visible: Visibility::All,
                }),
                None,
            )
            .await?;
        if indexed == Reply::Operator(Ok(OperatorResponse::ArtifactIndexed(true))) {
            peers.fetch(&digest).await?;
        }
    }
    let rx = artifacts.fetch(&digest, offset).await?;
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A stream the runtime feeds; dropping it (the client went away, or the response ended)
/// tells the core, so a broken subscription or agent link is noticed at once.
#[derive(Debug)]
pub(crate) struct CoreStream<T> {
    rx: QueueReceiver<T>,
    on_drop: Option<(CoreHandle, Event)>,
}

impl<T> CoreStream<T> {
    fn new(rx: QueueReceiver<T>, core: CoreHandle, on_drop: Event) -> Self {
        Self {
            rx,
            on_drop: Some((core, on_drop)),
        }
    }
}

impl<T> Stream for CoreStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> Drop for CoreStream<T> {
    fn drop(&mut self) {
        if let Some((core, event)) = self.on_drop.take() {
            core.tell_later(event);
        }
    }
}

/// Who sent `request`, as the gate found (a request that did not pass the gate is refused).
fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            ServiceError::Internal("the request did not pass the authentication gate".into()).into()
        })
}

/// A reply other than `Done` to an event that expects `Done` is a bug.
fn done(reply: Reply) -> Result<(), Status> {
    match reply {
        Reply::Done(r) => r.map_err(Status::from),
        Reply::Operator(_) | Reply::Kv(_) => {
            Err(ServiceError::Internal("unexpected reply from the core".into()).into())
        }
    }
}

/// Parses a `sha256:<hex>` field.
fn digest(field: &'static str, s: &str) -> Result<Digest, ProtoError> {
    s.parse().map_err(|error| ProtoError::InvalidDigest {
        field: field.into(),
        error,
    })
}

fn framework_disconnected(conn: ConnId) -> Event {
    Event::FrameworkDisconnected { conn }
}

fn agent_disconnected(conn: ConnId) -> Event {
    Event::AgentDisconnected { conn }
}
