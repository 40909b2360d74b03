//! Aurora's tiers: production work takes the place of preemptible instances.

use std::time::Duration;

use corral_types::{Resources, TaskId};

use super::{Book, Phase, millis, task_id};
use crate::spec::Tier;

/// How long a production job's ready instances wait for offers before preemptible ones are
/// killed to make room.
pub(super) const PREEMPT_AFTER: Duration = Duration::from_secs(2);

impl Book {
    /// Production jobs whose ready instances could not be placed for [`PREEMPT_AFTER`] take
    /// the place of preemptible instances of their role: enough of those (the latest jobs' highest
    /// instances first) are killed to free what the waiting instances need, and go back to
    /// waiting. One round at a time: none until the previous round's victims ended.
    pub(super) fn preempt(&mut self, now_ms: u64) -> Vec<TaskId> {
        let mut kills = Vec::new();
        let mut starving = Vec::new();
        for name in &self.running {
            if let Some(j) = self.jobs.get_mut(name)
                && j.spec.tier == Tier::Production
                && !j.ready.is_empty()
                && j.paced_until_ms.is_none_or(|until| until <= now_ms)
            {
                let since = *j.starved_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= millis(PREEMPT_AFTER) {
                    starving.push(name.clone());
                }
            }
        }
        if starving.is_empty() || self.preempting > 0 {
            return kills;
        }
        // Never across roles: a round makes room in the first starving job's role.
        let role_of = |name: &String| self.jobs.get(name).map(|j| j.role().to_owned());
        let role = role_of(&starving[0]);
        starving.retain(|n| role_of(n) == role);
        let mut needed = Resources::new();
        for name in &starving {
            if let Some(job) = self.jobs.get_mut(name) {
                for _ in 0..job.ready.len() {
                    needed = needed.saturating_add(&job.spec.resources);
                }
                job.starved_since_ms = Some(now_ms);
            }
        }
        let mut victims: Vec<(u64, String)> = self
            .running
            .iter()
            .filter_map(|n| self.jobs.get(n))
            .filter(|j| j.spec.tier == Tier::Preemptible && j.counts.running > 0)
            .filter(|j| Some(j.role()) == role.as_deref())
            .map(|j| (j.seq, j.spec.name.clone()))
            .collect();
        victims.sort_by(|a, b| b.cmp(a));
        let mut freed = Resources::new();
        'jobs: for (_, name) in victims {
            let Some(job) = self.jobs.get_mut(&name) else {
                continue;
            };
            let mut taken = 0;
            for index in (0..job.instances.len()).rev() {
                if freed.contains(&needed) {
                    break;
                }
                let instance = &mut job.instances[index];
                if instance.phase != Phase::Launched || instance.preempted {
                    continue;
                }
                instance.preempted = true;
                freed = freed.saturating_add(&job.spec.resources);
                taken += 1;
                kills.extend(task_id(&name, index as u32, instance.version));
            }
            if taken > 0 {
                job.message = format!(
                    "{taken} instances preempted for production work ({})",
                    starving.join(", ")
                );
            }
            if freed.contains(&needed) {
                break 'jobs;
            }
        }
        self.preempting += kills.len();
        kills
    }
}
