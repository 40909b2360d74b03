//! Property tests: random operation sequences against invariants.
//!
//! After every operation the allocator's own bookkeeping must agree with a recomputation
//! (`check_invariants`: no agent ever has more allocated than it has, pools and role sums
//! consistent). After every cycle, additionally:
//! - no (agent, framework, role) is offered twice in one cycle, and every offer is non-empty;
//! - no cycle takes a role past a limit on its path;
//! - every guarantee with demand, nested ones included, is met, or no open agent has a free
//!   cpu that a demanding framework of the role could take (it declined it, or there is none).
//!
//! A second property saturates a cluster and checks that dominant shares follow weights.

use std::collections::{BTreeMap, BTreeSet};

use corral_allocator::{AgentSpec, Allocator, AllocatorConfig, Offer, SorterKind};
use corral_types::{AgentId, Allocation, FrameworkId, Quota, QuotaLimits, Resources, Role, Weight};
use proptest::prelude::*;

use crate::{at, res, role, secs};

const ROLES: [&str; 5] = ["a", "b", "c", "c/d", "*"];

#[derive(Debug, Clone)]
enum Op {
    AddAgent {
        cpus: u64,
        mem: u64,
        reserve: Option<(usize, u64)>,
    },
    RemoveAgent(usize),
    AddFramework(Vec<usize>),
    RemoveFramework(usize),
    Allocate(u64),
    Recover {
        offer: usize,
        half: bool,
    },
    Decline {
        offer: usize,
        refuse_s: u64,
    },
    SetGuarantee {
        role: usize,
        cpus: u64,
    },
    SetLimit {
        role: usize,
        cpus: u64,
    },
    RemoveQuota(usize),
    Suppress(usize),
    Revive(usize),
    SetWeight {
        role: usize,
        weight: u8,
    },
    Drain {
        agent: usize,
        on: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0usize..16;
    prop_oneof![
        3 => (1u64..8, 1u64..8, proptest::option::of((0usize..5, 1u64..3)))
            .prop_map(|(cpus, mem, reserve)| Op::AddAgent { cpus, mem, reserve }),
        1 => idx.clone().prop_map(Op::RemoveAgent),
        2 => proptest::collection::vec(0usize..5, 1..3).prop_map(Op::AddFramework),
        1 => idx.clone().prop_map(Op::RemoveFramework),
        4 => (0u64..4000).prop_map(Op::Allocate),
        3 => (idx.clone(), any::<bool>()).prop_map(|(offer, half)| Op::Recover { offer, half }),
        2 => (idx.clone(), 0u64..5).prop_map(|(offer, refuse_s)| Op::Decline { offer, refuse_s }),
        1 => (0usize..5, 0u64..10).prop_map(|(role, cpus)| Op::SetGuarantee { role, cpus }),
        1 => (0usize..5, 0u64..10).prop_map(|(role, cpus)| Op::SetLimit { role, cpus }),
        1 => (0usize..5).prop_map(Op::RemoveQuota),
        1 => idx.clone().prop_map(Op::Suppress),
        1 => idx.clone().prop_map(Op::Revive),
        1 => (0usize..5, 1u8..5).prop_map(|(role, weight)| Op::SetWeight { role, weight }),
        1 => (idx, any::<bool>()).prop_map(|(agent, on)| Op::Drain { agent, on }),
    ]
}

/// What the test knows, to pick targets and to judge the allocator.
#[derive(Default)]
struct Model {
    agents: Vec<AgentId>,
    draining: BTreeSet<AgentId>,
    frameworks: Vec<(FrameworkId, Vec<Role>)>,
    suppressed: BTreeSet<(FrameworkId, Role)>,
    held: Vec<Offer>,
    /// (agent, framework, role) -> filter expiry in ms and what was declined.
    declines: BTreeMap<(AgentId, FrameworkId, Role), (u64, Resources)>,
    quotas: BTreeMap<Role, Quota>,
    now: u64,
    next_id: u32,
}

impl Model {
    fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
        (!v.is_empty()).then(|| v[i % v.len()].clone())
    }

    fn is_under(r: &Role, top: &Role) -> bool {
        r == top || r.as_str().starts_with(&format!("{}/", top.as_str()))
    }
}

fn run(ops: Vec<Op>, sorter: SorterKind) -> Result<(), TestCaseError> {
    let mut a = Allocator::new(AllocatorConfig {
        role_sorter: sorter,
        framework_sorter: sorter,
        min_allocatable: vec![],
    });
    let mut m = Model::default();
    for op in ops {
        apply(&mut a, &mut m, op)?;
        a.check_invariants().map_err(TestCaseError::fail)?;
    }
    Ok(())
}

fn apply(a: &mut Allocator, m: &mut Model, op: Op) -> Result<(), TestCaseError> {
    match op {
        Op::AddAgent { cpus, mem, reserve } => {
            m.next_id += 1;
            let id = AgentId::new(format!("a{}", m.next_id)).unwrap();
            let mut spec = AgentSpec::new(res(cpus, mem * 512));
            if let Some((r, c)) = reserve {
                spec = spec.with_static_reservation(role(ROLES[r]), res(c.min(cpus), 0));
            }
            a.add_agent(id.clone(), spec, &[]).unwrap();
            m.agents.push(id);
        }
        Op::RemoveAgent(i) => {
            if let Some(id) = Model::pick(&m.agents, i) {
                a.remove_agent(&id).unwrap();
                m.agents.retain(|x| *x != id);
                m.held.retain(|o| o.agent != id);
                m.declines.retain(|k, _| k.0 != id);
            }
        }
        Op::AddFramework(roles) => {
            m.next_id += 1;
            let id = FrameworkId::new(format!("f{}", m.next_id)).unwrap();
            let roles: Vec<Role> = roles.into_iter().map(|r| role(ROLES[r])).collect();
            a.add_framework(id.clone(), &roles, &[]).unwrap();
            m.frameworks.push((id, roles));
        }
        Op::RemoveFramework(i) => {
            if let Some((id, _)) = Model::pick(&m.frameworks, i) {
                a.remove_framework(&id).unwrap();
                m.frameworks.retain(|(x, _)| *x != id);
                m.held.retain(|o| o.framework != id);
                m.declines.retain(|k, _| k.1 != id);
                m.suppressed.retain(|k| k.0 != id);
            }
        }
        Op::Allocate(advance) => {
            m.now += advance;
            let before: BTreeMap<Role, Resources> = a
                .roles()
                .into_iter()
                .map(|r| (r.role, r.consumed))
                .collect();
            m.declines.retain(|_, (until, _)| *until > m.now);
            let offers = a.allocate(at(m.now));
            check_cycle(a, m, &before, &offers)?;
            m.held.extend(offers);
        }
        Op::Recover { offer, half } => {
            if let Some(o) = Model::pick(&m.held, offer) {
                let part = if half {
                    Allocation {
                        unreserved: halve(&o.resources.unreserved),
                        reserved: halve(&o.resources.reserved),
                    }
                } else {
                    o.resources.clone()
                };
                a.recover(&o.agent, &o.framework, &o.role, &part).unwrap();
                let i = m.held.iter().position(|h| *h == o).unwrap();
                let left = Allocation {
                    unreserved: o.resources.unreserved.saturating_sub(&part.unreserved),
                    reserved: o.resources.reserved.saturating_sub(&part.reserved),
                };
                if left.is_empty() {
                    m.held.remove(i);
                } else {
                    m.held[i].resources = left;
                }
            }
        }
        Op::Decline { offer, refuse_s } => {
            if let Some(o) = Model::pick(&m.held, offer) {
                a.recover(&o.agent, &o.framework, &o.role, &o.resources)
                    .unwrap();
                m.held.retain(|h| *h != o);
                let subscribed = m
                    .frameworks
                    .iter()
                    .any(|(f, rs)| *f == o.framework && rs.contains(&o.role));
                let r = a.decline(
                    &o.agent,
                    &o.framework,
                    &o.role,
                    &o.resources.total(),
                    secs(refuse_s),
                    at(m.now),
                );
                prop_assert_eq!(r.is_ok(), subscribed);
                if subscribed && refuse_s > 0 {
                    let key = (o.agent.clone(), o.framework.clone(), o.role.clone());
                    m.declines
                        .insert(key, (m.now + refuse_s * 1000, o.resources.total()));
                }
            }
        }
        Op::SetGuarantee { role: r, cpus } => {
            let q = Quota {
                guarantee: res(cpus, 0),
                limit: QuotaLimits::unlimited(),
            };
            if a.set_quota(&role(ROLES[r]), q.clone(), false).is_ok() {
                m.quotas.insert(role(ROLES[r]), q);
            }
        }
        Op::SetLimit { role: r, cpus } => {
            let q = Quota {
                guarantee: Resources::new(),
                limit: QuotaLimits::at_most(res(cpus, 0)).with_none_of(&if cpus == 0 {
                    res(1, 0)
                } else {
                    Resources::new()
                }),
            };
            if a.set_quota(&role(ROLES[r]), q.clone(), false).is_ok() {
                m.quotas.insert(role(ROLES[r]), q);
            }
        }
        Op::RemoveQuota(r) => {
            let ok = a.remove_quota(&role(ROLES[r])).is_ok();
            prop_assert_eq!(ok, m.quotas.remove(&role(ROLES[r])).is_some());
        }
        Op::Suppress(i) => {
            if let Some((id, roles)) = Model::pick(&m.frameworks, i) {
                a.suppress(&id, &roles[..1]).unwrap();
                m.suppressed.insert((id, roles[0].clone()));
            }
        }
        Op::Revive(i) => {
            if let Some((id, roles)) = Model::pick(&m.frameworks, i) {
                a.revive(&id, &[]).unwrap();
                m.suppressed.retain(|k| k.0 != id);
                m.declines.retain(|k, _| k.1 != id || !roles.contains(&k.2));
            }
        }
        Op::SetWeight { role: r, weight } => {
            a.set_weight(&role(ROLES[r]), Weight::new(f64::from(weight)).unwrap());
        }
        Op::Drain { agent, on } => {
            if let Some(id) = Model::pick(&m.agents, agent) {
                a.set_agent_draining(&id, on).unwrap();
                if on {
                    m.draining.insert(id);
                } else {
                    m.draining.remove(&id);
                }
            }
        }
    }
    Ok(())
}

fn halve(r: &Resources) -> Resources {
    Resources::new()
        .with_cpus_milli(r.cpus_milli() / 2)
        .with_mem_bytes(r.mem_bytes() / 2)
}

fn check_cycle(
    a: &Allocator,
    m: &Model,
    before: &BTreeMap<Role, Resources>,
    offers: &[Offer],
) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for o in offers {
        prop_assert!(!o.resources.is_empty(), "empty offer {:?}", o);
        prop_assert!(
            seen.insert((o.agent.clone(), o.framework.clone(), o.role.clone())),
            "offered twice in one cycle: {:?}",
            o
        );
        prop_assert!(!m.draining.contains(&o.agent), "offer on a draining agent");
        prop_assert!(
            !m.suppressed
                .contains(&(o.framework.clone(), o.role.clone())),
            "offer to a suppressed role"
        );
        let key = (o.agent.clone(), o.framework.clone(), o.role.clone());
        if let Some((_, declined)) = m.declines.get(&key) {
            prop_assert!(
                !declined.contains(&o.resources.total()),
                "offer {:?} within a live decline filter of {:?}",
                o,
                declined
            );
        }
    }
    // QuotaLimits: a cycle never takes consumption of a limited kind past the limit.
    for (r, q) in &m.quotas {
        let Some(bound) = (if q.limit.is_unlimited() {
            None
        } else {
            Some(q.limit.bounds().cpus_milli())
        }) else {
            continue;
        };
        let after = a.role(r).map_or(0, |s| s.consumed.cpus_milli());
        let was = before.get(r).map_or(0, Resources::cpus_milli);
        prop_assert!(
            after <= was.max(bound),
            "role {} consumed {} cpus, limit {}, before {}",
            r,
            after,
            bound,
            was
        );
    }
    // Guarantees: met, or nothing a demanding framework of the role could take is free.
    let limits_anywhere = m.quotas.values().any(|q| !q.limit.is_unlimited());
    for (r, q) in &m.quotas {
        let consumed = |r: &Role| a.role(r).map_or(0, |s| s.consumed.cpus_milli());
        // What guaranteed subroles still need is held back for them alone (they are carved
        // out of this guarantee); the rest is this role's subtree's to take. (ROLES nest one
        // level deep, so direct children are the nearest guaranteed subroles.)
        let claimed: u64 = m
            .quotas
            .iter()
            .filter(|(child, _)| child.parent().as_ref() == Some(r))
            .map(|(child, cq)| cq.guarantee.cpus_milli().saturating_sub(consumed(child)))
            .sum();
        let g = q.guarantee.cpus_milli().saturating_sub(claimed);
        if g == 0 || limits_anywhere {
            continue;
        }
        let consumed = consumed(r);
        if consumed >= g {
            continue;
        }
        let demanding: Vec<(FrameworkId, Role)> = m
            .frameworks
            .iter()
            .flat_map(|(f, rs)| rs.iter().map(move |x| (f.clone(), x.clone())))
            .filter(|(f, x)| {
                Model::is_under(x, r) && !m.suppressed.contains(&(f.clone(), x.clone()))
            })
            .collect();
        for agent in &m.agents {
            if m.draining.contains(agent) {
                continue;
            }
            let free = a.agent(agent).unwrap().unreserved_free.cpus_milli();
            let someone_could_take_it = demanding.iter().any(|(f, x)| {
                !m.declines
                    .contains_key(&(agent.clone(), f.clone(), x.clone()))
            });
            prop_assert!(
                free == 0 || !someone_could_take_it,
                "role {} below its guarantee ({} < {}) while agent {} has {} free cpus",
                r,
                consumed,
                g,
                agent,
                free
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_invariants_drf(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, SorterKind::Drf)?;
    }

    #[test]
    fn random_operations_keep_invariants_random(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, SorterKind::Random { seed: 3 })?;
    }

    /// Two roles with random weights saturate a cluster of many small agents, then churn
    /// (random recoveries and re-allocation); dominant shares end within 5% of the weights.
    #[test]
    fn saturated_shares_follow_weights(
        w1 in 1u8..=5,
        w2 in 1u8..=5,
        fws in (1usize..=3, 1usize..=3),
        churn in proptest::collection::vec(any::<bool>(), 400),
    ) {
        let mut a = Allocator::new(AllocatorConfig::default());
        for i in 0..400 {
            a.add_agent(AgentId::new(format!("a{i}")).unwrap(), AgentSpec::new(res(1, 512)), &[]).unwrap();
        }
        a.set_weight(&role("x"), Weight::new(f64::from(w1)).unwrap());
        a.set_weight(&role("y"), Weight::new(f64::from(w2)).unwrap());
        for i in 0..fws.0 {
            a.add_framework(FrameworkId::new(format!("x{i}")).unwrap(), &[role("x")], &[]).unwrap();
        }
        for i in 0..fws.1 {
            a.add_framework(FrameworkId::new(format!("y{i}")).unwrap(), &[role("y")], &[]).unwrap();
        }
        let offers = a.allocate(at(0));
        prop_assert_eq!(offers.len(), 400);
        // Tasks finish on a random subset of agents; the freed agents are re-offered.
        for (o, finish) in offers.iter().zip(&churn) {
            if *finish {
                a.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
            }
        }
        // Both roles lost agents, so both are at or below their fair share; DRF hands the
        // freed agents to whichever is further below, which restores the balance.
        a.allocate(at(1));
        let share = |r: &str| a.role(&role(r)).unwrap().dominant_share;
        prop_assert!(share("x") + share("y") > 0.999, "saturated again");
        let sx = share("x") / f64::from(w1);
        let sy = share("y") / f64::from(w2);
        prop_assert!(
            (sx - sy).abs() / sx.max(sy) <= 0.05,
            "weighted shares {} vs {} (weights {}, {})", sx, sy, w1, w2
        );
    }
}
