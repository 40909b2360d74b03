//! Quotas: guarantees are offered first and held back as headroom; limits are never
//! exceeded, including by subroles.

use corral_types::{Quota, QuotaLimits, Weight};

use crate::{at, cluster, cpus_by_framework, fw, res, role};

fn guarantee(cpus: u64) -> Quota {
    Quota {
        guarantee: res(cpus, 0),
        limit: QuotaLimits::unlimited(),
    }
}

fn limit(cpus: u64) -> Quota {
    Quota {
        guarantee: Default::default(),
        limit: QuotaLimits::at_most(res(cpus, 0)),
    }
}

#[test]
fn guarantee_is_satisfied_first() {
    // Without quota, "big" (weight 10) would take nearly everything.
    let mut a = cluster(10, &res(1, 256));
    a.set_weight(&role("big"), Weight::new(10.0).unwrap());
    a.set_quota(&role("q"), guarantee(6), false).unwrap();
    a.add_framework(fw("big"), &[role("big")], &[]).unwrap();
    a.add_framework(fw("q"), &[role("q")], &[]).unwrap();
    let offers = a.allocate(at(0));
    let by_fw = cpus_by_framework(&offers);
    assert_eq!(by_fw["q"], 6000);
    assert_eq!(by_fw["big"], 4000);
    // q picked first: it got six whole agents. (Headroom alone would also keep 6 cpus for
    // q, but "big" would have taken those agents' memory first.)
    let q_offers: Vec<_> = offers.iter().filter(|o| o.framework == fw("q")).collect();
    assert_eq!(q_offers.len(), 6);
    assert!(q_offers.iter().all(|o| o.resources.total() == res(1, 256)));
    a.check_invariants().unwrap();
}

#[test]
fn guarantee_is_held_back_while_its_role_has_no_demand() {
    let mut a = cluster(10, &res(1, 256));
    a.set_quota(&role("q"), guarantee(4), false).unwrap();
    a.add_framework(fw("other"), &[role("other")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(cpus_by_framework(&offers)["other"], 6000);
    // The framework arrives and finds its guarantee waiting.
    a.add_framework(fw("q"), &[role("q")], &[]).unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(cpus_by_framework(&offers)["q"], 4000);
}

#[test]
fn guarantee_of_a_parent_serves_its_subroles() {
    let mut a = cluster(10, &res(1, 256));
    a.set_weight(&role("big"), Weight::new(10.0).unwrap());
    a.set_quota(&role("eng"), guarantee(6), false).unwrap();
    a.add_framework(fw("big"), &[role("big")], &[]).unwrap();
    a.add_framework(fw("batch"), &[role("eng/batch")], &[])
        .unwrap();
    a.add_framework(fw("svc"), &[role("eng/svc")], &[]).unwrap();
    a.allocate(at(0));
    assert_eq!(a.role(&role("eng")).unwrap().allocated, res(6, 1536));
}

#[test]
fn limit_is_never_exceeded() {
    // Agents of 2 cpus, limit 3: the second offer is shrunk to 1 cpu, then nothing.
    let mut a = cluster(5, &res(2, 256));
    a.set_quota(&role("capped"), limit(3), false).unwrap();
    a.add_framework(fw("f"), &[role("capped")], &[]).unwrap();
    let offers = a.allocate(at(0));
    assert_eq!(cpus_by_framework(&offers)["f"], 3000);
    assert_eq!(a.role(&role("capped")).unwrap().consumed.cpus_milli(), 3000);
    assert!(a.allocate(at(1)).is_empty());
}

#[test]
fn limit_of_a_parent_binds_its_subroles() {
    let mut a = cluster(10, &res(1, 256));
    a.set_quota(&role("eng"), limit(3), false).unwrap();
    a.add_framework(fw("x"), &[role("eng/x")], &[]).unwrap();
    a.add_framework(fw("y"), &[role("eng/y")], &[]).unwrap();
    a.add_framework(fw("z"), &[role("eng/y/z")], &[]).unwrap();
    a.allocate(at(0));
    a.allocate(at(1));
    assert_eq!(a.role(&role("eng")).unwrap().allocated.cpus_milli(), 3000);
}

#[test]
fn reservations_count_against_limits() {
    let mut a = cluster(2, &res(2, 256));
    a.set_quota(&role("r"), limit(3), false).unwrap();
    a.reserve(&crate::agent("a0"), &role("r"), &res(2, 0))
        .unwrap();
    assert!(matches!(
        a.reserve(&crate::agent("a1"), &role("r"), &res(2, 0)),
        Err(corral_allocator::AllocatorError::LimitExceeded { .. })
    ));
    a.add_framework(fw("f"), &[role("r")], &[]).unwrap();
    a.allocate(at(0));
    // 2 reserved (offered) + 1 unreserved.
    assert_eq!(a.role(&role("r")).unwrap().consumed.cpus_milli(), 3000);
}

#[test]
fn removing_a_quota_releases_its_headroom() {
    let mut a = cluster(4, &res(1, 256));
    a.set_quota(&role("q"), guarantee(4), false).unwrap();
    a.add_framework(fw("f"), &[role("other")], &[]).unwrap();
    // Headroom covers the guaranteed kinds only: memory is offered, cpus are held back.
    let offers = a.allocate(at(0));
    assert_eq!(offers.len(), 4);
    assert!(offers.iter().all(|o| o.resources.total() == res(0, 256)));
    a.remove_quota(&role("q")).unwrap();
    assert!(a.role(&role("q")).is_none());
    assert_eq!(cpus_by_framework(&a.allocate(at(1)))["f"], 4000);
}

/// `n` cpus guaranteed to `name`.
fn set_guarantee(a: &mut corral_allocator::Allocator, name: &str, cpus: u64) {
    a.set_quota(&role(name), guarantee(cpus), false).unwrap();
}

#[test]
fn nested_guarantee_is_held_back_after_a_sibling_meets_the_parents() {
    // 20 agents of 1 cpu. eng is guaranteed 10 cpus, carved into eng/a 6 and eng/b 4.
    // eng/a and ops (weight 10) want everything; eng/b has no framework yet.
    let mut a = cluster(20, &res(1, 256));
    set_guarantee(&mut a, "eng", 10);
    set_guarantee(&mut a, "eng/a", 6);
    set_guarantee(&mut a, "eng/b", 4);
    a.set_weight(&role("ops"), Weight::new(10.0).unwrap());
    a.add_framework(fw("a"), &[role("eng/a")], &[]).unwrap();
    a.add_framework(fw("ops"), &[role("ops")], &[]).unwrap();

    let offers = a.allocate(at(0));
    let by_fw = cpus_by_framework(&offers);
    // eng/a: its own 6 (eng's other 4 are eng/b's, not eng/a's to take).
    // ops:   the 10 nobody is guaranteed.
    // free:  4, held back for eng/b although eng is only 6/10 consumed.
    assert_eq!(by_fw["a"], 6000);
    assert_eq!(by_fw["ops"], 10_000);
    assert_eq!(a.role(&role("eng")).unwrap().consumed.cpus_milli(), 6000);
    a.check_invariants().unwrap();

    // eng/b's framework arrives and finds its guarantee waiting.
    a.add_framework(fw("b"), &[role("eng/b")], &[]).unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(cpus_by_framework(&offers)["b"], 4000);
    // eng: 10/10 consumed, eng/a 6/6, eng/b 4/4.
    assert_eq!(a.role(&role("eng")).unwrap().consumed.cpus_milli(), 10_000);
    a.check_invariants().unwrap();
}

#[test]
fn subrole_without_guarantee_takes_only_the_unclaimed_part_of_its_parents() {
    // eng is guaranteed 10 cpus, 6 of them carved out for eng/a; eng/c has none of its own.
    let mut a = cluster(20, &res(1, 256));
    set_guarantee(&mut a, "eng", 10);
    set_guarantee(&mut a, "eng/a", 6);
    a.set_weight(&role("ops"), Weight::new(10.0).unwrap());
    a.add_framework(fw("c"), &[role("eng/c")], &[]).unwrap();
    a.add_framework(fw("ops"), &[role("ops")], &[]).unwrap();

    let offers = a.allocate(at(0));
    let by_fw = cpus_by_framework(&offers);
    // eng/c: eng's unclaimed 4 (first, as a guarantee), nothing more: ops outweighs it.
    // ops:   the 10 nobody is guaranteed.
    // free:  6, held back for eng/a.
    assert_eq!(by_fw["c"], 4000);
    assert_eq!(by_fw["ops"], 10_000);
    a.check_invariants().unwrap();

    a.add_framework(fw("a"), &[role("eng/a")], &[]).unwrap();
    let offers = a.allocate(at(1));
    assert_eq!(cpus_by_framework(&offers)["a"], 6000);
    a.check_invariants().unwrap();
}

#[test]
fn guarantees_nested_three_deep_are_each_held_back() {
    // eng 8 > eng/x 5 > eng/x/y 2. Only "other" has demand: all 8 stay free, whatever
    // consumes them later. Then eng/x/y takes its 2, eng/x its remaining 3, eng the last 3.
    let mut a = cluster(10, &res(1, 256));
    set_guarantee(&mut a, "eng", 8);
    set_guarantee(&mut a, "eng/x", 5);
    set_guarantee(&mut a, "eng/x/y", 2);
    a.add_framework(fw("other"), &[role("other")], &[]).unwrap();
    assert_eq!(cpus_by_framework(&a.allocate(at(0)))["other"], 2000);

    a.add_framework(fw("y"), &[role("eng/x/y")], &[]).unwrap();
    a.add_framework(fw("x"), &[role("eng/x")], &[]).unwrap();
    a.add_framework(fw("e"), &[role("eng")], &[]).unwrap();
    let offers = a.allocate(at(1));
    let by_fw = cpus_by_framework(&offers);
    // Each takes at least its own unclaimed part: y 2, x 5 - 2 = 3, e 8 - 5 = 3.
    assert!(by_fw["y"] >= 2000, "{by_fw:?}");
    assert_eq!(by_fw.values().sum::<u64>(), 8000, "{by_fw:?}");
    assert_eq!(
        a.role(&role("eng/x/y")).unwrap().consumed.cpus_milli(),
        by_fw["y"]
    );
    assert!(a.role(&role("eng/x")).unwrap().consumed.cpus_milli() >= 5000);
    a.check_invariants().unwrap();
}
