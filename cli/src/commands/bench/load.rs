//! The bench framework: submits tasks, launches them on the offers it holds, and times
//! their updates.
//!
//! Offers are held, not declined, so a submitted task launches at once when an offer has
//! room; the leftover of an accepted offer comes back as a new offer after the master's
//! batching window. Leftovers are refused for zero seconds so that nothing is filtered.
//!
//! A run rides through a failover of the leading master: the framework re-subscribes to the
//! new leader within its failover timeout (the SDK follows the leader), drops the offers the
//! old leader made, and reconciles tasks that have been in flight for [`STALE`]. A task the
//! new leader does not know (its launch was lost with the old one) is answered UNKNOWN once
//! every agent has re-registered, and counts as failed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use corral_proto::tls::Dialer;
use corral_proto::v1;
use corral_scheduler::{
    AgentId, Digest, Driver, FrameworkConfig, FrameworkId, ModuleSource, Offer, OfferId, Reason,
    Resources, Scheduler, TaskId, TaskInfo, TaskLimits, TaskState, TaskStatus,
};
use tokio::sync::Notify;

/// How often the open-loop generator wakes to submit what is due.
const TICK: Duration = Duration::from_micros(500);
/// How long the master keeps the bench's framework (and its tasks) while it is disconnected:
/// long enough to re-subscribe after a leader failover.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// A task launched this long ago without a terminal update is reconciled (again, every
/// `STALE`); tasks take milliseconds unless something failed over.
const STALE: Duration = Duration::from_secs(2);

/// What every task is.
#[derive(Debug, Clone)]
pub(super) struct TaskShape {
    pub(super) digest: Digest,
    pub(super) cpus_milli: u64,
    pub(super) mem_bytes: u64,
    pub(super) disk_bytes: u64,
    pub(super) args: Vec<String>,
}

impl TaskShape {
    fn resources(&self) -> Resources {
        corral_scheduler::matching::ResourceRequest {
            cpus_milli: self.cpus_milli,
            mem_bytes: self.mem_bytes,
            disk_bytes: self.disk_bytes,
            ..Default::default()
        }
        .to_resources()
    }

    fn task(&self, id: TaskId) -> TaskInfo {
        TaskInfo {
            name: "bench".into(),
            id,
            module: ModuleSource::Digest(self.digest),
            entrypoint: corral_proto::DEFAULT_ENTRYPOINT.into(),
            args: self.args.clone(),
            env: Vec::new(),
            inputs: Vec::new(),
            resources: self.resources(),
            limits: TaskLimits::default(),
            labels: Default::default(),
            argv0: None,
            preopens: Vec::new(),
            stdin: Default::default(),
            checkpoint: Default::default(),
            owner: None,
        }
    }
}

/// How tasks are submitted.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pace {
    /// Keep this many tasks in flight.
    Concurrency(usize),
    /// Submit this many tasks per second.
    Rate(f64),
}

/// What a run measured.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) tasks: usize,
    pub(super) failed: usize,
    pub(super) first_failure: Option<String>,
    /// From the first submission to the last terminal update.
    pub(super) elapsed: Duration,
    pub(super) to_running: Vec<Duration>,
    pub(super) to_finished: Vec<Duration>,
}

#[derive(Debug)]
struct State {
    shape: TaskShape,
    per_task: Resources,
    total: usize,
    submitted: usize,
    ended: usize,
    queue: VecDeque<(TaskId, Instant)>,
    /// Launched tasks that have not ended: when each was submitted, and when it was launched
    /// or last reconciled.
    in_flight: HashMap<TaskId, (Instant, Instant)>,
    offers: Vec<Offer>,
    outcome: Outcome,
    prefix: String,
}

impl State {
    fn submit(&mut self, n: usize, now: Instant) {
        for _ in 0..n.min(self.total - self.submitted) {
            // `run` checked that IDs with this prefix are valid.
            if let Ok(id) = task_id(&self.prefix, self.submitted) {
                self.queue.push_back((id, now));
            }
            self.submitted += 1;
        }
    }

    /// Takes queued tasks that fit one held offer; `None` when nothing can launch.
    fn next_launch(&mut self) -> Option<(OfferId, Vec<TaskInfo>)> {
        if self.queue.is_empty() {
            return None;
        }
        let index = self
            .offers
            .iter()
            .position(|o| o.resources.contains(&self.per_task))?;
        let offer = self.offers.swap_remove(index);
        let mut left = offer.resources.clone();
        let mut tasks = Vec::new();
        while left.contains(&self.per_task)
            && let Some((id, at)) = self.queue.pop_front()
        {
            left = left.checked_sub(&self.per_task).unwrap_or_default();
            self.in_flight.insert(id.clone(), (at, Instant::now()));
            tasks.push(self.shape.task(id));
        }
        Some((offer.id, tasks))
    }

    fn record(&mut self, status: &TaskStatus, now: Instant) {
        let Some(&(at, _)) = self.in_flight.get(&status.task_id) else {
            return;
        };
        // UNKNOWN: the master has heard from every agent and none has the task.
        let ended = status.state.is_terminal() || status.state == TaskState::Unknown;
        if status.reason == Reason::Reconciliation && !ended {
            // Still on its way; its own updates will come.
            return;
        }
        match status.state {
            TaskState::Running => self.outcome.to_running.push(now - at),
            TaskState::Finished => {
                self.outcome.to_finished.push(now - at);
            }
            _ if ended => {
                self.outcome.failed += 1;
                self.outcome.first_failure.get_or_insert_with(|| {
                    format!(
                        "task {} {} ({}): {}",
                        status.task_id, status.state, status.reason, status.message
                    )
                });
            }
            _ => {}
        }
        if ended {
            self.in_flight.remove(&status.task_id);
            self.ended += 1;
        }
    }

    /// Tasks launched at least [`STALE`] ago that have not ended, marked as asked about now.
    fn stale(&mut self, now: Instant) -> Vec<(TaskId, Option<AgentId>)> {
        self.in_flight
            .iter_mut()
            .filter(|(_, (_, asked))| now.duration_since(*asked) >= STALE)
            .map(|(id, (_, asked))| {
                *asked = now;
                (id.clone(), None)
            })
            .collect()
    }
}

/// The ID of the `n`th task of a run.
fn task_id(prefix: &str, n: usize) -> Result<TaskId, corral_types::IdError> {
    TaskId::new(format!("{prefix}-{n}"))
}

struct Bench {
    state: Arc<Mutex<State>>,
    pace: Pace,
    done: Arc<Notify>,
}

impl Bench {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Launches whatever queued tasks fit the held offers. The ACCEPT calls run on their own
/// tasks so that the framework's event loop never waits for a round trip.
fn dispatch(state: &Mutex<State>, driver: &Driver) {
    loop {
        let next = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_launch();
        let Some((offer, tasks)) = next else { return };
        let launch = v1::Operation {
            id: String::new(),
            kind: Some(v1::operation::Kind::Launch(v1::operation::Launch {
                tasks: tasks.iter().map(v1::TaskInfo::from).collect(),
            })),
        };
        let driver = driver.clone();
        tokio::spawn(async move {
            if let Err(e) = driver
                .accept(&[offer], vec![launch], Some(Duration::ZERO))
                .await
            {
                tracing::warn!(error = %e, "launch failed");
            }
        });
    }
}

#[async_trait::async_trait]
impl Scheduler for Bench {
    async fn subscribed(&mut self, _driver: &Driver, _framework_id: &FrameworkId) {
        // After a failover the offers held are the old leader's; the new one sends its own.
        self.lock().offers.clear();
    }

    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
        self.lock().offers.extend(offers);
        dispatch(&self.state, driver);
    }

    async fn rescinded(&mut self, _driver: &Driver, offer_id: &OfferId) {
        self.lock().offers.retain(|o| &o.id != offer_id);
    }

    async fn status_update(&mut self, driver: &Driver, status: TaskStatus) {
        let finished = {
            let mut state = self.lock();
            state.record(&status, Instant::now());
            if status.state.is_terminal() && matches!(self.pace, Pace::Concurrency(_)) {
                state.submit(1, Instant::now());
            }
            state.ended == state.total
        };
        if finished {
            self.done.notify_one();
        } else if status.state.is_terminal() {
            dispatch(&self.state, driver);
        }
    }

    async fn error(&mut self, _driver: &Driver, message: String) {
        let mut state = self.lock();
        // The teardown at the end is reported as an error too; only earlier ones count.
        if state.ended < state.total {
            state.outcome.first_failure.get_or_insert(message);
        }
        drop(state);
        self.done.notify_one();
    }
}

/// Runs `total` tasks of `shape` at `pace` through a new framework; gives up after
/// `timeout`.
pub(super) async fn run(
    dialer: &Dialer,
    masters: &[String],
    shape: &TaskShape,
    pace: Pace,
    total: usize,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let prefix = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    );
    task_id(&prefix, total)
        .map_err(|e| anyhow::anyhow!("invalid task ID prefix {prefix:?}: {e}"))?;
    let state = Arc::new(Mutex::new(State {
        shape: shape.clone(),
        per_task: shape.resources(),
        total,
        submitted: 0,
        ended: 0,
        queue: VecDeque::new(),
        in_flight: HashMap::new(),
        offers: Vec::new(),
        outcome: Outcome {
            tasks: total,
            ..Outcome::default()
        },
        prefix,
    }));
    let done = Arc::new(Notify::new());
    let mut config = FrameworkConfig::new("corral-bench", masters.iter().cloned());
    config.failover_timeout = FAILOVER_TIMEOUT;
    config.token = dialer.token().clone();
    config.tls = dialer.tls().cloned();
    let bench = Bench {
        state: state.clone(),
        pace,
        done: done.clone(),
    };
    let (driver, framework) = corral_scheduler::spawn(config, bench);

    let start = Instant::now();
    let generator = {
        let state = state.clone();
        let driver = driver.clone();
        tokio::spawn(async move { generate(&state, &driver, pace, start).await })
    };
    let reconciler = {
        let state = state.clone();
        let driver = driver.clone();
        tokio::spawn(async move { reconcile_stale(&state, &driver).await })
    };
    let finished = tokio::time::timeout(timeout, done.notified()).await.is_ok();
    let elapsed = start.elapsed();
    generator.abort();
    reconciler.abort();
    let _ = driver.teardown().await;
    driver.stop();
    let _ = framework.await;

    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut outcome = std::mem::take(&mut state.outcome);
    outcome.elapsed = elapsed;
    // Also when the run stopped early (the master removed the framework, say): tasks that
    // did not end failed.
    let missing = state.total - state.ended;
    if missing > 0 {
        outcome.failed += missing;
        outcome.first_failure.get_or_insert_with(|| {
            if finished {
                format!("{missing} task(s) had not ended when the run stopped")
            } else {
                format!("{missing} task(s) had not ended after {timeout:?}")
            }
        });
    }
    Ok(outcome)
}

/// Asks the master about tasks in flight for too long, every [`STALE`].
async fn reconcile_stale(state: &Mutex<State>, driver: &Driver) {
    let mut tick = tokio::time::interval(STALE);
    loop {
        tick.tick().await;
        let stale = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stale(Instant::now());
        if !stale.is_empty()
            && let Err(error) = driver.reconcile(&stale).await
        {
            tracing::warn!(%error, tasks = stale.len(), "reconciliation failed; retrying");
        }
    }
}

/// Submits tasks: all of the first window at once (concurrency), or at a steady rate.
async fn generate(state: &Mutex<State>, driver: &Driver, pace: Pace, start: Instant) {
    match pace {
        Pace::Concurrency(n) => {
            state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .submit(n, Instant::now());
            dispatch(state, driver);
        }
        Pace::Rate(rate) => {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let due = (now.duration_since(start).as_secs_f64() * rate) as usize;
                let all = {
                    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
                    let n = due.saturating_sub(s.submitted);
                    s.submit(n, now);
                    s.submitted == s.total
                };
                dispatch(state, driver);
                if all {
                    return;
                }
            }
        }
    }
}
