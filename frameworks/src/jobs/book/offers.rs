//! Offers: placing ready instances, production jobs first, and how long to decline what
//! takes nothing.

use std::time::Duration;

use corral_proto::jobs::LaunchPacer;
use corral_proto::{ModuleSource, TaskInfo};
use corral_scheduler::Offer;
use corral_types::{OfferId, Resources};

use super::{Book, Tally, millis};
use crate::jobs::placement;
use crate::spec::{Placement as Spread, Tier};

/// Offers that can take nothing are declined for this long (at most).
const DECLINE_FOR: Duration = Duration::from_secs(5);
/// Shortest refusal, so a backoff about to end does not spin the allocator.
const MIN_DECLINE: Duration = Duration::from_millis(20);

/// Launches and declines for one round of offers.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) launches: Vec<(OfferId, Vec<TaskInfo>)>,
    pub(crate) declines: Vec<OfferId>,
    /// How long the declined offers' resources should not come back.
    pub(crate) refuse: Duration,
}

impl Book {
    /// Places ready instances on `offers`: jobs in submission order, bin-packed (an offer is
    /// filled before the next) or spread (one instance per offer per round, round robin).
    /// Each launch is taken from its job owner's launch rate (`pacer`); a job whose owner
    /// has none left waits for a later round.
    pub(crate) fn plan(&mut self, offers: &[Offer], now_ms: u64, pacer: &dyn LaunchPacer) -> Plan {
        self.release_due(now_ms);
        let mut plan = Plan::default();
        // When the first job held back by its owner's launch rate may launch again.
        let mut paced_until: Option<u64> = None;
        let mut left: Vec<Resources> = offers.iter().map(|o| o.resources.clone()).collect();
        let mut tasks: Vec<Vec<TaskInfo>> = vec![Vec::new(); offers.len()];
        // Production jobs first (Aurora's tiers), then in submission order.
        let mut running: Vec<(bool, u64, String)> = self
            .running
            .iter()
            .filter_map(|n| self.jobs.get(n))
            .map(|j| (j.spec.tier == Tier::Preemptible, j.seq, j.spec.name.clone()))
            .collect();
        running.sort();
        for (_, _, name) in &running {
            let Some(job) = self.jobs.get_mut(name) else {
                continue;
            };
            let Some(template) = job.template.clone() else {
                continue;
            };
            let before = job.ready.len();
            job.paced_until_ms = None;
            if before == 0 {
                job.starved_since_ms = None;
                continue;
            }
            job.tally.see(&job.spec.constraints, offers);
            // Offers holding the module compiled already first.
            let mut order: Vec<usize> = (0..offers.len()).collect();
            if let ModuleSource::Digest(d) = &template.module {
                order.sort_by_key(|&i| !offers[i].has_cached(d));
            }
            'fill: loop {
                let mut placed_any = false;
                for &i in &order {
                    loop {
                        if job.ready.is_empty() {
                            break 'fill;
                        }
                        let offer = &offers[i];
                        // What is offered in a role is for that role's jobs.
                        if offer.role.as_str() != job.role()
                            || !left[i].contains(&template.resources)
                            || !job.tally.admits(&job.spec.constraints, offer)
                        {
                            break;
                        }
                        if let Some(owner) = &job.submission.owner
                            && let Err(wait) = pacer.take(owner)
                        {
                            let until = now_ms.saturating_add(millis(wait));
                            job.paced_until_ms = Some(until);
                            paced_until = Some(paced_until.map_or(until, |u| u.min(until)));
                            break 'fill;
                        }
                        let Some(index) = job.ready.pop_front() else {
                            break 'fill;
                        };
                        left[i] = left[i].saturating_sub(&template.resources);
                        let placed = (!job.spec.constraints.is_empty())
                            .then(|| Tally::values(&job.spec.constraints, offer));
                        tasks[i].push(job.launch(index, &template, placed));
                        placed_any = true;
                        if job.spec.placement == Spread::Spread {
                            break;
                        }
                    }
                }
                // Another pass may place more once constraints see this one's (GROUP_BY).
                if !placed_any {
                    break;
                }
            }
            let placed_now = before - job.ready.len();
            if job.paced_until_ms.is_some() {
                job.starved_since_ms = None;
            } else if placed_now > 0 || job.ready.is_empty() {
                job.starved_since_ms = (!job.ready.is_empty()).then_some(now_ms);
            }
            let message = if let (Some(until), Some(owner)) =
                (job.paced_until_ms, &job.submission.owner)
            {
                format!(
                    "held back by the launch rate of principal {owner}: the next launch in {:.1} s",
                    (until - now_ms) as f64 / 1000.0
                )
            } else if job.ready.is_empty() || placed_now > 0 {
                String::new()
            } else {
                placement::refusal(&job.spec.constraints, offers, &job.tally)
            };
            job.placement_note = message;
        }
        for (offer, launches) in offers.iter().zip(tasks) {
            if launches.is_empty() {
                plan.declines.push(offer.id.clone());
            } else {
                plan.launches.push((offer.id.clone(), launches));
            }
        }
        plan.refuse = self.refusal(now_ms);
        if let Some(until) = paced_until {
            let paced = Duration::from_millis(until - now_ms).max(MIN_DECLINE);
            plan.refuse = plan.refuse.min(paced);
        }
        plan
    }

    /// How long offers taking nothing now should stay away: until the next backoff ends, at
    /// most [`DECLINE_FOR`].
    pub(super) fn refusal(&self, now_ms: u64) -> Duration {
        let due = self
            .running
            .iter()
            .filter_map(|name| self.jobs.get(name))
            .filter_map(|job| job.backoff.first().map(|(due, _)| *due))
            .min();
        match due {
            Some(due) => {
                Duration::from_millis(due.saturating_sub(now_ms)).clamp(MIN_DECLINE, DECLINE_FOR)
            }
            None => DECLINE_FOR,
        }
    }

    /// Whether any job has an instance to launch now or after a backoff: when none has, the
    /// framework suppresses its offers.
    pub(crate) fn wants_offers(&self) -> bool {
        self.running
            .iter()
            .filter_map(|n| self.jobs.get(n))
            .any(|j| !j.ready.is_empty() || !j.backoff.is_empty())
    }

    pub(super) fn release_due(&mut self, now_ms: u64) {
        for name in &self.running {
            if let Some(job) = self.jobs.get_mut(name) {
                while let Some(&(due, index)) = job.backoff.first() {
                    if due > now_ms {
                        break;
                    }
                    job.backoff.pop_first();
                    job.counts.retrying -= 1;
                    job.counts.waiting += 1;
                    job.ready.push_back(index);
                }
            }
        }
    }
}
