//! What the Jobs service shows of a job.

use corral_proto::v1;

use super::{Job, JobState};
use crate::spec::JobKind;

impl Job {
    pub(super) fn view(&self) -> v1::Job {
        let (rollout, outdated) = self.rollout_view();
        v1::Job {
            name: self.spec.name.clone(),
            kind: kind_name(&self.spec.kind).into(),
            state: if self.cron.as_ref().is_some_and(|c| c.suspended)
                && self.state == JobState::Running
            {
                v1::JobState::Suspended.into()
            } else {
                self.state.to_proto().into()
            },
            // What holds a running job back, else what happened to it.
            message: if self.placement_note.is_empty() || self.state.has_ended() {
                self.message.clone()
            } else {
                self.placement_note.clone()
            },
            instances: u64::from(self.target()),
            succeeded: self.counts.succeeded,
            failed: self.counts.failed,
            running: self.counts.running,
            started: self.counts.started,
            waiting: self.counts.waiting,
            retrying: self.counts.retrying,
            attempts: self.counts.attempts,
            depends_on: self.batch.depends_on.clone(),
            submitted_unix_millis: self.submitted_ms,
            ended_unix_millis: self.ended_ms.unwrap_or(0),
            recent_failures: self.recent_failures.iter().cloned().collect(),
            cron_job: self
                .run_of
                .as_ref()
                .map(|r| r.cron.clone())
                .unwrap_or_default(),
            next_run_unix_millis: self
                .cron
                .as_ref()
                .filter(|c| !c.suspended && self.state == JobState::Running)
                .and_then(|c| c.next_ms)
                .unwrap_or(0),
            schedule: self
                .cron
                .as_ref()
                .map(|c| c.spec.schedule.to_string())
                .unwrap_or_default(),
            version: self.version,
            rollout,
            outdated,
            owner: self.submission.owner.clone().unwrap_or_default(),
        }
    }
}

fn kind_name(kind: &JobKind) -> &'static str {
    match kind {
        JobKind::Batch(_) => "batch",
        JobKind::Service(_) => "service",
        JobKind::Cron(_) => "cron",
    }
}
