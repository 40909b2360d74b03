//! `corral-proto`: Corral's wire protocol.
//!
//! The gRPC API (`proto/corral/v1/*.proto`, package `corral.v1`, generated into [`v1`] by
//! prost and tonic; the `.proto` comments are the API reference) and the code every service
//! and client shares at the boundary:
//!
//! - validated conversions between messages and corral-types' vocabulary: [`convert`] for
//!   IDs, resources, roles, weights, quotas and filters, [`ProtoEnum`] for task states,
//!   reasons and the other enums, the task types [`TaskInfo`] and [`TaskStatus`], and
//!   [`OperationUpdate`]; failures are [`ProtoError`]s naming the field;
//! - the one mapping from errors to gRPC status codes ([`status`]);
//! - protocol limits, and constructors for servers and clients that apply them ([`limits`]);
//! - one router for gRPC and HTTP on one port ([`one_port`]);
//! - how agents and frameworks follow the leader: which master next, and the reconnect
//!   backoff ([`follow`]).
//!
//! # Services
//!
//! ```text
//!   frameworks (SDK, built-in            operators (corral CLI, web UI)
//!   batch/service/cron frameworks)              │
//!        │                                      │ Operator: state, listings, weights,
//!        │ Scheduler: Subscribe ─► events       │ quotas, drain, UploadModule,
//!        │ (offers, updates, heartbeats);       │ ListFiles / ReadFile
//!        │ Call: accept, decline, kill, ack,    │
//!        ▼ reconcile, ...                       ▼
//!   ┌──────────────────────────── master (leader) ─────────────────────────┐
//!   │ allocator, registry, artifact store                                  │
//!   └──────────────────────────────────────────────────────────────────────┘
//!        ▲ AgentLink: Connect (one bidirectional stream per agent)
//!        │   up:   register / re-register, heartbeats, status updates
//!        │   down: launch, kill, acknowledge, shutdown — each with the leader's epoch
//!        │ AgentLink: FetchModule (module bytes from the artifact store)
//!        │
//!   agents (run tasks as Wasm)  ◄── Operator ListFiles / ReadFile (task sandboxes)
//! ```
//!
//! A master that is not the leader answers every RPC with `UNAVAILABLE` and the leader's
//! address in the `corral-leader` metadata ([`status::leader_hint`]), which agents follow with
//! [`follow::Follower`], except those of MasterPeer: masters copy module bytes between their
//! artifact stores through it (the leader replicates uploads to standbys and fetches modules
//! it lacks from them).
//!
//! # At the boundary
//!
//! ```
//! use corral_proto::{v1, TaskInfo};
//!
//! fn on_launch(task: &v1::TaskInfo) -> Result<TaskInfo, tonic::Status> {
//!     // Validates IDs, digest, resources, paths and limits; the error names the field and
//!     // becomes INVALID_ARGUMENT.
//!     Ok(TaskInfo::try_from(task).map_err(|e| e.within("task"))?)
//! }
//!
//! let task = v1::TaskInfo { task_id: "job-1".into(), ..Default::default() };
//! let err = on_launch(&task).unwrap_err();
//! assert_eq!(err.code(), tonic::Code::InvalidArgument);
//! assert_eq!(err.message(), "task.resources: required field is missing");
//! ```

pub mod auth;
pub mod convert;
mod error;
pub mod follow;
pub mod introspection;
pub mod jobs;
pub mod json;
pub mod limits;
pub mod one_port;
mod operation;
mod state;
pub mod status;
mod task;
pub mod tls;
mod watch;

/// Generated messages, clients (`*_client`) and servers (`*_server`) of package `corral.v1`.
///
/// Build servers and clients with [`crate::limits`], not their `new`, so the message limits
/// are applied.
///
/// The generated code passes the workspace lints as it is (prost and tonic derive `Debug`
/// and nothing here is unreachable), so no lint is silenced.
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

pub use error::{FieldPath, ProtoError};
pub use operation::OperationUpdate;
pub use state::ProtoEnum;
pub use status::{IntoStatus, ServiceError};
pub use task::{
    DEFAULT_ENTRYPOINT, EnvVar, InputFile, InputSource, ModuleSource, TaskInfo, TaskStatus,
    UpdateUuid, not_kept_list,
};
