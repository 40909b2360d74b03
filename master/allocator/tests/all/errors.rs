//! Bad input gets clear, typed errors and changes nothing.

use corral_allocator::{AgentSpec, Allocator, AllocatorConfig, AllocatorError, QuotaError};
use corral_types::{Allocation, Quota, QuotaLimits, Resources, Role, RoleError, Weight};

use crate::{agent, at, cluster, fw, res, role, secs};

/// The quota error inside an allocator error.
fn quota_error(e: AllocatorError) -> QuotaError {
    match e {
        AllocatorError::Quota { error, .. } => *error,
        other => panic!("expected a quota error, got {other:?}"),
    }
}

#[test]
fn invalid_role_names() {
    assert_eq!(Role::new(""), Err(RoleError::Empty));
    assert!(matches!(Role::new("/eng"), Err(RoleError::LeadingSlash(_))));
    assert!(matches!(
        Role::new("eng//x"),
        Err(RoleError::EmptySegment(_))
    ));
    assert!(matches!(Role::new("eng/.."), Err(RoleError::DotSegment(_))));
    assert!(matches!(
        Role::new("eng/bätch"),
        Err(RoleError::InvalidChar { ch: 'ä', .. })
    ));
    let e = Role::new("a b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "role \"a b\" has invalid character ' '; allowed are [A-Za-z0-9_-] and '/'"
    );
}

#[test]
fn zero_negative_nan_and_absurd_weights() {
    for w in [
        0.0,
        -1.0,
        f64::NAN,
        f64::NEG_INFINITY,
        f64::INFINITY,
        1e-300,
        0.000_9,
        1e300,
        1_000_001.0,
    ] {
        assert!(Weight::new(w).is_err(), "{w}");
    }
    for w in [Weight::MIN, 0.5, 1.0, 3.0, Weight::MAX] {
        assert_eq!(Weight::new(w).map(Weight::get), Ok(w));
    }
    assert_eq!(
        Weight::RANGE,
        format!("from {} to {}", Weight::MIN, Weight::MAX)
    );
}

#[test]
fn guarantee_above_limit() {
    let mut a = cluster(1, &res(8, 1024));
    let q = Quota {
        guarantee: res(4, 0),
        limit: QuotaLimits::at_most(res(2, 0)),
    };
    let err = a.set_quota(&role("r"), q, true).unwrap_err();
    assert!(matches!(
        quota_error(err),
        QuotaError::GuaranteeExceedsLimit { .. }
    ));
    assert!(a.role(&role("r")).is_none(), "nothing created on error");
}

#[test]
fn absurd_quotas_overflow() {
    let mut a = cluster(1, &res(8, 1024));
    let huge = Quota {
        guarantee: Resources::new().with_cpus_milli(u64::MAX / 2 + 1),
        limit: QuotaLimits::unlimited(),
    };
    a.set_quota(&role("x"), huge.clone(), true).unwrap();
    let err = a.set_quota(&role("y"), huge, true).unwrap_err();
    assert_eq!(
        err,
        AllocatorError::Quota {
            role: role("y"),
            error: Box::new(QuotaError::Overflow)
        }
    );
}

#[test]
fn guarantees_beyond_the_cluster_need_force() {
    let mut a = cluster(2, &res(4, 1024));
    let q = |cpus| Quota {
        guarantee: res(cpus, 0),
        limit: QuotaLimits::unlimited(),
    };
    a.set_quota(&role("x"), q(6), false).unwrap();
    let err = a.set_quota(&role("y"), q(4), false).unwrap_err();
    assert!(matches!(
        quota_error(err),
        QuotaError::ExceedsCluster { .. }
    ));
    a.set_quota(&role("y"), q(4), true).unwrap();
    // Lowering is allowed even while the sum is beyond the cluster.
    a.set_quota(&role("y"), q(3), false).unwrap();
}

#[test]
fn subrole_guarantees_must_fit_in_the_parent() {
    let mut a = cluster(4, &res(4, 1024));
    let q = |cpus| Quota {
        guarantee: res(cpus, 0),
        limit: QuotaLimits::unlimited(),
    };
    a.set_quota(&role("eng"), q(4), false).unwrap();
    a.set_quota(&role("eng/a"), q(3), false).unwrap();
    let err = a.set_quota(&role("eng/b/c"), q(2), false).unwrap_err();
    assert!(matches!(
        quota_error(err),
        QuotaError::ChildrenExceedParent { .. }
    ));
    let err = a.set_quota(&role("eng"), q(2), false).unwrap_err();
    assert!(matches!(
        quota_error(err),
        QuotaError::ChildrenExceedParent { .. }
    ));
}

#[test]
fn limit_below_consumption_needs_force() {
    let mut a = cluster(2, &res(2, 256));
    a.add_framework(fw("f"), &[role("r")], &[]).unwrap();
    a.allocate(at(0));
    let q = Quota {
        guarantee: Resources::new(),
        limit: QuotaLimits::at_most(res(1, 0)),
    };
    assert!(matches!(
        quota_error(a.set_quota(&role("r"), q.clone(), false).unwrap_err()),
        QuotaError::LimitBelowConsumption { .. }
    ));
    a.set_quota(&role("r"), q, true).unwrap();
}

#[test]
fn unknown_things() {
    let mut a = cluster(1, &res(1, 256));
    a.add_framework(fw("f"), &[role("r")], &[]).unwrap();
    let nobody = fw("nobody");
    let nowhere = agent("nowhere");
    assert_eq!(
        a.suppress(&nobody, &[]),
        Err(AllocatorError::UnknownFramework(nobody.clone()))
    );
    assert_eq!(
        a.remove_agent(&nowhere),
        Err(AllocatorError::UnknownAgent(nowhere.clone()))
    );
    assert_eq!(
        a.suppress(&fw("f"), &[role("other")]),
        Err(AllocatorError::NotSubscribed {
            framework: fw("f"),
            role: role("other")
        })
    );
    assert!(matches!(
        a.decline(
            &agent("a0"),
            &fw("f"),
            &role("other"),
            &res(1, 0),
            secs(1),
            at(0)
        ),
        Err(AllocatorError::NotSubscribed { .. })
    ));
    assert!(matches!(
        a.recover(&agent("a0"), &fw("f"), &role("r"), &Allocation::default()),
        Err(AllocatorError::NotAllocated { .. })
    ));
    assert_eq!(
        a.remove_quota(&role("ghost")),
        Err(AllocatorError::UnknownRole(role("ghost")))
    );
    assert_eq!(
        a.remove_quota(&role("r")),
        Err(AllocatorError::NoQuota(role("r")))
    );
    assert_eq!(
        a.remove_weight(&role("ghost")),
        Err(AllocatorError::UnknownRole(role("ghost")))
    );
}

#[test]
fn duplicates_and_empty_subscriptions() {
    let mut a = cluster(1, &res(1, 256));
    assert_eq!(
        a.add_agent(agent("a0"), AgentSpec::new(res(1, 0)), &[]),
        Err(AllocatorError::DuplicateAgent(agent("a0")))
    );
    assert_eq!(
        a.add_framework(fw("f"), &[], &[]),
        Err(AllocatorError::NoRoles(fw("f")))
    );
    assert!(matches!(
        a.add_framework(fw("f"), &[role("x")], &[role("y")]),
        Err(AllocatorError::NotSubscribed { .. })
    ));
    a.add_framework(fw("f"), &[role("x")], &[]).unwrap();
    assert_eq!(
        a.add_framework(fw("f"), &[role("x")], &[]),
        Err(AllocatorError::DuplicateFramework(fw("f")))
    );
}

#[test]
fn absurd_agents() {
    let mut a = Allocator::new(AllocatorConfig::default());
    let max = Resources::new().with_cpus_milli(u64::MAX);
    a.add_agent(agent("a0"), AgentSpec::new(max.clone()), &[])
        .unwrap();
    assert!(matches!(
        a.add_agent(agent("a1"), AgentSpec::new(max), &[]),
        Err(AllocatorError::Overflow(..))
    ));
    assert!(a.agent(&agent("a1")).is_none());
    // Reservations larger than the agent.
    let mut a = Allocator::new(AllocatorConfig::default());
    assert!(matches!(
        a.add_agent(
            agent("a2"),
            AgentSpec::new(res(1, 0)).with_static_reservation(role("r"), res(2, 0)),
            &[]
        ),
        Err(AllocatorError::Insufficient { .. })
    ));
    assert!(a.role(&role("r")).is_none());
    a.check_invariants().unwrap();
}

#[test]
fn reserving_or_unreserving_nothing_is_refused_and_leaves_no_trace() {
    let mut a = cluster(1, &res(4, 1024));
    let nothing = Resources::new();
    assert_eq!(
        a.reserve(&agent("a0"), &role("eng"), &nothing),
        Err(AllocatorError::NothingToReserve("reserve"))
    );
    assert_eq!(
        a.unreserve(&agent("a0"), &role("eng"), &nothing),
        Err(AllocatorError::NothingToReserve("unreserve"))
    );
    // No role was made for it, and the agent reports no reservation.
    assert!(a.role(&role("eng")).is_none());
    assert!(a.agent(&agent("a0")).unwrap().reservations.is_empty());
    a.check_invariants().unwrap();
}
