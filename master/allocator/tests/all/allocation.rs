//! Allocation behaviour: offers, fairness, filters, suppress/revive, agents' states,
//! reservations, minimum allocatable resources.

use corral_allocator::{
    AgentSpec, Allocator, AllocatorConfig, AllocatorError, SorterKind, UsedResources,
};
use corral_types::{Allocation, Resources, Weight};

use crate::{agent, at, cluster, cpus_by_framework, decline, fw, recover, res, role, secs};

#[test]
fn one_framework_is_offered_every_agent_once() {
    let mut a = cluster(3, &res(4, 1024));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 3);
    for o in &offers {
        assert_eq!(o.resources, Allocation::unreserved(res(4, 1024)));
        assert_eq!(o.role, role("*"));
    }
    // Everything is allocated now: nothing more to offer.
    assert!(a.allocate(at(1)).is_empty());
    recover(&mut a, &offers[1]);
    let again = a.allocate(at(2));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].agent, offers[1].agent);
    a.check_invariants().unwrap();
}

#[test]
fn allocations_list_what_every_framework_holds_where() {
    let mut a = cluster(2, &res(4, 1024));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    assert!(a.allocations().is_empty());
    let offers = a.allocate(at(0));
    let mut expected: Vec<_> = offers
        .iter()
        .map(|o| (o.agent.clone(), fw("f"), role("*"), o.resources.clone()))
        .collect();
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a.allocations(), expected);
    recover(&mut a, &offers[0]);
    assert_eq!(a.allocations().len(), 1);
}

#[test]
fn frameworks_in_a_role_share_by_drf() {
    let mut a = cluster(10, &res(1, 256));
    for f in ["f1", "f2"] {
        a.add_framework(fw(f), &[role("*")], &[]).unwrap();
    }
    let offers = a.allocate(at(0));
    let by_fw = cpus_by_framework(&offers);
    assert_eq!(by_fw["f1"], 5000);
    assert_eq!(by_fw["f2"], 5000);
}

#[test]
fn weighted_roles_converge_to_their_weights() {
    // Two roles, weights 1 and 3, saturating 400 small agents: dominant shares 1:3.
    for kind in [SorterKind::Drf] {
        let mut a = Allocator::new(AllocatorConfig {
            role_sorter: kind,
            ..AllocatorConfig::default()
        });
        for i in 0..400 {
            a.add_agent(agent(&format!("a{i}")), AgentSpec::new(res(1, 512)), &[])
                .unwrap();
        }
        a.set_weight(&role("light"), Weight::new(1.0).unwrap());
        a.set_weight(&role("heavy"), Weight::new(3.0).unwrap());
        a.add_framework(fw("l"), &[role("light")], &[]).unwrap();
        a.add_framework(fw("h"), &[role("heavy")], &[]).unwrap();
        let offers = a.allocate(at(0));
        assert_eq!(offers.len(), 400, "saturated");
        let light = a.role(&role("light")).unwrap().dominant_share;
        let heavy = a.role(&role("heavy")).unwrap().dominant_share;
        let ratio = heavy / light;
        assert!((ratio - 3.0).abs() / 3.0 <= 0.05, "ratio {ratio}");
        assert_eq!(light + heavy, 1.0);
    }
}

#[test]
fn subroles_count_towards_their_parent() {
    // eng/a and eng/b together compete with ops as one role.
    let mut a = cluster(12, &res(1, 256));
    a.add_framework(fw("ea"), &[role("eng/a")], &[]).unwrap();
    a.add_framework(fw("eb"), &[role("eng/b")], &[]).unwrap();
    a.add_framework(fw("ops"), &[role("ops")], &[]).unwrap();
    a.allocate(at(0));
    let share = |r: &str| a.role(&role(r)).unwrap().dominant_share;
    assert_eq!(share("eng"), 0.5);
    assert_eq!(share("ops"), 0.5);
    assert_eq!(share("eng/a"), 0.25);
    assert_eq!(share("eng/b"), 0.25);
    let roles: Vec<String> = a.roles().iter().map(|r| r.role.to_string()).collect();
    assert_eq!(roles, ["eng", "eng/a", "eng/b", "ops"]);
}

#[test]
fn decline_filter_is_honoured_until_refuse_seconds_elapse() {
    let mut a = cluster(1, &res(2, 512));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 1);
    decline(&mut a, &offers[0], secs(5), at(0));
    assert_eq!(a.filter_count(), 1);
    assert!(a.allocate(at(1_000)).is_empty());
    assert!(a.allocate(at(4_999)).is_empty());
    let again = a.allocate(at(5_000));
    assert_eq!(again.len(), 1, "filter expired: offered again");
    assert_eq!(a.filter_count(), 0);
}

#[test]
fn declined_agent_goes_to_the_next_framework() {
    let mut a = cluster(1, &res(2, 512));
    a.add_framework(fw("f1"), &[role("*")], &[]).unwrap();
    a.add_framework(fw("f2"), &[role("*")], &[]).unwrap();
    let first = a.allocate(at(0));
    assert_eq!(first.len(), 1);
    decline(&mut a, &first[0], secs(60), at(0));
    let second = a.allocate(at(1));
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].framework, first[0].framework);
}

#[test]
fn partially_declined_agent_goes_to_the_lowest_share_framework_that_did_not_decline() {
    // f3 already runs something, so of the two frameworks that have not declined a0, f2
    // (share 0) comes first. f1 (also share 0, and first by name) declined a0.
    let mut a = Allocator::new(AllocatorConfig::default());
    for f in ["f1", "f2", "f3"] {
        a.add_framework(fw(f), &[role("*")], &[]).unwrap();
    }
    let used = UsedResources {
        framework: fw("f3"),
        role: role("*"),
        resources: Allocation::unreserved(res(2, 512)),
    };
    a.add_agent(agent("busy"), AgentSpec::new(res(2, 512)), &[used])
        .unwrap();
    a.add_agent(agent("a0"), AgentSpec::new(res(4, 1024)), &[])
        .unwrap();
    a.decline(
        &agent("a0"),
        &fw("f1"),
        &role("*"),
        &res(4, 1024),
        secs(60),
        at(0),
    )
    .unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework, fw("f2"));
    // Now f2 holds more than f3: after f2 declines too, f3 is next.
    recover(&mut a, &offers[0]);
    a.decline(
        &agent("a0"),
        &fw("f2"),
        &role("*"),
        &res(4, 1024),
        secs(60),
        at(1),
    )
    .unwrap();
    let offers = a.allocate(at(2));
    assert_eq!(offers[0].framework, fw("f3"));
}

#[test]
fn filter_lapses_when_more_than_was_declined_becomes_free() {
    // Mesos semantics: a filter covers offers contained in what was declined.
    let mut a = cluster(1, &res(4, 1024));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    let o = a.allocate(at(0)).remove(0);
    // The framework launches a task on half and declines the rest for an hour.
    let rest = Allocation::unreserved(res(2, 512));
    a.recover(&o.agent, &o.framework, &o.role, &rest).unwrap();
    a.decline(
        &o.agent,
        &o.framework,
        &o.role,
        &res(2, 512),
        secs(3600),
        at(0),
    )
    .unwrap();
    assert!(a.allocate(at(1)).is_empty());
    // The task finishes: 4 cpus free is more than the 2 declined.
    a.recover(&o.agent, &o.framework, &o.role, &rest).unwrap();
    let again = a.allocate(at(2));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources.total(), res(4, 1024));
}

#[test]
fn suppress_stops_offers_and_revive_clears_filters() {
    let mut a = cluster(2, &res(1, 256));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    let offers = a.allocate(at(0));
    decline(&mut a, &offers[0], secs(3600), at(0));
    recover(&mut a, &offers[1]);
    a.suppress(&fw("f"), &[]).unwrap();
    assert!(a.allocate(at(1)).is_empty());
    assert_eq!(a.role(&role("*")).unwrap().demanding, 0);
    a.revive(&fw("f"), &[role("*")]).unwrap();
    assert_eq!(a.filter_count(), 0, "revive drops the framework's filters");
    assert_eq!(a.allocate(at(2)).len(), 2);
}

#[test]
fn framework_suppressed_in_one_role_gets_offers_in_another() {
    let mut a = cluster(2, &res(1, 256));
    a.add_framework(fw("f"), &[role("x"), role("y")], &[role("x")])
        .unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 2);
    assert!(offers.iter().all(|o| o.role == role("y")));
}

#[test]
fn draining_and_inactive_agents_get_no_offers() {
    let mut a = cluster(3, &res(1, 256));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    a.set_agent_draining(&agent("a0"), true).unwrap();
    a.set_agent_active(&agent("a1"), false).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent, agent("a2"));
    a.set_agent_draining(&agent("a0"), false).unwrap();
    assert_eq!(a.allocate(at(1))[0].agent, agent("a0"));
    assert!(a.agent(&agent("a1")).is_some_and(|s| !s.active));
}

#[test]
fn static_reservation_is_offered_only_to_its_role() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent(
        agent("a0"),
        AgentSpec::new(res(4, 1024)).with_static_reservation(role("db"), res(2, 512)),
        &[],
    )
    .unwrap();
    a.add_framework(fw("web"), &[role("web")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, Allocation::unreserved(res(2, 512)));
    // The reservation waits for its role.
    a.add_framework(fw("db"), &[role("db")], &[]).unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework, fw("db"));
    assert_eq!(offers[0].resources, Allocation::reserved(res(2, 512)));
    a.check_invariants().unwrap();
}

#[test]
fn reserved_and_unreserved_are_offered_together_to_the_role() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent(agent("a0"), AgentSpec::new(res(4, 1024)), &[])
        .unwrap();
    a.reserve(&agent("a0"), &role("db"), &res(1, 256)).unwrap();
    a.add_framework(fw("db"), &[role("db")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(
        offers[0].resources,
        Allocation {
            unreserved: res(3, 768),
            reserved: res(1, 256),
        }
    );
    // Recovery puts each part back where it came from.
    recover(&mut a, &offers[0]);
    let s = a.agent(&agent("a0")).unwrap();
    assert_eq!(s.unreserved_free, res(3, 768));
    assert_eq!(s.reservations, vec![(role("db"), res(1, 256))]);
}

#[test]
fn dynamic_reservations_and_their_errors() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent(
        agent("a0"),
        AgentSpec::new(res(4, 1024)).with_static_reservation(role("db"), res(1, 0)),
        &[],
    )
    .unwrap();
    assert!(matches!(
        a.reserve(&agent("a0"), &role("db"), &res(4, 0)),
        Err(AllocatorError::Insufficient { .. })
    ));
    a.reserve(&agent("a0"), &role("db"), &res(2, 0)).unwrap();
    assert_eq!(a.role(&role("db")).unwrap().reserved, res(3, 0));
    // The static part cannot be unreserved.
    assert!(matches!(
        a.unreserve(&agent("a0"), &role("db"), &res(3, 0)),
        Err(AllocatorError::CannotUnreserve { .. })
    ));
    a.unreserve(&agent("a0"), &role("db"), &res(2, 0)).unwrap();
    assert_eq!(a.role(&role("db")).unwrap().reserved, res(1, 0));
    assert!(matches!(
        a.unreserve(&agent("a0"), &role("nope"), &res(1, 0)),
        Err(AllocatorError::UnknownRole(_))
    ));
    a.check_invariants().unwrap();
}

#[test]
fn reserve_and_unreserve_on_an_offer_keep_the_allocation() {
    let mut a = cluster(1, &res(4, 1024));
    a.add_framework(fw("f"), &[role("db")], &[]).unwrap();
    let o = a.allocate(at(0)).remove(0);
    a.reserve_allocated(&o.agent, &o.framework, &o.role, &res(1, 0))
        .unwrap();
    let held = a
        .allocation(&o.agent, &o.framework, &o.role)
        .unwrap()
        .clone();
    assert_eq!(held.reserved, res(1, 0));
    assert_eq!(held.unreserved, res(3, 1024));
    a.check_invariants().unwrap();
    a.unreserve_allocated(&o.agent, &o.framework, &o.role, &res(1, 0))
        .unwrap();
    assert_eq!(
        a.allocation(&o.agent, &o.framework, &o.role).unwrap(),
        &o.resources
    );
    a.check_invariants().unwrap();
}

/// a0: 4 cpus and 1 GiB, with `reservations` from its configuration.
fn reserved_agent(reservations: &[(&str, Resources)]) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default());
    let spec = reservations
        .iter()
        .fold(AgentSpec::new(res(4, 1024)), |spec, (r, amount)| {
            spec.with_static_reservation(role(r), amount.clone())
        });
    a.add_agent(agent("a0"), spec, &[]).unwrap();
    a
}

#[test]
fn parent_reservation_is_offered_to_its_subroles_only() {
    // a0: 4 cpus, 1 GiB; 2 cpus and 512 MiB reserved to eng.
    let mut a = reserved_agent(&[("eng", res(2, 512))]);
    // ops is not under eng: it gets the unreserved half only.
    a.add_framework(fw("ops"), &[role("ops")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, Allocation::unreserved(res(2, 512)));
    // eng/batch is: eng's reservation waits for it and is offered as reserved.
    a.add_framework(fw("batch"), &[role("eng/batch")], &[])
        .unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework, fw("batch"));
    assert_eq!(offers[0].role, role("eng/batch"));
    assert_eq!(offers[0].resources, Allocation::reserved(res(2, 512)));
    // Allocated to eng/batch (and so to eng); still reserved to, and consumed by, eng only.
    let batch = a.role(&role("eng/batch")).unwrap();
    assert_eq!(batch.allocated, res(2, 512));
    assert_eq!(batch.reserved, Resources::new());
    assert_eq!(batch.consumed, Resources::new());
    let eng = a.role(&role("eng")).unwrap();
    assert_eq!(eng.allocated, res(2, 512));
    assert_eq!(eng.reserved, res(2, 512));
    assert_eq!(eng.consumed, res(2, 512));
    a.check_invariants().unwrap();
    // Recovered, it goes back to eng's reservation.
    recover(&mut a, &offers[0]);
    let s = a.agent(&agent("a0")).unwrap();
    assert_eq!(s.free, res(2, 512));
    assert_eq!(s.reservations, vec![(role("eng"), res(2, 512))]);
    a.check_invariants().unwrap();
}

#[test]
fn own_reservation_is_taken_first_and_borrowed_one_given_back_first() {
    // a0: 4 cpus; 2 reserved to eng, 1 to eng/batch.
    let mut a = reserved_agent(&[("eng", res(2, 0)), ("eng/batch", res(1, 0))]);
    a.add_framework(fw("batch"), &[role("eng/batch")], &[])
        .unwrap();
    let offers = a.allocate(at(0));
    // batch: 1 own + 2 of eng's reserved, 1 unreserved (and all memory).
    assert_eq!(
        offers[0].resources,
        Allocation {
            unreserved: res(1, 1024),
            reserved: res(3, 0),
        }
    );
    // Giving back 2 reserved cpus returns eng's two, not batch's own one.
    let back = Allocation::reserved(res(2, 0));
    a.recover(&agent("a0"), &fw("batch"), &role("eng/batch"), &back)
        .unwrap();
    a.check_invariants().unwrap();
    // So eng/svc, a sibling, can have both.
    a.add_framework(fw("svc"), &[role("eng/svc")], &[]).unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework, fw("svc"));
    assert_eq!(offers[0].resources, Allocation::reserved(res(2, 0)));
    a.check_invariants().unwrap();
}

#[test]
fn unreserve_on_an_offer_takes_only_the_roles_own_reservation() {
    let mut a = cluster(1, &res(4, 1024));
    a.reserve(&agent("a0"), &role("eng"), &res(2, 0)).unwrap();
    a.add_framework(fw("batch"), &[role("eng/batch")], &[])
        .unwrap();
    let o = a.allocate(at(0)).remove(0);
    assert_eq!(o.resources.reserved, res(2, 0));
    // eng's reservation is not eng/batch's to undo.
    assert!(matches!(
        a.unreserve_allocated(&o.agent, &o.framework, &o.role, &res(1, 0)),
        Err(AllocatorError::NotAllocated { .. })
    ));
    // Its own, made on the offer, is.
    a.reserve_allocated(&o.agent, &o.framework, &o.role, &res(1, 0))
        .unwrap();
    a.unreserve_allocated(&o.agent, &o.framework, &o.role, &res(1, 0))
        .unwrap();
    assert_eq!(
        a.allocation(&o.agent, &o.framework, &o.role).unwrap(),
        &o.resources
    );
    a.check_invariants().unwrap();
}

#[test]
fn re_registered_tasks_may_hold_a_parents_reservation() {
    let used = |cpus| UsedResources {
        framework: fw("batch"),
        role: role("eng/batch"),
        resources: Allocation::reserved(res(cpus, 0)),
    };
    let spec = || AgentSpec::new(res(4, 1024)).with_static_reservation(role("eng"), res(2, 0));
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_framework(fw("batch"), &[role("eng/batch")], &[])
        .unwrap();
    // More than eng and eng/batch have reserved together: refused, nothing changes.
    assert!(matches!(
        a.add_agent(agent("a0"), spec(), &[used(3)]),
        Err(AllocatorError::Insufficient { .. })
    ));
    assert!(a.agent(&agent("a0")).is_none());
    a.add_agent(agent("a0"), spec(), &[used(2)]).unwrap();
    assert_eq!(
        a.allocation(&agent("a0"), &fw("batch"), &role("eng/batch"))
            .unwrap(),
        &Allocation::reserved(res(2, 0))
    );
    a.check_invariants().unwrap();
}

#[test]
fn fragments_below_minimum_allocatable_are_not_offered() {
    let tiny = Resources::new().with_cpus_milli(5).with_mem_mib(16);
    let mut a = cluster(1, &tiny);
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    assert!(a.allocate(at(0)).is_empty(), "below 0.01 cpus and 32 MiB");

    let mut b = Allocator::new(AllocatorConfig {
        min_allocatable: vec![],
        ..AllocatorConfig::default()
    });
    b.add_agent(agent("a0"), AgentSpec::new(tiny.clone()), &[])
        .unwrap();
    b.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    assert_eq!(b.allocate(at(0)).len(), 1);
}

#[test]
fn recovering_more_than_held_fails_and_changes_nothing() {
    let mut a = cluster(1, &res(2, 512));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    let o = a.allocate(at(0)).remove(0);
    let too_much = Allocation::unreserved(res(3, 0));
    assert!(matches!(
        a.recover(&o.agent, &o.framework, &o.role, &too_much),
        Err(AllocatorError::NotAllocated { .. })
    ));
    assert_eq!(
        a.allocation(&o.agent, &o.framework, &o.role),
        Some(&o.resources)
    );
    a.check_invariants().unwrap();
}

#[test]
fn re_registering_agent_brings_its_used_resources() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    a.add_framework(fw("g"), &[role("*")], &[]).unwrap();
    let used = UsedResources {
        framework: fw("f"),
        role: role("*"),
        resources: Allocation::unreserved(res(3, 512)),
    };
    a.add_agent(agent("a0"), AgentSpec::new(res(4, 1024)), &[used])
        .unwrap();
    // g has the lower share, so it gets what is left.
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework, fw("g"));
    assert_eq!(offers[0].resources.total(), res(1, 512));
}

#[test]
fn removing_an_agent_or_framework_releases_allocations() {
    let mut a = cluster(2, &res(1, 256));
    a.add_framework(fw("f"), &[role("r")], &[]).unwrap();
    a.allocate(at(0));
    assert_eq!(a.role(&role("r")).unwrap().allocated, res(2, 512));
    a.remove_agent(&agent("a0")).unwrap();
    assert_eq!(a.role(&role("r")).unwrap().allocated, res(1, 256));
    assert_eq!(a.total(), &res(1, 256));
    a.remove_framework(&fw("f")).unwrap();
    assert!(
        a.role(&role("r")).is_none(),
        "nothing refers to the role any more"
    );
    assert_eq!(a.agent(&agent("a1")).unwrap().free, res(1, 256));
    a.check_invariants().unwrap();
}

#[test]
fn dropped_role_keeps_its_allocation_until_recovered() {
    let mut a = cluster(2, &res(1, 256));
    a.add_framework(fw("f"), &[role("x")], &[]).unwrap();
    let offers = a.allocate(at(0));
    a.update_framework_roles(&fw("f"), &[role("y")], &[])
        .unwrap();
    assert_eq!(a.role(&role("x")).unwrap().allocated, res(2, 512));
    assert_eq!(a.role(&role("x")).unwrap().frameworks, 0);
    for o in &offers {
        recover(&mut a, o);
    }
    assert!(a.role(&role("x")).is_none());
    let offers = a.allocate(at(1));
    assert!(offers.iter().all(|o| o.role == role("y")));
    assert_eq!(offers.len(), 2);
    a.check_invariants().unwrap();
}

#[test]
fn random_sorter_allocates_everything_reproducibly() {
    let run = || {
        let mut a = Allocator::new(AllocatorConfig {
            role_sorter: SorterKind::Random { seed: 9 },
            framework_sorter: SorterKind::Random { seed: 10 },
            ..AllocatorConfig::default()
        });
        for i in 0..20 {
            a.add_agent(agent(&format!("a{i}")), AgentSpec::new(res(1, 256)), &[])
                .unwrap();
        }
        for (f, r) in [("f1", "x"), ("f2", "x"), ("f3", "y")] {
            a.add_framework(fw(f), &[role(r)], &[]).unwrap();
        }
        a.allocate(at(0))
    };
    let (one, two) = (run(), run());
    assert_eq!(one, two);
    assert_eq!(one.len(), 20);
}

#[test]
fn inactive_framework_gets_no_offers() {
    let mut a = cluster(1, &res(1, 256));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    a.set_framework_active(&fw("f"), false).unwrap();
    assert!(a.allocate(at(0)).is_empty());
    a.set_framework_active(&fw("f"), true).unwrap();
    assert_eq!(a.allocate(at(1)).len(), 1);
}

#[test]
fn agent_resize_is_reflected_in_offers() {
    let mut a = cluster(1, &res(1, 256));
    a.add_framework(fw("f"), &[role("*")], &[]).unwrap();
    let o = a.allocate(at(0)).remove(0);
    assert!(matches!(
        a.update_agent(&agent("a0"), res(0, 0)),
        Err(AllocatorError::Insufficient { .. })
    ));
    a.update_agent(&agent("a0"), res(3, 256)).unwrap();
    let more = a.allocate(at(1));
    assert_eq!(more[0].resources.total(), res(2, 0));
    recover(&mut a, &o);
    a.check_invariants().unwrap();
}
