//! Simulated agents: real AgentLink streams to the master that register, heartbeat and
//! finish every launched task at once (RUNNING then FINISHED), with no Wasm behind them. They
//! load the master alone: registration, heartbeats, offers for many agents, status routing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use corral_proto::{limits, v1};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Agent streams that share one HTTP/2 connection.
const AGENTS_PER_CONNECTION: usize = 100;
/// How long one agent gets to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// The running simulated agents; they stop when this is dropped or stopped.
#[derive(Debug)]
pub(super) struct SimulatedAgents {
    tasks: JoinSet<()>,
}

impl SimulatedAgents {
    pub(super) fn stop(mut self) {
        self.tasks.abort_all();
    }
}

/// Registers `count` simulated agents with the first master in `masters`.
pub(super) async fn start(masters: &[String], count: usize) -> anyhow::Result<SimulatedAgents> {
    let master = masters.first().context("no master address")?;
    let uuids = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut registered = Vec::with_capacity(count);
    let mut channel = None;
    for i in 0..count {
        if i % AGENTS_PER_CONNECTION == 0 {
            channel = Some(
                limits::endpoint(format!("http://{master}"))?
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {master}"))?,
            );
        }
        let client = limits::agent_link_client(channel.clone().context("no channel")?);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tasks.spawn(agent(client, i, uuids.clone(), ready_tx));
        registered.push(ready_rx);
    }
    for (i, ready) in registered.into_iter().enumerate() {
        tokio::time::timeout(REGISTER_TIMEOUT, ready)
            .await
            .with_context(|| format!("simulated agent {i} did not register in time"))?
            .with_context(|| format!("simulated agent {i} ended before registering"))?;
    }
    Ok(SimulatedAgents { tasks })
}

fn info(index: usize) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: format!("simulated-{index}"),
        address: String::new(),
        resources: Some(v1::Resources {
            cpus_milli: 4000,
            mem_bytes: 16 << 30,
            disk_bytes: 64 << 30,
            ..Default::default()
        }),
        attributes: Vec::new(),
        engine_hash: "simulated".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        labels: Default::default(),
        fuel_per_cpu_second: 0,
        static_reservations: Vec::new(),
    }
}

async fn agent(
    mut client: v1::agent_link_client::AgentLinkClient<tonic::transport::Channel>,
    index: usize,
    uuids: Arc<AtomicU64>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let send = |kind| {
        let _ = tx.send(v1::AgentMessage { kind: Some(kind) });
    };
    send(v1::agent_message::Kind::Register(
        v1::agent_message::Register {
            agent_info: Some(info(index)),
            cached_modules: Vec::new(),
        },
    ));
    let Ok(response) = client.connect(UnboundedReceiverStream::new(rx)).await else {
        return;
    };
    let mut inbound = response.into_inner();
    let mut ready = Some(ready);
    let mut agent_id = String::new();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Ok(Some(message)) = message else { return };
                match message.kind {
                    Some(v1::master_message::Kind::Registered(r)) => {
                        agent_id = r.agent_id;
                        heartbeat = tokio::time::interval(Duration::from_millis(
                            r.heartbeat_interval_millis.max(1),
                        ));
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Some(v1::master_message::Kind::LaunchTasks(launch)) => {
                        for task in &launch.tasks {
                            for state in [v1::TaskState::Running, v1::TaskState::Finished] {
                                let status = status(&launch.framework_id, &task.task_id, &agent_id, state, &uuids);
                                send(v1::agent_message::Kind::StatusUpdate(
                                    v1::agent_message::StatusUpdate { status: Some(status) },
                                ));
                            }
                        }
                    }
                    Some(v1::master_message::Kind::Shutdown(_)) => return,
                    // Acknowledgements: nothing is held, so nothing to forget. Kills: every
                    // task has finished already.
                    _ => {}
                }
            }
            _ = heartbeat.tick(), if !agent_id.is_empty() => {
                send(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat {}));
            }
        }
    }
}

fn status(
    framework_id: &str,
    task_id: &str,
    agent_id: &str,
    state: v1::TaskState,
    uuids: &AtomicU64,
) -> v1::TaskStatus {
    let n = uuids.fetch_add(1, Ordering::Relaxed);
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&n.to_le_bytes());
    uuid[8] = 0x5a; // never all zero
    let finished = state == v1::TaskState::Finished;
    v1::TaskStatus {
        task_id: task_id.to_owned(),
        framework_id: framework_id.to_owned(),
        agent_id: agent_id.to_owned(),
        state: state as i32,
        reason: if finished {
            v1::Reason::Exited as i32
        } else {
            v1::Reason::Launched as i32
        },
        message: String::new(),
        usage: finished.then(|| v1::Usage {
            exit_code: Some(0),
            ..Default::default()
        }),
        timestamp_millis: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        uuid: bytes::Bytes::copy_from_slice(&uuid),
        source: v1::StatusSource::Agent as i32,
        trap_kind: 0,
        healthy: None,
    }
}
