//! Simulated agents, a kit for benchmarks and tests: real `AgentLink` streams that register,
//! heartbeat and finish every launched task at once (RUNNING then FINISHED), or hold it
//! RUNNING until it is killed ([`SimulatedAgents::spawn_holding`]), with no Wasm behind
//! them, so they load the master alone. `corral bench --simulated-agents`, the failover bench
//! and the listing bench use them.
//!
//! They follow the leader as `corral agent` does, with the same policy
//! ([`corral_proto::follow`]): the `corral-leader` hint first, ReRegister with their id and
//! highest epoch on a new leader, backoff while no master leads. Like a real agent they keep
//! their status updates until acknowledged and hand the rest to a new leader on
//! re-registration, and they ignore messages from an older epoch. Unlike one, they do not
//! resend updates on a timer within a session.
//!
//! ```text
//!   SimulatedAgents::spawn(masters, K) ── K tasks, one per agent ──► AgentLink::Connect
//!          ▲                                                          (HTTP/2 connections
//!          └── registration(): who (re-)registered where, and when    shared by 100 agents)
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_proto::follow::{self, Follower, Step};
use corral_proto::status::leader_hint;
use corral_proto::{limits, v1};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

/// Agent streams that share one HTTP/2 connection to a master: thousands of agents need a few
/// dozen sockets, not thousands.
const AGENTS_PER_CONNECTION: usize = 100;

/// Running simulated agents; they stop when this is stopped or dropped.
#[derive(Debug)]
pub struct SimulatedAgents {
    count: usize,
    tasks: JoinSet<()>,
    registrations: mpsc::UnboundedReceiver<Registration>,
}

/// One (re-)registration of a simulated agent.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Which agent, in `0..count`.
    pub index: usize,
    /// The id the master gave it; a re-registration keeps it.
    pub agent_id: String,
    /// The master that answered REGISTERED (`host:port`, as given or as a leader hint).
    pub master: String,
    /// That master's epoch.
    pub epoch: u64,
    /// When REGISTERED arrived, on the wall clock (comparable with other processes').
    pub at: SystemTime,
}

/// The agents ended before all of them registered (every one got Shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the simulated agents ended with {registered} of {count} registered")]
pub struct AgentsEnded {
    pub registered: usize,
    pub count: usize,
}

impl SimulatedAgents {
    /// Starts `count` agents that follow the leader among `masters` (`host:port`) and finish
    /// every task at once. Call it within a tokio runtime.
    pub fn spawn(masters: &[String], count: usize) -> Self {
        Self::start(masters, count, false)
    }

    /// [`SimulatedAgents::spawn`], but every task stays RUNNING until the master kills it:
    /// a cluster full of tasks.
    pub fn spawn_holding(masters: &[String], count: usize) -> Self {
        Self::start(masters, count, true)
    }

    fn start(masters: &[String], count: usize, hold: bool) -> Self {
        let (events, registrations) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let mut channels = Arc::new(Channels::default());
        for index in 0..count {
            if index % AGENTS_PER_CONNECTION == 0 {
                channels = Arc::new(Channels::default());
            }
            let agent = Agent {
                index,
                id: None,
                last_epoch: 0,
                unacknowledged: Vec::new(),
                updates: 0,
                hold,
                channels: channels.clone(),
                events: events.clone(),
            };
            tasks.spawn(agent.run(masters.to_vec()));
        }
        Self {
            count,
            tasks,
            registrations,
        }
    }

    /// The next (re-)registration of any agent, in arrival order; `None` once all ended.
    pub async fn registration(&mut self) -> Option<Registration> {
        self.registrations.recv().await
    }

    /// Waits until every agent has registered at least once.
    pub async fn all_registered(&mut self) -> Result<(), AgentsEnded> {
        let mut seen = vec![false; self.count];
        let mut registered = 0;
        while registered < self.count {
            let Some(r) = self.registration().await else {
                return Err(AgentsEnded {
                    registered,
                    count: self.count,
                });
            };
            if let Some(seen) = seen.get_mut(r.index)
                && !std::mem::replace(seen, true)
            {
                registered += 1;
            }
        }
        Ok(())
    }

    /// Ends every agent's stream.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

/// Lazily connected channels, one per master address, shared by a group of agents. A channel
/// whose connection broke connects again on its next call.
#[derive(Debug, Default)]
struct Channels(Mutex<HashMap<String, Channel>>);

impl Channels {
    fn get(&self, address: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = limits::endpoint(format!("http://{address}"))?.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// One simulated agent: what it keeps across sessions.
struct Agent {
    index: usize,
    id: Option<String>,
    /// The highest epoch seen; older messages are ignored.
    last_epoch: u64,
    /// Status updates not yet acknowledged, in the order they were sent.
    unacknowledged: Vec<v1::TaskStatus>,
    /// Updates sent, for their uuids.
    updates: u64,
    /// Tasks stay RUNNING until killed.
    hold: bool,
    channels: Arc<Channels>,
    events: mpsc::UnboundedSender<Registration>,
}

impl Agent {
    /// Sessions with the leader, as [`Follower`] picks them, until a master says Shutdown.
    async fn run(mut self, masters: Vec<String>) {
        let mut follower = Follower::new(masters, follow::BackoffConfig::default());
        loop {
            // The generator is not Send: dropped before any await.
            let step = follower.next(&mut rand::rng());
            match step {
                Step::Wait(delay) => tokio::time::sleep(delay).await,
                Step::Connect(address) => match self.session(&address, &mut follower).await {
                    Some(ended) => follower.ended(ended),
                    None => return,
                },
            }
        }
    }

    /// One stream with one master; `None` when the master says Shutdown.
    async fn session(&mut self, address: &str, follower: &mut Follower) -> Option<follow::Ended> {
        let ended = |status: &tonic::Status| match leader_hint(status) {
            Some(leader) => follow::Ended::Redirect(leader.to_owned()),
            None => follow::Ended::Lost,
        };
        let Ok(channel) = self.channels.get(address) else {
            return Some(follow::Ended::Lost);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(self.hello());
        let mut inbound = match limits::agent_link_client(channel)
            .connect(UnboundedReceiverStream::new(rx))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return Some(ended(&status)),
        };
        let mut registered = false;
        let mut heartbeat = ticker(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        // Fencing: a deposed leader's late messages are ignored.
                        if message.epoch < self.last_epoch {
                            continue;
                        }
                        self.last_epoch = message.epoch;
                        match message.kind {
                            Some(v1::master_message::Kind::Registered(r)) => {
                                registered = true;
                                heartbeat = ticker(Duration::from_millis(
                                    r.heartbeat_interval_millis.max(1),
                                ));
                                follower.registered();
                                self.registered(r.agent_id, address, message.epoch);
                            }
                            Some(v1::master_message::Kind::LaunchTasks(launch)) => {
                                self.finish(&launch, &tx);
                            }
                            Some(v1::master_message::Kind::Acknowledge(ack)) => {
                                self.unacknowledged.retain(|s| s.uuid != ack.uuid);
                            }
                            Some(v1::master_message::Kind::Shutdown(_)) => return None,
                            // Finishing agents have finished every task already.
                            Some(v1::master_message::Kind::KillTask(kill)) => {
                                if self.hold {
                                    let state = v1::TaskState::Killed;
                                    self.report(&kill.framework_id, &kill.task_id, state, &tx);
                                }
                            }
                            // A simulated agent serves no health to mark draining.
                            Some(v1::master_message::Kind::Maintenance(_)) | None => {}
                        }
                    }
                    Ok(None) => return Some(follow::Ended::Lost),
                    Err(status) => return Some(ended(&status)),
                },
                _ = heartbeat.tick(), if registered => {
                    let kind = v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat {});
                    let _ = tx.send(v1::AgentMessage { kind: Some(kind) });
                }
            }
        }
    }

    /// REGISTER for a new agent, REREGISTER with its id and what is unacknowledged after.
    fn hello(&self) -> v1::AgentMessage {
        let kind = match &self.id {
            None => v1::agent_message::Kind::Register(v1::agent_message::Register {
                agent_info: Some(info(self.index)),
                cached_modules: Vec::new(),
            }),
            Some(id) => v1::agent_message::Kind::Reregister(v1::agent_message::ReRegister {
                agent_id: id.clone(),
                agent_info: Some(info(self.index)),
                tasks: Vec::new(),
                unacknowledged_updates: self.unacknowledged.clone(),
                cached_modules: Vec::new(),
                last_epoch: self.last_epoch,
            }),
        };
        v1::AgentMessage { kind: Some(kind) }
    }

    fn registered(&mut self, agent_id: String, master: &str, epoch: u64) {
        self.id = Some(agent_id.clone());
        let _ = self.events.send(Registration {
            index: self.index,
            agent_id,
            master: master.to_owned(),
            epoch,
            at: SystemTime::now(),
        });
    }

    /// Every task runs and finishes at once.
    fn finish(
        &mut self,
        launch: &v1::master_message::LaunchTasks,
        tx: &mpsc::UnboundedSender<v1::AgentMessage>,
    ) {
        let states: &[v1::TaskState] = if self.hold {
            &[v1::TaskState::Running]
        } else {
            &[v1::TaskState::Running, v1::TaskState::Finished]
        };
        for task in &launch.tasks {
            for state in states {
                self.report(&launch.framework_id, &task.task_id, *state, tx);
            }
        }
    }

    /// Sends a task's status update (kept until acknowledged).
    fn report(
        &mut self,
        framework_id: &str,
        task_id: &str,
        state: v1::TaskState,
        tx: &mpsc::UnboundedSender<v1::AgentMessage>,
    ) {
        let Some(agent_id) = self.id.clone() else {
            return;
        };
        self.updates += 1;
        let status = status(framework_id, task_id, &agent_id, state, self.uuid());
        self.unacknowledged.push(status.clone());
        let kind = v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate {
            status: Some(status),
        });
        let _ = tx.send(v1::AgentMessage { kind: Some(kind) });
    }

    /// Unique across agents: the agent's index, then its update count (never zero).
    fn uuid(&self) -> bytes::Bytes {
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&(self.index as u64).to_le_bytes());
        uuid[8..].copy_from_slice(&self.updates.to_le_bytes());
        bytes::Bytes::copy_from_slice(&uuid)
    }
}

/// Ticks every `period`, the first after one period, as `corral agent`'s heartbeat does.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

fn info(index: usize) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: format!("simulated-{index}"),
        resources: Some(v1::Resources {
            cpus_milli: 4000,
            mem_bytes: 16 << 30,
            disk_bytes: 64 << 30,
            ..Default::default()
        }),
        engine_hash: "simulated".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn status(
    framework_id: &str,
    task_id: &str,
    agent_id: &str,
    state: v1::TaskState,
    uuid: bytes::Bytes,
) -> v1::TaskStatus {
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
        usage: finished.then(|| v1::Usage {
            exit_code: Some(0),
            ..Default::default()
        }),
        timestamp_millis: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        uuid,
        source: v1::StatusSource::Agent as i32,
        ..Default::default()
    }
}
