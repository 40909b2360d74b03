//! Property tests: random sequences of agent, framework, scheduler-call, operator and clock
//! events, with the core's invariants (`invariants.rs`) checked after every event, and one
//! property across events: a task in a terminal state never changes state. A watcher
//! subscribed from the start keeps a copy of the cluster from the change events alone, and
//! it must agree with the core after every event.
//!
//! The world is small on purpose (three agents, two frameworks, one machine's worth of
//! resources each) so that collisions happen: offers used twice, kills of finished tasks,
//! re-registrations with stale tasks, drains racing launches. Steps name things by index
//! into what the world knows at that moment (the n-th outstanding offer, the n-th task on an
//! agent); an index past the end wraps, and a step with nothing to act on does nothing.
//!
//! `PROPTEST_CASES` sets the number of sequences (256 by default); failures shrink and are
//! kept under `master/proptest-regressions/`.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

const AGENTS: usize = 3;
const FRAMEWORKS: usize = 2;

/// Stream ids: agents 1..=3, frameworks 101..=102.
fn agent_conn(a: usize) -> ConnId {
    a as ConnId + 1
}

fn framework_conn(f: usize) -> ConnId {
    f as ConnId + 101
}

#[derive(Debug, Clone)]
enum Step {
    /// Agent `a` connects: registers, or re-registers with the tasks it runs.
    Connect(usize),
    Disconnect(usize),
    Heartbeat(usize),
    /// Agent `a` reports a state for the n-th task it runs (terminal ones it then forgets).
    Report {
        agent: usize,
        task: usize,
        state: TaskState,
    },
    /// Agent `a` reports a task the master never launched there.
    ReportStranger {
        agent: usize,
        state: TaskState,
    },
    Subscribe {
        fw: usize,
        failover_secs: u64,
    },
    /// The framework's stream breaks.
    Drop(usize),
    Accept {
        fw: usize,
        offer: usize,
        /// Tasks to launch, each with this many milli-cpus.
        tasks: usize,
        cpus_milli: u64,
        /// Also reserve part of the offer to role `r` / unreserve from it.
        reserve: bool,
        unreserve: bool,
        /// Name the same offer twice (an invalid accept).
        twice: bool,
    },
    Decline {
        fw: usize,
        offer: usize,
        refuse_secs: u64,
    },
    Revive(usize),
    Suppress(usize),
    Kill {
        fw: usize,
        task: usize,
    },
    Ack {
        fw: usize,
        update: usize,
    },
    Reconcile(usize),
    Teardown(usize),
    Advance(u64),
    Allocate,
    Drain {
        agent: usize,
        grace: bool,
        gone: bool,
    },
    Reactivate(usize),
    Reserve {
        agent: usize,
        cpus_milli: u64,
    },
    Weight(usize),
    Quota(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let agent = 0..AGENTS;
    let fw = 0..FRAMEWORKS;
    let state = prop_oneof![
        Just(TaskState::Running),
        Just(TaskState::Finished),
        Just(TaskState::Failed),
        Just(TaskState::Killed),
    ];
    prop_oneof![
        4 => agent.clone().prop_map(Step::Connect),
        1 => agent.clone().prop_map(Step::Disconnect),
        5 => agent.clone().prop_map(Step::Heartbeat),
        6 => (agent.clone(), 0..8usize, state.clone())
            .prop_map(|(agent, task, state)| Step::Report { agent, task, state }),
        1 => (agent.clone(), state).prop_map(|(agent, state)| Step::ReportStranger { agent, state }),
        3 => (fw.clone(), prop_oneof![Just(0u64), Just(60)])
            .prop_map(|(fw, failover_secs)| Step::Subscribe { fw, failover_secs }),
        1 => fw.clone().prop_map(Step::Drop),
        10 => (fw.clone(), 0..4usize, 0..4usize, 100..2500u64, any::<bool>(), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(fw, offer, tasks, cpus_milli, reserve, unreserve, twice)| Step::Accept {
                fw, offer, tasks, cpus_milli, reserve, unreserve, twice,
            }),
        2 => (fw.clone(), 0..4usize, 0..20u64)
            .prop_map(|(fw, offer, refuse_secs)| Step::Decline { fw, offer, refuse_secs }),
        1 => fw.clone().prop_map(Step::Revive),
        1 => fw.clone().prop_map(Step::Suppress),
        2 => (fw.clone(), 0..8usize).prop_map(|(fw, task)| Step::Kill { fw, task }),
        5 => (fw.clone(), 0..8usize).prop_map(|(fw, update)| Step::Ack { fw, update }),
        1 => fw.clone().prop_map(Step::Reconcile),
        1 => fw.clone().prop_map(Step::Teardown),
        4 => prop_oneof![5 => 1..50u64, 3 => 900..1100u64, 1 => 4000..20_000u64]
            .prop_map(Step::Advance),
        3 => Just(Step::Allocate),
        1 => (agent.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(agent, grace, gone)| Step::Drain { agent, grace, gone }),
        1 => agent.clone().prop_map(Step::Reactivate),
        1 => (agent, 0..3000u64).prop_map(|(agent, cpus_milli)| Step::Reserve { agent, cpus_milli }),
        1 => (1..4usize).prop_map(Step::Weight),
        1 => (0..6000u64).prop_map(Step::Quota),
    ]
}

/// What an agent process knows: its id, whether its stream is open, what it runs.
#[derive(Debug, Default)]
struct AgentSide {
    id: Option<AgentId>,
    connected: bool,
    /// Told to shut down: it never comes back (a new agent may register in its place).
    stopped: bool,
    /// Tasks it runs, with the last state it reported.
    tasks: BTreeMap<TaskKey, TaskState>,
    /// What the master last said of its maintenance.
    draining: bool,
}

/// What a framework knows: its id and stream, its offers, its unacknowledged updates.
#[derive(Debug, Default)]
struct FrameworkSide {
    id: Option<FrameworkId>,
    stream: Option<String>,
    connected: bool,
    /// Torn down: its id can never subscribe again.
    removed: bool,
    offers: Vec<OfferId>,
    updates: Vec<TaskStatus>,
    tasks: Vec<TaskId>,
}

struct World {
    core: MasterCore,
    now: Timestamp,
    agents: Vec<AgentSide>,
    frameworks: Vec<FrameworkSide>,
    next_task: u64,
    next_uuid: u64,
    seen: Seen,
    watcher: mirror::Mirror,
    /// What applying a change event to the watcher's copy found wrong.
    watcher_error: Option<String>,
}

/// How often the interesting effects happened, so a test can show the sequences reach them
/// (a generator that never launches a task would check nothing).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    launches: usize,
    kills: usize,
    terminal_updates: usize,
    acks_to_agents: usize,
    offers: usize,
    rescinds: usize,
    agents_lost: usize,
    operations_failed: usize,
    frameworks_removed: usize,
    shutdowns: usize,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.launches += other.launches;
        self.kills += other.kills;
        self.terminal_updates += other.terminal_updates;
        self.acks_to_agents += other.acks_to_agents;
        self.offers += other.offers;
        self.rescinds += other.rescinds;
        self.agents_lost += other.agents_lost;
        self.operations_failed += other.operations_failed;
        self.frameworks_removed += other.frameworks_removed;
        self.shutdowns += other.shutdowns;
    }
}

impl World {
    fn new() -> Self {
        let mut core = MasterCore::new(CoreConfig {
            offer_timeout: Some(Duration::from_secs(10)),
            ..config()
        });
        World {
            watcher: mirror::Mirror::subscribe(&mut core),
            watcher_error: None,
            core,
            now: Timestamp::ZERO,
            agents: (0..AGENTS).map(|_| AgentSide::default()).collect(),
            frameworks: (0..FRAMEWORKS).map(|_| FrameworkSide::default()).collect(),
            next_task: 0,
            next_uuid: 0,
            seen: Seen::default(),
        }
    }

    fn uuid(&mut self) -> UpdateUuid {
        self.next_uuid += 1;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_uuid.to_be_bytes());
        UpdateUuid::from_bytes(bytes)
    }

    /// Hands `event` to the core, checks the invariants and the terminal-state property,
    /// and lets the agents and frameworks see the effects.
    fn handle(&mut self, event: Event) -> Result<(), TestCaseError> {
        let terminal_before: HashMap<TaskKey, TaskState> = self
            .core
            .tasks
            .iter()
            .filter(|(_, t)| t.status.state.is_terminal())
            .map(|(k, t)| (k.clone(), t.status.state))
            .collect();
        let shown = format!("{event:?}");
        let fx = self.core.handle(event, self.now);
        if let Err(broken) = self.core.invariants() {
            return Err(TestCaseError::fail(format!("after {shown}: {broken}")));
        }
        for (key, before) in &terminal_before {
            if let Some(t) = self.core.tasks.get(key) {
                prop_assert_eq!(
                    t.status.state,
                    *before,
                    "terminal task {:?} changed state after {}",
                    key,
                    shown
                );
            }
        }
        for effect in fx {
            self.observe(effect);
        }
        // A connected agent knows whether it is draining.
        for side in self.agents.iter().filter(|a| a.connected) {
            if let Some(a) = side.id.as_ref().and_then(|id| self.core.agents.get(id)) {
                prop_assert_eq!(
                    side.draining,
                    a.drain.is_some(),
                    "agent {} after {}",
                    a.id,
                    shown
                );
            }
        }
        if let Some(e) = self.watcher_error.take() {
            return Err(TestCaseError::fail(format!("after {shown}: {e}")));
        }
        if let Err(e) = self.watcher.check(&mut self.core) {
            return Err(TestCaseError::fail(format!(
                "after {shown}: the event stream's copy differs: {e}"
            )));
        }
        Ok(())
    }

    fn agent_of(conn: ConnId) -> Option<usize> {
        let a = usize::try_from(conn.checked_sub(1)?).ok()?;
        (a < AGENTS).then_some(a)
    }

    fn framework_of(conn: ConnId) -> Option<usize> {
        let f = usize::try_from(conn.checked_sub(101)?).ok()?;
        (f < FRAMEWORKS).then_some(f)
    }

    fn observe(&mut self, effect: Effect) {
        match effect {
            Effect::ToAgent { conn, command } => {
                let Some(a) = Self::agent_of(conn) else {
                    return;
                };
                let agent = &mut self.agents[a];
                match command {
                    AgentCommand::Registered { agent_id, .. } => {
                        agent.id = Some(agent_id);
                        agent.draining = false;
                    }
                    AgentCommand::Launch { framework, tasks } => {
                        self.seen.launches += tasks.len();
                        for t in tasks {
                            agent
                                .tasks
                                .insert((framework.clone(), t.id), TaskState::Staging);
                        }
                    }
                    AgentCommand::Shutdown { .. } => {
                        self.seen.shutdowns += 1;
                        agent.stopped = true;
                        agent.connected = false;
                        agent.tasks.clear();
                    }
                    // Kills are answered by later Report steps; acks need nothing here.
                    AgentCommand::Kill { .. } => self.seen.kills += 1,
                    AgentCommand::Acknowledge { .. } => self.seen.acks_to_agents += 1,
                    AgentCommand::Maintenance { draining } => agent.draining = draining,
                }
            }
            Effect::CloseAgent { conn, .. } => {
                if let Some(a) = Self::agent_of(conn) {
                    self.agents[a].connected = false;
                }
            }
            Effect::ToFramework { conn, event } => {
                let Some(f) = Self::framework_of(conn) else {
                    return;
                };
                let framework = &mut self.frameworks[f];
                match event {
                    FrameworkEvent::Subscribed {
                        framework: id,
                        stream_id,
                        ..
                    } => {
                        framework.id = Some(id);
                        framework.stream = Some(stream_id);
                        framework.connected = true;
                        framework.offers.clear();
                    }
                    FrameworkEvent::Offers(offers) => {
                        self.seen.offers += offers.len();
                        framework.offers.extend(offers.into_iter().map(|o| o.id));
                    }
                    FrameworkEvent::Rescind(id) => {
                        self.seen.rescinds += 1;
                        framework.offers.retain(|o| *o != id);
                    }
                    FrameworkEvent::Update(status) | FrameworkEvent::Redelivery(status) => {
                        if status.state.is_terminal() {
                            self.seen.terminal_updates += 1;
                        }
                        if status.uuid.is_some() {
                            framework.updates.push(status);
                        }
                    }
                    FrameworkEvent::Error { message } => {
                        framework.connected = false;
                        if message.starts_with("framework removed") {
                            self.seen.frameworks_removed += 1;
                            framework.removed = true;
                        }
                    }
                    FrameworkEvent::Failure { .. } => self.seen.agents_lost += 1,
                    FrameworkEvent::OperationFailed(_) => self.seen.operations_failed += 1,
                    FrameworkEvent::Heartbeat => {}
                }
            }
            Effect::CloseFramework { conn } => {
                if let Some(f) = Self::framework_of(conn) {
                    self.frameworks[f].connected = false;
                    self.frameworks[f].offers.clear();
                }
            }
            Effect::Changes { seq, changes } => {
                if let Err(e) = self.watcher.apply(seq, &changes) {
                    self.watcher_error.get_or_insert(e);
                }
            }
            Effect::AllocateSoon | Effect::Persist(_) | Effect::Reply(_) => {}
        }
    }

    fn agent_info(a: usize) -> AgentInfo {
        AgentInfo {
            hostname: format!("host-{a}"),
            address: format!("10.0.0.{a}:5051"),
            resources: res(4000, 4096),
            ..AgentInfo::default()
        }
    }

    fn call(&mut self, f: usize, call: Call) -> Result<(), TestCaseError> {
        let framework = &self.frameworks[f];
        let (Some(id), Some(stream)) = (framework.id.clone(), framework.stream.clone()) else {
            return Ok(());
        };
        self.handle(Event::Call {
            framework_id: id,
            stream_id: stream,
            principal: None,
            call,
        })
    }

    fn pick<T: Clone>(list: &[T], n: usize) -> Option<T> {
        (!list.is_empty()).then(|| list[n % list.len()].clone())
    }

    fn launch_task(&mut self, cpus_milli: u64) -> LaunchTask {
        self.next_task += 1;
        task(&format!("t{}", self.next_task), cpus_milli, 64)
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Connect(a) => {
                let agent = &self.agents[a];
                if agent.connected {
                    return Ok(());
                }
                let conn = agent_conn(a);
                let event = match (&agent.id, agent.stopped) {
                    (Some(id), false) => Event::AgentReregister {
                        conn,
                        agent_id: id.clone(),
                        info: Self::agent_info(a),
                        tasks: agent
                            .tasks
                            .iter()
                            .filter(|(_, s)| !s.is_terminal())
                            .map(|((fw, task), state)| ReportedTask {
                                framework_id: fw.clone(),
                                meta: TaskMeta {
                                    resources: res(100, 64),
                                    ..TaskMeta::default()
                                },
                                status: agent_update(fw, Some(id), task.as_str(), *state, 0),
                            })
                            .collect(),
                        updates: vec![],
                        cached_modules: vec![],
                    },
                    _ => {
                        let agent = &mut self.agents[a];
                        agent.stopped = false;
                        agent.id = None;
                        agent.tasks.clear();
                        Event::AgentRegister {
                            conn,
                            info: Self::agent_info(a),
                            cached_modules: vec![],
                        }
                    }
                };
                self.agents[a].connected = true;
                self.handle(event)
            }
            Step::Disconnect(a) => {
                if !self.agents[a].connected {
                    return Ok(());
                }
                self.agents[a].connected = false;
                self.handle(Event::AgentDisconnected {
                    conn: agent_conn(a),
                })
            }
            Step::Heartbeat(a) => {
                if !self.agents[a].connected {
                    return Ok(());
                }
                self.handle(Event::AgentHeartbeat {
                    conn: agent_conn(a),
                })
            }
            Step::Report { agent, task, state } => {
                let side = &self.agents[agent];
                if !side.connected {
                    return Ok(());
                }
                let keys: Vec<TaskKey> = side.tasks.keys().cloned().collect();
                let Some(key) = Self::pick(&keys, task) else {
                    return Ok(());
                };
                let id = side.id.clone();
                let uuid = self.uuid();
                let status = TaskStatus {
                    uuid: Some(uuid),
                    ..agent_update(&key.0, id.as_ref(), key.1.as_str(), state, 0)
                };
                if state.is_terminal() {
                    self.agents[agent].tasks.remove(&key);
                } else {
                    self.agents[agent].tasks.insert(key, state);
                }
                self.handle(Event::AgentStatus {
                    conn: agent_conn(agent),
                    status,
                })
            }
            Step::ReportStranger { agent, state } => {
                let side = &self.agents[agent];
                let Some(fw) = self.frameworks[0].id.clone() else {
                    return Ok(());
                };
                if !side.connected {
                    return Ok(());
                }
                let id = side.id.clone();
                let uuid = self.uuid();
                let status = TaskStatus {
                    uuid: Some(uuid),
                    ..agent_update(&fw, id.as_ref(), "stranger", state, 0)
                };
                self.handle(Event::AgentStatus {
                    conn: agent_conn(agent),
                    status,
                })
            }
            Step::Subscribe { fw, failover_secs } => {
                let side = &mut self.frameworks[fw];
                if side.connected {
                    return Ok(());
                }
                if side.removed {
                    // A removed framework's id is refused for good: start a new one.
                    *side = FrameworkSide::default();
                }
                let id = side.id.clone();
                let event = Event::Subscribe {
                    conn: framework_conn(fw),
                    info: info(id.as_ref(), Duration::from_secs(failover_secs)),
                    suppressed: vec![],
                };
                self.handle(event)
            }
            Step::Drop(fw) => {
                if !self.frameworks[fw].connected {
                    return Ok(());
                }
                self.frameworks[fw].connected = false;
                self.frameworks[fw].offers.clear();
                self.handle(Event::FrameworkDisconnected {
                    conn: framework_conn(fw),
                })
            }
            Step::Accept {
                fw,
                offer,
                tasks,
                cpus_milli,
                reserve,
                unreserve,
                twice,
            } => {
                let Some(offer) = Self::pick(&self.frameworks[fw].offers, offer) else {
                    return Ok(());
                };
                self.frameworks[fw].offers.retain(|o| *o != offer);
                let launched: Vec<LaunchTask> =
                    (0..tasks).map(|_| self.launch_task(cpus_milli)).collect();
                self.frameworks[fw]
                    .tasks
                    .extend(launched.iter().map(|t| t.id.clone()));
                let role = Role::new("r").unwrap_or_else(|_| Role::default_role());
                let mut operations = vec![Operation::Launch(launched)];
                if reserve {
                    operations.push(Operation::Reserve {
                        id: "reserve".into(),
                        role: role.clone(),
                        resources: res(500, 0),
                    });
                }
                if unreserve {
                    operations.push(Operation::Unreserve {
                        id: "unreserve".into(),
                        role,
                        resources: res(500, 0),
                    });
                }
                let offer_ids = if twice {
                    vec![offer.clone(), offer]
                } else {
                    vec![offer]
                };
                self.call(
                    fw,
                    Call::Accept {
                        offer_ids,
                        operations,
                        refuse: Duration::from_secs(1),
                        artifacts: Visibility::All.into(),
                    },
                )
            }
            Step::Decline {
                fw,
                offer,
                refuse_secs,
            } => {
                let Some(offer) = Self::pick(&self.frameworks[fw].offers, offer) else {
                    return Ok(());
                };
                self.frameworks[fw].offers.retain(|o| *o != offer);
                self.call(
                    fw,
                    Call::Decline {
                        offer_ids: vec![offer],
                        refuse: Duration::from_secs(refuse_secs),
                    },
                )
            }
            Step::Revive(fw) => self.call(fw, Call::Revive { roles: vec![] }),
            Step::Suppress(fw) => self.call(fw, Call::Suppress { roles: vec![] }),
            Step::Kill { fw, task } => {
                let Some(task_id) = Self::pick(&self.frameworks[fw].tasks, task) else {
                    return Ok(());
                };
                self.call(
                    fw,
                    Call::Kill {
                        task_id,
                        agent_id: None,
                    },
                )
            }
            Step::Ack { fw, update } => {
                let updates = &mut self.frameworks[fw].updates;
                if updates.is_empty() {
                    return Ok(());
                }
                let status = updates.remove(update % updates.len());
                let Some(uuid) = status.uuid else {
                    return Ok(());
                };
                self.call(
                    fw,
                    Call::Acknowledge {
                        acks: vec![Ack {
                            agent_id: status.agent_id,
                            task_id: status.task_id,
                            uuid,
                        }],
                    },
                )
            }
            Step::Reconcile(fw) => self.call(fw, Call::Reconcile { tasks: vec![] }),
            Step::Teardown(fw) => self.call(fw, Call::Teardown),
            Step::Advance(ms) => {
                self.now = self.now.saturating_add(Duration::from_millis(ms));
                self.handle(Event::Tick)
            }
            Step::Allocate => self.handle(Event::Allocate),
            Step::Drain { agent, grace, gone } => {
                let Some(id) = self.agents[agent].id.clone() else {
                    return Ok(());
                };
                self.handle(Event::Operator(OperatorRequest::DrainAgent {
                    agent: id,
                    grace: grace.then(|| Duration::from_secs(2)),
                    mark_gone: gone,
                }))
            }
            Step::Reactivate(agent) => {
                let Some(id) = self.agents[agent].id.clone() else {
                    return Ok(());
                };
                self.handle(Event::Operator(OperatorRequest::ReactivateAgent {
                    agent: id,
                }))
            }
            Step::Reserve { agent, cpus_milli } => {
                let Some(id) = self.agents[agent].id.clone() else {
                    return Ok(());
                };
                self.handle(Event::Operator(OperatorRequest::Reserve {
                    agent: id,
                    role: Role::new("r").unwrap_or_else(|_| Role::default_role()),
                    resources: res(cpus_milli, 0),
                }))
            }
            Step::Weight(w) => self.handle(Event::Operator(OperatorRequest::SetWeight {
                role: Role::default_role(),
                weight: Weight::new(w as f64).unwrap_or_default(),
            })),
            Step::Quota(cpus_milli) => self.handle(Event::Operator(OperatorRequest::SetQuota {
                role: Role::default_role(),
                quota: Quota {
                    guarantee: res(cpus_milli, 0),
                    limit: corral_types::QuotaLimits::unlimited(),
                },
                force: true,
            })),
        }
    }
}

/// Up to this many steps per sequence.
const STEPS: usize = 150;

proptest! {
    #[test]
    fn random_event_sequences_keep_the_core_consistent(
        steps in prop::collection::vec(step(), 1..STEPS)
    ) {
        let mut world = World::new();
        for step in steps {
            world.run(step)?;
        }
    }
}

/// The property above checks something only if the sequences get somewhere: across a fixed
/// sample of them, every kind of interesting effect happens.
#[test]
fn the_random_sequences_reach_launches_losses_removals_and_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut seen = Seen::default();
    for _ in 0..100 {
        let steps = prop::collection::vec(step(), STEPS)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut world = World::new();
        for step in steps {
            world.run(step).unwrap();
        }
        seen.add(world.seen);
    }
    let counts = [
        seen.launches,
        seen.kills,
        seen.terminal_updates,
        seen.acks_to_agents,
        seen.offers,
        seen.rescinds,
        seen.agents_lost,
        seen.operations_failed,
        seen.frameworks_removed,
        seen.shutdowns,
    ];
    assert!(counts.iter().all(|&n| n > 0), "{seen:?}");
}
