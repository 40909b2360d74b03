//! What operators read: summaries of the master, agents, frameworks, tasks and roles, built
//! from the core's records and the allocator. Domain values; `crate::wire` encodes them for
//! the Operator service.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_types::{
    AgentId, AgentState, FrameworkId, FrameworkState, Progress, Quota, Reason, Resources, Role,
    TaskId, TaskOutput, TaskState, Usage, Weight,
};

/// The master serving the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterSummary {
    pub id: String,
    pub address: String,
    pub epoch: u64,
    pub started_unix_millis: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentSummary {
    pub id: AgentId,
    pub hostname: String,
    pub address: String,
    pub state: AgentState,
    pub total: Resources,
    pub used: Resources,
    pub reserved: Resources,
    pub attributes: Vec<(String, String)>,
    pub version: String,
    pub registered_unix_millis: u64,
    pub last_heartbeat_unix_millis: u64,
    pub active_tasks: usize,
    pub labels: BTreeMap<String, String>,
    /// While draining with a deadline: when its tasks are killed.
    pub drain_deadline_unix_millis: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameworkSummary {
    pub id: FrameworkId,
    pub name: String,
    pub user: String,
    pub state: FrameworkState,
    pub roles: Vec<Role>,
    pub suppressed_roles: Vec<Role>,
    /// Held by its tasks.
    pub allocated: Resources,
    /// In its outstanding offers.
    pub offered: Resources,
    pub active_tasks: usize,
    pub registered_unix_millis: u64,
    pub failover_timeout: Duration,
    pub labels: BTreeMap<String, String>,
    pub principal: Option<String>,
}

/// A task as listings show it: what it runs, which never changes, and where it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskSummary {
    pub name: String,
    /// Where its module comes from, as listings show it.
    pub module: String,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    pub now: TaskUpdate,
}

/// A task's identity and everything about it that can change once it is listed: what the
/// event stream's TASK_UPDATED carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskUpdate {
    pub id: TaskId,
    pub framework: FrameworkId,
    /// The principal it belongs to, for ACLs (see `Core::task_principal`).
    pub owner: Option<String>,
    pub agent: Option<AgentId>,
    pub state: TaskState,
    pub reason: Reason,
    pub message: String,
    pub usage: Option<Usage>,
    pub updated_unix_millis: u64,
    pub progress: Option<Progress>,
    pub result_json: Option<String>,
    pub outputs: Vec<TaskOutput>,
}

/// One page of a task listing, and the token of the next page (empty at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    pub next_page_token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleSummary {
    pub role: Role,
    pub weight: Weight,
    pub quota: Option<Quota>,
    pub allocated: Resources,
    pub reserved: Resources,
    pub consumed: Resources,
    pub dominant_share: f64,
    pub frameworks: usize,
}

/// Everything at once (GetState), newest tasks first, at most the number asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StateSnapshot {
    pub master: MasterSummary,
    pub agents: Vec<AgentSummary>,
    pub frameworks: Vec<FrameworkSummary>,
    pub tasks: Vec<TaskSummary>,
    pub tasks_truncated: bool,
    pub roles: Vec<RoleSummary>,
}

/// A module in the artifact store, and who uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleSummary {
    pub digest: corral_types::Digest,
    pub size: u64,
    pub stored_unix_millis: u64,
    pub active_tasks: usize,
    pub cached_on_agents: usize,
}
