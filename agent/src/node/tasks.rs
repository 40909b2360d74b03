//! The agent's task table: what it runs, what it has reported, and what is unacknowledged.
//!
//! Every status update goes through [`Node::emit`], which records it as the task's latest,
//! queues it in the [`Outbox`] until the master forwards the framework's acknowledgement, and
//! hands it to the checkpoint; once the checkpoint has made it durable ([`Node::durable`]) it
//! is sent on the current link (if any). Resends and re-registration read the same outbox,
//! so an update is delivered at least once and in order per task, across agent restarts too
//! ([`Node::recover`]).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use corral_proto::{ProtoEnum, v1};
use corral_types::{AgentId, FrameworkId, Reason, TaskId, TaskState};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use super::AgentConfig;
use super::checkpoint::{Checkpoint, Op, Recovered, TaskRecord};
use super::outbox::Outbox;
use super::prepare::{Sources, prepare};
use super::status::{StatusParts, TaskKey, status_of, update};
use crate::executor::{Executor, KillSwitch, Phase};
use crate::output::{RunOutput, Stream};
use crate::sandbox::SandboxPaths;
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
    pub(crate) max_completed_tasks: usize,
    pub(crate) registered: watch::Sender<Option<AgentId>>,
    pub(crate) checkpoint: Checkpoint,
    /// Notified whenever a task ends (graceful shutdown waits on it).
    ended: tokio::sync::Notify,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    agent_id: Option<AgentId>,
    /// The highest epoch seen, durable in the checkpoint.
    highest_epoch: u64,
    /// The current session's outbound stream and channel (for module fetches).
    link: Option<(mpsc::UnboundedSender<v1::AgentMessage>, Channel)>,
    tasks: HashMap<TaskKey, TaskEntry>,
    /// Finished, fully acknowledged runs, oldest first: what [`Node::retire`] removes.
    completed: VecDeque<(TaskKey, PathBuf)>,
    /// The updates not acknowledged yet.
    outbox: Outbox,
}

impl State {
    /// Whether `key` names a finished run with nothing left to deliver.
    fn completed(&self, key: &TaskKey) -> bool {
        self.tasks.get(key).is_some_and(|entry| entry.terminal) && !self.outbox.has_pending(key)
    }
}

#[derive(Debug)]
struct TaskEntry {
    /// As launched, input contents elided (re-registration only needs the description).
    info: v1::TaskInfo,
    latest: Option<v1::TaskStatus>,
    /// The run's sandbox and logs, once launched.
    output: Option<Arc<RunOutput>>,
    kill: Option<KillSwitch>,
    kill_requested: bool,
    terminal: bool,
}

impl TaskEntry {
    /// What the checkpoint keeps of this task: with a finished run's in-memory logs.
    fn record(&self, key: &TaskKey) -> TaskRecord {
        let output = self.output.as_ref();
        let inline = |stream| {
            output
                .filter(|_| self.terminal)
                .and_then(|output| output.inline(stream))
        };
        TaskRecord {
            framework_id: key.framework_id.to_string(),
            task_id: key.task_id.to_string(),
            sandbox: output
                .map(|output| output.sandbox().base().display().to_string())
                .unwrap_or_default(),
            state: self.latest.as_ref().map_or(0, |s| s.state),
            stdout: inline(Stream::Stdout),
            stderr: inline(Stream::Stderr),
        }
    }

    fn sandbox_base(&self) -> Option<&Path> {
        self.output.as_ref().map(|output| output.sandbox().base())
    }
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
        checkpoint: Checkpoint,
        agent_info: v1::AgentInfo,
        config: &AgentConfig,
    ) -> Self {
        Self {
            executor,
            sources,
            work_dir: config.work_dir.clone(),
            agent_info,
            masters: config.masters.clone(),
            heartbeat_interval: config.heartbeat_interval,
            status_retry_interval: config.status_retry_interval,
            max_completed_tasks: config.max_completed_tasks,
            registered: watch::Sender::new(None),
            checkpoint,
            ended: tokio::sync::Notify::new(),
            state: Mutex::new(State {
                agent_id: None,
                highest_epoch: 0,
                link: None,
                tasks: HashMap::new(),
                completed: VecDeque::new(),
                outbox: Outbox::new(),
            }),
        }
    }

    /// Takes over what the checkpoint held: the agent's id, the highest epoch, the tasks and
    /// their unacknowledged updates. Tasks that were running did not survive the agent's
    /// process (in-process Wasm cannot): each is reported FAILED with reason AGENT_RESTARTED,
    /// after its earlier unacknowledged updates.
    pub(crate) fn recover(&self, recovered: Recovered) {
        let interrupted: Vec<TaskKey> = {
            let mut state = self.state();
            let last_seq = recovered.updates.last().map_or(0, |(seq, _)| *seq);
            state.agent_id = recovered.agent_id.and_then(|id| {
                AgentId::new(&id)
                    .inspect_err(
                        |error| tracing::warn!(%error, "ignoring the checkpoint's agent id"),
                    )
                    .ok()
            });
            state.highest_epoch = recovered.highest_epoch;
            for record in recovered.tasks {
                let terminal =
                    TaskState::from_proto("state", record.state).is_ok_and(TaskState::is_terminal);
                let output = (!record.sandbox.is_empty()).then(|| {
                    let sandbox = SandboxPaths::from_base(PathBuf::from(&record.sandbox));
                    RunOutput::finished(sandbox, record.stdout, record.stderr)
                });
                let key = match TaskKey::parse(&record.framework_id, &record.task_id) {
                    Ok(key) => key,
                    Err(error) => {
                        tracing::warn!(%error, "ignoring a checkpointed task with invalid ids");
                        continue;
                    }
                };
                state
                    .tasks
                    .insert(key.clone(), recovered_entry(&key, output, terminal));
            }
            let mut updates = Vec::with_capacity(recovered.updates.len());
            for (seq, status) in recovered.updates {
                let key = match TaskKey::parse(&status.framework_id, &status.task_id) {
                    Ok(key) => key,
                    Err(error) => {
                        tracing::warn!(seq, %error, "ignoring a checkpointed update with invalid ids");
                        continue;
                    }
                };
                let terminal =
                    TaskState::from_proto("state", status.state).is_ok_and(TaskState::is_terminal);
                let entry = state
                    .tasks
                    .entry(key.clone())
                    .or_insert_with(|| recovered_entry(&key, None, terminal));
                entry.terminal |= terminal;
                entry.latest = Some(status.clone());
                updates.push((seq, key, status));
            }
            state.outbox = Outbox::recovered(last_seq, updates);
            let mut completed: Vec<(TaskKey, PathBuf)> = state
                .tasks
                .iter()
                .filter(|(key, _)| state.completed(key))
                .filter_map(|(key, entry)| Some((key.clone(), entry.sandbox_base()?.to_owned())))
                .collect();
            completed.sort();
            state.completed.extend(completed);
            let mut interrupted: Vec<TaskKey> = state
                .tasks
                .iter()
                .filter(|(_, entry)| !entry.terminal)
                .map(|(key, _)| key.clone())
                .collect();
            interrupted.sort();
            interrupted
        };
        if !interrupted.is_empty() {
            tracing::warn!(
                tasks = interrupted.len(),
                "tasks did not survive the agent restart; reporting them failed"
            );
        }
        for key in interrupted {
            self.emit(
                &key,
                StatusParts::new(
                    TaskState::Failed,
                    Reason::AgentRestarted,
                    "in-process tasks do not survive an agent restart",
                ),
                None,
            );
        }
    }

    /// Removes the files of runs no task entry refers to. Called once after
    /// [`Node::recover`] and finished before anything can be launched, which would make runs
    /// the sweep does not know of.
    pub(crate) async fn remove_unknown_runs(&self) {
        let known: Vec<SandboxPaths> = self
            .state()
            .tasks
            .values()
            .filter_map(|entry| Some(entry.output.as_ref()?.sandbox().clone()))
            .collect();
        let sandboxes = self.work_dir.join("sandboxes");
        // Awaited: a launch must not create a run the sweep has not been told of.
        let swept = tokio::task::spawn_blocking(move || {
            crate::sandbox::remove_unknown_runs(&sandboxes, &known)
        })
        .await;
        match swept {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                "removed the files of runs this agent no longer knows"
            ),
            Err(error) => tracing::error!(%error, "the sweep of unknown runs failed"),
        }
    }

    /// The checkpoint made these updates durable: send them, in order.
    pub(crate) fn durable(&self, updates: Vec<(u64, v1::TaskStatus)>) {
        let mut state = self.state();
        let send = state.outbox.durable(updates);
        if let Some((tx, _)) = &state.link {
            for status in send {
                let _ = tx.send(status_message(status));
            }
        }
    }

    /// Whether a master message of `epoch` may be acted on. A newer epoch is made durable
    /// first, so that no command of an older leader is obeyed after a restart either.
    pub(crate) async fn fence(&self, epoch: u64) -> bool {
        let highest = self.state().highest_epoch;
        if epoch < highest {
            tracing::warn!(epoch, highest, "ignoring a message from a stale master");
            return false;
        }
        if epoch > highest {
            self.checkpoint.write(Op::Epoch(epoch));
            if !self.checkpoint.sync().await {
                return false;
            }
            let mut state = self.state();
            state.highest_epoch = state.highest_epoch.max(epoch);
        }
        true
    }

    /// Waits until every task has ended and its last update is durable, at most `limit`.
    pub(crate) async fn wait_all_ended(&self, limit: Duration) {
        let all_ended = async {
            loop {
                let ended = self.ended.notified();
                if self.state().tasks.values().all(|e| e.terminal) {
                    break;
                }
                ended.await;
            }
            self.checkpoint.sync().await;
        };
        if tokio::time::timeout(limit, all_ended).await.is_err() {
            tracing::warn!("tasks still running at shutdown; a restart reports them failed");
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
        let agent_id = state.agent_id.clone();
        let kind = match &agent_id {
            None => Kind::Register(Register {
                agent_info: Some(self.agent_info.clone()),
                cached_modules,
            }),
            Some(agent_id) => {
                let tasks = state
                    .tasks
                    .iter()
                    .filter(|(_, entry)| !entry.terminal)
                    .map(|(key, entry)| v1::RunningTask {
                        framework_id: key.framework_id.to_string(),
                        task: Some(entry.info.clone()),
                        status: entry.latest.clone(),
                    })
                    .collect();
                Kind::Reregister(ReRegister {
                    agent_id: agent_id.to_string(),
                    agent_info: Some(self.agent_info.clone()),
                    tasks,
                    // The rest follows on this link as soon as it is durable.
                    unacknowledged_updates: state.outbox.reregister(),
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

    /// Digests of the modules compiled for this engine, as the master's offers list them.
    fn cached_modules(&self) -> Vec<String> {
        self.executor
            .cached_modules()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Sends every durable unacknowledged update again, in order per task.
    pub(crate) fn resend(&self, tx: &mpsc::UnboundedSender<v1::AgentMessage>) {
        let mut state = self.state();
        for status in state.outbox.resend(usize::MAX) {
            let _ = tx.send(status_message(status));
        }
    }

    /// Applies one master message that passed [`Node::fence`].
    pub(crate) fn handle(self: &Arc<Self>, message: v1::MasterMessage) -> Next {
        use v1::master_message::Kind;
        match message.kind {
            None => Next::Continue,
            Some(Kind::Registered(registered)) => {
                let Ok(id) = AgentId::new(&registered.agent_id) else {
                    tracing::warn!(agent_id = %registered.agent_id, "master assigned an invalid agent id");
                    return Next::Continue;
                };
                tracing::info!(agent_id = %id, master_id = %registered.master_id, "registered");
                {
                    let mut state = self.state();
                    if state.agent_id.as_ref() != Some(&id) {
                        // Queued ahead of every update this agent sends under the id.
                        self.checkpoint.write(Op::AgentId(id.clone()));
                        state.agent_id = Some(id.clone());
                    }
                }
                self.registered.send_replace(Some(id));
                let interval = match registered.heartbeat_interval_millis {
                    0 => self.heartbeat_interval,
                    ms => Duration::from_millis(ms),
                };
                Next::Registered(interval)
            }
            Some(Kind::LaunchTasks(launch)) => {
                for task in launch.tasks {
                    match TaskKey::parse(&launch.framework_id, &task.task_id) {
                        Ok(key) => self.launch(key, task),
                        Err(error) => tracing::warn!(%error, "dropping a launch with invalid ids"),
                    }
                }
                Next::Continue
            }
            Some(Kind::KillTask(kill)) => {
                match TaskKey::parse(&kill.framework_id, &kill.task_id) {
                    Ok(key) => self.kill(key),
                    Err(error) => tracing::warn!(%error, "ignoring a kill with invalid ids"),
                }
                Next::Continue
            }
            Some(Kind::Acknowledge(ack)) => {
                match TaskKey::parse(&ack.framework_id, &ack.task_id) {
                    Ok(key) => self.acknowledge(&key, &ack.uuid),
                    Err(error) => {
                        tracing::warn!(%error, "ignoring an acknowledgement with invalid ids")
                    }
                }
                Next::Continue
            }
            Some(Kind::Shutdown(shutdown)) => {
                tracing::warn!(reason = %shutdown.reason, "master asked the agent to shut down");
                self.kill_all();
                Next::Stop
            }
        }
    }

    /// Records a status update of a known task and checkpoints it; it is sent once durable.
    fn emit(&self, key: &TaskKey, parts: StatusParts, usage: Option<v1::Usage>) {
        let mut guard = self.state();
        let state = &mut *guard;
        let terminal = parts.state.is_terminal();
        let status = update(key, state.agent_id.as_ref(), parts, usage, true);
        let Some(entry) = state.tasks.get_mut(key) else {
            return;
        };
        entry.latest = Some(status.clone());
        if terminal {
            entry.terminal = true;
            entry.kill = None;
        }
        // Queued under the lock, so the checkpoint sees updates in sequence order.
        self.checkpoint.write(Op::Task(entry.record(key)));
        let queued = state.outbox.push(key, status);
        self.checkpoint.write(Op::Update(queued.seq, queued.status));
        drop(guard);
        if terminal {
            self.ended.notify_waiters();
        }
    }

    /// Tells the master a module is now compiled here (offers list it).
    fn module_cached(&self, digest: corral_types::Digest) {
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
        if let Some((tx, _)) = &state.link {
            let status = update(key, state.agent_id.as_ref(), parts, None, false);
            let _ = tx.send(status_message(status));
        }
    }

    fn launch(self: &Arc<Self>, key: TaskKey, mut info: v1::TaskInfo) {
        let mut described = info.clone();
        for input in &mut described.inputs {
            input.source = None;
        }
        {
            let mut state = self.state();
            if state.tasks.get(&key).is_some_and(|e| !e.terminal) {
                tracing::warn!(framework_id = %key.framework_id, task_id = %key.task_id, "ignoring a launch of a task already running");
                return;
            }
            let earlier = state.tasks.remove(&key);
            if let Some(output) = earlier.as_ref().and_then(|e| e.output.clone()) {
                // The earlier run's files go; its updates (below) stay.
                remove_files(&output);
            }
            state.tasks.insert(
                key.clone(),
                TaskEntry {
                    info: described,
                    latest: None,
                    output: None,
                    kill: None,
                    kill_requested: false,
                    terminal: false,
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
            let spec = prepare(
                &node.executor,
                &node.sources,
                master,
                &key.framework_id,
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
                entry.output = handle.output().cloned();
                // So the files of a run interrupted by a restart can still be read.
                node.checkpoint.write(Op::Task(entry.record(&key)));
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
                _ => Some(v1::Usage::from(result.usage)),
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

    /// Forgets exactly the acknowledged update (the checkpoint too, without waiting: an
    /// acknowledgement lost in a crash only means one more delivery).
    fn acknowledge(&self, key: &TaskKey, uuid: &[u8]) {
        let mut state = self.state();
        let Some(seq) = state.outbox.acknowledge(key, uuid) else {
            return;
        };
        self.checkpoint.write(Op::Acked(seq));
        if !state.completed(key) {
            return;
        }
        let base = state
            .tasks
            .get(key)
            .and_then(|entry| entry.sandbox_base().map(Path::to_owned));
        if let Some(base) = base {
            state.completed.push_back((key.clone(), base));
            self.retire(&mut state);
        } else {
            // Never launched (it failed before a sandbox existed): nothing to keep.
            state.tasks.remove(key);
            self.forget(key);
        }
    }

    /// Removes the oldest completed runs beyond `max_completed_tasks`: the task's entry, its
    /// checkpoint record, and its files (in the background).
    fn retire(&self, state: &mut State) {
        while state.completed.len() > self.max_completed_tasks {
            let Some((key, base)) = state.completed.pop_front() else {
                break;
            };
            // A relaunch since may have replaced the run this slot was for.
            let still_that_run = state.completed(&key)
                && state
                    .tasks
                    .get(&key)
                    .is_some_and(|e| e.sandbox_base() == Some(base.as_path()));
            if still_that_run && let Some(entry) = state.tasks.remove(&key) {
                self.forget(&key);
                if let Some(output) = entry.output {
                    remove_files(&output);
                }
            }
        }
    }

    fn forget(&self, key: &TaskKey) {
        self.checkpoint.write(Op::Forget(key.clone()));
    }

    /// The files of a task and whether the task has ended; the task is found by its id alone
    /// when `framework_id` is `None` and the id is unambiguous.
    pub(crate) fn sandbox_of(
        &self,
        framework_id: Option<&FrameworkId>,
        task_id: &TaskId,
    ) -> Result<(Arc<RunOutput>, bool), corral_proto::ServiceError> {
        let not_found = || corral_proto::ServiceError::NotFound {
            kind: "task",
            id: task_id.to_string(),
        };
        let state = self.state();
        let mut matches = state.tasks.iter().filter(|(k, _)| {
            k.task_id == *task_id && framework_id.is_none_or(|f| *f == k.framework_id)
        });
        let (_, entry) = matches.next().ok_or_else(not_found)?;
        if matches.next().is_some() {
            return Err(corral_proto::ServiceError::InvalidArgument(format!(
                "task id {task_id} is used by several frameworks; name the framework"
            )));
        }
        let output = entry.output.clone().ok_or_else(|| {
            corral_proto::ServiceError::FailedPrecondition(format!(
                "task {task_id} has no sandbox yet"
            ))
        })?;
        Ok((output, entry.terminal))
    }
}

/// A task known only from the checkpoint.
fn recovered_entry(key: &TaskKey, output: Option<Arc<RunOutput>>, terminal: bool) -> TaskEntry {
    TaskEntry {
        info: v1::TaskInfo {
            task_id: key.task_id.to_string(),
            ..v1::TaskInfo::default()
        },
        latest: None,
        output,
        kill: None,
        kill_requested: false,
        terminal,
    }
}

/// Deletes a run's files on a blocking thread; a failure is logged, not fatal. Most runs
/// left nothing on disk (no root, logs in memory) and cost nothing here.
fn remove_files(output: &RunOutput) {
    if !output.has_files() {
        return;
    }
    let sandbox = output.sandbox().clone();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = sandbox.remove() {
            tracing::warn!(sandbox = %sandbox.base().display(), %error, "cannot remove a finished run's files");
        }
    });
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
