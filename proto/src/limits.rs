//! Protocol limits shared by every Corral server and client, and constructors that apply them.
//!
//! Build servers and clients through this module rather than the generated `new`:
//!
//! - [`scheduler_server`], [`agent_link_server`], [`operator_server`], [`master_peer_server`], [`jobs_server`] wrap a service with the
//!   message-size limits; [`server_builder`] sets HTTP/2 keepalive, stream, header and reset
//!   limits, and
//!   [`incoming`] sets `TCP_NODELAY` and TCP keepalive on a listener (tonic ignores the
//!   builder's TCP settings with `serve_with_incoming`).
//! - [`endpoint`] configures a client connection the same way, and [`scheduler_client`],
//!   [`agent_link_client`], [`operator_client`], [`master_peer_client`], [`jobs_client`] apply the message-size limits. A tonic client
//!   refuses responses over 4 MiB by default, so a client built otherwise breaks on large
//!   offers or state.
//!
//! A server that serves gRPC through axum (to share its port with HTTP) skips
//! [`server_builder`]; it must set the same HTTP/2 settings on its hyper connection builder
//! from these constants.
//!
//! Limits that apply to one RPC rather than a whole service are checked by the handlers with
//! the helpers here ([`check_module_chunk`], [`read_length`]).

use std::time::Duration;

use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};

use crate::error::ProtoError;
use crate::v1;
use crate::v1::agent_link_client::AgentLinkClient;
use crate::v1::agent_link_server::{AgentLink, AgentLinkServer};
use crate::v1::jobs_client::JobsClient;
use crate::v1::jobs_server::{Jobs, JobsServer};
use crate::v1::master_peer_client::MasterPeerClient;
use crate::v1::master_peer_server::{MasterPeer, MasterPeerServer};
use crate::v1::operator_client::OperatorClient;
use crate::v1::operator_server::{Operator, OperatorServer};
use crate::v1::scheduler_client::SchedulerClient;
use crate::v1::scheduler_server::{Scheduler, SchedulerServer};

/// Largest message any Corral RPC sends or accepts, in bytes (both directions, every
/// service). Big enough for an ACCEPT launching hundreds of tasks with small inline inputs,
/// an OFFERS event for thousands of agents, or a re-registration with thousands of tasks;
/// small enough that one message cannot exhaust a master's memory.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Largest `ModuleChunk.data`, in bytes. Senders split modules into chunks of this size.
pub const MODULE_CHUNK_BYTES: usize = 1 << 20;

/// Largest module the artifact store accepts, in bytes (the agent's default admission limit).
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// Largest artifact the artifact store keeps, in bytes: a module, or one file of a task's
/// outputs (a larger output file is not kept, and the task's status says so).
pub const MAX_ARTIFACT_BYTES: u64 = MAX_MODULE_BYTES;

/// Most files of one task's outputs kept (`TaskStatus.outputs`).
pub const MAX_TASK_OUTPUTS: usize = 1000;

/// Longest key of a framework's store (Scheduler.Store), in bytes.
pub const MAX_STORE_KEY_BYTES: usize = 512;

/// Largest value of a framework's store, in bytes.
pub const MAX_STORE_VALUE_BYTES: usize = 256 << 10;

/// Most bytes (keys and values) one framework's store holds.
pub const MAX_STORE_BYTES: usize = 8 << 20;

/// Most keys one framework's store holds.
pub const MAX_STORE_KEYS: usize = 10_000;

/// Longest `TaskStatus.outputs_not_kept` kept, in bytes; longer notes are cut.
pub const MAX_NOTE_BYTES: usize = 8 << 10;

/// Longest path of an output file under the outputs folder (`TaskOutput.path`), in bytes.
pub const MAX_OUTPUT_PATH_BYTES: usize = 1024;

/// Most preopened directories a task may ask for (`TaskInfo.preopens`).
pub const MAX_PREOPENS: usize = 64;

/// Longest name of a preopened directory (`Preopen.guest_path`), in bytes.
pub const MAX_PREOPEN_NAME_BYTES: usize = 4096;

/// Largest `TaskStatus.result_json`, in bytes: a task's structured result is small.
pub const MAX_RESULT_BYTES: usize = 64 << 10;

/// Most elements any repeated field of a request or report may hold: task args, env and
/// inputs, IDs, roles, operations, acknowledgements, reconciled and re-registered tasks, cached
/// modules. Within [`MAX_MESSAGE_BYTES`] a message could otherwise carry millions of tiny
/// elements, each costing the master far more work and memory than its few bytes.
pub const MAX_LIST_ITEMS: usize = 65_536;

/// Most labels one task, framework or agent carries (and most attributes one agent has).
pub const MAX_LABELS: usize = 256;

/// Longest label or attribute key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 256;

/// Longest label or attribute value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 4096;

/// Largest checkpoint (`TaskStatus.checkpoint`, `TaskInfo.checkpoint`), in bytes.
pub const MAX_CHECKPOINT_BYTES: usize = 1 << 20;

/// Largest `TaskInfo.stdin`, in bytes.
pub const MAX_STDIN_BYTES: usize = 4 << 20;

/// Largest `ReadFileRequest.length` honoured; longer reads return this much.
pub const MAX_READ_FILE_BYTES: u64 = 1 << 20;

/// Largest job spec file the Jobs service (and `POST /api/v1/jobs`) takes, in bytes.
pub const MAX_JOB_SPEC_BYTES: usize = 1 << 20;

/// Most names in each list of a `DecideJobs` request.
pub const MAX_JOB_DECISIONS: usize = 1024;

/// Operator events that may wait for one subscriber of `Operator.Subscribe` (or of
/// `/api/v1/events`); one that falls this far behind is cut off.
pub const OPERATOR_EVENT_QUEUE: usize = 65_536;

/// How often a quiet operator event stream sends HEARTBEAT.
pub const OPERATOR_HEARTBEAT: Duration = Duration::from_secs(15);

/// Concurrent HTTP/2 streams per connection. A framework's subscription plus its calls, or an
/// agent's link plus module fetches, stay far below it; it bounds what one peer can open.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Largest header list a server reads (a request's headers and gRPC metadata together), in
/// bytes; a request with more is refused before it is read.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;

/// Streams a client may open and cancel before the server takes them, per connection; past
/// it the connection is closed (the HTTP/2 rapid-reset attack).
pub const MAX_PENDING_RESET_STREAMS: usize = 20;

/// Streams the server may reset for a client's errors, per connection, before it closes the
/// connection.
pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Interval of HTTP/2 pings on idle connections, in both directions. Detects a dead peer
/// behind a silent network (NAT timeouts, a killed VM) without waiting for TCP.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a ping may go unanswered before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time before TCP keepalive probes.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// How long a client waits for a TCP connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request may take to be answered: a unary call, a client stream's whole upload
/// (a module of [`MAX_MODULE_BYTES`] at about 1 MiB/s), an HTTP request until its response
/// starts. A client that sends slowly holds a handler no longer; past it the call ends with
/// CANCELLED. Once answered, a response stream (`Subscribe`, `Connect`, event streams,
/// downloads) lives as long as the peer answers keepalive pings. A client's shorter
/// `grpc-timeout` wins.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A `tonic` server builder with Corral's HTTP/2 settings: keepalive pings, the
/// concurrent-stream bound, `TCP_NODELAY` (latency matters more than packet count here), and
/// [`REQUEST_TIMEOUT`]. (HTTP/1 requests must also send their headers within 30 s, hyper's
/// default once a timer is set, as tonic does.)
pub fn server_builder() -> Server {
    Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(TCP_KEEPALIVE))
}

/// Accepted connections of `listener` with `TCP_NODELAY` and TCP keepalive, for
/// `serve_with_incoming` (which ignores the builder's TCP settings).
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE))
}

/// The Scheduler service with Corral's message limits.
pub fn scheduler_server<S: Scheduler>(service: S) -> SchedulerServer<S> {
    SchedulerServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The AgentLink service with Corral's message limits.
pub fn agent_link_server<S: AgentLink>(service: S) -> AgentLinkServer<S> {
    AgentLinkServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The Operator service with Corral's message limits.
pub fn operator_server<S: Operator>(service: S) -> OperatorServer<S> {
    OperatorServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The Jobs service with Corral's message limits.
pub fn jobs_server<S: Jobs>(service: S) -> JobsServer<S> {
    JobsServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The MasterPeer service with Corral's message limits.
pub fn master_peer_server<S: MasterPeer>(service: S) -> MasterPeerServer<S> {
    MasterPeerServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A client endpoint for `uri` (`http://host:port`) with Corral's connection settings:
/// connect timeout, HTTP/2 keepalive (also while idle: a framework waiting for offers is
/// idle but must notice a dead master), TCP keepalive and `TCP_NODELAY`.
///
/// Connect with `.connect().await` or `.connect_lazy()`, then wrap the channel with
/// [`scheduler_client`] and friends.
pub fn endpoint(uri: impl Into<String>) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(uri.into())?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .tcp_nodelay(true))
}

/// Defines a client constructor with Corral's message limits. Generic over the channel, so
/// a bare `Channel` and one that presents a token ([`crate::auth::Conn`]) both fit.
macro_rules! client {
    ($(#[$doc:meta])* $name:ident, $client:ident) => {
        $(#[$doc])*
        pub fn $name<T>(channel: T) -> $client<T>
        where
            T: tonic::client::GrpcService<tonic::body::Body>,
            T::Error: Into<StdError>,
            T::ResponseBody: Body<Data = Bytes> + Send + 'static,
            <T::ResponseBody as Body>::Error: Into<StdError> + Send,
        {
            $client::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        }
    };
}

client!(
    /// A Scheduler client with Corral's message limits.
    ///
    /// A request over [`MAX_MESSAGE_BYTES`] is refused locally, but tonic reports it as
    /// `INTERNAL` ("h2 protocol error") rather than `OUT_OF_RANGE` (grpc/grpc-rust#1334);
    /// callers that batch (launches, acknowledgements) should split batches well below the
    /// limit.
    scheduler_client,
    SchedulerClient
);
client!(
    /// An AgentLink client with Corral's message limits.
    agent_link_client,
    AgentLinkClient
);
client!(
    /// An Operator client with Corral's message limits.
    operator_client,
    OperatorClient
);
client!(
    /// A Jobs client with Corral's message limits.
    jobs_client,
    JobsClient
);
client!(
    /// A MasterPeer client with Corral's message limits.
    master_peer_client,
    MasterPeerClient
);

/// Splits a module into the chunks an upload or fetch streams: at most
/// [`MODULE_CHUNK_BYTES`] each, the first announcing the total size.
pub fn module_chunks(module: &[u8]) -> Vec<v1::ModuleChunk> {
    let total = module.len() as u64;
    module
        .chunks(MODULE_CHUNK_BYTES)
        .enumerate()
        .map(|(i, data)| v1::ModuleChunk {
            data: bytes::Bytes::copy_from_slice(data),
            total_size: if i == 0 { total } else { 0 },
        })
        .collect()
}

/// Checks one chunk of a module stream, given the bytes received before it: the chunk is at
/// most [`MODULE_CHUNK_BYTES`], and neither the announced `total_size` nor the running total
/// exceeds [`MAX_MODULE_BYTES`]. Returns the new running total.
pub fn check_module_chunk(chunk: &v1::ModuleChunk, received: u64) -> Result<u64, ProtoError> {
    let len = chunk.data.len() as u64;
    if len > MODULE_CHUNK_BYTES as u64 {
        return Err(ProtoError::TooLarge {
            field: "data".into(),
            size: len,
            limit: MODULE_CHUNK_BYTES as u64,
        });
    }
    if chunk.total_size > MAX_MODULE_BYTES {
        return Err(ProtoError::TooLarge {
            field: "total_size".into(),
            size: chunk.total_size,
            limit: MAX_MODULE_BYTES,
        });
    }
    let total = received.saturating_add(len);
    if total > MAX_MODULE_BYTES {
        return Err(ProtoError::TooLarge {
            field: "module".into(),
            size: total,
            limit: MAX_MODULE_BYTES,
        });
    }
    Ok(total)
}

/// How many bytes a `ReadFile` returns for a requested `length`: at most
/// [`MAX_READ_FILE_BYTES`] (clamped rather than refused, so `corral logs` can ask for "as
/// much as you will give").
pub fn read_length(requested: u64) -> u64 {
    requested.min(MAX_READ_FILE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_module_is_split_into_bounded_chunks_that_announce_its_size() {
        let module = vec![7u8; MODULE_CHUNK_BYTES * 2 + 3];
        let chunks = module_chunks(&module);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, [MODULE_CHUNK_BYTES, MODULE_CHUNK_BYTES, 3]);
        assert_eq!(chunks[0].total_size, module.len() as u64);
        assert!(chunks[1..].iter().all(|c| c.total_size == 0));
        let mut received = 0;
        for chunk in &chunks {
            received = check_module_chunk(chunk, received).unwrap();
        }
        assert_eq!(received, module.len() as u64);
    }

    #[test]
    fn module_chunks_are_bounded() {
        let chunk = |n: usize, total: u64| v1::ModuleChunk {
            data: Bytes::from(vec![0; n]),
            total_size: total,
        };
        assert_eq!(check_module_chunk(&chunk(10, 0), 5), Ok(15));
        assert!(check_module_chunk(&chunk(MODULE_CHUNK_BYTES + 1, 0), 0).is_err());
        assert!(check_module_chunk(&chunk(0, MAX_MODULE_BYTES + 1), 0).is_err());
        assert_eq!(
            check_module_chunk(&chunk(2, 0), MAX_MODULE_BYTES - 1)
                .map_err(|e| e.field().to_owned()),
            Err("module".to_owned())
        );
        assert_eq!(read_length(u64::MAX), MAX_READ_FILE_BYTES);
        assert_eq!(read_length(10), 10);
    }

    #[test]
    fn endpoint_rejects_bad_uris() {
        assert!(endpoint("http://127.0.0.1:5050").is_ok());
        assert!(endpoint("not a uri").is_err());
    }
}
