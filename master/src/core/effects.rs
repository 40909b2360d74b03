//! What the core asks of the runtime: commands to agents, events to frameworks, stream
//! closures, registry writes, replies and timers — all domain values. The runtime and the
//! services encode them for the wire (`crate::wire`); the core never builds a message.

use std::time::Duration;

use corral_proto::{OperationUpdate, ServiceError, TaskInfo, TaskStatus, UpdateUuid};
use corral_types::{AgentId, Allocation, Digest, FrameworkId, OfferId, Reason, Role, TaskId};

use super::events::ConnId;
use super::outputs::OutputsRecord;
use super::registry::RegistryWrite;
use super::views::{
    AgentSummary, FrameworkSummary, MasterSummary, ModuleSummary, RoleSummary, StateSnapshot,
    TaskPage,
};

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// A command down an agent's stream (the runtime adds the leader's epoch).
    ToAgent {
        conn: ConnId,
        command: AgentCommand,
    },
    /// An event down a framework's stream.
    ToFramework {
        conn: ConnId,
        event: FrameworkEvent,
    },
    /// End an agent's stream, with an error status when `error` is set.
    CloseAgent {
        conn: ConnId,
        error: Option<ServiceError>,
    },
    /// End a framework's stream.
    CloseFramework {
        conn: ConnId,
    },
    /// Resources changed: send [`Event::Allocate`](super::Event::Allocate) after the
    /// batching window.
    AllocateSoon,
    /// Make this registry write durable; every later effect waits until it is.
    Persist(RegistryWrite),
    Reply(Reply),
    /// What changed, for the operators' event stream; numbered from 1 in emission order (a
    /// subscriber gets the ones numbered after the state it started from).
    Changes {
        seq: u64,
        changes: Vec<super::Change>,
    },
}

/// The answer to the event that caused it (subscribe, call, operator request).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Done(Result<(), ServiceError>),
    Operator(Result<OperatorResponse, ServiceError>),
    /// The entries a store operation answers with.
    Kv(Result<Vec<super::KvEntry>, ServiceError>),
}

/// What the master tells an agent (`MasterMessage` in agent.proto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentCommand {
    /// The agent is (re-)registered under `agent_id`.
    Registered {
        agent_id: AgentId,
        heartbeat_interval: Duration,
    },
    /// Run these tasks of `framework`.
    Launch {
        framework: FrameworkId,
        tasks: Vec<TaskInfo>,
    },
    Kill {
        framework: FrameworkId,
        task: TaskId,
        /// Why, for the KILLED update.
        reason: Reason,
    },
    /// The framework acknowledged this update: the agent may forget it.
    Acknowledge {
        framework: FrameworkId,
        task: TaskId,
        uuid: UpdateUuid,
    },
    /// Stop for good.
    Shutdown { reason: String },
    /// An operator is draining the agent, or no longer.
    Maintenance { draining: bool },
}

/// What the master tells a framework (`Event` in scheduler.proto).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FrameworkEvent {
    Subscribed {
        framework: FrameworkId,
        stream_id: String,
        heartbeat_interval: Duration,
    },
    Offers(Vec<Offer>),
    Rescind(OfferId),
    Update(TaskStatus),
    /// An update the framework may have had already and has not acknowledged (sent again
    /// when it re-subscribes, or resent by the agent). The same UPDATE on the wire; unlike a
    /// new one it is left out while the framework's stream is half full rather than cutting
    /// the stream off, so a framework with a long backlog catches up at its own pace: it
    /// stays unacknowledged and comes again with the agent's next resend.
    Redelivery(TaskStatus),
    /// An agent was lost.
    Failure {
        agent: AgentId,
        message: String,
    },
    /// The framework was removed; its stream ends after this.
    Error {
        message: String,
    },
    Heartbeat,
    /// A RESERVE or UNRESERVE of an ACCEPT was not applied.
    OperationFailed(OperationUpdate),
}

/// Resources of one agent offered to one framework in one role, as the framework sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub id: OfferId,
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub hostname: String,
    pub role: Role,
    /// Everything offered, split into the unreserved part and the part reserved to `role`.
    pub resources: Allocation,
    pub attributes: Vec<(String, String)>,
    /// Modules the agent has compiled: launching them there skips compilation.
    pub cached_modules: Vec<Digest>,
}

/// The answer to an [`OperatorRequest`](super::OperatorRequest).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OperatorResponse {
    State(Box<StateSnapshot>),
    Agents(Vec<AgentSummary>),
    Frameworks(Vec<FrameworkSummary>),
    Tasks(TaskPage),
    Roles(Vec<RoleSummary>),
    Modules(Vec<ModuleSummary>),
    Master(MasterSummary),
    Done,
    ArtifactIndexed(bool),
    /// The output may be stored; `true` when the index holds it already.
    OutputAdmitted(bool),
    TaskOutputs(Box<OutputsRecord>),
    TaskOwner {
        framework: FrameworkId,
        principal: Option<String>,
    },
    TaskLocation {
        address: String,
        terminal: bool,
    },
    Killed {
        framework: FrameworkId,
        agent: AgentId,
    },
    Gauges(Box<crate::metrics::Gauges>),
}
