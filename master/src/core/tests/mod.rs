//! Core tests: events in with a manual clock, exact effects out (openraft's engine tests are
//! the model): each test asserts the whole effect list an event produced, as typed values.

use std::time::Duration;

use corral_proto::{OperationUpdate, ServiceError, TaskInfo, TaskStatus, UpdateUuid, v1};
use corral_types::{
    AgentId, FrameworkId, OfferId, Reason, Resources, Role, StatusSource, TaskId, TaskState,
    Timestamp,
};

use super::*;
use crate::auth::Visibility;

mod agents;
mod frameworks;
mod invariants;
mod kv;
mod mirror;
mod owners;
mod props;
mod recovery;
mod scheduler;

const AGENT: ConnId = 1;
const FW: ConnId = 100;

fn config() -> CoreConfig {
    CoreConfig {
        master_id: "m".into(),
        epoch: 1,
        address: "127.0.0.1:5050".into(),
        started_at_unix_millis: 1_000_000,
        agent_heartbeat_interval: Duration::from_secs(1),
        agent_timeout: Duration::from_secs(5),
        agent_reregister_timeout: Duration::from_secs(30),
        framework_heartbeat_interval: Duration::from_secs(15),
        offer_timeout: None,
        allocation_interval: Duration::from_secs(1),
        max_output_bytes: 1 << 30,
        metrics: std::sync::Arc::default(),
    }
}

fn ms(n: u64) -> Timestamp {
    Timestamp::from_millis(n)
}

fn res(cpus_milli: u64, mem_mib: u64) -> Resources {
    Resources::new()
        .with_cpus_milli(cpus_milli)
        .with_mem_mib(mem_mib)
}

fn agent_info() -> AgentInfo {
    AgentInfo {
        hostname: "host-1".into(),
        address: "127.0.0.1:5051".into(),
        resources: res(4000, 4096),
        attributes: vec![("arch".into(), "x86_64".into())],
        ..AgentInfo::default()
    }
}

fn info(id: Option<&FrameworkId>, failover: Duration) -> FrameworkInfo {
    FrameworkInfo {
        principal: None,
        id: id.cloned(),
        name: "test".into(),
        user: "me".into(),
        roles: vec![Role::default_role()],
        failover_timeout: failover,
        labels: Default::default(),
    }
}

fn register(core: &mut MasterCore, now: Timestamp) -> AgentId {
    let fx = core.handle(
        Event::AgentRegister {
            conn: AGENT,
            info: agent_info(),
            cached_modules: vec![],
        },
        now,
    );
    let [
        Effect::Persist(RegistryWrite::Agent(record)),
        Effect::ToAgent {
            conn: AGENT,
            command: AgentCommand::Registered { agent_id, .. },
        },
        Effect::AllocateSoon,
    ] = &fx[..]
    else {
        panic!("expected persist, REGISTERED, allocate: {fx:?}");
    };
    assert_eq!(&record.id, agent_id);
    agent_id.clone()
}

/// REGISTERED for `agent` on the test agent's stream.
fn registered(agent: &AgentId) -> Effect {
    Effect::ToAgent {
        conn: AGENT,
        command: AgentCommand::Registered {
            agent_id: agent.clone(),
            heartbeat_interval: config().agent_heartbeat_interval,
        },
    }
}

/// An event to the test framework's stream.
fn to_fw(event: FrameworkEvent) -> Effect {
    Effect::ToFramework { conn: FW, event }
}

/// A command to the test agent's stream.
fn to_agent(command: AgentCommand) -> Effect {
    Effect::ToAgent {
        conn: AGENT,
        command,
    }
}

fn done() -> Effect {
    Effect::Reply(Reply::Done(Ok(())))
}

fn kill(fw: &FrameworkId, task: &str, reason: Reason) -> AgentCommand {
    AgentCommand::Kill {
        framework: fw.clone(),
        task: TaskId::new(task).unwrap(),
        reason,
    }
}

/// A status the master produced, at core time `now` (the config starts at 1,000,000 ms).
fn from_master(
    fw: &FrameworkId,
    task: &str,
    agent: Option<&AgentId>,
    (state, reason): (TaskState, Reason),
    message: &str,
    now: Timestamp,
) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task).unwrap(),
        framework_id: fw.clone(),
        agent_id: agent.cloned(),
        state,
        reason,
        message: message.into(),
        usage: None,
        timestamp_millis: 1_000_000 + now.as_millis(),
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

fn subscribe(
    core: &mut MasterCore,
    conn: ConnId,
    id: Option<&FrameworkId>,
    failover: Duration,
    now: Timestamp,
) -> (FrameworkId, String) {
    let (fw, stream, _) = subscribe_fx(core, conn, id, failover, now);
    (fw, stream)
}

/// Subscribes; returns the framework, its stream ID and every effect.
fn subscribe_fx(
    core: &mut MasterCore,
    conn: ConnId,
    id: Option<&FrameworkId>,
    failover: Duration,
    now: Timestamp,
) -> (FrameworkId, String, Vec<Effect>) {
    subscribe_with(core, conn, info(id, failover), now)
}

/// Subscribes the framework `info` describes; returns it, its stream ID and every effect.
fn subscribe_with(
    core: &mut MasterCore,
    conn: ConnId,
    info: FrameworkInfo,
    now: Timestamp,
) -> (FrameworkId, String, Vec<Effect>) {
    let fx = core.handle(
        Event::Subscribe {
            conn,
            info,
            suppressed: vec![],
        },
        now,
    );
    assert!(fx.contains(&Effect::Reply(Reply::Done(Ok(())))), "{fx:?}");
    let (fw, stream_id) = fx
        .iter()
        .find_map(|e| match e {
            Effect::ToFramework {
                conn: c,
                event:
                    FrameworkEvent::Subscribed {
                        framework,
                        stream_id,
                        ..
                    },
            } if *c == conn => Some((framework.clone(), stream_id.clone())),
            _ => None,
        })
        .expect("SUBSCRIBED");
    (fw, stream_id, fx)
}

fn events(fx: &[Effect]) -> Vec<FrameworkEvent> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ToFramework { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn offers(fx: &[Effect]) -> Vec<Offer> {
    events(fx)
        .into_iter()
        .flat_map(|e| match e {
            FrameworkEvent::Offers(o) => o,
            _ => vec![],
        })
        .collect()
}

fn updates(fx: &[Effect]) -> Vec<TaskStatus> {
    events(fx)
        .into_iter()
        .filter_map(|e| match e {
            FrameworkEvent::Update(status) => Some(status),
            _ => None,
        })
        .collect()
}

fn commands(fx: &[Effect]) -> Vec<AgentCommand> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ToAgent { command, .. } => Some(command.clone()),
            _ => None,
        })
        .collect()
}

fn task(id: &str, cpus_milli: u64, mem_mib: u64) -> LaunchTask {
    let proto = v1::TaskInfo {
        task_id: id.into(),
        module: Some(v1::ModuleRef {
            source: Some(v1::module_ref::Source::Digest(
                corral_types::Digest::of(b"m").to_string(),
            )),
        }),
        resources: Some((&res(cpus_milli, mem_mib)).into()),
        ..Default::default()
    };
    LaunchTask {
        id: TaskId::new(id).unwrap(),
        info: TaskInfo::try_from(&proto).map_err(|e| e.to_string()),
    }
}

/// A tick with the agent alive (it heartbeats first).
fn tick(core: &mut MasterCore, now: Timestamp) -> Vec<Effect> {
    core.handle(Event::AgentHeartbeat { conn: AGENT }, now);
    let fx = core.handle(Event::Tick, now);
    core.check_invariants();
    fx
}

fn call(
    core: &mut MasterCore,
    fw: &FrameworkId,
    stream: &str,
    call: Call,
    now: Timestamp,
) -> Vec<Effect> {
    let fx = core.handle(
        Event::Call {
            framework_id: fw.clone(),
            stream_id: stream.into(),
            principal: None,
            call,
        },
        now,
    );
    core.check_invariants();
    fx
}

fn accept(offer: &OfferId, tasks: Vec<LaunchTask>) -> Call {
    Call::Accept {
        offer_ids: vec![offer.clone()],
        operations: vec![Operation::Launch(tasks)],
        refuse: Duration::from_secs(5),
        artifacts: Visibility::All.into(),
    }
}

/// The update the test agent sends about `task`: uuid `[uuid; 16]`.
fn agent_update(
    fw: &FrameworkId,
    agent: Option<&AgentId>,
    task: &str,
    state: TaskState,
    uuid: u8,
) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task).unwrap(),
        framework_id: fw.clone(),
        agent_id: agent.cloned(),
        state,
        reason: if state.is_terminal() {
            Reason::Exited
        } else {
            Reason::Launched
        },
        message: String::new(),
        usage: None,
        timestamp_millis: 5,
        uuid: Some(UpdateUuid::from_bytes([uuid; 16])),
        source: StatusSource::Agent,
        trap_kind: None,
        healthy: None,
        progress: None,
        result_json: None,
        checkpoint: Default::default(),
        outputs: Vec::new(),
        outputs_not_kept: None,
    }
}

fn agent_status(
    core: &mut MasterCore,
    fw: &FrameworkId,
    task: &str,
    state: TaskState,
    uuid: u8,
    now: Timestamp,
) -> Vec<Effect> {
    let agent = core.agents.keys().next().cloned();
    let status = agent_update(fw, agent.as_ref(), task, state, uuid);
    let fx = core.handle(
        Event::AgentStatus {
            conn: AGENT,
            status,
        },
        now,
    );
    core.check_invariants();
    fx
}

/// An agent and a subscribed framework holding one offer for the whole agent.
/// [`offered`], and task `t1` (1 CPU, 1 MiB) launched from its offer at 2 ms: the core, the
/// agent, the framework and its stream.
fn launched_t1() -> (MasterCore, AgentId, FrameworkId, String) {
    let (mut core, agent, fw, stream, offer) = offered();
    call(
        &mut core,
        &fw,
        &stream,
        accept(&offer, vec![task("t1", 1000, 1)]),
        ms(2),
    );
    (core, agent, fw, stream)
}

fn offered() -> (MasterCore, AgentId, FrameworkId, String, OfferId) {
    let mut core = MasterCore::new(config());
    let agent = register(&mut core, ms(0));
    let (fw, stream) = subscribe(&mut core, FW, None, Duration::from_secs(60), ms(0));
    let fx = core.handle(Event::Allocate, ms(1));
    let o = offers(&fx);
    assert_eq!(o.len(), 1, "{fx:?}");
    (core, agent, fw, stream, o[0].id.clone())
}
