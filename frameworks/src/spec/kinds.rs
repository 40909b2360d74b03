//! What only one kind of job has (batch, service and cron fields), and reading it.

// The readers share the parent module's helpers and types.
use super::*;

/// What kind of job, and what only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    Batch(BatchSpec),
    Service(ServiceSpec),
    Cron(CronSpec),
}

/// Runs `instances` to completion.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    /// 1 to [`MAX_INSTANCES`]; each gets its index in `CORRAL_TASK_INDEX`.
    pub instances: u64,
    /// Attempts after the first, per instance (default 3).
    pub retries: u64,
    pub backoff: Backoff,
    /// Stop the job once this many instances have failed for good (default: never stop
    /// early).
    pub max_failures: Option<u64>,
    /// Jobs that must succeed first (Chronos's parents).
    pub depends_on: Vec<String>,
}

/// Keeps `instances` running.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub instances: u64,
    /// Marathon's defaults: 1 s, growing 1.15 times to at most 5 minutes.
    pub backoff: Backoff,
    pub update: UpdatePolicy,
}

/// A rolling update's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// Instances that may be down at once (default 0).
    pub max_unavailable: u64,
    /// Instances started beyond `instances` at once (default 1).
    pub max_surge: u64,
    /// How long a new instance must have been running before it counts as up and an old one
    /// is stopped for it (default 1 s; Kubernetes' `minReadySeconds`).
    pub min_running: Duration,
    /// Failed attempts of new instances after which the update is rolled back to the
    /// previous spec (default 3; 0: never).
    pub rollback_after: u64,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            max_unavailable: 0,
            max_surge: 1,
            min_running: Duration::from_secs(1),
            rollback_after: 3,
        }
    }
}

/// Delay before a failed instance is retried: `initial`, times `factor` each time, at most
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

/// Runs on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSpec {
    pub schedule: Schedule,
    /// An IANA time zone name (default `UTC`).
    pub timezone: String,
    pub concurrency: Concurrency,
    /// A run that could not start within this of its time is skipped.
    pub starting_deadline: Option<Duration>,
    /// Finished runs kept in the history (default 10).
    pub history_limit: u64,
    pub suspended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A five-field cron expression (`*/5 * * * *`), as written.
    Cron(String),
    /// An ISO 8601 repeating interval (`R/2027-01-01T00:00:00Z/PT1H`, `R5/...`), as
    /// Chronos.
    Every {
        start: jiff::Timestamp,
        every: Duration,
        /// `None` repeats forever.
        repetitions: Option<u64>,
    },
}

/// What a due run does while the previous one still runs (Kubernetes's CronJob).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Concurrency {
    /// Start it anyway.
    #[default]
    Allow,
    /// Skip it.
    Forbid,
    /// Kill the running one and start it.
    Replace,
}

pub(super) fn backoff(r: &mut Reader, f: &mut Fields<'_>, default: Backoff) -> Backoff {
    let Some(node) = f.take("backoff") else {
        return default;
    };
    let Some(mut t) = r.table(node, "backoff") else {
        return default;
    };
    let backoff = Backoff {
        initial: t
            .take("initial")
            .and_then(|n| r.duration(n, "backoff.initial"))
            .unwrap_or(default.initial),
        factor: t
            .take("factor")
            .and_then(|n| {
                let factor = r.float(n, "backoff.factor")?;
                if (1.0..=10.0).contains(&factor) {
                    Some(factor)
                } else {
                    r.error(
                        n.pos,
                        "backoff.factor",
                        format!("{factor} is out of range (1 to 10)"),
                    );
                    None
                }
            })
            .unwrap_or(default.factor),
        max: t
            .take("max")
            .and_then(|n| r.duration(n, "backoff.max"))
            .unwrap_or(default.max),
    };
    if backoff.max < backoff.initial {
        r.error(t.pos, "backoff", "`max` is below `initial`");
    }
    t.finish(r, &["initial", "factor", "max"]);
    backoff
}

pub(super) fn instances(r: &mut Reader, f: &mut Fields<'_>) -> u64 {
    f.take("instances")
        .and_then(|n| r.integer(n, "instances", 1..=MAX_INSTANCES))
        .unwrap_or(1)
}

pub(super) fn batch(r: &mut Reader, f: &mut Fields<'_>, name: Option<&str>) -> BatchSpec {
    let instances = instances(r, f);
    let retries = f
        .take("retries")
        .and_then(|n| r.integer(n, "retries", 0..=100))
        .unwrap_or(3);
    let backoff = backoff(
        r,
        f,
        Backoff {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
        },
    );
    let max_failures = f
        .take("max_failures")
        .and_then(|n| r.integer(n, "max_failures", 1..=MAX_INSTANCES));
    let mut depends_on = Vec::new();
    if let Some(node) = f.take("depends_on") {
        for (i, item) in r
            .list(node, "depends_on")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("depends_on[{i}]");
            let Some(job) = job_name(r, item, &path) else {
                continue;
            };
            if Some(job.as_str()) == name {
                r.error(item.pos, &path, "a job cannot depend on itself");
            } else if depends_on.contains(&job) {
                r.error(item.pos, &path, format!("{job:?} is named twice"));
            } else {
                depends_on.push(job);
            }
        }
    }
    BatchSpec {
        instances,
        retries,
        backoff,
        max_failures,
        depends_on,
    }
}

pub(super) fn service(r: &mut Reader, f: &mut Fields<'_>) -> ServiceSpec {
    let instances = instances(r, f);
    let backoff = backoff(
        r,
        f,
        Backoff {
            initial: Duration::from_secs(1),
            factor: 1.15,
            max: Duration::from_secs(300),
        },
    );
    let mut update = UpdatePolicy::default();
    if let Some(node) = f.take("update")
        && let Some(mut t) = r.table(node, "update")
    {
        if let Some(n) = t
            .take("max_unavailable")
            .and_then(|n| r.integer(n, "update.max_unavailable", 0..=MAX_INSTANCES))
        {
            update.max_unavailable = n;
        }
        if let Some(n) = t
            .take("max_surge")
            .and_then(|n| r.integer(n, "update.max_surge", 0..=MAX_INSTANCES))
        {
            update.max_surge = n;
        }
        if let Some(d) = t
            .take("min_running")
            .and_then(|n| r.duration(n, "update.min_running"))
        {
            update.min_running = d;
        }
        if let Some(n) = t
            .take("rollback_after")
            .and_then(|n| r.integer(n, "update.rollback_after", 0..=1000))
        {
            update.rollback_after = n;
        }
        if update.max_unavailable == 0 && update.max_surge == 0 {
            r.error(t.pos, "update", "`max_unavailable` and `max_surge` cannot both be 0: the update could never proceed");
        }
        t.finish(
            r,
            &[
                "max_unavailable",
                "max_surge",
                "min_running",
                "rollback_after",
            ],
        );
    }
    ServiceSpec {
        instances,
        backoff,
        update,
    }
}

pub(super) fn cron(r: &mut Reader, f: &mut Fields<'_>) -> Option<CronSpec> {
    let schedule = required(r, f, "schedule").and_then(|node| {
        let text = r.string(node, "schedule")?;
        schedule::schedule(&text)
            .map_err(|e| r.error(node.pos, "schedule", e))
            .ok()
    });
    let timezone = match f.take("timezone") {
        None => Some("UTC".to_owned()),
        Some(node) => {
            r.string(node, "timezone")
                .and_then(|name| match jiff::tz::TimeZone::get(&name) {
                    Ok(_) => Some(name),
                    Err(_) => {
                        r.error(
                            node.pos,
                            "timezone",
                            format!("{name:?} is not a known time zone (e.g. Europe/Paris, UTC)"),
                        );
                        None
                    }
                })
        }
    };
    let concurrency = choice(
        r,
        f,
        "concurrency",
        &[
            ("allow", Concurrency::Allow),
            ("forbid", Concurrency::Forbid),
            ("replace", Concurrency::Replace),
        ],
    );
    let starting_deadline = f
        .take("starting_deadline")
        .and_then(|n| r.duration(n, "starting_deadline"));
    let history_limit = f
        .take("history_limit")
        .and_then(|n| r.integer(n, "history_limit", 0..=1000))
        .unwrap_or(10);
    let suspended = f
        .take("suspended")
        .and_then(|n| r.boolean(n, "suspended"))
        .unwrap_or(false);
    Some(CronSpec {
        schedule: schedule?,
        timezone: timezone?,
        concurrency,
        starting_deadline,
        history_limit,
        suspended,
    })
}
