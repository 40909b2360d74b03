//! Allocation-cycle benchmarks.
//!
//! `decline_offers`: the grid of Mesos's `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers`.
//! Every agent has `cpus:24;mem:4096;disk:4096` of which framework `i % F` uses
//! `cpus:16;mem:2014;disk:1024`; every framework (all in role `*`) has declined every agent's
//! free resources with a practically infinite filter. We time one full cycle, which must
//! produce no offers. (Mesos 1.8 took about 1.1 s at 10,000 agents × 1,000 frameworks.)
//!
//! `partial_decline`: the same, except that one framework declined nothing; it is offered
//! every agent, past all the frameworks that declined (Mesos's intermediate rounds).
//!
//! `fresh_cycle`: the same cluster without filters and nothing in use: one cycle that offers
//! every agent (the path that walks the sorters and records allocations).
//!
//! `quota_reservations`: 100 roles with guarantees and limits, 10 frameworks each, every agent
//! with a static reservation for one role; one cycle from nothing allocated (both stages).
//!
//! `cargo bench -p corral-allocator -- --test` (CI smoke mode) runs only the smallest
//! configurations, so it finishes in seconds.

use std::hint::black_box;
use std::time::Duration;

use corral_allocator::{AgentSpec, Allocator, AllocatorConfig, UsedResources};
use corral_types::{
    AgentId, Allocation, FrameworkId, Quota, QuotaLimits, Resources, Role, Timestamp,
};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

const MIB: u64 = 1 << 20;

fn r(cpus: u64, mem_mb: u64, disk_mb: u64) -> Resources {
    Resources::new()
        .with_cpus_milli(cpus * 1000)
        .with_mem_bytes(mem_mb * MIB)
        .with_disk_bytes(disk_mb * MIB)
}

fn smoke() -> bool {
    std::env::args().any(|a| a == "--test")
}

fn agent_id(i: usize) -> AgentId {
    AgentId::new(format!("agent-{i}")).expect("benchmark setup")
}

fn framework_id(i: usize) -> FrameworkId {
    FrameworkId::new(format!("framework-{i}")).expect("benchmark setup")
}

/// The DeclineOffers state: `agents` × `frameworks`, each framework having declined each
/// agent's free resources.
fn declined_cluster(agents: usize, frameworks: usize, decline: bool) -> Allocator {
    declined_cluster_but(agents, frameworks, decline, 0)
}

/// Like [`declined_cluster`], but the last `keen` frameworks decline nothing.
fn declined_cluster_but(agents: usize, frameworks: usize, decline: bool, keen: usize) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default());
    let star = Role::default_role();
    let fws: Vec<FrameworkId> = (0..frameworks).map(framework_id).collect();
    for f in &fws {
        a.add_framework(f.clone(), std::slice::from_ref(&star), &[])
            .expect("benchmark setup");
    }
    let total = r(24, 4096, 4096);
    let used = r(16, 2014, 1024);
    let ids: Vec<AgentId> = (0..agents).map(agent_id).collect();
    for (i, id) in ids.iter().enumerate() {
        let used = decline.then(|| UsedResources {
            framework: fws[i % frameworks].clone(),
            role: star.clone(),
            resources: Allocation::unreserved(used.clone()),
        });
        a.add_agent(id.clone(), AgentSpec::new(total.clone()), used.as_slice())
            .expect("benchmark setup");
    }
    if decline {
        let free = total.saturating_sub(&used);
        let forever = Duration::from_secs(u64::from(u32::MAX));
        for f in &fws[..frameworks - keen] {
            for id in &ids {
                a.decline(id, f, &star, &free, forever, Timestamp::ZERO)
                    .expect("benchmark setup");
            }
        }
        assert_eq!(a.filter_count(), agents * (frameworks - keen));
    }
    a
}

fn decline_offers(c: &mut Criterion) {
    let mut group = c.benchmark_group("decline_offers");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let agents: &[usize] = if smoke() {
        &[1_000]
    } else {
        &[1_000, 10_000, 20_000]
    };
    let frameworks: &[usize] = if smoke() {
        &[100]
    } else {
        &[100, 1_000, 2_000]
    };
    for &n_agents in agents {
        for &n_fws in frameworks {
            // Built on first use, so a filter that skips this benchmark skips its setup.
            let mut state: Option<Allocator> = None;
            let id = BenchmarkId::from_parameter(format!("{n_agents}x{n_fws}"));
            group.bench_function(id, |b| {
                let a = state.get_or_insert_with(|| {
                    let mut a = declined_cluster(n_agents, n_fws, true);
                    assert!(a.allocate(Timestamp::from_millis(1)).is_empty());
                    a
                });
                let mut now = 1;
                b.iter(|| {
                    now += 1;
                    let offers = a.allocate(Timestamp::from_millis(now));
                    debug_assert!(offers.is_empty());
                    black_box(offers)
                });
            });
        }
    }
    group.finish();
}

fn fresh_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("fresh_cycle");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    let grid: &[(usize, usize)] = if smoke() {
        &[(1_000, 100)]
    } else {
        &[(1_000, 100), (10_000, 1_000), (20_000, 2_000)]
    };
    for &(n_agents, n_fws) in grid {
        let mut state: Option<Allocator> = None;
        let id = BenchmarkId::from_parameter(format!("{n_agents}x{n_fws}"));
        group.bench_function(id, |b| {
            let a = state.get_or_insert_with(|| declined_cluster(n_agents, n_fws, false));
            b.iter_batched(
                || a.clone(),
                |mut a| {
                    let offers = a.allocate(Timestamp::from_millis(1));
                    assert_eq!(offers.len(), n_agents);
                    (a, offers)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// 100 roles with quotas and reservations, 10 frameworks per role.
fn quota_cluster(agents: usize) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default());
    let roles: Vec<Role> = (0..100)
        .map(|i| Role::new(format!("team{}/svc{}", i / 10, i % 10)).expect("benchmark setup"))
        .collect();
    for (i, role) in roles.iter().enumerate() {
        for j in 0..10 {
            let id = FrameworkId::new(format!("fw-{i}-{j}")).expect("benchmark setup");
            a.add_framework(id, std::slice::from_ref(role), &[])
                .expect("benchmark setup");
        }
    }
    for i in 0..agents {
        let spec = AgentSpec::new(r(24, 4096, 4096))
            .with_static_reservation(roles[i % roles.len()].clone(), r(2, 256, 0));
        a.add_agent(agent_id(i), spec, &[])
            .expect("benchmark setup");
    }
    // Guarantees of half the cluster's cpus, spread over the roles; limits at 1.5x.
    let per_role = (agents as u64 * 24 / 2 / 100).max(1);
    for role in &roles {
        let q = Quota {
            guarantee: r(per_role, 0, 0),
            limit: QuotaLimits::at_most(r(per_role * 3 / 2, 0, 0)),
        };
        a.set_quota(role, q, false).expect("benchmark setup");
    }
    a
}

fn quota_reservations(c: &mut Criterion) {
    let mut group = c.benchmark_group("quota_reservations");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    let agents: &[usize] = if smoke() { &[1_000] } else { &[1_000, 10_000] };
    for &n in agents {
        let mut state: Option<Allocator> = None;
        let id = BenchmarkId::from_parameter(format!("{n}x1000/100roles"));
        group.bench_function(id, |b| {
            let a = state.get_or_insert_with(|| quota_cluster(n));
            b.iter_batched(
                || a.clone(),
                |mut a| {
                    let offers = a.allocate(Timestamp::from_millis(1));
                    assert!(!offers.is_empty());
                    (a, offers)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn partial_decline(c: &mut Criterion) {
    let mut group = c.benchmark_group("partial_decline");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    let grid: &[(usize, usize)] = if smoke() {
        &[(1_000, 100)]
    } else {
        &[(1_000, 100), (10_000, 1_000), (20_000, 2_000)]
    };
    for &(n_agents, n_fws) in grid {
        let mut state: Option<Allocator> = None;
        let id = BenchmarkId::from_parameter(format!("{n_agents}x{n_fws}"));
        group.bench_function(id, |b| {
            let a = state.get_or_insert_with(|| declined_cluster_but(n_agents, n_fws, true, 1));
            b.iter_batched(
                || a.clone(),
                |mut a| {
                    let offers = a.allocate(Timestamp::from_millis(1));
                    assert_eq!(offers.len(), n_agents);
                    (a, offers)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    decline_offers,
    partial_decline,
    fresh_cycle,
    quota_reservations
);
criterion_main!(benches);
