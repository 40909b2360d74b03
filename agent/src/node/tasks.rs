//! The agent's task operations: launch, kill, acknowledge, report, recover. Each applies to
//! the [`TaskTable`] and the [`Outbox`] under one lock and carries out what they return:
//! checkpoint writes, sends on the current session, removal of files.
//!
//! Every status update goes through [`Node::emit`], which records it as the task's latest,
//! queues it in the outbox until the master forwards the framework's acknowledgement, and
//! hands it to the checkpoint; once the checkpoint has made it durable ([`Node::durable`]) it
//! is sent on the current session (if any). Resends and re-registration read the same outbox,
//! so an update is delivered at least once and in order per task, across agent restarts too
//! ([`Node::recover`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use corral_proto::auth::Conn;
use corral_proto::{ProtoEnum, v1};
use corral_types::{AgentId, Digest, FrameworkId, Reason, TaskId, TaskState};
use tokio::sync::watch;

use super::checkpoint::{Checkpoint, Op, Restored};
use super::outbox::Outbox;
use super::prepare::Sources;
use super::runner::Runner;
use super::session::{Outbound, deliver, status_message};
use super::status::{StatusParts, TaskKey, update};
use super::table::{LookupError, Removed, TaskTable};
use crate::executor::{Executor, TaskHandle};
use crate::output::RunOutput;
use crate::sandbox::SandboxPaths;
use crate::task::TaskSpec;

/// The agent as a cluster member: its executor, task table, outbox and current session.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) executor: Executor,
    pub(crate) sources: Sources,
    pub(crate) checkpoint: Checkpoint,
    /// The agent's id once the master named it.
    pub(crate) registered: watch::Sender<Option<AgentId>>,
    /// Whether an operator is draining the agent, as the master last said.
    pub(crate) draining: watch::Sender<bool>,
    /// Holds `sandboxes/`.
    work_dir: PathBuf,
    /// Notified whenever a task ends (graceful shutdown waits on it).
    ended: tokio::sync::Notify,
    state: Mutex<State>,
}

/// What the node's operations change, under one lock: an update is recorded, queued for the
/// checkpoint and (once durable) sent in one critical section each, which is what keeps
/// updates in order everywhere.
#[derive(Debug)]
pub(super) struct State {
    pub(super) agent_id: Option<AgentId>,
    /// The highest epoch seen, durable in the checkpoint.
    pub(super) highest_epoch: u64,
    /// The current session with the master, if any.
    pub(super) session: Option<Outbound>,
    pub(super) table: TaskTable,
    /// The updates not acknowledged yet.
    pub(super) outbox: Outbox,
}

impl Node {
    /// A node with nothing recovered yet; the files of its runs go under `work_dir`, and the
    /// files of at most `max_completed_tasks` finished tasks are kept.
    pub(crate) fn new(
        executor: Executor,
        sources: Sources,
        checkpoint: Checkpoint,
        work_dir: PathBuf,
        max_completed_tasks: usize,
    ) -> Self {
        Self {
            executor,
            sources,
            checkpoint,
            registered: watch::Sender::new(None),
            draining: watch::Sender::new(false),
            work_dir,
            ended: tokio::sync::Notify::new(),
            state: Mutex::new(State {
                agent_id: None,
                highest_epoch: 0,
                session: None,
                table: TaskTable::new(max_completed_tasks),
                outbox: Outbox::new(),
            }),
        }
    }

    /// Takes over what the checkpoint held: the agent's id, the highest epoch, the tasks and
    /// their unacknowledged updates. Tasks that were running did not survive the agent's
    /// process (in-process Wasm cannot): each is reported FAILED with reason AGENT_RESTARTED,
    /// after its earlier unacknowledged updates.
    pub(crate) fn recover(&self, restored: Restored) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.agent_id = restored.agent_id;
        state.highest_epoch = restored.highest_epoch;
        let is_terminal =
            |state: i32| TaskState::from_proto("state", state).is_ok_and(TaskState::is_terminal);
        // A run ended if its record or any of its updates says so; its latest update is the
        // last one still queued.
        let ended_by_update: HashSet<&TaskKey> = restored
            .updates
            .iter()
            .filter(|(_, _, status)| is_terminal(status.state))
            .map(|(_, key, _)| key)
            .collect();
        let latest: HashMap<&TaskKey, &v1::TaskStatus> = restored
            .updates
            .iter()
            .map(|(_, key, status)| (key, status))
            .collect();
        for (key, record) in &restored.tasks {
            let output = (!record.sandbox.is_empty()).then(|| {
                let sandbox = SandboxPaths::from_base(PathBuf::from(&record.sandbox));
                RunOutput::finished(sandbox, record.stdout.clone(), record.stderr.clone())
            });
            let ended = is_terminal(record.state) || ended_by_update.contains(key);
            state.table.restore(key.clone(), output, ended);
        }
        for (key, status) in latest {
            if state.table.get(key).is_none() {
                state
                    .table
                    .restore(key.clone(), None, ended_by_update.contains(key));
            }
            if let Some(entry) = state.table.get_mut(key) {
                entry.latest = Some(status.clone());
            }
        }
        state.outbox = Outbox::recovered(restored.last_seq, restored.updates);
        let mut settled: Vec<TaskKey> = state
            .table
            .iter()
            .filter(|(key, entry)| entry.run.is_ended() && !state.outbox.has_pending(key))
            .map(|(key, _)| key.clone())
            .collect();
        settled.sort();
        let removed = state.table.restore_completed(settled);
        self.remove(removed);
        let mut interrupted: Vec<TaskKey> = state.table.running().map(|(k, _)| k.clone()).collect();
        interrupted.sort();
        if !interrupted.is_empty() {
            tracing::warn!(
                tasks = interrupted.len(),
                "tasks did not survive the agent restart; reporting them failed"
            );
        }
        for key in interrupted {
            self.emit_in(
                state,
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
        let known = self.state().table.sandboxes();
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
        deliver(&mut state.session, send.into_iter().map(status_message));
    }

    /// Waits until every task has ended and its last update is durable, at most `limit`.
    pub(crate) async fn wait_all_ended(&self, limit: Duration) {
        let all_ended = async {
            loop {
                let ended = self.ended.notified();
                if self.state().table.all_ended() {
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

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a status update of a known task and checkpoints it; it is sent once durable.
    pub(crate) fn emit(&self, key: &TaskKey, parts: StatusParts, usage: Option<v1::Usage>) {
        let ended = self.emit_in(&mut self.state(), key, parts, usage);
        if ended {
            self.ended.notify_waiters();
        }
    }

    /// [`Node::emit`] under the lock; returns whether the update ended the run.
    fn emit_in(
        &self,
        state: &mut State,
        key: &TaskKey,
        parts: StatusParts,
        usage: Option<v1::Usage>,
    ) -> bool {
        let terminal = parts.state.is_terminal();
        let Some(entry) = state.table.get_mut(key) else {
            return false;
        };
        let parts = match entry.kill_reason {
            Some(reason) if parts.state == TaskState::Killed => killed_because(parts, reason),
            _ => parts,
        };
        let status = update(key, state.agent_id.as_ref(), parts, usage, true);
        let Some(entry) = state.table.get_mut(key) else {
            return false;
        };
        entry.latest = Some(status.clone());
        if terminal {
            entry.run.end();
        }
        // Queued under the lock, so the checkpoint sees updates in sequence order.
        self.checkpoint.write(Op::Task(entry.record(key)));
        let queued = state.outbox.push(key, status);
        self.checkpoint.write(Op::Update(queued.seq, queued.status));
        terminal
    }

    /// The current session's channel, to fetch modules from the master.
    pub(crate) fn master_channel(&self) -> Option<Conn> {
        self.state()
            .session
            .as_ref()
            .map(|session| session.channel().clone())
    }

    /// Tells the master a module is now compiled here (offers list it).
    pub(crate) fn module_cached(&self, digest: Digest) {
        let cached = v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::ModuleCached(
                v1::agent_message::ModuleCached {
                    digest: digest.to_string(),
                },
            )),
        };
        deliver(&mut self.state().session, [cached]);
    }

    /// Sends an update that expects no acknowledgement (about a task this agent lacks).
    fn emit_untracked(&self, key: &TaskKey, parts: StatusParts) {
        let mut state = self.state();
        let status = update(key, state.agent_id.as_ref(), parts, None, false);
        deliver(&mut state.session, [status_message(status)]);
    }

    /// Starts a run of `key` (unless one is going on) and its [`Runner`].
    pub(super) fn launch(self: &Arc<Self>, key: TaskKey, info: v1::TaskInfo) {
        let mut described = info.clone();
        for input in &mut described.inputs {
            input.source = None;
        }
        {
            let mut state = self.state();
            match state.table.launch(&key, described) {
                Err(_) => {
                    tracing::warn!(framework_id = %key.framework_id, task_id = %key.task_id, "ignoring a launch of a task already running");
                    return;
                }
                // The earlier run's files go; its undelivered updates stay in the outbox,
                // ahead of the new run's.
                Ok(Some(earlier)) => remove_files(&earlier),
                Ok(None) => {}
            }
            let starting = StatusParts::new(TaskState::Starting, Reason::Launched, "starting");
            self.emit_in(&mut state, &key, starting, None);
        }
        tokio::spawn(Runner::new(self.clone(), key, info).run());
    }

    /// Hands a prepared run to the executor, unless a kill came while it was preparing
    /// (`None`: the caller reports it killed).
    pub(crate) fn start_run(&self, key: &TaskKey, spec: TaskSpec) -> Option<TaskHandle> {
        let mut state = self.state();
        let entry = state.table.get_mut(key).filter(|e| e.run.may_start())?;
        let handle = self.executor.launch(spec);
        entry.run.started(handle.kill_switch());
        entry.output = handle.output().cloned();
        // So the files of a run interrupted by a restart can still be read.
        self.checkpoint.write(Op::Task(entry.record(key)));
        Some(handle)
    }

    /// Stops `key`'s run, for `reason` (what its KILLED update will say); a kill of a task
    /// this agent does not have is answered LOST.
    pub(super) fn kill(&self, key: TaskKey, reason: Reason) {
        let mut state = self.state();
        if let Some(entry) = state.table.get_mut(&key) {
            entry.kill_reason.get_or_insert(reason);
            entry.run.kill();
            return;
        }
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

    /// Kills every task that has not ended.
    pub(crate) fn kill_all(&self) {
        for (_, entry) in self.state().table.iter_mut() {
            entry.run.kill();
        }
    }

    /// Forgets exactly the acknowledged update (the checkpoint too, without waiting: an
    /// acknowledgement lost in a crash only means one more delivery). A task left with
    /// nothing to deliver whose run ended is settled in the table.
    pub(super) fn acknowledge(&self, key: &TaskKey, uuid: &[u8]) {
        let mut state = self.state();
        let Some(seq) = state.outbox.acknowledge(key, uuid) else {
            return;
        };
        self.checkpoint.write(Op::Acked(seq));
        if !state.outbox.has_pending(key) {
            let removed = state.table.settle(key);
            self.remove(removed);
        }
    }

    /// Forgets tasks the table let go: their checkpoint records, and their files (in the
    /// background).
    fn remove(&self, removed: Vec<Removed>) {
        for Removed { key, output } in removed {
            self.checkpoint.write(Op::Forget(key));
            if let Some(output) = output {
                remove_files(&output);
            }
        }
    }

    /// The files of a task and whether the task has ended; the task is found by its id alone
    /// when `framework_id` is `None` and the id is unambiguous.
    pub(crate) fn sandbox_of(
        &self,
        framework_id: Option<&FrameworkId>,
        task_id: &TaskId,
    ) -> Result<(Arc<RunOutput>, bool), corral_proto::ServiceError> {
        use corral_proto::ServiceError;
        self.state()
            .table
            .lookup(framework_id, task_id)
            .map_err(|error| match error {
                LookupError::NotFound => ServiceError::NotFound {
                    kind: "task",
                    id: task_id.to_string(),
                },
                LookupError::Ambiguous(_) => ServiceError::InvalidArgument(error.to_string()),
                LookupError::NoSandbox(_) => ServiceError::FailedPrecondition(error.to_string()),
            })
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

/// A KILLED update saying why the master had the task killed.
fn killed_because(parts: StatusParts, reason: Reason) -> StatusParts {
    let message = match reason {
        Reason::AgentDraining => "killed: its agent is draining and the deadline passed",
        Reason::FrameworkRemoved => "killed: its framework was removed",
        _ => return parts,
    };
    StatusParts {
        reason,
        message: message.into(),
        ..parts
    }
}
