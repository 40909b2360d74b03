//! The agent's Prometheus metrics, served as text at `/metrics` on its port: module compile
//! time and where launches found their module, fuel the tasks burned, the memory their linear
//! memories and tables hold, and the tasks running (read from the task table when scraped).

use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Where a launch found its module: compiled code in memory or on disk, or neither (it was
/// compiled).
pub(crate) type CacheResult = [(&'static str, &'static str); 1];
pub(crate) const MEMORY_HIT: CacheResult = [("result", "memory_hit")];
pub(crate) const DISK_HIT: CacheResult = [("result", "disk_hit")];
pub(crate) const MISS: CacheResult = [("result", "miss")];

/// Every metric of one agent.
pub(crate) struct AgentMetrics {
    registry: Registry,
    pub(crate) compile_seconds: Histogram,
    pub(crate) cache: Family<CacheResult, Counter>,
    pub(crate) fuel: Counter,
    pub(crate) task_memory_bytes: Gauge,
    tasks_running: Gauge,
}

impl fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("corral_agent");
        // 1 ms to ~65 s.
        let compile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let metrics = Self {
            registry: Registry::default(),
            compile_seconds,
            cache: Family::default(),
            fuel: Counter::default(),
            task_memory_bytes: Gauge::default(),
            tasks_running: Gauge::default(),
        };
        registry.register(
            "module_compile_seconds",
            "Time compiling one module or component",
            metrics.compile_seconds.clone(),
        );
        registry.register(
            "module_cache",
            "Launches by where their module was found: memory_hit, disk_hit or miss (compiled)",
            metrics.cache.clone(),
        );
        registry.register(
            "fuel_consumed",
            "Fuel burned by tasks that ended",
            metrics.fuel.clone(),
        );
        registry.register(
            "task_memory_bytes",
            "Bytes the running tasks' linear memories and tables hold",
            metrics.task_memory_bytes.clone(),
        );
        registry.register(
            "tasks_running",
            "Tasks whose run has not ended",
            metrics.tasks_running.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl AgentMetrics {
    /// The text exposition, with `tasks_running` as the task table says.
    pub(crate) fn render(&self, tasks_running: usize) -> String {
        self.tasks_running
            .set(i64::try_from(tasks_running).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
