//! One run of a task, from the master's launch to its terminal status update.
//!
//! A run's state, as the task table holds it (kills read and change it; the runner moves it
//! on):
//!
//! ```text
//!   LaunchTasks ─► STARTING
//!        │
//!        ▼
//!   Preparing { kill_requested } ──validate / fetch module / inputs failed──► FAILED, ERROR ─┐
//!        │ prepared                                                                         │
//!        ├──── kill_requested ─────────────────────────────────────────────► KILLED ───────┤
//!        ▼ handed to the executor                                                           │
//!   Running { kill } ──guest started──► RUNNING                                             │
//!        │ the executor's result                                                            │
//!        └──────────────────────────────────────────────► FINISHED, FAILED, KILLED ─────────┤
//!                                                                                           ▼
//!                                                                                         Ended
//! ```
//!
//! A kill while preparing is remembered and takes effect before the run would start; a kill
//! while running goes to the executor, which ends the guest at its next yield point; a kill
//! of an ended run does nothing. [`Runner::run`] drives a run with one small hook per
//! concern: validate the description, fetch the module, unpack the inputs, launch, report.

use std::sync::Arc;

use bytes::Bytes;
use corral_proto::v1;
use corral_types::{Digest, Progress, Reason, TaskState};

use std::path::Path;
use std::time::Duration;

use super::outputs;
use super::prepare::{self, PrepareError};
use super::status::{StatusParts, TaskKey, status_of};
use super::tasks::Node;
use crate::executor::{KillSwitch, Phase, TaskHandle};
use crate::sdk;
use crate::task::{TaskOutcome, TaskResult, TaskSpec};

/// How often a running SDK task's progress is read: an update a framework sees at most
/// twice a second, however often the task reports.
const PROGRESS_POLL: Duration = Duration::from_millis(500);

/// Where a run is in its life.
#[derive(Debug)]
pub(crate) enum RunState {
    /// Validating its description, fetching its module, unpacking its inputs.
    Preparing {
        /// A kill came: the run ends KILLED instead of starting.
        kill_requested: bool,
    },
    /// Handed to the executor; the switch stops it.
    Running { kill: KillSwitch },
    /// Its terminal update is emitted.
    Ended,
}

impl RunState {
    /// A new run.
    pub(crate) fn preparing() -> Self {
        Self::Preparing {
            kill_requested: false,
        }
    }

    /// Stops the run: remembered while it prepares, passed to the executor while it runs.
    pub(crate) fn kill(&mut self) {
        match self {
            Self::Preparing { kill_requested } => *kill_requested = true,
            Self::Running { kill } => kill.kill(),
            Self::Ended => {}
        }
    }

    /// Whether the run may be handed to the executor: it is prepared and no kill came.
    pub(crate) fn may_start(&self) -> bool {
        matches!(
            self,
            Self::Preparing {
                kill_requested: false
            }
        )
    }

    /// The executor took the run.
    pub(crate) fn started(&mut self, kill: KillSwitch) {
        *self = Self::Running { kill };
    }

    /// The run's terminal update was emitted.
    pub(crate) fn end(&mut self) {
        *self = Self::Ended;
    }

    pub(crate) fn is_ended(&self) -> bool {
        matches!(self, Self::Ended)
    }
}

/// Drives one run of a task; spawned on the control runtime for each launch (the guest itself
/// runs on the executor's runtime).
#[derive(Debug)]
pub(crate) struct Runner {
    node: Arc<Node>,
    key: TaskKey,
    info: v1::TaskInfo,
}

impl Runner {
    /// The run of `info`, whose entry (in [`RunState::Preparing`]) is in the node's table
    /// and whose STARTING update is emitted.
    pub(crate) fn new(node: Arc<Node>, key: TaskKey, info: v1::TaskInfo) -> Self {
        Self { node, key, info }
    }

    /// Prepares, launches and reports the run until its terminal update.
    pub(crate) async fn run(self) {
        let spec = match self.prepare().await {
            Ok(spec) => spec,
            Err(error) => {
                tracing::info!(task_id = %self.key.task_id, %error, "launch failed");
                return self.report(error.parts(), None);
            }
        };
        let Some(handle) = self.launch(spec) else {
            return self.report(status_of(&TaskOutcome::Killed), None);
        };
        self.watch(handle).await;
    }

    /// The hooks before the executor, in order; the first failure ends the run.
    async fn prepare(&self) -> Result<TaskSpec, PrepareError> {
        let task = prepare::validate(&self.info)?;
        let digest = self.fetch_module(&task.module).await?;
        let inputs = prepare::inputs(&self.node.sources, self.node.master_channel(), &task).await?;
        Ok(prepare::spec(
            self.key.framework_id.clone(),
            task,
            digest,
            inputs,
        ))
    }

    /// Hook: the module is in the executor's cache; the master hears of a module this added,
    /// so its offers list it.
    async fn fetch_module(
        &self,
        source: &corral_proto::ModuleSource,
    ) -> Result<Digest, PrepareError> {
        let (digest, added) = prepare::fetch_module(
            &self.node.executor,
            &self.node.sources,
            self.node.master_channel(),
            source,
        )
        .await?;
        if added {
            self.node.module_cached(digest);
        }
        Ok(digest)
    }

    /// Hook: hands the run to the executor, unless it was killed while preparing.
    fn launch(&self, spec: TaskSpec) -> Option<TaskHandle> {
        let handle = self.node.start_run(&self.key, spec)?;
        // One line per run, so an operator (or a test) can tell how often a task ran here.
        tracing::debug!(
            framework_id = %self.key.framework_id,
            task_id = %self.key.task_id,
            "run started"
        );
        Some(handle)
    }

    /// Hook: reports RUNNING once the guest runs (again whenever a task built with the SDK
    /// reports progress), then how it ended, with the outputs it left kept.
    async fn watch(&self, handle: TaskHandle) {
        let reached = handle.started().await;
        let running_sent = reached == Phase::Running;
        if running_sent {
            self.report(running(), None);
        }
        let control = handle.control_dir();
        let output = handle.output().cloned();
        let mut reported = Reported::default();
        let result = match (&control, running_sent) {
            (Some(control), true) => self.follow(control, handle, &mut reported).await,
            _ => handle.wait().await,
        };
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
            self.report(running(), None);
        }
        let usage = match result.outcome {
            TaskOutcome::FailedToStart(_) => None,
            _ => Some(v1::Usage::from(result.usage)),
        };
        let mut parts = status_of(&result.outcome);
        if let Some(control) = &control {
            // The last word: the progress it ended at, its checkpoint if that changed since
            // it was last sent, and the result it set.
            parts.progress = sdk::read_progress(control).await;
            parts.checkpoint = reported.new_checkpoint(sdk::read_checkpoint(control).await);
            match sdk::read_result(control).await {
                Some(Ok(json)) => parts.result_json = Some(json),
                Some(Err(why)) => {
                    parts.message = format!("{}; result not handed on: {why}", parts.message)
                }
                None => {}
            }
        }
        if let Some(output) = output.filter(|o| o.has_root()) {
            let kept = outputs::keep(&self.node, &output.sandbox().root()).await;
            parts.outputs = kept.outputs;
            parts.outputs_not_kept = kept.not_kept;
            if let Some(summary) = kept.summary {
                parts.message = format!("{}; {summary}", parts.message);
            }
        }
        self.report(parts, usage);
    }

    /// Waits for the run to end, reporting each new progress or checkpoint of the task (read
    /// from its control directory every [`PROGRESS_POLL`]) as a RUNNING update.
    async fn follow(
        &self,
        control: &Path,
        handle: TaskHandle,
        reported: &mut Reported,
    ) -> TaskResult {
        let ended = handle.wait();
        tokio::pin!(ended);
        let mut poll = tokio::time::interval(PROGRESS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut ended => return result,
                _ = poll.tick() => {
                    let progress = sdk::read_progress(control).await;
                    let checkpoint = reported.new_checkpoint(sdk::read_checkpoint(control).await);
                    let new_progress = progress.is_some() && progress != reported.progress;
                    if new_progress || checkpoint.is_some() {
                        reported.progress.clone_from(&progress);
                        self.report(StatusParts { progress, checkpoint, ..running() }, None);
                    }
                }
            }
        }
    }

    /// Hook: one status update of the run (a terminal one ends it).
    fn report(&self, parts: StatusParts, usage: Option<v1::Usage>) {
        self.node.emit(&self.key, parts, usage);
    }
}

/// What an SDK task's updates have carried so far.
#[derive(Debug, Default)]
struct Reported {
    progress: Option<Progress>,
    /// The digest of the last checkpoint sent.
    checkpoint: Option<Digest>,
}

impl Reported {
    /// `checkpoint`, if it is not the one last sent (which it then becomes).
    fn new_checkpoint(&mut self, checkpoint: Option<Bytes>) -> Option<Bytes> {
        let checkpoint = checkpoint?;
        let digest = Some(Digest::of(&checkpoint));
        (digest != self.checkpoint).then(|| {
            self.checkpoint = digest;
            checkpoint
        })
    }
}

fn running() -> StatusParts {
    StatusParts::new(TaskState::Running, Reason::Launched, "running")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_while_preparing_stops_the_run_from_starting() {
        let mut run = RunState::preparing();
        assert!(run.may_start());
        run.kill();
        assert!(matches!(
            run,
            RunState::Preparing {
                kill_requested: true
            }
        ));
        assert!(!run.may_start());
        assert!(!run.is_ended(), "it ends with its KILLED update");
    }

    #[test]
    fn a_kill_while_running_reaches_the_executor() {
        let (kill, killed) = KillSwitch::detached();
        let mut run = RunState::preparing();
        run.started(kill);
        assert!(!run.may_start());
        assert!(!killed());
        run.kill();
        assert!(killed());
    }

    #[test]
    fn an_ended_run_ignores_kills() {
        let (kill, killed) = KillSwitch::detached();
        let mut run = RunState::preparing();
        run.started(kill);
        run.end();
        run.kill();
        assert!(run.is_ended());
        assert!(!killed(), "the switch was dropped with the run");
        assert!(!run.may_start());
    }
}
