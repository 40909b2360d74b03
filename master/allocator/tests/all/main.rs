//! Integration tests for `corral-allocator`: one binary, a module per subject.

// Everything in this crate is test code. clippy.toml's allow-unwrap-in-tests covers `#[test]`
// functions but not the helpers and proptest drivers around them; same policy, wider scope.
#![allow(clippy::unwrap_used)]

mod allocation;
mod errors;
mod props;
mod quota;
mod sorter;

use std::time::Duration;

use corral_allocator::{AgentSpec, Allocator, AllocatorConfig, Offer};
use corral_types::{AgentId, FrameworkId, Resources, Role, Timestamp};

/// `cpus` whole cpus and `mem` MiB.
pub(crate) fn res(cpus: u64, mem_mib: u64) -> Resources {
    Resources::new()
        .with_cpus_milli(cpus * 1000)
        .with_mem_mib(mem_mib)
}

pub(crate) fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

pub(crate) fn agent(name: &str) -> AgentId {
    AgentId::new(name).unwrap()
}

pub(crate) fn fw(name: &str) -> FrameworkId {
    FrameworkId::new(name).unwrap()
}

pub(crate) fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An allocator with the default config and `n` agents `a0..` of `per_agent` each.
pub(crate) fn cluster(n: usize, per_agent: &Resources) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default());
    for i in 0..n {
        a.add_agent(
            agent(&format!("a{i}")),
            AgentSpec::new(per_agent.clone()),
            &[],
        )
        .unwrap();
    }
    a
}

/// Sum of cpus (milli) offered per framework name.
pub(crate) fn cpus_by_framework(offers: &[Offer]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for o in offers {
        *m.entry(o.framework.to_string()).or_default() += o.resources.total().cpus_milli();
    }
    m
}

/// Recovers an offer in full.
pub(crate) fn recover(a: &mut Allocator, o: &Offer) {
    a.recover(&o.agent, &o.framework, &o.role, &o.resources)
        .unwrap();
}

/// Recovers an offer and declines it for `refuse`.
pub(crate) fn decline(a: &mut Allocator, o: &Offer, refuse: Duration, now: Timestamp) {
    recover(a, o);
    a.decline(
        &o.agent,
        &o.framework,
        &o.role,
        &o.resources.total(),
        refuse,
        now,
    )
    .unwrap();
}
