//! Per-principal rate limits: a token bucket per principal and kind of call.
//!
//! ```toml
//! # Every principal gets these (an absent kind is not limited).
//! [default]
//! requests = { per_second = 50, burst = 100 }    # gRPC calls and HTTP requests
//! launches = { per_second = 200, burst = 400 }   # tasks launched by ACCEPT
//! uploads = { per_second = 1, burst = 5 }        # modules uploaded
//!
//! # A principal named here gets its kinds instead of the default's (the others stay).
//! [[principal]]
//! name = "batch"
//! launches = { per_second = 2000, burst = 4000 }
//! ```
//!
//! Without a credentials file there are no principals: each client address is limited as
//! one. Agents, peer masters and the master's own frameworks are not limited here (agents
//! and masters are trusted by certificate); the built-in jobs framework takes each launch of
//! a job's task from the job owner's `launches` ([`super::OwnersLaunches`]): a job waits for
//! its owner's rate as the owner's own framework would.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_proto::ServiceError;
use serde::Deserialize;

use super::Caller;
use super::credentials::check_principal;

/// Most buckets kept; past it, full (idle) buckets are forgotten, which changes nothing.
const MAX_BUCKETS: usize = 16_384;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Requests,
    Launches,
    Uploads,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Launches => "task launches",
            Kind::Uploads => "module uploads",
        }
    }
}

/// Whom a bucket belongs to: a principal, or a client address when nobody authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    Principal(Arc<str>),
    Address(IpAddr),
}

impl Subject {
    /// The subject `caller` (from `remote`) is limited as; `None` for the master itself.
    pub(crate) fn of(caller: &Caller, remote: Option<IpAddr>) -> Option<Self> {
        match caller {
            Caller::Master => None,
            Caller::Principal(p) => Some(Subject::Principal(p.clone())),
            Caller::Anyone => remote.map(Subject::Address),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Principal(p) => write!(f, "principal {p}"),
            Subject::Address(a) => write!(f, "client {a}"),
        }
    }
}

/// A rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rate {
    per_second: f64,
    /// Calls allowed at once after a quiet spell (default: one second's worth, at least 1).
    burst: Option<f64>,
}

impl Rate {
    fn check(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(format!(
                "per_second must be a positive number, not {}",
                self.per_second
            ));
        }
        match self.burst {
            Some(b) if !(b.is_finite() && b >= 1.0) => {
                Err(format!("burst must be a number of at least 1, not {b}"))
            }
            _ => Ok(()),
        }
    }

    fn burst(&self) -> f64 {
        self.burst.unwrap_or(self.per_second.ceil().max(1.0))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rates {
    requests: Option<Rate>,
    launches: Option<Rate>,
    uploads: Option<Rate>,
}

impl Rates {
    fn get(&self, kind: Kind) -> Option<Rate> {
        match kind {
            Kind::Requests => self.requests,
            Kind::Launches => self.launches,
            Kind::Uploads => self.uploads,
        }
    }

    fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("requests", self.requests),
            ("launches", self.launches),
            ("uploads", self.uploads),
        ] {
            if let Some(rate) = rate {
                rate.check().map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Rates,
    #[serde(default)]
    principal: Vec<PrincipalRates>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalRates {
    name: String,
    requests: Option<Rate>,
    launches: Option<Rate>,
    uploads: Option<Rate>,
}

/// The rate limits file, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RateLimits {
    default: Rates,
    by_principal: HashMap<Arc<str>, Rates>,
}

impl RateLimits {
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Self::parse(&text)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        file.default.check().map_err(|e| format!("[default] {e}"))?;
        let mut by_principal = HashMap::new();
        for (i, p) in file.principal.into_iter().enumerate() {
            let at = |e: String| format!("[[principal]] number {} ({:?}): {e}", i + 1, p.name);
            check_principal(&p.name).map_err(at)?;
            let rates = Rates {
                requests: p.requests,
                launches: p.launches,
                uploads: p.uploads,
            };
            rates.check().map_err(at)?;
            if by_principal
                .insert(Arc::from(p.name.as_str()), rates)
                .is_some()
            {
                return Err(at("named twice".into()));
            }
        }
        Ok(Self {
            default: file.default,
            by_principal,
        })
    }

    /// The limit of `kind` for `subject`: its own, else the default.
    fn rate(&self, subject: &Subject, kind: Kind) -> Option<Rate> {
        let own = match subject {
            Subject::Principal(p) => self.by_principal.get(p).and_then(|r| r.get(kind)),
            Subject::Address(_) => None,
        };
        own.or_else(|| self.default.get(kind))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every subject; what each may spend comes from the [`RateLimits`] in force.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<(Subject, Kind), Bucket>>,
}

impl Limiter {
    /// Forgets every bucket (when the limits change).
    pub(crate) fn forget_all(&self) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Spends `cost` of `subject`'s `kind` at `now`, or says how long until it could
    /// (RESOURCE_EXHAUSTED with a retry-after). A cost above the burst can never be paid at
    /// once: it is refused with the burst named, without a retry-after.
    pub(crate) fn spend(
        &self,
        limits: &RateLimits,
        subject: &Subject,
        kind: Kind,
        cost: f64,
        now: Instant,
    ) -> Result<(), ServiceError> {
        let Some(rate) = limits.rate(subject, kind) else {
            return Ok(());
        };
        let burst = rate.burst();
        if cost > burst {
            return Err(ServiceError::ResourceExhausted(format!(
                "{subject} may make at most {burst} {} at once; split the call",
                kind.what()
            )));
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|(s, k), b| {
                limits
                    .rate(s, *k)
                    .is_some_and(|r| refill(*b, r, now) < r.burst())
            });
        }
        let bucket = buckets.entry((subject.clone(), kind)).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refill(*bucket, rate, now);
        if tokens >= cost {
            *bucket = Bucket {
                tokens: tokens - cost,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket { tokens, at: now };
        Err(ServiceError::RateLimited {
            message: format!(
                "{subject} is over its rate of {} {} per second",
                rate.per_second,
                kind.what()
            ),
            // Whole milliseconds, rounded up: retrying then finds the tokens there.
            retry_after: Duration::from_millis(
                ((cost - tokens) / rate.per_second * 1000.0).ceil() as u64
            ),
        })
    }
}

/// The tokens `bucket` holds at `now`: what it had plus what the rate added, up to the burst.
fn refill(bucket: Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate.per_second).min(rate.burst())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = r#"
        [default]
        requests = { per_second = 10, burst = 2 }
        uploads = { per_second = 0.5 }

        [[principal]]
        name = "batch"
        requests = { per_second = 1000 }
    "#;

    fn alice() -> Subject {
        Subject::Principal("alice".into())
    }

    fn retry_after(e: ServiceError) -> Duration {
        match e {
            ServiceError::RateLimited { retry_after, .. } => retry_after,
            other => panic!("not rate limited: {other:?}"),
        }
    }

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let limits = RateLimits::parse(LIMITS).unwrap();
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let spend = |at| limiter.spend(&limits, &alice(), Kind::Requests, 1.0, at);
        spend(t0).unwrap();
        spend(t0).unwrap();
        let wait = retry_after(spend(t0).unwrap_err());
        assert_eq!(wait, Duration::from_millis(100));
        // 50 ms refill half a token: still refused, for the other half.
        let half = t0 + Duration::from_millis(50);
        let rest = retry_after(spend(half).unwrap_err()).as_millis();
        assert!((50..=51).contains(&rest), "{rest} ms");
        spend(t0 + Duration::from_millis(100)).unwrap();
        // A long quiet spell refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        spend(later).unwrap();
        spend(later).unwrap();
        spend(later).unwrap_err();
    }

    #[test]
    fn principals_have_their_own_buckets_and_their_own_rates() {
        let limits = RateLimits::parse(LIMITS).unwrap();
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter
                .spend(&limits, &alice(), Kind::Requests, 1.0, t0)
                .unwrap();
        }
        limiter
            .spend(&limits, &alice(), Kind::Requests, 1.0, t0)
            .unwrap_err();
        let bob = Subject::Principal("bob".into());
        limiter
            .spend(&limits, &bob, Kind::Requests, 1.0, t0)
            .unwrap();
        // batch's own request rate (burst: one second's worth) replaces the default's.
        let batch = Subject::Principal("batch".into());
        for _ in 0..1000 {
            limiter
                .spend(&limits, &batch, Kind::Requests, 1.0, t0)
                .unwrap();
        }
        // Its uploads fall back to the default: a burst of one.
        limiter
            .spend(&limits, &batch, Kind::Uploads, 1.0, t0)
            .unwrap();
        let wait = retry_after(
            limiter
                .spend(&limits, &batch, Kind::Uploads, 1.0, t0)
                .unwrap_err(),
        );
        assert_eq!(wait, Duration::from_secs(2));
        // Launches are not limited at all.
        for _ in 0..10_000 {
            limiter
                .spend(&limits, &alice(), Kind::Launches, 1.0, t0)
                .unwrap();
        }
    }

    #[test]
    fn a_cost_above_the_burst_is_refused_without_a_retry_after() {
        let limits = RateLimits::parse(LIMITS).unwrap();
        let refused = Limiter::default()
            .spend(&limits, &alice(), Kind::Requests, 3.0, Instant::now())
            .unwrap_err();
        assert!(
            matches!(&refused, ServiceError::ResourceExhausted(m) if m.contains("at most 2")),
            "{refused:?}"
        );
    }

    #[test]
    fn idle_buckets_are_forgotten_past_the_cap() {
        let limits = RateLimits::parse(LIMITS).unwrap();
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS as u32 + 10 {
            let client = Subject::Address(IpAddr::from(i.to_be_bytes()));
            limiter
                .spend(&limits, &client, Kind::Requests, 1.0, t0)
                .unwrap();
        }
        // A second later every bucket is full again: all forgotten at the next insertion.
        let client = Subject::Address(IpAddr::from([255, 255, 255, 255]));
        limiter
            .spend(
                &limits,
                &client,
                Kind::Requests,
                1.0,
                t0 + Duration::from_secs(1),
            )
            .unwrap();
        assert!(limiter.buckets.lock().unwrap().len() < MAX_BUCKETS);
    }

    #[test]
    fn malformed_files_are_refused_with_the_place_named() {
        for (text, expected) in [
            (
                "[default]\nrequests = { per_second = 0 }",
                "[default] requests",
            ),
            ("[default]\nrequests = { per_second = -1 }", "positive"),
            (
                "[default]\nuploads = { per_second = 1, burst = 0.5 }",
                "at least 1",
            ),
            ("[default]\nlaunchez = { per_second = 1 }", "unknown field"),
            ("[[principal]]\nname = \"a b\"", "principal"),
            (
                "[[principal]]\nname = \"a\"\n[[principal]]\nname = \"a\"",
                "named twice",
            ),
        ] {
            let e = RateLimits::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        assert_eq!(RateLimits::parse("").unwrap(), RateLimits::default());
    }
}
