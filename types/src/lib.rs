//! `corral-types`: Corral's shared vocabulary — one definition and one validation of each
//! concept every other crate speaks of.
//!
//! - IDs ([`AgentId`], [`FrameworkId`], [`TaskId`], [`OfferId`]) under one rule set
//!   ([`validate_id`]), and module [`Digest`]s (`sha256:<hex>`);
//! - [`Resources`] with exact integer arithmetic (milli-cpus, bytes, milli-units of custom
//!   scalars) and [`Allocation`] (the unreserved / reserved split of a holding);
//! - [`Role`] (hierarchical, `eng/batch`), [`Weight`] and [`Quota`] (a guarantee and
//!   [`QuotaLimits`]);
//! - [`Timestamp`], the master's controllable clock;
//! - the states and reasons of tasks, agents and frameworks ([`TaskState`], [`Reason`],
//!   [`TrapKind`], ...), a task's [`TaskLimits`] and its [`Usage`].
//!
//! ```text
//!                      corral-types   (this crate: no I/O, no async, no wire format)
//!        ┌──────────────┬───────┴──────┬──────────────┬─────────────────┐
//!  corral-allocator  corral-proto  corral-agent  corral-scheduler  corral-master
//!   (pure DRF)       (gRPC, conversions)         (framework SDK)   (the only user
//!                                                                   of the allocator)
//! ```
//!
//! Everything here is pure data and arithmetic: the crate depends on nothing that does I/O
//! (sha2 for digests, thiserror for errors), so any layer can use it, including guests.

mod digest;
mod ids;
mod resources;
mod role;
mod state;
mod task;
mod time;
mod wasm;

pub mod quantity;

pub use digest::{Digest, DigestError};
pub use ids::{
    AgentId, FrameworkId, Id, IdError, IdProblem, MAX_ID_BYTES, OfferId, TaskId, validate_id,
};
pub use resources::{Allocation, ResourceKind, Resources, ResourcesError, ScalarName};
pub use role::{Quota, QuotaLimits, Role, RoleError, Weight, WeightError};
pub use state::{
    AgentState, FrameworkState, OperationState, Reason, StatusSource, TaskState, TrapKind,
};
pub use task::{OUTPUTS_DIR, OUTPUTS_GUEST_PATH, Preopen, Progress, TaskLimits, TaskOutput, Usage};
pub use time::Timestamp;
pub use wasm::{COMPONENTS_ATTRIBUTE, WasmBinary};
