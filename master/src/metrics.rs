//! The master's Prometheus metrics, served as text at `/metrics` on its port. Counters and
//! histograms are bumped where things happen (the core for offers, launches and updates; the
//! runtime for allocation cycles and registry writes); the gauges are read from the core's
//! state when scraped ([`Gauges`]), so they are never out of step with it.

use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of fixed names and `'static` values (states, reasons, events).
pub(crate) type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Every metric of one master.
pub(crate) struct MasterMetrics {
    registry: Registry,
    /// Seconds one allocation cycle took.
    pub(crate) allocation_seconds: Histogram,
    /// Offers by event: sent, declined, rescinded.
    pub(crate) offers: Family<Labels<1>, Counter>,
    /// Tasks launched (accepted with an offer).
    pub(crate) launches: Counter,
    /// Task state changes by state and reason, as frameworks are told of them.
    pub(crate) task_updates: Family<Labels<2>, Counter>,
    /// Seconds from the master receiving a status update to its framework acknowledging it.
    pub(crate) update_ack_seconds: Histogram,
    /// Agents that went silent past their timeout.
    pub(crate) heartbeats_missed: Counter,
    /// Seconds one group commit to the registry took.
    pub(crate) registry_write_seconds: Histogram,
    agents: Family<Labels<1>, Gauge>,
    tasks: Family<Labels<1>, Gauge>,
    frameworks: Family<Labels<1>, Gauge>,
    offers_outstanding: Gauge,
    leader_epoch: Gauge,
    leading: Gauge,
}

/// What the gauges say, read from the core's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Gauges {
    pub(crate) agents_by_state: Vec<(&'static str, i64)>,
    pub(crate) tasks_by_state: Vec<(&'static str, i64)>,
    pub(crate) frameworks_by_state: Vec<(&'static str, i64)>,
    pub(crate) offers_outstanding: i64,
    pub(crate) epoch: i64,
}

impl fmt::Debug for MasterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterMetrics").finish_non_exhaustive()
    }
}

impl Default for MasterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MasterMetrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("corral");
        // 100 µs to ~13 s.
        let seconds = || Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let metrics = Self {
            allocation_seconds: seconds(),
            offers: Family::default(),
            launches: Counter::default(),
            task_updates: Family::default(),
            update_ack_seconds: seconds(),
            heartbeats_missed: Counter::default(),
            registry_write_seconds: seconds(),
            agents: Family::default(),
            tasks: Family::default(),
            frameworks: Family::default(),
            offers_outstanding: Gauge::default(),
            leader_epoch: Gauge::default(),
            leading: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "allocation_cycle_seconds",
            "Time one allocation cycle took",
            metrics.allocation_seconds.clone(),
        );
        r.register(
            "offers",
            "Offers sent to frameworks, declined by them, or rescinded",
            metrics.offers.clone(),
        );
        r.register("task_launches", "Tasks launched", metrics.launches.clone());
        r.register(
            "task_updates",
            "Task state changes frameworks were told of, by state and reason",
            metrics.task_updates.clone(),
        );
        r.register(
            "status_update_ack_seconds",
            "Time from a status update reaching the master to its acknowledgement",
            metrics.update_ack_seconds.clone(),
        );
        r.register(
            "agent_heartbeats_missed",
            "Agents that went silent past their timeout",
            metrics.heartbeats_missed.clone(),
        );
        r.register(
            "registry_write_seconds",
            "Time one group commit to the registry store took",
            metrics.registry_write_seconds.clone(),
        );
        r.register("agents", "Agents by state", metrics.agents.clone());
        r.register(
            "tasks",
            "Tasks known to the master, by state",
            metrics.tasks.clone(),
        );
        r.register(
            "frameworks",
            "Frameworks by state",
            metrics.frameworks.clone(),
        );
        r.register(
            "offers_outstanding",
            "Offers sent and not yet answered",
            metrics.offers_outstanding.clone(),
        );
        r.register(
            "leader_epoch",
            "The epoch of the leadership this master holds (0 when it does not lead)",
            metrics.leader_epoch.clone(),
        );
        r.register(
            "master_leading",
            "1 while this master leads",
            metrics.leading.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// An offer `event`: "sent", "declined" or "rescinded".
    pub(crate) fn offer(&self, event: &'static str, count: u64) {
        self.offers.get_or_create(&[("event", event)]).inc_by(count);
    }

    /// The text exposition, with the gauges set from `gauges` (`None`: this master does not
    /// lead, so it knows no cluster state).
    pub(crate) fn render(&self, gauges: Option<&Gauges>) -> String {
        self.agents.clear();
        self.tasks.clear();
        self.frameworks.clear();
        let g = gauges.cloned().unwrap_or_default();
        for (state, n) in &g.agents_by_state {
            self.agents.get_or_create(&[("state", *state)]).set(*n);
        }
        for (state, n) in &g.tasks_by_state {
            self.tasks.get_or_create(&[("state", *state)]).set(*n);
        }
        for (state, n) in &g.frameworks_by_state {
            self.frameworks.get_or_create(&[("state", *state)]).set(*n);
        }
        self.offers_outstanding.set(g.offers_outstanding);
        self.leader_epoch.set(g.epoch);
        self.leading.set(i64::from(gauges.is_some()));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
