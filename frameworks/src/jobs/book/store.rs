//! The book in the framework store: restoring it from its records and shards after a
//! restart, and the writes a change needs (see `record` for the keys and forms).

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_types::TaskOutput;

use super::{Book, Counts, Instance, Job, JobState, Outgoing, Phase, Rollout, run_spec};
use crate::jobs::record::{
    CronRecord, EndedCounts, JobRecord, OutputsRecord, RolloutRecord, SHARD_SIZE, ServiceRecord,
    ShardRecord, Write, job_key, outputs_key, shard_key,
};
use crate::spec::Format;

impl Book {
    /// Puts a job back from its stored record and shards (on a restart), with every instance
    /// that was launched still launched: [`Book::launched`] lists them for reconciliation.
    pub(crate) fn restore(
        &mut self,
        record: JobRecord,
        shards: &BTreeMap<u32, ShardRecord>,
        outputs: BTreeMap<u32, Vec<TaskOutput>>,
    ) -> Result<(), String> {
        let name = record.name.clone();
        let format = Format::from_name(&record.submission.format)?;
        // A cron job's run is made from the cron job's spec.
        let named = record.run_of.as_ref().map_or(&name, |r| &r.cron);
        let spec = crate::spec::parse(&record.submission.source, format, &record.submission.file)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|s| s.name == *named)
            .ok_or_else(|| format!("job {named}: not in its stored spec"))?;
        let spec = match &record.run_of {
            Some(run) => run_spec(&spec, run.run),
            None => spec,
        };
        let state = JobState::parse(&record.state)
            .ok_or_else(|| format!("job {name}: unknown state {:?}", record.state))?;
        let mut job = Job::new(
            record.seq,
            Arc::new(record.submission),
            spec,
            record.submitted_ms,
        );
        job.state = state;
        job.message = record.message;
        job.ended_ms = record.ended_ms;
        job.run_of = record.run_of;
        job.version = record.version.max(1);
        if let Some(rollout) = record.rollout {
            job.previous = rollout.previous.map(Arc::new);
            job.rollout = Some(Rollout {
                failures: rollout.failures,
                rollback_of: rollout.rollback_of,
                next_check_ms: None,
            });
        }
        if let (Some(cron), Some(stored)) = (job.cron.as_mut(), record.cron) {
            cron.last_ms = stored.last_ms;
            cron.next_ms = cron.timetable.next_after(stored.last_ms);
            cron.next_run = stored.next_run;
            cron.suspended = stored.suspended;
        }
        job.outputs = outputs;
        job.dirty_record = false;
        job.dirty_shards.clear();
        self.next_seq = self.next_seq.max(record.seq + 1);
        if let Some(ended) = record.ended {
            job.instances.clear();
            job.ready.clear();
            job.counts = Counts {
                succeeded: ended.succeeded,
                failed: ended.failed,
                attempts: ended.attempts,
                ..Counts::default()
            };
        } else {
            if let Some(service) = record.service {
                job.service_target = Some(service.target);
                let len = service.len.min(crate::spec::MAX_INSTANCES) as usize;
                job.instances.resize(len, Instance::default());
            }
            job.restore_shards(shards)?;
        }
        self.jobs.insert(name.clone(), job);
        Ok(())
    }

    /// After every job is restored: outputs kept, templates of running jobs, ended jobs'
    /// leftovers cleaned.
    pub(crate) fn restored(&mut self, now_ms: u64) {
        self.refresh_keep_outputs();
        let mut order: Vec<(u64, String)> = self
            .jobs
            .values()
            .map(|j| (j.seq, j.spec.name.clone()))
            .collect();
        order.sort();
        for (_, name) in order {
            match self.jobs.get(&name).map(|j| j.state) {
                Some(JobState::Running) => {
                    self.activate(&name, now_ms);
                }
                Some(JobState::Waiting) => self.start_if_ready(&name, now_ms),
                _ => {}
            }
        }
    }

    /// The store writes every change since the last call needs, in an order that is safe to
    /// apply one by one.
    pub(crate) fn take_writes(&mut self) -> Vec<Write> {
        let mut writes = std::mem::take(&mut self.pending);
        for job in self.jobs.values_mut() {
            job.writes(&mut writes);
        }
        writes
    }
}

impl Job {
    pub(super) fn restore_shards(
        &mut self,
        shards: &BTreeMap<u32, ShardRecord>,
    ) -> Result<(), String> {
        let name = &self.spec.name;
        self.ready.clear();
        self.held.clear();
        self.counts = Counts::default();
        let count = self.instances.len();
        for (index, instance) in self.instances.iter_mut().enumerate() {
            let (shard, offset) = (index as u32 / SHARD_SIZE, index as u32 % SHARD_SIZE);
            let record = shards
                .get(&shard)
                .ok_or_else(|| format!("job {name}: shard {shard} of its instances is missing"))?;
            let code = record
                .phases
                .chars()
                .nth(offset as usize)
                .ok_or_else(|| format!("job {name}: shard {shard} is short"))?;
            let phase = Phase::from_code(code)
                .ok_or_else(|| format!("job {name}: unknown phase {code:?} in shard {shard}"))?;
            instance.phase = phase;
            instance.attempts = record
                .attempts
                .get(&offset)
                .copied()
                .unwrap_or(phase.usual_attempts());
            instance.version = record
                .versions
                .get(&offset)
                .copied()
                .unwrap_or(self.version);
            // Its kill may not have been asked: the rolling update asks again.
            instance.outgoing = record.outgoing.get(&offset).map(|&version| Outgoing {
                version,
                running: false,
                killing: false,
            });
            self.counts.attempts += u64::from(instance.attempts);
            match phase {
                // A slot whose old task is still launched (beside it, or stopping) launches
                // its new one at once: whether it was waiting for room is not stored, and one
                // task too many for a while is better than one too few.
                Phase::Waiting => {
                    self.counts.waiting += 1;
                    self.ready.push_back(index as u32);
                }
                Phase::Launched => self.counts.running += 1,
                Phase::Succeeded => self.counts.succeeded += 1,
                Phase::Failed => self.counts.failed += 1,
            }
        }
        debug_assert_eq!(self.instances.len(), count);
        self.dirty_shards.clear();
        Ok(())
    }

    pub(super) fn writes(&mut self, out: &mut Vec<Write>) {
        let name = self.spec.name.clone();
        for index in std::mem::take(&mut self.dirty_outputs) {
            let outputs = self.outputs.get(&index).map(|o| OutputsRecord {
                outputs: o
                    .iter()
                    .map(|o| (o.path.clone(), o.size, o.digest.to_string()))
                    .collect(),
            });
            if let Some(record) = outputs {
                out.push(Write::put(outputs_key(&name, index), &record));
            }
        }
        let shards = std::mem::take(&mut self.dirty_shards);
        if self.drop_shards {
            let count = (self.instances.len() as u32)
                .max(self.target())
                .div_ceil(SHARD_SIZE);
            // The flush stores the record (with the final counts) before it deletes the
            // shards: a crash between the two leaves stray shards of an ended job, which a
            // restore ignores.
            self.dirty_record = false;
            out.push(Write::put(job_key(&name), &self.record()));
            out.extend((0..count).map(|s| Write::Delete(shard_key(&name, s))));
            self.drop_shards = false;
            self.instances.clear();
            return;
        }
        let shard_count = (self.instances.len() as u32).div_ceil(SHARD_SIZE);
        for shard in shards.into_iter().filter(|s| *s < shard_count) {
            out.push(Write::put(shard_key(&name, shard), &self.shard(shard)));
        }
        for shard in std::mem::take(&mut self.dropped_shards) {
            if shard >= shard_count {
                out.push(Write::Delete(shard_key(&name, shard)));
            }
        }
        if std::mem::take(&mut self.dirty_record) {
            out.push(Write::put(job_key(&name), &self.record()));
        }
    }

    pub(super) fn shard(&self, shard: u32) -> ShardRecord {
        let start = (shard * SHARD_SIZE) as usize;
        let end = (start + SHARD_SIZE as usize).min(self.instances.len());
        let mut record = ShardRecord {
            phases: String::with_capacity(end - start),
            attempts: BTreeMap::new(),
            versions: BTreeMap::new(),
            outgoing: BTreeMap::new(),
        };
        for (offset, instance) in self.instances[start..end].iter().enumerate() {
            let offset = offset as u32;
            record.phases.push(instance.phase.code());
            if instance.attempts != instance.phase.usual_attempts() {
                record.attempts.insert(offset, instance.attempts);
            }
            if instance.phase == Phase::Launched && instance.version != self.version {
                record.versions.insert(offset, instance.version);
            }
            if let Some(outgoing) = instance.outgoing {
                record.outgoing.insert(offset, outgoing.version);
            }
        }
        record
    }

    pub(super) fn record(&self) -> JobRecord {
        JobRecord {
            seq: self.seq,
            name: self.spec.name.clone(),
            submission: (*self.submission).clone(),
            state: self.state.as_str().into(),
            message: self.message.clone(),
            submitted_ms: self.submitted_ms,
            ended_ms: self.ended_ms,
            ended: self.ended_ms.map(|_| EndedCounts {
                succeeded: self.counts.succeeded,
                failed: self.counts.failed,
                attempts: self.counts.attempts,
            }),
            cron: self.cron.as_ref().map(|c| CronRecord {
                last_ms: c.last_ms,
                next_run: c.next_run,
                suspended: c.suspended,
            }),
            run_of: self.run_of.clone(),
            service: self.service_target.map(|target| ServiceRecord {
                target,
                len: self.instances.len() as u64,
            }),
            version: self.version,
            rollout: self.rollout.as_ref().map(|r| RolloutRecord {
                failures: r.failures,
                rollback_of: r.rollback_of.clone(),
                previous: self.previous.as_deref().cloned(),
            }),
        }
    }
}
