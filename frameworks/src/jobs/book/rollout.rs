//! Services' rolling updates. An update that changes a service's tasks (module, args, env,
//! inputs, resources, limits, labels) or where they go (constraints, role) gives it a new
//! version of its spec; its instances are replaced slot by slot, never with fewer than `instances - max_unavailable`
//! up nor more than `instances + max_surge` tasks launched, and the update is rolled back to
//! the previous spec when new instances keep failing (`rollback_after`).
//!
//! A slot being replaced keeps its old task (an [`Outgoing`]) while its new one starts when
//! there is room for both; otherwise the old task is stopped first and the slot is *held*
//! until there is room. A new instance is up once it has been running `min_running`; only
//! then is the old task beside it stopped.

use std::sync::Arc;

use corral_proto::TaskInfo;
use corral_types::{TaskId, TaskState};

use super::{Book, Instance, Job, JobState, Phase, SubmitError, batch_of, millis, task_id};
use crate::jobs::placement::Tally;
use crate::jobs::record::{SHARD_SIZE, Submission};
use crate::jobs::template;
use crate::spec::{self, Format, JobKind, JobSpec, UpdatePolicy};

/// A task of an older version kept launched for its slot during a rolling update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) version: u32,
    /// It reported RUNNING: it counts as up until its kill is asked.
    pub(crate) running: bool,
    /// Its kill was asked.
    pub(crate) killing: bool,
}

/// A rolling update under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rollout {
    /// Failed attempts of instances of the new version so far.
    pub(crate) failures: u64,
    /// This update goes back to the spec before a failed version; why.
    pub(crate) rollback_of: Option<String>,
    /// When a new instance next comes up (has run `min_running`).
    pub(crate) next_check_ms: Option<u64>,
}

impl Book {
    /// Updates services to the specs of one spec file, all or none: each starts a rolling
    /// update to its new spec (a spec that changes nothing starts none) and is scaled to its
    /// `instances`. Returns the names and the tasks to kill.
    pub(crate) fn update_services(
        &mut self,
        specs: Vec<JobSpec>,
        submission: Submission,
        now_ms: u64,
    ) -> Result<(Vec<String>, Vec<TaskId>), SubmitError> {
        for spec in &specs {
            let name = &spec.name;
            let job = self
                .jobs
                .get(name)
                .ok_or_else(|| SubmitError::NotFound(name.clone()))?;
            if !job.is_service() || !matches!(spec.kind, JobKind::Service(_)) {
                return Err(SubmitError::NotApplicable(format!(
                    "job {name}: only services are updated in place (a batch or cron job is \
                     killed and submitted again)"
                )));
            }
            if job.state.has_ended() {
                return Err(SubmitError::NotApplicable(format!(
                    "job {name} has ended (submit it again)"
                )));
            }
            check_spec(spec, &submission)?;
        }
        let submission = Arc::new(submission);
        let mut built = Vec::new();
        for spec in specs {
            let template = self
                .build_template(&spec, &submission)
                .map_err(|e| SubmitError::Invalid(format!("{}: {e}", spec.name)))?;
            built.push((spec, template));
        }
        let mut names = Vec::new();
        let mut kills = Vec::new();
        for (spec, template) in built {
            let name = spec.name.clone();
            let instances = match &spec.kind {
                JobKind::Service(sv) => sv.instances,
                _ => continue,
            };
            names.push(name.clone());
            let Some(job) = self.jobs.get_mut(&name) else {
                continue;
            };
            // Only what changes the tasks or where they go replaces instances; the rest (the
            // count, backoff, update bounds, tier) applies as it is.
            let replaces = job.template.as_ref() != Some(&template)
                || job.spec.constraints != spec.constraints
                || job.spec.role != spec.role;
            if replaces {
                job.begin(spec, template, Arc::clone(&submission), None);
            } else if job.spec != spec {
                job.adopt(spec, Arc::clone(&submission));
            }
            kills.extend(self.scale(&name, instances).unwrap_or_default());
            kills.extend(self.roll(&name, now_ms));
        }
        Ok((names, kills))
    }

    /// Moves a service's rolling update on: rolls it back if its new instances failed too
    /// often, else starts and stops what its bounds allow. Returns the tasks to kill.
    pub(super) fn roll(&mut self, name: &str, now_ms: u64) -> Vec<TaskId> {
        let Some(job) = self.jobs.get_mut(name) else {
            return Vec::new();
        };
        let Some(rollout) = &job.rollout else {
            return Vec::new();
        };
        if job.state != JobState::Running {
            job.rollout = None;
            job.dirty_record = true;
            return Vec::new();
        }
        let policy = job.policy();
        if rollout.rollback_of.is_none()
            && policy.rollback_after > 0
            && rollout.failures >= policy.rollback_after
        {
            self.roll_back(name);
        }
        self.jobs
            .get_mut(name)
            .map(|job| job.step(now_ms))
            .unwrap_or_default()
    }

    /// Rolling updates whose new instances came up since: moved on.
    pub(super) fn roll_due(&mut self, now_ms: u64) -> Vec<TaskId> {
        let due: Vec<String> = self
            .jobs
            .values()
            .filter(|j| {
                j.rollout
                    .as_ref()
                    .and_then(|r| r.next_check_ms)
                    .is_some_and(|t| t <= now_ms)
            })
            .map(|j| j.spec.name.clone())
            .collect();
        due.iter()
            .flat_map(|name| self.roll(name, now_ms))
            .collect()
    }

    /// Starts an update of `name` back to the spec it had before this update.
    fn roll_back(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let last = job
            .recent_failures
            .front()
            .map(|f| f.message.clone())
            .unwrap_or_default();
        let reason = format!(
            "version {} failed {} times (last: {last})",
            job.version,
            job.rollout.as_ref().map_or(0, |r| r.failures)
        );
        let back = job
            .previous
            .clone()
            .ok_or_else(|| "no previous spec".to_owned());
        let rebuilt = back.and_then(|previous| {
            let format = Format::from_name(&previous.format)?;
            let spec = spec::parse(&previous.source, format, &previous.file)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| "the previous spec no longer names it".to_owned())?;
            let template = self.build_template(&spec, &previous)?;
            Ok((spec, template, previous))
        });
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        match rebuilt {
            Ok((spec, template, previous)) => job.begin(spec, template, previous, Some(reason)),
            Err(error) => {
                // Nothing to go back to: the update goes on, restarting what fails.
                job.message = format!("{reason}; cannot roll back: {error}");
                if let Some(rollout) = job.rollout.as_mut() {
                    rollout.rollback_of = Some(reason);
                }
                job.dirty_record = true;
            }
        }
    }

    fn build_template(&self, spec: &JobSpec, submission: &Submission) -> Result<TaskInfo, String> {
        template::build(spec, submission, |from| {
            self.jobs.get(from).map(|j| &j.outputs)
        })
    }
}

/// What every job of a submission or an update must pass besides its spec's own checks:
/// the local paths the client uploaded.
pub(super) fn check_spec(spec: &JobSpec, submission: &Submission) -> Result<(), SubmitError> {
    template::module(&spec.module, submission).map_err(SubmitError::Invalid)?;
    for input in &spec.inputs {
        if let spec::InputSource::File(path) = &input.source {
            template::uploaded(submission, path).map_err(SubmitError::Invalid)?;
        }
    }
    Ok(())
}

impl Job {
    /// Makes `spec` the job's new version, to roll out.
    fn begin(
        &mut self,
        spec: JobSpec,
        template: TaskInfo,
        submission: Arc<Submission>,
        rollback_of: Option<String>,
    ) {
        let before = std::mem::replace(&mut self.submission, submission);
        self.previous = rollback_of.is_none().then_some(before);
        if spec.constraints != self.spec.constraints {
            // Placements counted under the old constraints mean nothing under the new.
            self.tally = Tally::new(&spec.constraints);
            for instance in &mut self.instances {
                instance.placed = None;
            }
        }
        self.batch = batch_of(&spec);
        self.spec = spec;
        self.template = Some(template);
        self.version += 1;
        self.message = match &rollback_of {
            Some(reason) => format!("rolling back: {reason}"),
            None => String::new(),
        };
        self.rollout = Some(Rollout {
            failures: 0,
            rollback_of,
            next_check_ms: None,
        });
        self.dirty_record = true;
        self.dirty_shards
            .extend(0..(self.instances.len() as u32).div_ceil(SHARD_SIZE));
    }

    /// Takes `spec`, which launches the same tasks in the same places, as the job's own
    /// without replacing any instance.
    fn adopt(&mut self, spec: JobSpec, submission: Arc<Submission>) {
        self.submission = submission;
        self.batch = batch_of(&spec);
        self.spec = spec;
        self.dirty_record = true;
    }

    pub(super) fn policy(&self) -> UpdatePolicy {
        match &self.spec.kind {
            JobKind::Service(sv) => sv.update,
            _ => UpdatePolicy::default(),
        }
    }

    /// When instance `i` is up (or will be): an old one once running, a new one once it
    /// has run `min_running`.
    fn up_at(&self, i: &Instance) -> Option<u64> {
        if i.phase != Phase::Launched {
            return None;
        }
        let since = i.running_since_ms?;
        Some(if i.version == self.version {
            since.saturating_add(millis(self.policy().min_running))
        } else {
            since
        })
    }

    /// One step of the rolling update: stops old tasks whose replacement is up, replaces
    /// old instances as the bounds allow, launches held slots as room frees, and ends the
    /// update once every instance is new and up. Returns the tasks to kill.
    fn step(&mut self, now_ms: u64) -> Vec<TaskId> {
        let policy = self.policy();
        let n = self.target() as usize;
        let name = self.spec.name.clone();
        let mut kills = Vec::new();
        let mut available = 0usize;
        // Launched, about to launch (ready or in backoff) and outgoing tasks.
        let mut tasks = 0usize;
        let mut next_check: Option<u64> = None;
        for (index, i) in self.instances.iter().enumerate() {
            let held = self.held.contains(&(index as u32));
            if i.phase == Phase::Launched || (i.phase == Phase::Waiting && !held && index < n) {
                tasks += 1;
            }
            if i.outgoing.is_some() {
                tasks += 1;
            }
            if index < n {
                match self.up_at(i) {
                    Some(t) if t <= now_ms => available += 1,
                    Some(t) => next_check = Some(next_check.map_or(t, |c: u64| c.min(t))),
                    None => {}
                }
                if i.outgoing.is_some_and(|o| o.running && !o.killing) {
                    available += 1;
                }
            }
        }
        // Old tasks whose replacement is up, or whose held slot waits for them, stop.
        for index in 0..self.instances.len() {
            let i = &self.instances[index];
            let Some(outgoing) = i.outgoing.filter(|o| !o.killing) else {
                continue;
            };
            let replaced = i.version == self.version && self.up_at(i).is_some_and(|t| t <= now_ms);
            if replaced || self.held.contains(&(index as u32)) {
                self.instances[index].outgoing = Some(Outgoing {
                    killing: true,
                    ..outgoing
                });
                kills.extend(task_id(&name, index as u32, outgoing.version));
                if outgoing.running && index < n {
                    available -= 1;
                }
            }
        }
        // Old instances are replaced, lowest slot first.
        let floor = n.saturating_sub(usize::try_from(policy.max_unavailable).unwrap_or(n));
        let ceiling = n.saturating_add(usize::try_from(policy.max_surge).unwrap_or(n));
        for index in 0..n.min(self.instances.len()) {
            let i = &self.instances[index];
            if i.phase != Phase::Launched || i.version == self.version || i.outgoing.is_some() {
                continue;
            }
            let was_up = i.running_since_ms.is_some();
            if tasks < ceiling {
                // Room beside it: the new one starts, the old one stops once it is up.
                self.detach(index as u32, was_up, false);
                tasks += 1;
            } else if was_up && available > floor {
                // No room beside it: the old one stops first; the slot waits for room. (One
                // not known to run waits: after a restart, it may run and not have said.)
                kills.extend(task_id(&name, index as u32, i.version));
                self.detach(index as u32, was_up, true);
                available -= 1;
            }
        }
        while tasks < ceiling {
            let Some(index) = self.held.pop_first() else {
                break;
            };
            self.ready.push_back(index);
            tasks += 1;
        }
        let done = self.held.is_empty()
            && self.instances.iter().enumerate().all(|(index, i)| {
                i.outgoing.is_none()
                    && (index >= n
                        || (i.version == self.version
                            && self.up_at(i).is_some_and(|t| t <= now_ms)))
            });
        let version = self.version;
        if let Some(rollout) = self.rollout.as_mut() {
            rollout.next_check_ms = next_check;
            if done {
                self.message = match rollout.rollback_of.take() {
                    Some(reason) => format!("rolled back: {reason}"),
                    None => format!("updated to version {version}"),
                };
                self.rollout = None;
                self.previous = None;
                self.dirty_record = true;
            }
        }
        kills
    }

    /// Takes slot `index`'s launched task out of the slot as its outgoing task; the slot
    /// waits to launch the new version: at once, or (`stop_first`) once there is room.
    fn detach(&mut self, index: u32, was_up: bool, stop_first: bool) {
        let version = self.instances[index as usize].version;
        self.leave_launched(index);
        let instance = &mut self.instances[index as usize];
        instance.phase = Phase::Waiting;
        instance.unsent = false;
        instance.streak = 0;
        instance.outgoing = Some(Outgoing {
            version,
            running: was_up,
            killing: stop_first,
        });
        self.counts.waiting += 1;
        if stop_first {
            self.held.insert(index);
        } else {
            self.ready.push_back(index);
        }
    }

    /// Old tasks kept for their slots.
    pub(super) fn outgoing_tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.instances
            .iter()
            .enumerate()
            .filter_map(|(index, i)| task_id(&self.spec.name, index as u32, i.outgoing?.version))
    }

    /// Slot `index`'s old task reported `state`.
    pub(super) fn outgoing_update(&mut self, index: u32, state: TaskState) {
        let instance = &mut self.instances[index as usize];
        let Some(outgoing) = instance.outgoing.as_mut() else {
            return;
        };
        if state == TaskState::Running {
            outgoing.running = true;
        } else if state.is_terminal() || state == TaskState::Unknown {
            instance.outgoing = None;
            self.dirty_shards.insert(index / SHARD_SIZE);
        }
    }

    /// What the job's view says of its update: `(rollout, outdated)`.
    pub(super) fn rollout_view(&self) -> (String, u64) {
        let outdated = self
            .instances
            .iter()
            .map(|i| {
                u64::from(i.phase == Phase::Launched && i.version != self.version)
                    + u64::from(i.outgoing.is_some())
            })
            .sum();
        let Some(rollout) = &self.rollout else {
            return (String::new(), outdated);
        };
        let n = self.target() as usize;
        let updated = self
            .instances
            .iter()
            .take(n)
            .filter(|i| i.phase == Phase::Launched && i.version == self.version)
            .count();
        let what = match &rollout.rollback_of {
            Some(_) => format!(
                "rolling back to the previous spec as version {}",
                self.version
            ),
            None => format!("updating to version {}", self.version),
        };
        (
            format!("{what}: {updated} of {n} instances updated"),
            outdated,
        )
    }
}
