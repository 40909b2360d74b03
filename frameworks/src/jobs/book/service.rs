//! Services: restarting instances with a growing backoff, and scaling.

use std::time::Duration;

use corral_types::TaskId;

use super::{Book, CallError, Instance, Job, Phase, backoff_delay, millis, task_id};
use crate::jobs::record::SHARD_SIZE;

/// A service instance that ran this long before it ended starts its backoff over.
const SERVICE_HEALTHY_AFTER: Duration = Duration::from_secs(60);

impl Book {
    /// Scales a service to `instances`: new ones start, those past it are killed (the
    /// highest indices first go). Returns the tasks to kill.
    pub(crate) fn scale(&mut self, name: &str, instances: u64) -> Result<Vec<TaskId>, CallError> {
        let job = self.jobs.get_mut(name).ok_or(CallError::NotFound)?;
        if !job.is_service() {
            return Err(CallError::NotService);
        }
        if job.state.has_ended() {
            return Err(CallError::Ended);
        }
        if instances > crate::spec::MAX_INSTANCES {
            return Err(CallError::TooMany);
        }
        let old = job.target();
        let new = u32::try_from(instances).unwrap_or(u32::MAX);
        job.service_target = Some(instances);
        job.dirty_record = true;
        let mut kills = Vec::new();
        if new > old {
            // Retired ones not yet dropped come back; then new ones.
            let len = job.instances.len() as u32;
            for index in old..new.min(len) {
                if job.instances[index as usize].phase == Phase::Waiting {
                    job.ready.push_back(index);
                    job.counts.waiting += 1;
                    job.dirty_shards.insert(index / SHARD_SIZE);
                }
            }
            if new > len {
                job.instances.resize(new as usize, Instance::default());
                job.ready.extend(len..new);
                job.counts.waiting += u64::from(new - len);
                job.dirty_shards
                    .extend(len / SHARD_SIZE..new.div_ceil(SHARD_SIZE));
            }
        } else if new < old {
            let waiting = job.ready.len();
            job.ready.retain(|i| *i < new);
            job.counts.waiting -= (waiting - job.ready.len()) as u64;
            let retrying = job.backoff.len();
            job.backoff.retain(|(_, i)| *i < new);
            job.counts.retrying -= (retrying - job.backoff.len()) as u64;
            let name = job.spec.name.clone();
            for (index, instance) in job.instances.iter_mut().enumerate().skip(new as usize) {
                if instance.phase == Phase::Launched {
                    kills.extend(task_id(&name, index as u32, instance.version));
                }
                // A slot going away takes the old task an update kept for it.
                if let Some(outgoing) = instance.outgoing.as_mut().filter(|o| !o.killing) {
                    outgoing.killing = true;
                    kills.extend(task_id(&name, index as u32, outgoing.version));
                }
            }
            for index in new..job.instances.len() as u32 {
                if job.held.remove(&index) {
                    job.counts.waiting -= 1;
                }
            }
            job.compact();
        }
        Ok(kills)
    }
}

impl Job {
    /// A service instance ended: it starts again after its backoff, which grows while its
    /// attempts end within [`SERVICE_HEALTHY_AFTER`] of running and starts over after one
    /// that ran longer (Marathon's).
    pub(super) fn restart(&mut self, index: u32, now_ms: u64) {
        let instance = &mut self.instances[index as usize];
        let ran_long = instance
            .running_since_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= millis(SERVICE_HEALTHY_AFTER));
        instance.streak = if ran_long { 1 } else { instance.streak + 1 };
        let delay = backoff_delay(&self.batch.backoff, instance.streak);
        self.requeue(index, now_ms, delay);
    }

    pub(super) fn is_service(&self) -> bool {
        self.service_target.is_some()
    }

    /// The instances the job should have.
    pub(super) fn target(&self) -> u32 {
        u32::try_from(self.service_target.unwrap_or(self.batch.instances)).unwrap_or(u32::MAX)
    }

    /// A service instance past the target ended: it is not started again.
    pub(super) fn retire(&mut self, index: u32) {
        self.leave_launched(index);
        self.instances[index as usize].phase = Phase::Waiting;
        self.compact();
    }

    /// Drops the instances past a service's target that no longer run.
    pub(super) fn compact(&mut self) {
        let before = self.instances.len() as u32;
        while self.instances.len() > self.target() as usize
            && self
                .instances
                .last()
                .is_some_and(|i| i.phase != Phase::Launched && i.outgoing.is_none())
        {
            self.instances.pop();
        }
        let after = self.instances.len() as u32;
        if after < before {
            let kept = after.div_ceil(SHARD_SIZE);
            self.dropped_shards
                .extend(kept..before.div_ceil(SHARD_SIZE));
            if after > 0 {
                self.dirty_shards.insert((after - 1) / SHARD_SIZE);
            }
        }
    }
}
