//! The bench framework: submits tasks, launches them on the offers it holds, and times
//! their updates.
//!
//! Offers are held, not declined, so a submitted task launches at once when an offer has
//! room; the leftover of an accepted offer comes back as a new offer after the master's
//! batching window. Leftovers are refused for zero seconds so that nothing is filtered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use corral_proto::v1;
use corral_scheduler::{
    Digest, Driver, FrameworkConfig, ModuleSource, Offer, OfferId, Resources, Scheduler, TaskId,
    TaskInfo, TaskLimits, TaskState, TaskStatus,
};
use tokio::sync::Notify;

/// How often the open-loop generator wakes to submit what is due.
const TICK: Duration = Duration::from_micros(500);

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
    submitted_at: HashMap<TaskId, Instant>,
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
            self.submitted_at.insert(id.clone(), at);
            tasks.push(self.shape.task(id));
        }
        Some((offer.id, tasks))
    }

    fn record(&mut self, status: &TaskStatus, now: Instant) {
        let Some(&at) = self.submitted_at.get(&status.task_id) else {
            return;
        };
        match status.state {
            TaskState::Running => self.outcome.to_running.push(now - at),
            TaskState::Finished => {
                self.outcome.to_finished.push(now - at);
            }
            _ if status.state.is_terminal() => {
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
        if status.state.is_terminal() {
            self.submitted_at.remove(&status.task_id);
            self.ended += 1;
        }
    }
}

/// The ID of the `n`th task of a run.
fn task_id(prefix: &str, n: usize) -> Result<TaskId, corral_proto::IdError> {
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
        submitted_at: HashMap::new(),
        offers: Vec::new(),
        outcome: Outcome {
            tasks: total,
            ..Outcome::default()
        },
        prefix,
    }));
    let done = Arc::new(Notify::new());
    let mut config = FrameworkConfig::new("corral-bench", masters.iter().cloned());
    config.failover_timeout = Duration::ZERO;
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
    let finished = tokio::time::timeout(timeout, done.notified()).await.is_ok();
    let elapsed = start.elapsed();
    generator.abort();
    let _ = driver.teardown().await;
    driver.stop();
    let _ = framework.await;

    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut outcome = std::mem::take(&mut state.outcome);
    outcome.elapsed = elapsed;
    if !finished {
        let missing = state.total - state.ended;
        outcome.failed += missing;
        outcome
            .first_failure
            .get_or_insert_with(|| format!("{missing} task(s) had not ended after {timeout:?}"));
    }
    Ok(outcome)
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
