//! What the master says of launched instances: reconciling those not heard of, and applying
//! status updates (success, retries, instances that never reached an agent, preemption).

use std::time::Duration;

use corral_proto::TaskStatus;
use corral_types::{TaskId, TaskState};

use super::{Book, JobState, Phase, split_task_id, task_id};

impl Book {
    /// The launches of `tasks` reached the master (or it answered them): from now on they
    /// are reconciled when not heard of.
    pub(crate) fn sent(&mut self, tasks: &[TaskId], now_ms: u64) {
        for task in tasks {
            let Some((name, index, version)) = split_task_id(task.as_str()) else {
                continue;
            };
            if let Some(instance) = self
                .jobs
                .get_mut(name)
                .and_then(|job| job.instances.get_mut(index as usize))
                .filter(|i| i.version == version)
            {
                instance.unsent = false;
                instance.asked_ms = now_ms;
            }
        }
    }

    /// Task IDs of launched instances whose launch was sent, and of old tasks a rolling
    /// update keeps, for reconciliation.
    pub(crate) fn launched(&self) -> Vec<TaskId> {
        self.jobs
            .values()
            .flat_map(|job| {
                job.instances
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.phase == Phase::Launched && !i.unsent)
                    .filter_map(|(index, i)| task_id(&job.spec.name, index as u32, i.version))
                    .chain(job.outgoing_tasks())
            })
            .collect()
    }

    /// Launched instances that have not reported RUNNING and were launched, or last asked
    /// about, `older_than_ms` or more ago: to reconcile again. The master does not answer
    /// for a task while the agent that may hold it has not re-registered after a failover,
    /// so the framework asks again (as Mesos frameworks do); each is marked asked now.
    pub(crate) fn unconfirmed(&mut self, now_ms: u64, older_than_ms: u64) -> Vec<TaskId> {
        let mut tasks = Vec::new();
        for job in self.jobs.values_mut() {
            if job.counts.running == job.counts.started {
                continue;
            }
            for (index, instance) in job.instances.iter_mut().enumerate() {
                if instance.phase == Phase::Launched
                    && !instance.unsent
                    && instance.running_since_ms.is_none()
                    && instance.asked_ms.saturating_add(older_than_ms) <= now_ms
                {
                    instance.asked_ms = now_ms;
                    tasks.extend(task_id(&job.spec.name, index as u32, instance.version));
                }
            }
        }
        tasks
    }

    /// Applies a status update; returns tasks to kill (the rest of a job a failure stopped).
    pub(crate) fn update(&mut self, status: &TaskStatus, now_ms: u64) -> Vec<TaskId> {
        let Some((name, index, version)) = split_task_id(status.task_id.as_str()) else {
            return Vec::new();
        };
        let Some(job) = self.jobs.get_mut(name) else {
            return Vec::new();
        };
        let Some(instance) = job.instances.get(index as usize) else {
            return Vec::new();
        };
        if instance.outgoing.is_some_and(|o| o.version == version) {
            job.outgoing_update(index, status.state);
            let name = name.to_owned();
            return self.after_change(&name, now_ms);
        }
        if instance.phase != Phase::Launched || instance.version != version {
            // A late or repeated update of an attempt already accounted for.
            return Vec::new();
        }
        let state = status.state;
        if state == TaskState::Running {
            if job.instances[index as usize].running_since_ms.is_none() {
                job.instances[index as usize].running_since_ms = Some(now_ms);
                job.counts.started += 1;
            }
            if job.rollout.is_none() {
                return Vec::new();
            }
            let name = name.to_owned();
            return self.after_change(&name, now_ms);
        }
        let ended = state.is_terminal() || state == TaskState::Unknown;
        // Preempted, or never reached an agent (UNKNOWN answers a launch the master never
        // took, e.g. one sent as the old leader died): the task is not at fault, so it runs
        // again without using a retry.
        let never_ran = matches!(state, TaskState::Unknown | TaskState::Dropped);
        let preempted = job.instances[index as usize].preempted;
        if ended && (preempted || never_ran) {
            job.record_failure(index, status);
            if preempted && let Some(attempt) = job.recent_failures.front_mut() {
                attempt.message = "preempted for production work".into();
            }
            if preempted {
                self.preempting = self.preempting.saturating_sub(1);
            }
            let instance = &mut job.instances[index as usize];
            instance.preempted = false;
            instance.excused += 1;
            if job.state == JobState::Running && index < job.target() {
                job.requeue(index, now_ms, Duration::ZERO);
            } else if job.is_service() {
                job.retire(index);
            } else {
                job.finish(index, Phase::Failed);
            }
            let name = name.to_owned();
            return self.after_change(&name, now_ms);
        }
        if job.is_service() {
            if !ended {
                return Vec::new();
            }
            if index < job.target() && job.state == JobState::Running {
                job.record_failure(index, status);
                job.restart(index, now_ms);
                if version == job.version
                    && let Some(rollout) = job.rollout.as_mut()
                {
                    rollout.failures += 1;
                }
            } else {
                job.retire(index);
            }
            let name = name.to_owned();
            return self.after_change(&name, now_ms);
        }
        if state == TaskState::Finished {
            job.finish(index, Phase::Succeeded);
            if job.keep_outputs {
                job.outputs.insert(index, status.outputs.clone());
                job.dirty_outputs.insert(index);
            }
        } else if state.is_terminal() || state == TaskState::Unknown {
            job.record_failure(index, status);
            let stopped = job.state != JobState::Running;
            let instance = &job.instances[index as usize];
            let tries = instance.attempts - instance.excused;
            if !stopped && u64::from(tries) <= job.batch.retries {
                job.retry(index, now_ms);
            } else {
                job.finish(index, Phase::Failed);
            }
        } else {
            return Vec::new();
        }
        let name = name.to_owned();
        self.after_change(&name, now_ms)
    }
}
