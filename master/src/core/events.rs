//! What the core is told: messages from agents and frameworks, operator requests, and time
//! passing, each already validated into typed values at the service boundary.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::Visibility;
use std::time::Duration;

use corral_proto::{TaskInfo, TaskStatus, UpdateUuid};

use super::registry::ArtifactKind;
use corral_types::{
    AgentId, Digest, FrameworkId, OfferId, Quota, Resources, Role, TaskId, TaskState, Weight,
};

/// Identifies one agent link or framework subscription stream, assigned by the service that
/// accepted it. The runtime maps it to the stream's sender; the core only names it.
pub(crate) type ConnId = u64;

/// What an agent is, as the core keeps it (`AgentInfo` in agent.proto, validated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AgentInfo {
    pub hostname: String,
    pub address: String,
    pub resources: Resources,
    pub attributes: Vec<(String, String)>,
    pub engine_hash: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    /// Parts of `resources` reserved to roles by the agent's configuration.
    pub static_reservations: Vec<(Role, Resources)>,
}

/// What the master keeps of a task's description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskMeta {
    pub name: String,
    pub module: String,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    /// The principal a master's own framework runs it for (`TaskInfo.owner`).
    pub owner: Option<String>,
}

impl From<&TaskInfo> for TaskMeta {
    fn from(t: &TaskInfo) -> Self {
        TaskMeta {
            name: t.name.clone(),
            module: t.module.to_string(),
            resources: t.resources.clone(),
            labels: t.labels.clone(),
            owner: t.owner.clone(),
        }
    }
}

/// A task an agent reports when it re-registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportedTask {
    pub framework_id: FrameworkId,
    pub meta: TaskMeta,
    pub status: TaskStatus,
}

/// A framework's description (`FrameworkInfo` in scheduler.proto, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameworkInfo {
    pub id: Option<FrameworkId>,
    pub name: String,
    pub user: String,
    pub roles: Vec<Role>,
    pub failover_timeout: Duration,
    pub labels: BTreeMap<String, String>,
    /// The principal that registered it (`None` when the master did not authenticate, or
    /// for the master's own frameworks); only it may use or re-subscribe the framework.
    pub principal: Option<String>,
}

/// One task of a LAUNCH: its ID, and its description or why it is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchTask {
    pub id: TaskId,
    pub info: Result<TaskInfo, String>,
}

/// An operation of an ACCEPT. `id` is the framework's name for a RESERVE or UNRESERVE,
/// echoed in the [`FrameworkEvent::OperationFailed`](super::FrameworkEvent) that reports it
/// not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    Launch(Vec<LaunchTask>),
    Reserve {
        id: String,
        role: Role,
        resources: Resources,
    },
    Unreserve {
        id: String,
        role: Role,
        resources: Resources,
    },
}

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub agent_id: Option<AgentId>,
    pub task_id: TaskId,
    pub uuid: UpdateUuid,
}

/// Whose artifacts (modules, inputs) the tasks of an ACCEPT may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArtifactRights {
    /// The caller's, for the tasks of its own principal.
    pub caller: Visibility,
    /// For each principal a master's own framework runs tasks for (`TaskInfo.owner`), that
    /// principal's.
    pub owners: BTreeMap<String, Visibility>,
}

impl From<Visibility> for ArtifactRights {
    fn from(caller: Visibility) -> Self {
        Self {
            caller,
            owners: BTreeMap::new(),
        }
    }
}

impl ArtifactRights {
    /// Whose artifacts a task run for `owner` may use: a principal not looked up sees only
    /// its own.
    pub(crate) fn of(&self, owner: Option<&str>) -> std::borrow::Cow<'_, Visibility> {
        use std::borrow::Cow;
        match owner {
            None => Cow::Borrowed(&self.caller),
            Some(owner) => match self.owners.get(owner) {
                Some(visible) => Cow::Borrowed(visible),
                None => Cow::Owned(Visibility::Only(vec![owner.into()])),
            },
        }
    }
}

/// A scheduler call, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Accept {
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        refuse: Duration,
        /// Whose artifacts (modules, inputs) the tasks launched may use.
        artifacts: ArtifactRights,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        refuse: Duration,
    },
    Revive {
        roles: Vec<Role>,
    },
    Suppress {
        roles: Vec<Role>,
    },
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    Acknowledge {
        acks: Vec<Ack>,
    },
    Reconcile {
        tasks: Vec<(TaskId, Option<AgentId>)>,
    },
    Teardown,
}

/// Something that happened: a message from an agent or framework, an operator request, or
/// time passing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    AgentRegister {
        conn: ConnId,
        info: AgentInfo,
        cached_modules: Vec<Digest>,
    },
    AgentReregister {
        conn: ConnId,
        agent_id: AgentId,
        info: AgentInfo,
        tasks: Vec<ReportedTask>,
        updates: Vec<TaskStatus>,
        cached_modules: Vec<Digest>,
    },
    AgentHeartbeat {
        conn: ConnId,
    },
    AgentStatus {
        conn: ConnId,
        status: TaskStatus,
    },
    AgentModule {
        conn: ConnId,
        digest: Digest,
        cached: bool,
    },
    AgentDisconnected {
        conn: ConnId,
    },
    /// An operation on a framework's durable key-value store, by its current subscription.
    Kv {
        framework_id: FrameworkId,
        stream_id: String,
        principal: Option<Arc<str>>,
        op: super::KvOp,
    },
    Subscribe {
        conn: ConnId,
        info: FrameworkInfo,
        suppressed: Vec<Role>,
    },
    FrameworkDisconnected {
        conn: ConnId,
    },
    Call {
        framework_id: FrameworkId,
        stream_id: String,
        /// The caller's principal: it must be the framework's.
        principal: Option<Arc<str>>,
        call: Call,
    },
    Operator(OperatorRequest),
    /// Periodic: heartbeat checks, failover and offer timeouts, periodic allocation.
    Tick,
    /// The batching window after [`Effect::AllocateSoon`](super::Effect::AllocateSoon) has
    /// passed.
    Allocate,
}

/// An operator request, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OperatorRequest {
    /// What the `/metrics` gauges say.
    Gauges,
    /// This master.
    Master,
    GetState {
        max_tasks: usize,
    },
    /// The state as `GetState` gives it, from which the event stream's changes start.
    Subscribe {
        max_tasks: usize,
    },
    ListAgents,
    /// The modules of `visible` principals.
    ListModules {
        visible: Visibility,
    },
    ListFrameworks {
        include_completed: bool,
        /// Only frameworks of these principals.
        visible: Visibility,
    },
    ListTasks {
        task: Option<TaskId>,
        framework: Option<FrameworkId>,
        agent: Option<AgentId>,
        states: Vec<TaskState>,
        /// Only tasks with every one of these labels.
        labels: Vec<(String, String)>,
        page_size: usize,
        page_token: String,
        /// Only tasks of frameworks of these principals.
        visible: Visibility,
    },
    GetRoles,
    SetWeight {
        role: Role,
        weight: Weight,
    },
    SetQuota {
        role: Role,
        quota: Quota,
        force: bool,
    },
    RemoveQuota {
        role: Role,
    },
    /// Dynamically reserves free resources of an agent to a role.
    Reserve {
        agent: AgentId,
        role: Role,
        resources: Resources,
    },
    /// Returns unused dynamically reserved resources of an agent.
    Unreserve {
        agent: AgentId,
        role: Role,
        resources: Resources,
    },
    DrainAgent {
        agent: AgentId,
        grace: Option<Duration>,
        mark_gone: bool,
    },
    ReactivateAgent {
        agent: AgentId,
    },
    /// An artifact was stored in the artifact store: record it in the index.
    RecordArtifact {
        digest: Digest,
        size: u64,
        kind: ArtifactKind,
        /// The principal who stored it, when the master authenticates.
        owner: Option<Arc<str>>,
    },
    /// Whether a task's output may be stored (the index holds it already, or the cluster's
    /// output cap has room for it).
    AdmitOutput {
        digest: Digest,
        size: u64,
    },
    /// The outputs a task left.
    TaskOutputs {
        task: TaskId,
        framework: Option<FrameworkId>,
    },
    /// Whether the index records an artifact stored by one of `visible` principals (a fetch
    /// of one this master lacks then looks for it on the other masters).
    ArtifactIndexed {
        digest: Digest,
        visible: Visibility,
    },
    /// The framework a task belongs to, and its principal (whose the task is, for ACLs),
    /// among the tasks of `visible` principals: another's is not found, as if it were not
    /// there.
    TaskOwner {
        task: TaskId,
        framework: Option<FrameworkId>,
        visible: Visibility,
    },
    /// Where a task's sandbox is served (for ListFiles / ReadFile).
    LocateTask {
        task: TaskId,
        framework: Option<FrameworkId>,
    },
    /// Kills a live task as its framework could.
    KillTask {
        task: TaskId,
        framework: Option<FrameworkId>,
    },
}
