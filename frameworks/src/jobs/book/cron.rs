//! Cron jobs: firing runs on the timetable, with the concurrency policy, the starting
//! deadline and the history limit; suspending, resuming and running now.

use std::sync::Arc;
use std::time::Duration;

use corral_types::TaskId;

use super::preempt::PREEMPT_AFTER;
use super::{Book, CallError, Job, JobState, millis};
use crate::jobs::record::{RunRecord, Write, job_key, shard_key};
use crate::jobs::timetable::Timetable;
use crate::spec::{Backoff, BatchSpec, Concurrency, CronSpec, JobKind, JobSpec, Tier};

/// Where a cron job is in its timetable.
#[derive(Debug)]
pub(super) struct Cron {
    pub(super) spec: CronSpec,
    pub(super) timetable: Timetable,
    /// The latest occurrence handled (run or skipped); the next is after it.
    pub(super) last_ms: u64,
    /// The next occurrence; `None` once the timetable has no more.
    pub(super) next_ms: Option<u64>,
    /// The number of the next run (its job is `<cron job>-<run>`).
    pub(super) next_run: u64,
    pub(super) suspended: bool,
}

/// Run `run` of a cron job: one instance of its task, not retried (the next run comes).
pub(super) fn run_spec(cron: &JobSpec, run: u64) -> JobSpec {
    let mut spec = cron.clone();
    spec.name = format!("{}-{run}", cron.name);
    spec.kind = JobKind::Batch(BatchSpec {
        instances: 1,
        retries: 0,
        backoff: Backoff {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
        },
        max_failures: None,
        depends_on: Vec::new(),
    });
    spec
}

/// A time for messages: RFC 3339, UTC.
fn at(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| t.to_string())
}

impl Book {
    /// Starts the cron runs due by `now_ms`, skips those past their starting deadline, ends
    /// timetables that have no more runs, preempts, moves rolling updates on; returns tasks
    /// to kill.
    pub(crate) fn tick(&mut self, now_ms: u64) -> Vec<TaskId> {
        let mut kills = Vec::new();
        let due: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .filter(|j| {
                j.cron
                    .as_ref()
                    .is_some_and(|c| !c.suspended && c.next_ms.is_some_and(|n| n <= now_ms))
            })
            .map(|j| j.spec.name.clone())
            .collect();
        for name in due {
            kills.extend(self.fire_due(&name, now_ms));
        }
        // Runs not launched by their starting deadline are skipped.
        let late: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running && j.counts.attempts == 0)
            .filter(|j| {
                j.run_of
                    .as_ref()
                    .and_then(|r| r.start_by_ms)
                    .is_some_and(|t| t <= now_ms)
            })
            .map(|j| j.spec.name.clone())
            .collect();
        for name in late {
            if let Some(job) = self.jobs.get_mut(&name) {
                job.message = "skipped: not started within its starting deadline".into();
                job.stop(JobState::Failed);
            }
            self.running.retain(|n| *n != name);
            self.end_if_done(&name, now_ms);
        }
        kills.extend(self.preempt(now_ms));
        kills.extend(self.roll_due(now_ms));
        kills
    }

    /// When [`Book::tick`] next has something to do: a cron run, a run's starting deadline,
    /// production work waiting (to be given preemptible instances' place), or a rolling
    /// update's new instance coming up.
    pub(crate) fn next_wakeup(&self) -> Option<u64> {
        let preemptible = self
            .running
            .iter()
            .filter_map(|n| self.jobs.get(n))
            .any(|j| j.spec.tier == Tier::Preemptible && j.counts.running > 0);
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .filter_map(|j| match (&j.cron, &j.run_of) {
                (Some(c), _) if !c.suspended => c.next_ms,
                (_, Some(run)) if j.counts.attempts == 0 => run.start_by_ms,
                _ if preemptible && j.spec.tier == Tier::Production && !j.ready.is_empty() => Some(
                    // Held back by its owner's launch rate, it is not starving until then.
                    j.paced_until_ms
                        .or(j.starved_since_ms)
                        .map_or(0, |t| t.saturating_add(millis(PREEMPT_AFTER))),
                ),
                _ => None,
            })
            .chain(
                self.jobs
                    .values()
                    .filter_map(|j| j.rollout.as_ref()?.next_check_ms),
            )
            .min()
    }

    /// Starts a run of cron job `name` now, whatever its timetable and concurrency policy
    /// say; returns the run's job name.
    pub(crate) fn run_now(&mut self, name: &str, now_ms: u64) -> Result<String, CallError> {
        self.cron_job(name)?;
        Ok(self.fire(name, now_ms, now_ms))
    }

    /// Suspends (no more runs start; running ones go on) or resumes a cron job. A resumed
    /// job starts from now: runs due while it was suspended are skipped.
    pub(crate) fn set_suspended(
        &mut self,
        name: &str,
        suspended: bool,
        now_ms: u64,
    ) -> Result<(), CallError> {
        let job = self.cron_job(name)?;
        let Some(cron) = job.cron.as_mut() else {
            return Err(CallError::NotCron);
        };
        if cron.suspended != suspended {
            cron.suspended = suspended;
            if !suspended {
                cron.last_ms = cron.last_ms.max(now_ms);
                cron.next_ms = cron.timetable.next_after(cron.last_ms);
            }
            job.dirty_record = true;
        }
        Ok(())
    }

    pub(super) fn cron_job(&mut self, name: &str) -> Result<&mut Job, CallError> {
        let job = self.jobs.get_mut(name).ok_or(CallError::NotFound)?;
        if job.cron.is_none() {
            return Err(CallError::NotCron);
        }
        if job.state.has_ended() {
            return Err(CallError::Ended);
        }
        Ok(job)
    }

    /// Handles the latest occurrence of `name`'s timetable due by `now_ms`.
    pub(super) fn fire_due(&mut self, name: &str, now_ms: u64) -> Vec<TaskId> {
        let active = self.active_runs(name);
        let Some(job) = self.jobs.get_mut(name) else {
            return Vec::new();
        };
        let Some(cron) = job.cron.as_mut() else {
            return Vec::new();
        };
        let Some((due, count)) = cron.timetable.latest_due(cron.last_ms, now_ms) else {
            cron.next_ms = cron.timetable.next_after(now_ms);
            return Vec::new();
        };
        cron.last_ms = due;
        cron.next_ms = cron.timetable.next_after(due);
        job.dirty_record = true;
        let missed = if count > 1 {
            format!(" ({} earlier runs were missed)", count - 1)
        } else {
            String::new()
        };
        let late = cron
            .spec
            .starting_deadline
            .is_some_and(|d| due.saturating_add(millis(d)) < now_ms);
        let concurrency = cron.spec.concurrency;
        let exhausted = cron.next_ms.is_none();
        let mut kills = Vec::new();
        if late {
            job.message = format!(
                "skipped the run due at {}: past its starting deadline{missed}",
                at(due)
            );
        } else if concurrency == Concurrency::Forbid && !active.is_empty() {
            job.message = format!(
                "skipped the run due at {}: {} still runs (concurrency = forbid){missed}",
                at(due),
                active.join(", ")
            );
        } else {
            job.message = missed.trim_start().to_owned();
            if concurrency == Concurrency::Replace {
                for run in &active {
                    if let Some(job) = self.jobs.get_mut(run) {
                        job.message = "replaced by the next run (concurrency = replace)".into();
                        kills.extend(job.stop(JobState::Killed));
                    }
                    self.running.retain(|n| n != run);
                    self.end_if_done(run, now_ms);
                }
            }
            self.fire(name, due, now_ms);
        }
        if exhausted && let Some(job) = self.jobs.get_mut(name) {
            // The timetable has no more runs: the cron job is done (its runs go on).
            job.state = JobState::Succeeded;
            job.ended_ms = Some(now_ms);
            job.dirty_record = true;
            self.running.retain(|n| n != name);
        }
        kills
    }

    /// Adds run `<name>-<n>` of cron job `name`, due at `due_ms`; returns its name.
    pub(super) fn fire(&mut self, name: &str, due_ms: u64, now_ms: u64) -> String {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(job) = self.jobs.get_mut(name) else {
            return String::new();
        };
        let Some(cron) = job.cron.as_mut() else {
            return String::new();
        };
        let run = cron.next_run;
        cron.next_run += 1;
        let start_by_ms = cron
            .spec
            .starting_deadline
            .map(|d| due_ms.saturating_add(millis(d)));
        job.dirty_record = true;
        let mut child = Job::new(
            seq,
            Arc::clone(&job.submission),
            run_spec(&job.spec, run),
            now_ms,
        );
        child.run_of = Some(RunRecord {
            cron: name.to_owned(),
            run,
            start_by_ms,
        });
        let child_name = child.spec.name.clone();
        self.jobs.insert(child_name.clone(), child);
        self.activate(&child_name, now_ms);
        child_name
    }

    /// The runs of cron job `name` that have not ended.
    pub(super) fn active_runs(&self, name: &str) -> Vec<String> {
        let mut runs: Vec<(u64, String)> = self
            .jobs
            .values()
            .filter(|j| !j.state.has_ended() || j.counts.running > 0)
            .filter_map(|j| {
                let r = j.run_of.as_ref()?;
                (r.cron == name).then(|| (r.run, j.spec.name.clone()))
            })
            .collect();
        runs.sort();
        runs.into_iter().map(|(_, n)| n).collect()
    }

    /// Forgets the oldest ended runs of cron job `name` past its `history_limit`.
    pub(super) fn trim_history(&mut self, name: &str) {
        let Some(limit) = self
            .jobs
            .get(name)
            .and_then(|j| j.cron.as_ref())
            .map(|c| usize::try_from(c.spec.history_limit).unwrap_or(usize::MAX))
        else {
            return;
        };
        let mut ended: Vec<(u64, String)> = self
            .jobs
            .values()
            .filter(|j| j.ended_ms.is_some())
            .filter_map(|j| {
                let r = j.run_of.as_ref()?;
                (r.cron == name).then(|| (r.run, j.spec.name.clone()))
            })
            .collect();
        ended.sort();
        let excess = ended.len().saturating_sub(limit);
        for (_, run) in ended.into_iter().take(excess) {
            self.jobs.remove(&run);
            self.pending.push(Write::Delete(job_key(&run)));
            self.pending.push(Write::Delete(shard_key(&run, 0)));
        }
    }
}
