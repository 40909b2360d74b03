//! When a cron job's runs are due: a five-field cron expression in a time zone, or an ISO 8601
//! repeating interval. Times are milliseconds since the Unix epoch.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::spec::{CronSpec, Schedule, cron_schedule};

/// How far back the latest due occurrence of a cron expression is looked for: a `* * * * *`
/// job down for months walks a day of minutes, not months of them.
const CRON_LOOKBACK_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub(crate) enum Timetable {
    Cron {
        schedule: Box<jiff_cron::Schedule>,
        zone: TimeZone,
    },
    Every {
        start_ms: i64,
        every_ms: i64,
        repetitions: Option<u64>,
    },
}

impl Timetable {
    pub(crate) fn new(spec: &CronSpec) -> Result<Self, String> {
        Ok(match &spec.schedule {
            Schedule::Cron(expr) => {
                let fields: Vec<&str> = expr.split_whitespace().collect();
                Self::Cron {
                    schedule: Box::new(cron_schedule(&fields)?),
                    zone: TimeZone::get(&spec.timezone).map_err(|e| e.to_string())?,
                }
            }
            Schedule::Every {
                start,
                every,
                repetitions,
            } => Self::Every {
                start_ms: start.as_millisecond(),
                every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1),
                repetitions: *repetitions,
            },
        })
    }

    /// The first occurrence strictly after `after_ms`.
    pub(crate) fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = i64::try_from(after_ms).ok()?;
        match self {
            Self::Cron { schedule, zone } => {
                let from = Timestamp::from_millisecond(after)
                    .ok()?
                    .to_zoned(zone.clone());
                let next = schedule.after(from).next()?;
                u64::try_from(next.timestamp().as_millisecond()).ok()
            }
            Self::Every {
                start_ms,
                every_ms,
                repetitions,
            } => {
                let k = if after < *start_ms {
                    0
                } else {
                    (after - start_ms) / every_ms + 1
                };
                if repetitions.is_some_and(|n| u64::try_from(k).unwrap_or(u64::MAX) >= n) {
                    return None;
                }
                u64::try_from(start_ms.checked_add(k.checked_mul(*every_ms)?)?).ok()
            }
        }
    }

    /// The latest occurrence in `(after_ms, now_ms]`, and how many fell in it (at least 1;
    /// a cron expression's are counted over the last [`CRON_LOOKBACK_MS`] at most).
    pub(crate) fn latest_due(&self, after_ms: u64, now_ms: u64) -> Option<(u64, u64)> {
        let first = self.next_after(after_ms).filter(|t| *t <= now_ms)?;
        match self {
            Self::Every {
                start_ms,
                every_ms,
                repetitions,
            } => {
                let index = |t: u64| (i64::try_from(t).unwrap_or(i64::MAX) - start_ms) / every_ms;
                let mut last = index(now_ms);
                if let Some(n) = repetitions {
                    last = last.min(i64::try_from(*n).unwrap_or(i64::MAX) - 1);
                }
                let at = u64::try_from(start_ms + last * every_ms).ok()?;
                let count = u64::try_from(last - index(first) + 1).unwrap_or(1);
                Some((at, count))
            }
            Self::Cron { .. } => {
                let mut at = first;
                let mut count = 1;
                let from = at.max(now_ms.saturating_sub(CRON_LOOKBACK_MS));
                if from > at {
                    at = self
                        .next_after(from - 1)
                        .filter(|t| *t <= now_ms)
                        .unwrap_or(at);
                }
                while let Some(next) = self.next_after(at).filter(|t| *t <= now_ms) {
                    at = next;
                    count += 1;
                }
                Some((at, count))
            }
        }
    }
}
