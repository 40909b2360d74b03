//! The agent's task table: what it runs, what it has reported, and what is unacknowledged.
//!
//! Every status update goes through [`Node::emit`], which records it as the task's latest,
//! queues it until the master forwards the framework's acknowledgement, and sends it on the
//! current link (if any). Resends and re-registration read the same queues, so an update is
//! delivered at least once and in order per task.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use corral_proto::{AgentId, Reason, TaskState, v1};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use super::prepare::{Sources, prepare};
use super::status::{StatusParts, TaskKey, status_of, update, usage};
use crate::executor::{Executor, KillSwitch, Phase};
use crate::task::TaskOutcome;

/// The agent as a cluster member: its executor, task table and link state.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) executor: Executor,
    pub(crate) sources: Sources,
    pub(crate) work_dir: PathBuf,
    pub(crate) agent_info: v1::AgentInfo,
    pub(crate) masters: Vec<String>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) status_retry_interval: Duration,
    pub(crate) registered: watch::Sender<Option<AgentId>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    agent_id: Option<String>,
    highest_epoch: u64,
    /// The current session's outbound stream and channel (for module fetches).
    link: Option<(mpsc::UnboundedSender<v1::AgentMessage>, Channel)>,
    tasks: HashMap<TaskKey, TaskEntry>,
    /// Orders unacknowledged updates across tasks for re-registration.
    next_seq: u64,
}

#[derive(Debug)]
struct TaskEntry {
    /// As launched, input contents elided (re-registration only needs the description).
    info: v1::TaskInfo,
    latest: Option<v1::TaskStatus>,
    run_dir: Option<PathBuf>,
    kill: Option<KillSwitch>,
    kill_requested: bool,
    terminal: bool,
    unacked: VecDeque<(u64, v1::TaskStatus)>,
}

/// What a master message asks of the link.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    /// Registered; heartbeat at this interval.
    Registered(Duration),
    /// Stop the link for good (the master sent Shutdown).
    Stop,
}

impl Node {
    pub(crate) fn new(
        executor: Executor,
        sources: Sources,
        work_dir: PathBuf,
        agent_info: v1::AgentInfo,
        masters: Vec<String>,
        heartbeat_interval: Duration,
        status_retry_interval: Duration,
    ) -> Self {
        Self {
            executor,
            sources,
            work_dir,
            agent_info,
            masters,
            heartbeat_interval,
            status_retry_interval,
            registered: watch::Sender::new(None),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session: the first message (Register, or ReRegister with the running tasks
    /// and unacknowledged updates), taken atomically with installing the session's sender so
    /// no update falls between the snapshot and the link.
    pub(crate) fn attach(
        &self,
        tx: mpsc::UnboundedSender<v1::AgentMessage>,
        channel: Channel,
    ) -> v1::AgentMessage {
        use v1::agent_message::{Kind, ReRegister, Register};
        let mut state = self.state();
        let cached_modules = self.cached_modules();
        let kind = match &state.agent_id {
            None => Kind::Register(Register {
                agent_info: Some(self.agent_info.clone()),
                cached_modules,
            }),
            Some(agent_id) => {
                let mut tasks = Vec::new();
                let mut unacked = Vec::new();
                for (key, entry) in &state.tasks {
                    if !entry.terminal {
                        tasks.push(v1::RunningTask {
                            framework_id: key.framework_id.clone(),
                            task: Some(entry.info.clone()),
                            status: entry.latest.clone(),
                        });
                    }
                    unacked.extend(entry.unacked.iter().cloned());
                }
                unacked.sort_by_key(|(seq, _)| *seq);
                Kind::Reregister(ReRegister {
                    agent_id: agent_id.clone(),
                    agent_info: Some(self.agent_info.clone()),
                    tasks,
                    unacknowledged_updates: unacked.into_iter().map(|(_, s)| s).collect(),
                    cached_modules,
                    last_epoch: state.highest_epoch,
                })
            }
        };
        state.link = Some((tx, channel));
        v1::AgentMessage { kind: Some(kind) }
    }

    /// Ends a session: later updates wait for the next one.
    pub(crate) fn detach(&self, tx: &mpsc::UnboundedSender<v1::AgentMessage>) {
        let mut state = self.state();
        if state.link.as_ref().is_some_and(|(l, _)| l.same_channel(tx)) {
            state.link = None;
        }
    }

    /// Digests of the modules compiled for this engine, read from the cache directory.
    fn cached_modules(&self) -> Vec<String> {
        let dir = self
            .work_dir
            .join("modules")
            .join(self.executor.compatibility());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut digests: Vec<String> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let hex = name.strip_suffix(".cwasm")?;
                Some(format!("sha256:{hex}"))
            })
            .collect();
        digests.sort();
        digests
    }

    /// Sends every unacknowledged update again, in order per task.
    pub(crate) fn resend(&self, tx: &mpsc::UnboundedSender<v1::AgentMessage>) {
        let state = self.state();
        let mut unacked: Vec<_> = state
            .tasks
            .values()
            .flat_map(|e| e.unacked.iter())
            .collect();
        unacked.sort_by_key(|(seq, _)| *seq);
        for (_, status) in unacked {
            let _ = tx.send(status_message(status.clone()));
        }
    }

    /// Applies one master message.
    pub(crate) fn handle(self: &Arc<Self>, message: v1::MasterMessage) -> Next {
        use v1::master_message::Kind;
        {
            let mut state = self.state();
            if message.epoch < state.highest_epoch {
                tracing::warn!(
                    epoch = message.epoch,
                    highest = state.highest_epoch,
                    "ignoring a message from a stale master"
                );
                return Next::Continue;
            }
            state.highest_epoch = message.epoch;
        }
        match message.kind {
            None => Next::Continue,
            Some(Kind::Registered(registered)) => {
                let Ok(id) = AgentId::new(&registered.agent_id) else {
                    tracing::warn!(agent_id = %registered.agent_id, "master assigned an invalid agent id");
                    return Next::Continue;
                };
                tracing::info!(agent_id = %id, master_id = %registered.master_id, "registered");
                self.state().agent_id = Some(registered.agent_id);
                self.registered.send_replace(Some(id));
                let interval = match registered.heartbeat_interval_millis {
                    0 => self.heartbeat_interval,
                    ms => Duration::from_millis(ms),
                };
                Next::Registered(interval)
            }
            Some(Kind::LaunchTasks(launch)) => {
                for task in launch.tasks {
                    self.launch(&launch.framework_id, task);
                }
                Next::Continue
            }
            Some(Kind::KillTask(kill)) => {
                self.kill(TaskKey {
                    framework_id: kill.framework_id,
                    task_id: kill.task_id,
                });
                Next::Continue
            }
            Some(Kind::Acknowledge(ack)) => {
                self.acknowledge(
                    &TaskKey {
                        framework_id: ack.framework_id,
                        task_id: ack.task_id,
                    },
                    &ack.uuid,
                );
                Next::Continue
            }
            Some(Kind::Shutdown(shutdown)) => {
                tracing::warn!(reason = %shutdown.reason, "master asked the agent to shut down");
                self.kill_all();
                Next::Stop
            }
        }
    }

    /// Records and sends a status update of a known task.
    fn emit(&self, key: &TaskKey, parts: StatusParts, usage: Option<v1::Usage>) {
        let mut state = self.state();
        let agent_id = state.agent_id.clone().unwrap_or_default();
        let seq = state.next_seq;
        state.next_seq += 1;
        let terminal = parts.state.is_terminal();
        let status = update(key, &agent_id, parts, usage, true);
        let link = state.link.as_ref().map(|(tx, _)| tx.clone());
        let Some(entry) = state.tasks.get_mut(key) else {
            return;
        };
        entry.latest = Some(status.clone());
        entry.unacked.push_back((seq, status.clone()));
        if terminal {
            entry.terminal = true;
            entry.kill = None;
        }
        if let Some(tx) = link {
            let _ = tx.send(status_message(status));
        }
    }

    /// Tells the master a module is now compiled here (offers list it).
    fn module_cached(&self, digest: crate::cache::Digest) {
        let state = self.state();
        if let Some((tx, _)) = &state.link {
            let _ = tx.send(v1::AgentMessage {
                kind: Some(v1::agent_message::Kind::ModuleCached(
                    v1::agent_message::ModuleCached {
                        digest: digest.to_string(),
                    },
                )),
            });
        }
    }

    /// Sends an update that expects no acknowledgement (about a task this agent lacks).
    fn emit_untracked(&self, key: &TaskKey, parts: StatusParts) {
        let state = self.state();
        let agent_id = state.agent_id.clone().unwrap_or_default();
        if let Some((tx, _)) = &state.link {
            let _ = tx.send(status_message(update(key, &agent_id, parts, None, false)));
        }
    }

    fn launch(self: &Arc<Self>, framework_id: &str, mut info: v1::TaskInfo) {
        let key = TaskKey {
            framework_id: framework_id.to_owned(),
            task_id: info.task_id.clone(),
        };
        if corral_proto::validate_id("framework", framework_id).is_err()
            || corral_proto::validate_id("task", &info.task_id).is_err()
        {
            tracing::warn!(framework_id, task_id = %info.task_id, "dropping a launch with invalid ids");
            return;
        }
        let mut described = info.clone();
        for input in &mut described.inputs {
            input.source = None;
        }
        {
            let mut state = self.state();
            if state.tasks.get(&key).is_some_and(|e| !e.terminal) {
                tracing::warn!(framework_id, task_id = %key.task_id, "ignoring a launch of a task already running");
                return;
            }
            let earlier = state.tasks.remove(&key);
            state.tasks.insert(
                key.clone(),
                TaskEntry {
                    info: described,
                    latest: None,
                    run_dir: None,
                    kill: None,
                    kill_requested: false,
                    terminal: false,
                    // A relaunch keeps the earlier run's undelivered updates ahead of its own.
                    unacked: earlier.map(|e| e.unacked).unwrap_or_default(),
                },
            );
        }
        self.emit(
            &key,
            StatusParts::new(TaskState::Starting, Reason::Launched, "starting"),
            None,
        );
        let node = self.clone();
        tokio::spawn(async move {
            let master = node.state().link.as_ref().map(|(_, c)| c.clone());
            let framework_id = key.framework_id.clone();
            let spec = prepare(
                &node.executor,
                &node.sources,
                master,
                &framework_id,
                &std::mem::take(&mut info),
            )
            .await;
            let spec = match spec {
                Ok((spec, added)) => {
                    if let Some(digest) = added {
                        node.module_cached(digest);
                    }
                    spec
                }
                Err(error) => {
                    tracing::info!(task_id = %key.task_id, %error, "launch failed");
                    return node.emit(&key, error.parts(), None);
                }
            };
            let handle = {
                let mut state = node.state();
                let Some(entry) = state.tasks.get_mut(&key) else {
                    return;
                };
                if entry.kill_requested {
                    drop(state);
                    return node.emit(&key, status_of(&TaskOutcome::Killed), None);
                }
                let handle = node.executor.launch(spec);
                entry.kill = Some(handle.kill_switch());
                entry.run_dir = handle.sandbox().map(|s| s.run_dir().to_path_buf());
                handle
            };
            let reached = handle.started().await;
            let mut running_sent = false;
            if reached == Phase::Running {
                node.emit(&key, running(), None);
                running_sent = true;
            }
            let result = handle.wait().await;
            // A task that ends within microseconds can skip the observable Running phase;
            // outcomes only guest code produces say it ran.
            let ran = matches!(
                result.outcome,
                TaskOutcome::Exited { .. }
                    | TaskOutcome::OutOfFuel
                    | TaskOutcome::Trapped { .. }
                    | TaskOutcome::DiskLimit
                    | TaskOutcome::OutputLimit
            );
            if ran && !running_sent {
                node.emit(&key, running(), None);
            }
            let parts = status_of(&result.outcome);
            let usage = match result.outcome {
                TaskOutcome::FailedToStart(_) => None,
                _ => Some(usage(&result.usage)),
            };
            node.emit(&key, parts, usage);
        });
    }

    fn kill(&self, key: TaskKey) {
        let mut state = self.state();
        match state.tasks.get_mut(&key) {
            Some(entry) if entry.terminal => {}
            Some(entry) => {
                entry.kill_requested = true;
                if let Some(kill) = &entry.kill {
                    kill.kill();
                }
            }
            None => {
                drop(state);
                // As Mesos: a kill of a task this agent does not have is answered LOST, so the
                // master and framework stop waiting for it.
                self.emit_untracked(
                    &key,
                    StatusParts::new(
                        TaskState::Lost,
                        Reason::Reconciliation,
                        "task unknown to this agent",
                    ),
                );
            }
        }
    }

    /// Kills every task that has not ended.
    pub(crate) fn kill_all(&self) {
        let mut state = self.state();
        for entry in state.tasks.values_mut().filter(|e| !e.terminal) {
            entry.kill_requested = true;
            if let Some(kill) = &entry.kill {
                kill.kill();
            }
        }
    }

    /// Forgets exactly the acknowledged update.
    fn acknowledge(&self, key: &TaskKey, uuid: &[u8]) {
        let mut state = self.state();
        if let Some(entry) = state.tasks.get_mut(key) {
            entry.unacked.retain(|(_, s)| s.uuid != uuid);
        }
    }

    /// The run directory of a task and whether the task has ended; the task is found by its
    /// id alone when `framework_id` is `None` and the id is unambiguous.
    pub(crate) fn sandbox_of(
        &self,
        framework_id: Option<&str>,
        task_id: &str,
    ) -> Result<(PathBuf, bool), corral_proto::ServiceError> {
        let not_found = || corral_proto::ServiceError::NotFound {
            kind: "task",
            id: task_id.to_owned(),
        };
        let state = self.state();
        let mut matches = state.tasks.iter().filter(|(k, _)| {
            k.task_id == task_id && framework_id.is_none_or(|f| f == k.framework_id)
        });
        let (_, entry) = matches.next().ok_or_else(not_found)?;
        if matches.next().is_some() {
            return Err(corral_proto::ServiceError::InvalidArgument(format!(
                "task id {task_id} is used by several frameworks; name the framework"
            )));
        }
        let dir = entry.run_dir.clone().ok_or_else(|| {
            corral_proto::ServiceError::FailedPrecondition(format!(
                "task {task_id} has no sandbox yet"
            ))
        })?;
        Ok((dir, entry.terminal))
    }
}

fn running() -> StatusParts {
    StatusParts::new(TaskState::Running, Reason::Launched, "running")
}

fn status_message(status: v1::TaskStatus) -> v1::AgentMessage {
    v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::StatusUpdate(
            v1::agent_message::StatusUpdate {
                status: Some(status),
            },
        )),
    }
}
