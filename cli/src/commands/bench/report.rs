//! The figures of a bench run, as text or as one JSON object.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::cluster::Memory;
use super::load::{Outcome, Pace};

/// Latency percentiles of one kind of update.
#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        (!sorted.is_empty()).then(|| Percentiles {
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: at(100.0),
        })
    }

    fn json(self) -> Value {
        json!({
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
            "max": ms(self.max),
        })
    }

    fn text(self) -> String {
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the master costs per simulated agent.
#[derive(Debug, Clone)]
pub(super) struct SimulatedFigures {
    agents: usize,
    memory_per_agent_bytes: Option<u64>,
    /// Cores the master used while the agents only heartbeated.
    idle_master_cores: Option<f64>,
}

impl SimulatedFigures {
    pub(super) fn new(
        agents: usize,
        before: Option<Memory>,
        after: Option<Memory>,
        idle_master_cores: Option<f64>,
    ) -> Self {
        let memory_per_agent_bytes = before
            .zip(after)
            .map(|(b, a)| a.rss_bytes.saturating_sub(b.rss_bytes) / agents.max(1) as u64);
        Self {
            agents,
            memory_per_agent_bytes,
            idle_master_cores,
        }
    }
}

#[derive(Debug)]
pub(super) struct Report {
    pub(super) outcome: Outcome,
    pub(super) pace: Pace,
    pub(super) master_memory: Option<Memory>,
    pub(super) agent_memory: Option<Memory>,
    pub(super) master_cores: Option<f64>,
    /// The ephemeral cluster's agents together.
    pub(super) agent_cores: Option<f64>,
    /// This process less its subscribers: the load generator is the framework (simulated
    /// agents run here too).
    pub(super) framework_cores: Option<f64>,
    pub(super) simulated: Option<SimulatedFigures>,
    /// Operator event subscribers during the run, and the events they received together.
    pub(super) subscribers: usize,
    pub(super) subscriber_events: Option<u64>,
    /// What the subscribers' thread used, reading and decoding the events.
    pub(super) subscriber_cores: Option<f64>,
}

impl Report {
    fn tasks_per_s(&self) -> f64 {
        let ended = self.outcome.tasks as f64;
        let secs = self.outcome.elapsed.as_secs_f64();
        if secs > 0.0 { ended / secs } else { 0.0 }
    }

    pub(super) fn json(&self) -> Value {
        let memory = |m: Option<Memory>| {
            m.map_or(
                Value::Null,
                |m| json!({ "rss_bytes": m.rss_bytes, "peak_bytes": m.peak_bytes }),
            )
        };
        let latency = |s: &[Duration]| Percentiles::of(s).map_or(Value::Null, Percentiles::json);
        json!({
            "tasks": self.outcome.tasks,
            "failed": self.outcome.failed,
            "first_failure": self.outcome.first_failure,
            "pace": match self.pace {
                Pace::Concurrency(c) => json!({ "concurrency": c }),
                Pace::Rate(r) => json!({ "rate": r }),
            },
            "seconds": self.outcome.elapsed.as_secs_f64(),
            "tasks_per_s": self.tasks_per_s(),
            "submit_to_running_ms": latency(&self.outcome.to_running),
            "submit_to_finished_ms": latency(&self.outcome.to_finished),
            "master_memory": memory(self.master_memory),
            "agent_memory": memory(self.agent_memory),
            "master_cores": self.master_cores,
            "agent_cores": self.agent_cores,
            "framework_cores": self.framework_cores,
            "simulated_agents": self.simulated.as_ref().map(|s| json!({
                "agents": s.agents,
                "master_memory_per_agent_bytes": s.memory_per_agent_bytes,
                "idle_master_cores": s.idle_master_cores,
            })),
            "subscribers": self.subscribers,
            "subscriber_events": self.subscriber_events,
            "subscriber_cores": self.subscriber_cores,
        })
    }

    pub(super) fn text(&self) -> String {
        let o = &self.outcome;
        let mut out = String::new();
        let pace = match self.pace {
            Pace::Concurrency(c) => format!("{c} in flight"),
            Pace::Rate(r) => format!("{r} submitted per second"),
        };
        let _ = writeln!(
            out,
            "tasks             {} ({} failed), {pace}",
            o.tasks, o.failed
        );
        if let Some(f) = &o.first_failure {
            let _ = writeln!(out, "first failure     {f}");
        }
        let _ = writeln!(
            out,
            "throughput        {:.0} tasks/s over {:.2} s",
            self.tasks_per_s(),
            o.elapsed.as_secs_f64()
        );
        for (name, samples) in [
            ("submit→RUNNING ", &o.to_running),
            ("submit→FINISHED", &o.to_finished),
        ] {
            if let Some(p) = Percentiles::of(samples) {
                let _ = writeln!(out, "{name}   {}", p.text());
            }
        }
        for (name, m) in [
            ("master", self.master_memory),
            ("agents", self.agent_memory),
        ] {
            if let Some(m) = m {
                let _ = writeln!(
                    out,
                    "{name} memory     {:.1} MiB (peak {:.1} MiB)",
                    mib(m.rss_bytes),
                    mib(m.peak_bytes)
                );
            }
        }
        for (name, cores) in [
            ("master", self.master_cores),
            ("agents", self.agent_cores),
            ("framework", self.framework_cores),
            ("subscribers", self.subscriber_cores),
        ] {
            if let Some(c) = cores {
                let label = format!("{name:<9} CPU");
                let _ = writeln!(out, "{label:<18}{c:.2} cores during the run");
            }
        }
        if let Some(events) = self.subscriber_events {
            let _ = writeln!(
                out,
                "subscribers       {} ({events} events received during the run)",
                self.subscribers
            );
        }
        if let Some(s) = &self.simulated {
            let _ = writeln!(out, "simulated agents  {}", s.agents);
            if let Some(b) = s.memory_per_agent_bytes {
                let _ = writeln!(
                    out,
                    "master memory     {:.1} KiB per agent",
                    b as f64 / 1024.0
                );
            }
            if let Some(c) = s.idle_master_cores {
                let _ = writeln!(
                    out,
                    "master CPU        {c:.3} cores with the agents heartbeating"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples).unwrap();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(90),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        let one = Percentiles::of(&[Duration::from_millis(7)]).unwrap();
        assert_eq!(
            (one.p50, one.max),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        assert!(Percentiles::of(&[]).is_none());
    }
}
