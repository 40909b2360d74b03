//! The sans-IO master state machine: [`MasterCore::handle`] takes an [`Event`] and the current
//! [`Timestamp`] and returns the [`Effect`]s to execute. It owns the allocator by value, reads
//! no clock and touches no socket, so tests drive it with events and a manual clock and assert
//! the exact effects (DESIGN.md, "Master").
//!
//! ```text
//!  services ──Event──►  MasterCore::handle(event, now)  ──Vec<Effect>──►  runtime
//!  (validated,            │ agents    frameworks   calls                 (encodes commands and
//!   typed)                │ operator  registry     allocator (by value)   events for the wire,
//!                         │ task table (live, per-agent index, completed) holds what waits
//!                         ▼                                               for a registry write)
//!               AgentCommand · FrameworkEvent · Persist · Reply · CloseAgent · AllocateSoon
//! ```
//!
//! Modules: `events` (what the core is told), `effects` (what it asks for), `views` (what
//! operators read), `tasks` (the task table and its index); then by subject: `agents`
//! (registration, heartbeats, status updates, loss), `frameworks` (subscription, failover,
//! removal), `calls` (the scheduler calls), `operator` (operator reads and policy changes),
//! `registry` (what is recorded, and recovery), `refusals` (allocator errors for clients).

mod agents;
mod calls;
mod changes;
mod checkpoints;
mod effects;
mod events;
mod frameworks;
mod kv;
mod operator;
mod outputs;
mod refusals;
mod registry;
mod tasks;
#[cfg(test)]
mod tests;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_allocator::{Allocator, AllocatorConfig, AllocatorError};
use corral_proto::{ServiceError, TaskStatus};
use corral_types::{
    AgentId, AgentState, Allocation, Digest, FrameworkId, FrameworkState, Id, OfferId, Quota,
    Reason, Resources, Role, StatusSource, TaskId, TaskState, Timestamp, Weight,
};

pub(crate) use changes::Change;
pub(crate) use effects::{AgentCommand, Effect, FrameworkEvent, Offer, OperatorResponse, Reply};
pub(crate) use events::{
    Ack, AgentInfo, ArtifactRights, Call, ConnId, Event, FrameworkInfo, LaunchTask, Operation,
    OperatorRequest, ReportedTask, TaskMeta,
};
pub(crate) use kv::{KvEntry, KvOp};
pub(crate) use outputs::OutputsRecord;
use refusals::refused;

use crate::metrics::MasterMetrics;
pub(crate) use registry::{
    AgentRecord, ArtifactKind, ArtifactRecord, DrainRecord, FrameworkRecord, Recovered,
    RegistryWrite,
};
use tasks::{Task, TaskKey, TaskTable};
pub(crate) use views::{
    AgentSummary, FrameworkSummary, MasterSummary, ModuleSummary, RoleSummary, StateSnapshot,
    TaskPage, TaskSummary, TaskUpdate,
};

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
    /// The most bytes tasks' outputs may hold in the artifact store.
    pub max_output_bytes: u64,
    /// Where the core counts what happens (offers, launches, updates).
    pub metrics: Arc<MasterMetrics>,
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
    tasks: TaskTable,
    /// SDK tasks' latest checkpoints, for their next attempts.
    checkpoints: checkpoints::Checkpoints,
    artifacts: registry::ArtifactIndex,
    /// Bytes of the outputs in the artifact index.
    output_bytes: u64,
    task_outputs: outputs::TaskOutputs,
    /// Outputs admitted lately, some perhaps still on their way: not unindexed while their
    /// task's status may yet list them (see `registry::OUTPUT_IN_FLIGHT`).
    admitted_outputs: outputs::Admissions,
    /// Frameworks' durable key-value stores.
    kv: kv::Stores,
    /// Frameworks known only from re-registered agents' tasks (no info of their own to
    /// record) until they subscribe.
    placeholders: HashSet<FrameworkId>,
    next_id: u64,
    allocation_pending: bool,
    next_periodic_allocation: Timestamp,
    effects: Vec<Effect>,
    /// Set while the operators' event stream is watched.
    watch: Option<changes::Watch>,
    changes_emitted: u64,
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
            tasks: TaskTable::default(),
            watch: None,
            changes_emitted: 0,
            checkpoints: checkpoints::Checkpoints::default(),
            artifacts: BTreeMap::new(),
            output_bytes: 0,
            task_outputs: outputs::TaskOutputs::default(),
            admitted_outputs: outputs::Admissions::default(),
            kv: kv::Stores::default(),
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
                principal,
                call,
            } => {
                let result = self
                    .current_subscription(&framework_id, &stream_id, principal.as_deref())
                    .and_then(|()| self.call(&framework_id, call, now));
                self.effects.push(Effect::Reply(Reply::Done(result)));
            }
            Event::Kv {
                framework_id,
                stream_id,
                principal,
                op,
            } => {
                let result = self
                    .current_subscription(&framework_id, &stream_id, principal.as_deref())
                    .and_then(|()| self.kv(&framework_id, op));
                self.effects.push(Effect::Reply(Reply::Kv(result)));
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
        if self.watch.is_some() {
            let changes = self.take_changes();
            if !changes.is_empty() {
                self.changes_emitted += 1;
                self.effects.push(Effect::Changes {
                    seq: self.changes_emitted,
                    changes,
                });
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

    fn send_agent(&mut self, conn: ConnId, command: AgentCommand) {
        self.effects.push(Effect::ToAgent { conn, command });
    }

    /// Asks the agent on `conn` to kill a task.
    fn send_kill(&mut self, conn: ConnId, framework: &FrameworkId, task: &TaskId, reason: Reason) {
        self.send_agent(
            conn,
            AgentCommand::Kill {
                framework: framework.clone(),
                task: task.clone(),
                reason,
            },
        );
    }

    /// The stream of the agent running `task`, if that agent is connected.
    fn agent_conn_of(&self, task: &Task) -> Option<ConnId> {
        task.agent()
            .and_then(|a| self.agents.get(a))
            .and_then(|a| a.conn)
    }

    fn send_framework(&mut self, conn: ConnId, event: FrameworkEvent) {
        self.effects.push(Effect::ToFramework { conn, event });
    }

    /// Sends an UPDATE to the framework if it is connected.
    fn send_update(&mut self, status: TaskStatus) {
        if status.reason != Reason::Reconciliation {
            self.config
                .metrics
                .task_updates
                .get_or_create(&[
                    ("state", status.state.name()),
                    ("reason", status.reason.name()),
                ])
                .inc();
        }
        let conn = self
            .frameworks
            .get(&status.framework_id)
            .and_then(|f| f.conn);
        if let Some(conn) = conn {
            self.send_framework(conn, FrameworkEvent::Update(status));
        }
    }

    /// Sends an update again (see [`FrameworkEvent::Redelivery`]) if the framework is
    /// connected.
    fn redeliver(&mut self, status: TaskStatus) {
        let conn = self
            .frameworks
            .get(&status.framework_id)
            .and_then(|f| f.conn);
        if let Some(conn) = conn {
            self.send_framework(conn, FrameworkEvent::Redelivery(status));
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
            progress: None,
            result_json: None,
            checkpoint: Default::default(),
            outputs: Vec::new(),
            outputs_not_kept: None,
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
        if let Some(agent) = task.agent() {
            let recovered = self
                .allocator
                .recover(agent, &key.0, &task.role, &task.alloc);
            self.allocator_agrees("recovering a task's resources", recovered);
        }
        self.allocate_soon();
    }

    /// Moves a terminal, acknowledged (or unacknowledgeable) task to the completed list.
    fn complete_task(&mut self, key: &TaskKey) {
        self.release_task(key);
        self.tasks.complete(key);
    }

    /// Withdraws an offer: its resources go back to the allocator, and the framework hears
    /// RESCIND when `notify`.
    fn rescind_offer(&mut self, id: &OfferId, notify: bool) {
        let Some(offer) = self.offers.remove(id) else {
            return;
        };
        let recovered = self.allocator.recover(
            &offer.agent,
            &offer.framework,
            &offer.role,
            &offer.resources,
        );
        self.allocator_agrees("recovering an offer", recovered);
        let conn = self.frameworks.get(&offer.framework).and_then(|f| f.conn);
        if notify && let Some(conn) = conn {
            self.config.metrics.offer("rescinded", 1);
            self.send_framework(conn, FrameworkEvent::Rescind(id.clone()));
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
        let mut batches: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for offer in self.allocator.allocate(now) {
            let id: OfferId = self.new_id("O");
            let (hostname, attributes, cached_modules) = match self.agents.get(&offer.agent) {
                Some(a) => (
                    a.info.hostname.clone(),
                    a.info.attributes.clone(),
                    a.cached.iter().copied().collect(),
                ),
                None => Default::default(),
            };
            self.offers.insert(
                id.clone(),
                OfferRecord {
                    agent: offer.agent.clone(),
                    framework: offer.framework.clone(),
                    role: offer.role.clone(),
                    resources: offer.resources.clone(),
                    created: now,
                },
            );
            batches
                .entry(offer.framework.clone())
                .or_default()
                .push(Offer {
                    id,
                    framework: offer.framework,
                    agent: offer.agent,
                    hostname,
                    role: offer.role,
                    resources: offer.resources,
                    attributes,
                    cached_modules,
                });
        }
        for (framework, offers) in batches {
            match self.frameworks.get(&framework).and_then(|f| f.conn) {
                Some(conn) => {
                    self.config.metrics.offer("sent", offers.len() as u64);
                    self.send_framework(conn, FrameworkEvent::Offers(offers));
                }
                None => {
                    // The allocator offers only to active frameworks; if one slipped through,
                    // give the resources back.
                    for offer in offers {
                        self.rescind_offer(&offer.id, false);
                    }
                }
            }
        }
    }

    /// An allocator call the core's own bookkeeping says must succeed (the agent or
    /// framework it names is there, the resources it returns were handed out). A refusal means
    /// the two disagree: a bug, logged loudly and caught by the property tests.
    fn allocator_agrees(&self, what: &str, result: Result<(), AllocatorError>) {
        if let Err(error) = result {
            tracing::error!(%error, "allocator refused {what}; the master's books disagree with it");
            debug_assert!(false, "allocator refused {what}: {error}");
        }
    }

    /// Removes an agent from the allocator if it is there (an agent recovered from the
    /// registry or already unreachable is not).
    fn remove_from_allocator(&mut self, id: &AgentId) {
        if self.allocator.agent(id).is_some() {
            let removed = self.allocator.remove_agent(id);
            self.allocator_agrees("removing an agent", removed);
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
