//! The sans-IO master state machine: [`MasterCore::handle`] takes an [`Event`] and the current
//! [`Timestamp`] and returns the [`Effect`]s to execute. It owns the allocator by value, reads
//! no clock and touches no socket, so tests drive it with events and a manual clock and assert
//! the exact effects (DESIGN.md, "Master").
//!
//! Submodules by subject: `agents` (registration, heartbeats, status updates, loss),
//! `frameworks` (subscription, failover, removal, offers), `calls` (the scheduler calls),
//! `operator` (operator reads and policy changes).

mod agents;
mod calls;
mod frameworks;
mod operator;
mod proto;
mod refusals;
mod registry;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use corral_allocator::{Allocator, AllocatorConfig};
use corral_proto::{ServiceError, TaskInfo, TaskStatus, UpdateUuid, v1};
use corral_types::{
    AgentId, AgentState, Allocation, Digest, FrameworkId, FrameworkState, Id, OfferId, Quota,
    Reason, Resources, Role, StatusSource, TaskId, TaskState, Timestamp, Weight,
};

pub(crate) use operator::{OperatorRequest, OperatorResponse};
use refusals::refused;
pub(crate) use registry::{
    AgentRecord, ArtifactRecord, DrainRecord, FrameworkRecord, Recovered, RegistryWrite,
};

/// Identifies one agent link or framework subscription stream, assigned by the service that
/// accepted it. The runtime maps it to the stream's sender; the core only names it.
pub(crate) type ConnId = u64;

/// How many finished tasks the master remembers for listings and reconciliation.
const COMPLETED_TASKS: usize = 1000;

/// Settings of the core (the time-related parts of `MasterConfig`, plus identity).
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// This master's unique ID; prefixes every ID it assigns.
    pub master_id: String,
    /// The leader's epoch, carried by every master -> agent message.
    pub epoch: u64,
    /// The leader's address, for SUBSCRIBED.
    pub address: String,
    /// Wall-clock time at `Timestamp::ZERO`, for status timestamps.
    pub started_at_unix_millis: u64,
    pub agent_heartbeat_interval: Duration,
    pub agent_timeout: Duration,
    /// How long agents recovered from the registry have to re-register before they are
    /// UNREACHABLE.
    pub agent_reregister_timeout: Duration,
    pub framework_heartbeat_interval: Duration,
    pub offer_timeout: Option<Duration>,
    pub allocation_interval: Duration,
}

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
}

impl From<&TaskInfo> for TaskMeta {
    fn from(t: &TaskInfo) -> Self {
        TaskMeta {
            name: t.name.clone(),
            module: t.module.to_string(),
            resources: t.resources.clone(),
            labels: t.labels.clone(),
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
}

/// One task of a LAUNCH: its ID, and its description or why it is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchTask {
    pub id: TaskId,
    pub info: Result<TaskInfo, String>,
}

/// An operation of an ACCEPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    Launch(Vec<LaunchTask>),
    Reserve { role: Role, resources: Resources },
    Unreserve { role: Role, resources: Resources },
}

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub agent_id: Option<AgentId>,
    pub task_id: TaskId,
    pub uuid: UpdateUuid,
}

/// A scheduler call, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Accept {
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        refuse: Duration,
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
        call: Call,
    },
    Operator(OperatorRequest),
    /// Periodic: heartbeat checks, failover and offer timeouts, periodic allocation.
    Tick,
    /// The batching window after [`Effect::AllocateSoon`] has passed.
    Allocate,
}

/// The answer to the event that caused it (subscribe, call, operator request).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Done(Result<(), ServiceError>),
    Operator(Result<OperatorResponse, ServiceError>),
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    ToAgent {
        conn: ConnId,
        msg: v1::MasterMessage,
    },
    ToFramework {
        conn: ConnId,
        event: v1::Event,
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
    /// Resources changed: send [`Event::Allocate`] after the batching window.
    AllocateSoon,
    /// Make this registry write durable; every later effect waits until it is.
    Persist(RegistryWrite),
    Reply(Reply),
}

#[derive(Debug, Clone)]
struct Agent {
    id: AgentId,
    info: AgentInfo,
    conn: Option<ConnId>,
    state: AgentState,
    registered_unix_millis: u64,
    last_seen: Timestamp,
    cached: BTreeSet<Digest>,
    /// Draining: kill the remaining tasks at this time; `mark_gone` when drained.
    drain: Option<(Option<Timestamp>, bool)>,
    /// Dynamic reservations, kept here so they survive the agent leaving the allocator
    /// (unreachable, master restart) and are restored when it re-registers.
    reservations: Vec<(Role, Resources)>,
    /// Recovered from the registry and not re-registered yet: UNREACHABLE after this.
    reregister_by: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Framework {
    id: FrameworkId,
    info: FrameworkInfo,
    conn: Option<ConnId>,
    stream_id: String,
    state: FrameworkState,
    registered_unix_millis: u64,
    disconnected_unix_millis: Option<u64>,
    failover_deadline: Option<Timestamp>,
    next_heartbeat: Timestamp,
    suppressed: BTreeSet<Role>,
}

#[derive(Debug, Clone)]
struct OfferRecord {
    agent: AgentId,
    framework: FrameworkId,
    role: Role,
    resources: Allocation,
    created: Timestamp,
}

#[derive(Debug, Clone)]
struct Task {
    agent: Option<AgentId>,
    role: Role,
    meta: TaskMeta,
    alloc: Allocation,
    /// The allocator counts `alloc` as held by the task's framework.
    holds: bool,
    status: TaskStatus,
    /// The latest update that carries a uuid and is not yet acknowledged; redelivered when
    /// the framework re-subscribes (the agent holds later updates back until it is acked).
    unacked: Option<TaskStatus>,
    updated: Timestamp,
}

type TaskKey = (FrameworkId, TaskId);

/// The master's state machine. See the module docs.
#[derive(Debug)]
pub(crate) struct MasterCore {
    config: CoreConfig,
    allocator: Allocator,
    agents: HashMap<AgentId, Agent>,
    /// Which agent each open agent stream belongs to (messages name only the stream).
    agent_conns: HashMap<ConnId, AgentId>,
    frameworks: HashMap<FrameworkId, Framework>,
    offers: HashMap<OfferId, OfferRecord>,
    tasks: HashMap<TaskKey, Task>,
    /// The tasks placed on each agent, so agent events and listings do not scan every task.
    by_agent: HashMap<AgentId, BTreeSet<TaskKey>>,
    completed: VecDeque<(TaskKey, Task)>,
    artifacts: registry::ArtifactIndex,
    /// Frameworks known only from re-registered agents' tasks (no info of their own to
    /// record) until they subscribe.
    placeholders: HashSet<FrameworkId>,
    next_id: u64,
    allocation_pending: bool,
    next_periodic_allocation: Timestamp,
    effects: Vec<Effect>,
}

impl MasterCore {
    pub(crate) fn new(config: CoreConfig) -> Self {
        MasterCore {
            config,
            allocator: Allocator::new(AllocatorConfig::default()),
            agents: HashMap::new(),
            agent_conns: HashMap::new(),
            frameworks: HashMap::new(),
            offers: HashMap::new(),
            tasks: HashMap::new(),
            by_agent: HashMap::new(),
            completed: VecDeque::new(),
            artifacts: BTreeMap::new(),
            placeholders: HashSet::new(),
            next_id: 0,
            allocation_pending: false,
            next_periodic_allocation: Timestamp::ZERO,
            effects: Vec::new(),
        }
    }

    pub(crate) fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Applies one event and returns what to do about it.
    pub(crate) fn handle(&mut self, event: Event, now: Timestamp) -> Vec<Effect> {
        match event {
            Event::AgentRegister {
                conn,
                info,
                cached_modules,
            } => self.agent_register(conn, info, cached_modules, now),
            Event::AgentReregister {
                conn,
                agent_id,
                info,
                tasks,
                updates,
                cached_modules,
            } => self.agent_reregister(conn, agent_id, info, tasks, updates, cached_modules, now),
            Event::AgentHeartbeat { conn } => {
                self.agent_by_conn(conn, now);
            }
            Event::AgentStatus { conn, status } => {
                if let Some(agent) = self.agent_by_conn(conn, now) {
                    self.status_update(&agent, status, now);
                }
            }
            Event::AgentModule {
                conn,
                digest,
                cached,
            } => {
                if let Some(id) = self.agent_by_conn(conn, now)
                    && let Some(a) = self.agents.get_mut(&id)
                {
                    if cached {
                        a.cached.insert(digest);
                    } else {
                        a.cached.remove(&digest);
                    }
                }
            }
            Event::AgentDisconnected { conn } => self.agent_disconnected(conn, now),
            Event::Subscribe {
                conn,
                info,
                suppressed,
            } => self.subscribe(conn, info, suppressed, now),
            Event::FrameworkDisconnected { conn } => self.framework_disconnected(conn, now),
            Event::Call {
                framework_id,
                stream_id,
                call,
            } => {
                let result = self.call(&framework_id, &stream_id, call, now);
                self.effects.push(Effect::Reply(Reply::Done(result)));
            }
            Event::Operator(req) => {
                let result = self.operator(req, now);
                self.effects.push(Effect::Reply(Reply::Operator(result)));
            }
            Event::Tick => self.tick(now),
            Event::Allocate => {
                self.allocation_pending = false;
                self.allocate(now);
            }
        }
        std::mem::take(&mut self.effects)
    }

    fn tick(&mut self, now: Timestamp) {
        self.check_agents(now);
        self.check_frameworks(now);
        self.expire_offers(now);
        if now >= self.next_periodic_allocation {
            self.next_periodic_allocation = now.saturating_add(self.config.allocation_interval);
            self.allocate(now);
        }
    }

    /// Asks for an allocation after the batching window (once per window).
    fn allocate_soon(&mut self) {
        if !self.allocation_pending {
            self.allocation_pending = true;
            self.effects.push(Effect::AllocateSoon);
        }
    }

    fn unix_millis(&self, now: Timestamp) -> u64 {
        self.config
            .started_at_unix_millis
            .saturating_add(now.as_millis())
    }

    /// A fresh ID with this master's prefix.
    fn new_id<T: Id>(&mut self, tag: &str) -> T {
        self.next_id += 1;
        let text = format!("{}-{tag}{}", self.config.master_id, self.next_id);
        // The master ID is hex and the tag a letter, so the ID is valid by construction.
        T::parse(&text).expect("master-generated ids are valid")
    }

    fn send_agent(&mut self, conn: ConnId, kind: v1::master_message::Kind) {
        let msg = v1::MasterMessage {
            epoch: self.config.epoch,
            kind: Some(kind),
        };
        self.effects.push(Effect::ToAgent { conn, msg });
    }

    /// Asks the agent on `conn` to kill a task.
    fn send_kill(&mut self, conn: ConnId, framework: &FrameworkId, task: &TaskId) {
        self.send_agent(
            conn,
            v1::master_message::Kind::KillTask(v1::master_message::KillTask {
                framework_id: framework.to_string(),
                task_id: task.to_string(),
            }),
        );
    }

    /// The stream of the agent running `task`, if that agent is connected.
    fn agent_conn_of(&self, task: &Task) -> Option<ConnId> {
        task.agent
            .as_ref()
            .and_then(|a| self.agents.get(a))
            .and_then(|a| a.conn)
    }

    fn send_framework(&mut self, conn: ConnId, kind: v1::event::Kind) {
        let event = v1::Event { kind: Some(kind) };
        self.effects.push(Effect::ToFramework { conn, event });
    }

    /// Sends an UPDATE to the framework if it is connected.
    fn send_update(&mut self, status: &TaskStatus) {
        let conn = self
            .frameworks
            .get(&status.framework_id)
            .and_then(|f| f.conn);
        if let Some(conn) = conn {
            self.send_framework(
                conn,
                v1::event::Kind::Update(v1::event::Update {
                    status: Some(status.into()),
                }),
            );
        }
    }

    /// A status produced by the master (no uuid: nothing to acknowledge).
    fn master_status(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        agent_id: Option<AgentId>,
        (state, reason): (TaskState, Reason),
        message: impl Into<String>,
        now: Timestamp,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task_id.clone(),
            framework_id: framework_id.clone(),
            agent_id,
            state,
            reason,
            message: message.into(),
            usage: None,
            timestamp_millis: self.unix_millis(now),
            uuid: None,
            source: StatusSource::Master,
            trap_kind: None,
            healthy: None,
        }
    }

    /// Returns a task's resources to the allocator if it still holds them.
    fn release_task(&mut self, key: &TaskKey) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if !std::mem::take(&mut task.holds) {
            return;
        }
        if let Some(agent) = &task.agent
            && let Err(e) = self
                .allocator
                .recover(agent, &key.0, &task.role, &task.alloc)
        {
            tracing::warn!(task_id = %key.1, error = %e, "could not recover task resources");
        }
        self.allocate_soon();
    }

    /// Moves `key` in the per-agent index from agent `old` to agent `new`.
    fn index_task(&mut self, key: &TaskKey, old: Option<&AgentId>, new: Option<&AgentId>) {
        if old == new {
            return;
        }
        if let Some(old) = old
            && let Some(set) = self.by_agent.get_mut(old)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_agent.remove(old);
            }
        }
        if let Some(new) = new {
            self.by_agent
                .entry(new.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    /// The tasks placed on an agent, in key order.
    fn tasks_on(&self, agent: &AgentId) -> Vec<TaskKey> {
        self.by_agent
            .get(agent)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Moves a terminal, acknowledged (or unacknowledgeable) task to the completed list.
    fn complete_task(&mut self, key: &TaskKey) {
        self.release_task(key);
        if let Some(task) = self.tasks.remove(key) {
            self.index_task(key, task.agent.as_ref(), None);
            if self.completed.len() >= COMPLETED_TASKS {
                self.completed.pop_front();
            }
            self.completed.push_back((key.clone(), task));
        }
    }

    /// Withdraws an offer: its resources go back to the allocator, and the framework hears
    /// RESCIND when `notify`.
    fn rescind_offer(&mut self, id: &OfferId, notify: bool) {
        let Some(offer) = self.offers.remove(id) else {
            return;
        };
        if let Err(e) = self.allocator.recover(
            &offer.agent,
            &offer.framework,
            &offer.role,
            &offer.resources,
        ) {
            tracing::warn!(offer_id = %id, error = %e, "could not recover offer");
        }
        let conn = self.frameworks.get(&offer.framework).and_then(|f| f.conn);
        if notify && let Some(conn) = conn {
            self.send_framework(
                conn,
                v1::event::Kind::Rescind(v1::event::Rescind {
                    offer_id: id.to_string(),
                }),
            );
        }
        self.allocate_soon();
    }

    fn offers_where(&self, f: impl Fn(&OfferRecord) -> bool) -> Vec<OfferId> {
        let mut ids: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn expire_offers(&mut self, now: Timestamp) {
        let Some(timeout) = self.config.offer_timeout else {
            return;
        };
        for id in self.offers_where(|o| o.created.saturating_add(timeout) <= now) {
            self.rescind_offer(&id, true);
        }
    }

    fn allocate(&mut self, now: Timestamp) {
        let offers = self.allocator.allocate(now);
        let mut batches: BTreeMap<FrameworkId, Vec<v1::Offer>> = BTreeMap::new();
        for offer in offers {
            let id: OfferId = self.new_id("O");
            let (resources, reserved) = corral_proto::convert::offer_resources(&offer.resources);
            let (hostname, attributes, cached) = match self.agents.get(&offer.agent) {
                Some(a) => (
                    a.info.hostname.clone(),
                    proto::attributes(&a.info.attributes),
                    a.cached.iter().map(ToString::to_string).collect(),
                ),
                None => Default::default(),
            };
            batches
                .entry(offer.framework.clone())
                .or_default()
                .push(v1::Offer {
                    id: id.to_string(),
                    framework_id: offer.framework.to_string(),
                    agent_id: offer.agent.to_string(),
                    hostname,
                    role: offer.role.to_string(),
                    resources: Some(resources),
                    reserved: Some(reserved),
                    attributes,
                    cached_modules: cached,
                });
            self.offers.insert(
                id,
                OfferRecord {
                    agent: offer.agent,
                    framework: offer.framework,
                    role: offer.role,
                    resources: offer.resources,
                    created: now,
                },
            );
        }
        for (framework, offers) in batches {
            match self.frameworks.get(&framework).and_then(|f| f.conn) {
                Some(conn) => {
                    self.send_framework(conn, v1::event::Kind::Offers(v1::event::Offers { offers }))
                }
                None => {
                    // The allocator offers only to active frameworks; if one slipped through,
                    // give the resources back.
                    for o in offers {
                        if let Ok(id) = OfferId::new(&o.id) {
                            self.rescind_offer(&id, false);
                        }
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        if let Err(e) = self.allocator.check_invariants() {
            panic!("allocator invariants: {e}");
        }
        let indexed: usize = self.by_agent.values().map(BTreeSet::len).sum();
        let placed = self.tasks.values().filter(|t| t.agent.is_some()).count();
        assert_eq!(indexed, placed, "per-agent task index out of date");
        for (agent, keys) in &self.by_agent {
            for k in keys {
                assert_eq!(self.tasks[k].agent.as_ref(), Some(agent), "{k:?}");
            }
        }
    }

    fn set_weight(&mut self, role: &Role, weight: Weight) {
        self.allocator.set_weight(role, weight);
        self.persist(RegistryWrite::Weight {
            role: role.clone(),
            weight,
        });
        self.allocate_soon();
    }

    fn set_quota(&mut self, role: &Role, quota: Quota, force: bool) -> Result<(), ServiceError> {
        self.allocator
            .set_quota(role, quota.clone(), force)
            .map_err(refused)?;
        self.persist(RegistryWrite::Quota {
            role: role.clone(),
            quota: Some(quota),
        });
        self.allocate_soon();
        Ok(())
    }

    fn remove_quota(&mut self, role: &Role) -> Result<(), ServiceError> {
        self.allocator.remove_quota(role).map_err(refused)?;
        self.persist(RegistryWrite::Quota {
            role: role.clone(),
            quota: None,
        });
        self.allocate_soon();
        Ok(())
    }
}
