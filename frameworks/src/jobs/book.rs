//! The jobs framework's state: every job, its instances, and what to do next. No I/O and no
//! clock: callers pass the time in milliseconds, so tests drive it step by step, and collect
//! the store writes a change needs ([`Book::take_writes`]).
//!
//! An instance's task ID is `<job>.<index>` for every attempt: the master hands a retry the
//! checkpoint the failed attempt left under that ID, and an update for the ID is always the
//! latest attempt's (an ID is launched again only once the earlier attempt is terminal).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use corral_proto::{EnvVar, TaskInfo, TaskStatus, v1};
use corral_types::{TaskId, TaskOutput};

mod cron;
mod offers;
mod preempt;
mod rollout;
mod service;
mod store;
mod updates;
mod view;

use self::cron::{Cron, run_spec};
use self::rollout::{Outgoing, Rollout};
use super::placement::Tally;
use super::record::{RunRecord, SHARD_SIZE, Submission, Write};
use super::template;
use super::timetable::Timetable;
use crate::spec::{BatchSpec, InputSource, JobKind, JobSpec};

/// Failed attempts kept per job for its status.
const RECENT_FAILURES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Killed,
}

impl JobState {
    pub(crate) fn has_ended(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Killed)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Killed => "killed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Waiting,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Killed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    fn to_proto(self) -> v1::JobState {
        match self {
            Self::Waiting => v1::JobState::Waiting,
            Self::Running => v1::JobState::Running,
            Self::Succeeded => v1::JobState::Succeeded,
            Self::Failed => v1::JobState::Failed,
            Self::Killed => v1::JobState::Killed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not launched yet, or waiting for a retry.
    Waiting,
    /// Launched and not ended (including unreachable).
    Launched,
    Succeeded,
    Failed,
}

impl Phase {
    fn code(self) -> char {
        match self {
            Self::Waiting => 'w',
            Self::Launched => 'l',
            Self::Succeeded => 's',
            Self::Failed => 'f',
        }
    }

    fn from_code(c: char) -> Option<Self> {
        match c {
            'w' => Some(Self::Waiting),
            'l' => Some(Self::Launched),
            's' => Some(Self::Succeeded),
            'f' => Some(Self::Failed),
            _ => None,
        }
    }

    /// Attempts an instance in this phase usually has (not recorded when it has them).
    fn usual_attempts(self) -> u32 {
        if self == Self::Waiting { 0 } else { 1 }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    phase: Phase,
    attempts: u32,
    /// Where it runs, for the job's constraints ([`Tally::values`]).
    placed: Option<Box<[Option<String>]>>,
    /// When its current attempt reported RUNNING.
    running_since_ms: Option<u64>,
    /// A service instance: attempts in a row that ended soon after starting; its backoff
    /// grows with them.
    streak: u32,
    /// Killed to make room for a production job: it goes back to waiting when it ends,
    /// without using a retry.
    preempted: bool,
    /// Attempts that ended through no fault of the task, preempted or never reaching an
    /// agent: not counted against retries.
    excused: u32,
    /// When its launch reached the master or it was last reconciled (not stored: 0 after a
    /// restore).
    asked_ms: u64,
    /// Its launch is recorded but not sent yet: not to be reconciled, as the master would
    /// answer UNKNOWN for a task it is about to receive (not stored: a restored launch may
    /// never have been sent, and reconciling is how to find out).
    unsent: bool,
    /// The version of the job's spec its latest attempt was launched from (0: never
    /// launched); see `rollout`.
    version: u32,
    /// A task of an older version still launched for this slot during a rolling update.
    outgoing: Option<Outgoing>,
}

impl Default for Instance {
    /// Not launched yet.
    fn default() -> Self {
        Self {
            phase: Phase::Waiting,
            attempts: 0,
            placed: None,
            running_since_ms: None,
            streak: 0,
            preempted: false,
            excused: 0,
            asked_ms: 0,
            unsent: false,
            version: 0,
            outgoing: None,
        }
    }
}

/// How many instances are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) waiting: u64,
    pub(crate) retrying: u64,
    pub(crate) running: u64,
    /// Of `running`, those that reported RUNNING.
    pub(crate) started: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) attempts: u64,
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubmitError {
    Invalid(String),
    Exists(String),
    UnknownDependency(String),
    /// An update names no job.
    NotFound(String),
    /// An update of a job that cannot take one.
    NotApplicable(String),
}

#[derive(Debug)]
pub(crate) struct Job {
    seq: u64,
    submission: Arc<Submission>,
    spec: JobSpec,
    batch: BatchSpec,
    state: JobState,
    message: String,
    submitted_ms: u64,
    ended_ms: Option<u64>,
    instances: Vec<Instance>,
    /// Waiting instances that may launch now, lowest index first.
    ready: VecDeque<u32>,
    /// Waiting instances in backoff: `(due ms, index)`.
    backoff: BTreeSet<(u64, u32)>,
    counts: Counts,
    tally: Tally,
    /// What every instance's task is made from, once the job runs.
    template: Option<TaskInfo>,
    /// Outputs of succeeded instances, kept when another job takes inputs from this one.
    keep_outputs: bool,
    outputs: BTreeMap<u32, Vec<TaskOutput>>,
    recent_failures: VecDeque<v1::FailedAttempt>,
    dirty_record: bool,
    dirty_shards: BTreeSet<u32>,
    dirty_outputs: BTreeSet<u32>,
    /// Shards to delete (the job ended).
    drop_shards: bool,
    /// A cron job's timetable and place in it.
    cron: Option<Cron>,
    /// A run of a cron job.
    run_of: Option<RunRecord>,
    /// A service's instance count (scaled); instances past it are being retired.
    service_target: Option<u64>,
    /// Shards of a shrunk service to delete.
    dropped_shards: BTreeSet<u32>,
    /// Since when instances have been ready and none could be placed.
    starved_since_ms: Option<u64>,
    /// Until when its owner's launch rate holds its ready instances back (not starving:
    /// room is not what they lack).
    paced_until_ms: Option<u64>,
    /// Why ready instances could not be placed in the latest offer round (a constraint no
    /// offer meets); shown instead of `message` while the job runs.
    placement_note: String,
    /// The version of its spec: 1 as submitted, one more with each update.
    version: u32,
    /// What a service's running update rolls back to.
    previous: Option<Arc<Submission>>,
    /// A service's rolling update under way.
    rollout: Option<Rollout>,
    /// Slots of a rolling update waiting for room (their old task to end) to launch.
    held: BTreeSet<u32>,
}

/// Every job.
#[derive(Debug, Default)]
pub(crate) struct Book {
    jobs: BTreeMap<String, Job>,
    /// Running jobs, in submission order: who gets offers first.
    running: Vec<String>,
    next_seq: u64,
    /// Keys of ended jobs' records to rewrite, and deletions, gathered for the next flush.
    pending: Vec<Write>,
    /// Instances killed to make room for production work that have not ended yet.
    preempting: usize,
}

impl Book {
    /// Adds every job of one spec file, all or none.
    pub(crate) fn submit(
        &mut self,
        specs: Vec<JobSpec>,
        submission: Submission,
        now_ms: u64,
    ) -> Result<Vec<String>, SubmitError> {
        let in_file: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        for spec in &specs {
            if let JobKind::Cron(c) = &spec.kind {
                Timetable::new(c)
                    .map_err(|e| SubmitError::Invalid(format!("{}: {e}", spec.name)))?;
            }
            if let Some(job) = self.jobs.get(&spec.name)
                && !job.state.has_ended()
            {
                return Err(SubmitError::Exists(format!(
                    "job {} exists and has not ended (kill it first)",
                    spec.name
                )));
            }
            for dep in spec.depends_on() {
                if !in_file.contains(dep.as_str()) && !self.jobs.contains_key(dep) {
                    return Err(SubmitError::UnknownDependency(format!(
                        "{}: depends_on {dep:?}, which is neither in the file nor a known job",
                        spec.name
                    )));
                }
            }
            rollout::check_spec(spec, &submission)?;
        }
        let submission = Arc::new(submission);
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        for spec in specs {
            let seq = self.next_seq;
            self.next_seq += 1;
            let job = Job::new(seq, Arc::clone(&submission), spec, now_ms);
            self.jobs.insert(job.spec.name.clone(), job);
        }
        self.refresh_keep_outputs();
        for name in &names {
            self.start_if_ready(name, now_ms);
        }
        Ok(names)
    }

    /// Kills a job. `None` for an unknown name.
    pub(crate) fn kill(&mut self, name: &str, now_ms: u64) -> Option<Vec<TaskId>> {
        let job = self.jobs.get_mut(name)?;
        if job.state.has_ended() {
            return Some(Vec::new());
        }
        job.message = "killed on request".into();
        let mut kills = job.stop(JobState::Killed);
        self.running.retain(|n| n != name);
        for run in self.active_runs(name) {
            if let Some(job) = self.jobs.get_mut(&run) {
                job.message = format!("killed with cron job {name}");
                kills.extend(job.stop(JobState::Killed));
            }
            self.running.retain(|n| *n != run);
            self.end_if_done(&run, now_ms);
        }
        self.end_dependents(name, now_ms);
        self.end_if_done(name, now_ms);
        Some(kills)
    }

    /// The roles the jobs that have not ended run in, and `*`: those the framework must
    /// subscribe in.
    pub(crate) fn roles(&self) -> BTreeSet<String> {
        let mut roles: BTreeSet<String> = self
            .jobs
            .values()
            .filter(|j| !j.state.has_ended())
            .map(|j| j.role().to_owned())
            .collect();
        roles.insert("*".to_owned());
        roles
    }

    /// The principal job `name` belongs to; `None` for an unknown name.
    pub(crate) fn owner(&self, name: &str) -> Option<Option<&str>> {
        self.jobs.get(name).map(|j| j.submission.owner.as_deref())
    }

    /// The principals the jobs belong to.
    pub(crate) fn owners(&self) -> BTreeSet<Option<String>> {
        self.jobs
            .values()
            .map(|j| j.submission.owner.clone())
            .collect()
    }

    pub(crate) fn view(&self, name: &str) -> Option<v1::Job> {
        self.jobs.get(name).map(Job::view)
    }

    /// Every job, in submission order.
    pub(crate) fn views(&self) -> Vec<v1::Job> {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs.into_iter().map(Job::view).collect()
    }

    // -- internals --

    /// Whether `name` can start (its dependencies succeeded) or must fail (one did not).
    fn start_if_ready(&mut self, name: &str, now_ms: u64) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        if job.state != JobState::Waiting {
            return;
        }
        let mut waiting_on = Vec::new();
        for dep in &job.batch.depends_on {
            match self.jobs.get(dep).map(|d| d.state) {
                Some(JobState::Succeeded) => {}
                Some(JobState::Failed | JobState::Killed) | None => {
                    let message = format!("dependency {dep} did not succeed");
                    if let Some(job) = self.jobs.get_mut(name) {
                        job.message = message;
                        job.stop(JobState::Failed);
                    }
                    self.end_if_done(name, now_ms);
                    self.end_dependents(name, now_ms);
                    return;
                }
                Some(_) => waiting_on.push(dep.clone()),
            }
        }
        if waiting_on.is_empty() {
            self.activate(name, now_ms);
        } else if let Some(job) = self.jobs.get_mut(name) {
            let message = format!("waiting for {}", waiting_on.join(", "));
            if job.message != message {
                job.message = message;
                job.dirty_record = true;
            }
        }
    }

    /// Builds the job's task template and makes its waiting instances schedulable.
    fn activate(&mut self, name: &str, now_ms: u64) {
        let template = match self.jobs.get(name) {
            Some(job) => template::build(&job.spec, &job.submission, |from| {
                self.jobs.get(from).map(|j| &j.outputs)
            }),
            None => return,
        };
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        match template {
            Ok(template) => {
                job.template = Some(template);
                if job.state == JobState::Waiting {
                    job.state = JobState::Running;
                    job.message.clear();
                    job.dirty_record = true;
                }
                if !self.running.iter().any(|n| n == name) {
                    self.running.push(name.to_owned());
                }
            }
            Err(message) => {
                job.message = message;
                job.stop(JobState::Failed);
                self.end_dependents(name, now_ms);
            }
        }
        self.end_if_done(name, now_ms);
    }

    fn after_change(&mut self, name: &str, now_ms: u64) -> Vec<TaskId> {
        let mut kills = self.roll(name, now_ms);
        let Some(job) = self.jobs.get_mut(name) else {
            return kills;
        };
        if job.state == JobState::Running
            && job
                .batch
                .max_failures
                .is_some_and(|k| job.counts.failed >= k)
        {
            job.message = format!(
                "stopped early: {} instances failed (max_failures = {})",
                job.counts.failed,
                job.batch.max_failures.unwrap_or_default()
            );
            kills.extend(job.stop(JobState::Failed));
            self.running.retain(|n| n != name);
            self.end_dependents(name, now_ms);
        }
        self.end_if_done(name, now_ms);
        kills
    }

    /// Marks a job ended once no instance is left to run or running.
    fn end_if_done(&mut self, name: &str, now_ms: u64) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let c = job.counts;
        if c.running > 0 || job.ended_ms.is_some() {
            return;
        }
        match job.state {
            JobState::Waiting => return,
            // A cron job ends when killed or when its timetable has no more runs (`tick`); a
            // service when killed.
            JobState::Running if job.cron.is_some() || job.is_service() => return,
            JobState::Running if c.succeeded + c.failed < job.batch.instances => return,
            JobState::Running if c.failed == 0 => {
                job.state = JobState::Succeeded;
                job.message.clear();
            }
            JobState::Running => {
                job.state = JobState::Failed;
                job.message = format!("{} of {} instances failed", c.failed, job.batch.instances);
            }
            JobState::Succeeded | JobState::Failed | JobState::Killed => {}
        }
        job.ended_ms = Some(now_ms);
        job.drop_shards = true;
        job.dirty_record = true;
        job.template = None;
        job.ready.clear();
        job.backoff.clear();
        let cron = job.run_of.as_ref().map(|r| r.cron.clone());
        self.running.retain(|n| n != name);
        if let Some(cron) = cron {
            self.trim_history(&cron);
        }
        let dependents = self.waiting_on(name);
        // They start now, or fail with it.
        for dependent in dependents {
            self.start_if_ready(&dependent, now_ms);
        }
    }

    /// The waiting jobs that depend on `name`.
    fn waiting_on(&self, name: &str) -> Vec<String> {
        self.jobs
            .values()
            .filter(|j| {
                j.state == JobState::Waiting && j.batch.depends_on.iter().any(|d| d == name)
            })
            .map(|j| j.spec.name.clone())
            .collect()
    }

    /// Fails every waiting job that depends on `name` (which will not succeed), and theirs.
    /// Waiting jobs have nothing running, so nothing is killed.
    fn end_dependents(&mut self, name: &str, now_ms: u64) {
        let dependents = self.waiting_on(name);
        for dependent in dependents {
            if let Some(job) = self.jobs.get_mut(&dependent) {
                job.message = format!("dependency {name} did not succeed");
                job.stop(JobState::Failed);
            }
            self.end_if_done(&dependent, now_ms);
            self.end_dependents(&dependent, now_ms);
        }
    }

    /// Outputs are kept for jobs another job takes inputs from.
    fn refresh_keep_outputs(&mut self) {
        let sources: BTreeSet<String> = self
            .jobs
            .values()
            .flat_map(|j| j.spec.inputs.iter())
            .filter_map(|i| match &i.source {
                InputSource::Job { job, .. } => Some(job.clone()),
                _ => None,
            })
            .collect();
        for job in self.jobs.values_mut() {
            job.keep_outputs = sources.contains(&job.spec.name);
        }
    }
}

impl Job {
    /// The role its instances run in: its spec's, else the default role.
    pub(super) fn role(&self) -> &str {
        self.spec.role_name()
    }

    fn new(seq: u64, submission: Arc<Submission>, spec: JobSpec, now_ms: u64) -> Self {
        let batch = batch_of(&spec);
        let count = u32::try_from(batch.instances).unwrap_or(u32::MAX);
        let instances = vec![Instance::default(); count as usize];
        let tally = Tally::new(&spec.constraints);
        let cron = match &spec.kind {
            JobKind::Cron(c) => Timetable::new(c).ok().map(|timetable| Cron {
                next_ms: timetable.next_after(now_ms),
                spec: c.clone(),
                timetable,
                last_ms: now_ms,
                next_run: 1,
                suspended: c.suspended,
            }),
            _ => None,
        };
        let service_target = match &spec.kind {
            JobKind::Service(sv) => Some(sv.instances),
            _ => None,
        };
        Self {
            cron,
            run_of: None,
            service_target,
            placement_note: String::new(),
            version: 1,
            previous: None,
            rollout: None,
            held: BTreeSet::new(),
            dropped_shards: BTreeSet::new(),
            starved_since_ms: None,
            paced_until_ms: None,
            seq,
            submission,
            batch,
            state: JobState::Waiting,
            message: String::new(),
            submitted_ms: now_ms,
            ended_ms: None,
            ready: (0..count).collect(),
            backoff: BTreeSet::new(),
            counts: Counts {
                waiting: u64::from(count),
                ..Counts::default()
            },
            tally,
            template: None,
            keep_outputs: false,
            outputs: BTreeMap::new(),
            recent_failures: VecDeque::new(),
            dirty_record: true,
            dirty_shards: (0..count.div_ceil(SHARD_SIZE)).collect(),
            dirty_outputs: BTreeSet::new(),
            drop_shards: false,
            instances,
            spec,
        }
    }

    fn launch(
        &mut self,
        index: u32,
        template: &TaskInfo,
        placed: Option<Box<[Option<String>]>>,
    ) -> TaskInfo {
        let name = self.spec.name.clone();
        let version = self.version;
        let instance = &mut self.instances[index as usize];
        instance.phase = Phase::Launched;
        instance.unsent = true;
        instance.version = version;
        instance.attempts += 1;
        let attempt = instance.attempts;
        if let Some(values) = &placed {
            self.tally.add(values);
        }
        instance.placed = placed;
        self.counts.waiting -= 1;
        self.counts.running += 1;
        self.counts.attempts += 1;
        self.dirty_shards.insert(index / SHARD_SIZE);
        let mut task = template.clone();
        if let Some(id) = task_id(&name, index, version) {
            task.id = id;
        }
        task.name = format!("{name}[{index}]");
        task.env
            .push(EnvVar::plain("CORRAL_TASK_INDEX", index.to_string()));
        task.env
            .push(EnvVar::plain("CORRAL_TASK_ATTEMPT", attempt.to_string()));
        task.labels
            .insert("corral.instance".into(), index.to_string());
        task
    }

    /// The instance left the launched phase: its constraint tally and counts follow.
    fn leave_launched(&mut self, index: u32) {
        let instance = &mut self.instances[index as usize];
        if let Some(values) = instance.placed.take() {
            self.tally.remove(&values);
        }
        if instance.running_since_ms.take().is_some() {
            self.counts.started -= 1;
        }
        self.counts.running -= 1;
        self.dirty_shards.insert(index / SHARD_SIZE);
    }

    fn finish(&mut self, index: u32, phase: Phase) {
        self.leave_launched(index);
        self.instances[index as usize].phase = phase;
        match phase {
            Phase::Succeeded => self.counts.succeeded += 1,
            _ => self.counts.failed += 1,
        }
    }

    fn retry(&mut self, index: u32, now_ms: u64) {
        let delay = backoff_delay(&self.batch.backoff, self.instances[index as usize].attempts);
        self.requeue(index, now_ms, delay);
    }

    fn requeue(&mut self, index: u32, now_ms: u64, delay: Duration) {
        self.leave_launched(index);
        self.instances[index as usize].phase = Phase::Waiting;
        self.backoff
            .insert((now_ms.saturating_add(millis(delay)), index));
        self.counts.retrying += 1;
    }

    fn record_failure(&mut self, index: u32, status: &TaskStatus) {
        let attempt = self.instances[index as usize].attempts;
        let message = if status.message.is_empty() {
            status.reason.to_string()
        } else {
            status.message.clone()
        };
        self.recent_failures.push_front(v1::FailedAttempt {
            instance: u64::from(index),
            attempt: u64::from(attempt),
            state: status.state.to_string(),
            message,
        });
        self.recent_failures.truncate(RECENT_FAILURES);
    }

    /// Ends the job in `state`: nothing more launches; returns its launched tasks to kill
    /// (they are counted as they report).
    fn stop(&mut self, state: JobState) -> Vec<TaskId> {
        self.state = state;
        self.dirty_record = true;
        // Instances that never ran, or wait for a retry, will not.
        let unrun: Vec<u32> = self
            .ready
            .drain(..)
            .chain(self.backoff.iter().map(|(_, i)| *i))
            .collect();
        self.backoff.clear();
        for index in unrun {
            self.instances[index as usize].phase = Phase::Failed;
            self.dirty_shards.insert(index / SHARD_SIZE);
        }
        self.counts.failed += self.counts.waiting + self.counts.retrying;
        self.counts.waiting = 0;
        self.counts.retrying = 0;
        self.template = None;
        self.instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.phase == Phase::Launched)
            .filter_map(|(index, i)| task_id(&self.spec.name, index as u32, i.version))
            .chain(self.outgoing_tasks())
            .collect()
    }
}

/// Why a call about one job was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallError {
    NotFound,
    NotCron,
    NotService,
    Ended,
    TooMany,
}

/// How a job's instances run and are retried: a batch job's own; a service's instances are
/// restarted whenever they end, after its backoff; a cron job runs nothing itself.
fn batch_of(spec: &JobSpec) -> BatchSpec {
    match &spec.kind {
        JobKind::Batch(b) => b.clone(),
        // A service's instances are restarted whenever they end, after its backoff.
        JobKind::Service(sv) => BatchSpec {
            instances: sv.instances,
            retries: u64::MAX,
            backoff: sv.backoff,
            max_failures: None,
            depends_on: Vec::new(),
        },
        // A cron job runs nothing itself: its runs are jobs of their own.
        JobKind::Cron(_) => BatchSpec {
            instances: 0,
            retries: 0,
            backoff: crate::spec::Backoff {
                initial: Duration::ZERO,
                factor: 1.0,
                max: Duration::ZERO,
            },
            max_failures: None,
            depends_on: Vec::new(),
        },
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `initial * factor^(attempts - 1)`, at most `max`.
pub(crate) fn backoff_delay(backoff: &crate::spec::Backoff, attempts: u32) -> Duration {
    let exponent = i32::try_from(attempts.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = backoff.initial.as_secs_f64() * backoff.factor.powi(exponent);
    if secs.is_finite() && secs < backoff.max.as_secs_f64() {
        Duration::from_secs_f64(secs.max(0.0))
    } else {
        backoff.max
    }
}

/// The task ID of an instance's attempts of one version of its job: `<job>.<index>` for
/// the spec as submitted, `<job>.<index>.v<version>` after updates (job names are DNS labels,
/// so both are valid task IDs and parse back unambiguously).
pub(crate) fn task_id(job: &str, index: u32, version: u32) -> Option<TaskId> {
    if version <= 1 {
        TaskId::new(format!("{job}.{index}")).ok()
    } else {
        TaskId::new(format!("{job}.{index}.v{version}")).ok()
    }
}

/// `(job, index, version)` of a [`task_id`].
pub(crate) fn split_task_id(id: &str) -> Option<(&str, u32, u32)> {
    let (rest, last) = id.rsplit_once('.')?;
    if let Some(version) = last.strip_prefix('v') {
        let (job, index) = rest.rsplit_once('.')?;
        let version: u32 = version.parse().ok().filter(|v| *v > 1)?;
        return Some((job, index.parse().ok()?, version));
    }
    Some((rest, last.parse().ok()?, 1))
}
