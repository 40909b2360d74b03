//! Sorter tables in the style of Mesos's `sorter_tests.cpp`: the sorter is a plain object
//! driven by calls, and the expected shares are written next to each assertion.
//!
//! Totals are chosen so that a share is easy to read: cpus in whole cpus of 100 total
//! (`r(5, 5)` is 5 cpus and 5 bytes of 100 each, a share of .05).

use corral_allocator::{DrfSorter, RandomSorter, Sorter};
use corral_types::{Resources, Weight};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn r(cpus: u64, mem: u64) -> Resources {
    Resources::new()
        .with_cpus_milli(cpus * 1000)
        .with_mem_bytes(mem)
}

fn order(s: &mut dyn Sorter) -> Vec<String> {
    s.sort().into_iter().map(|c| s.path(c).to_owned()).collect()
}

fn w(x: f64) -> Weight {
    Weight::new(x).unwrap()
}

#[test]
fn drf_sorter() {
    let mut s = DrfSorter::new();
    s.set_total(&r(100, 100));

    let a = s.add("a");
    s.allocated(a, &r(5, 5));
    let b = s.add("b");
    s.allocated(b, &r(6, 6));
    // shares: a = .05, b = .06
    assert_eq!(order(&mut s), ["a", "b"]);

    let c = s.add("c");
    s.allocated(c, &r(1, 1));
    let d = s.add("d");
    s.allocated(d, &r(3, 1));
    // shares: a = .05, b = .06, c = .01, d = .03
    assert_eq!(order(&mut s), ["c", "d", "a", "b"]);

    s.remove(a);
    s.unallocated(b, &r(4, 4));
    // shares: b = .02, c = .01, d = .03
    assert_eq!(order(&mut s), ["c", "b", "d"]);

    let e = s.add("e");
    s.allocated(e, &r(1, 5));
    s.set_total(&r(50, 100));
    // total is now cpus = 50, mem = 100
    // shares: b = .04, c = .02, d = .06, e = .05
    assert_eq!(order(&mut s), ["c", "b", "e", "d"]);

    s.set_total(&r(50, 200));
    // total is now cpus = 50, mem = 200
    let f = s.add("f");
    s.allocated(f, &r(5, 1));
    s.allocated(c, &r(0, 15));
    // shares: b = .04, c = .08, d = .06, e = .025, f = .1
    assert_eq!(order(&mut s), ["e", "b", "d", "c", "f"]);
    assert_eq!(s.share(c), 0.08);

    assert!(s.lookup("b").is_some());
    assert!(s.lookup("a").is_none());

    s.deactivate(d);
    assert!(s.lookup("d").is_some());
    assert_eq!(order(&mut s), ["e", "b", "c", "f"]);
    s.activate(d);
    assert_eq!(order(&mut s), ["e", "b", "d", "c", "f"]);
}

#[test]
fn weighted_drf_sorter() {
    let mut s = DrfSorter::new();
    s.set_total(&r(100, 100));

    let a = s.add("a");
    s.allocated(a, &r(5, 5));
    s.set_weight("b", w(2.0));
    let b = s.add("b");
    s.allocated(b, &r(6, 6));
    // shares: a = .05, b = .06 / 2 = .03
    assert_eq!(order(&mut s), ["b", "a"]);

    let c = s.add("c");
    s.allocated(c, &r(4, 4));
    // shares: a = .05, b = .03, c = .04
    assert_eq!(order(&mut s), ["b", "c", "a"]);

    s.set_weight("d", w(10.0));
    let d = s.add("d");
    s.allocated(d, &r(10, 20));
    // shares: a = .05, b = .03, c = .04, d = .2 / 10 = .02
    assert_eq!(order(&mut s), ["d", "b", "c", "a"]);

    s.remove(b);
    assert_eq!(order(&mut s), ["d", "c", "a"]);

    s.allocated(d, &r(10, 25));
    // shares: a = .05, c = .04, d = .45 / 10 = .045
    assert_eq!(order(&mut s), ["c", "d", "a"]);

    s.set_weight("e", w(0.1));
    let e = s.add("e");
    s.allocated(e, &r(1, 1));
    // shares: a = .05, c = .04, d = .045, e = .01 / .1 = .1
    assert_eq!(order(&mut s), ["c", "d", "a", "e"]);

    s.remove(a);
    assert_eq!(order(&mut s), ["c", "d", "e"]);
}

#[test]
fn update_total_reorders() {
    let mut s = DrfSorter::new();
    let a = s.add("a");
    let b = s.add("b");
    s.set_total(&r(10, 100));
    // Dominant share of a is .2 (cpus), of b .1 (cpus).
    s.allocated(a, &r(2, 1));
    s.allocated(b, &r(1, 2));
    assert_eq!(order(&mut s), ["b", "a"]);
    // Now a's dominant share is .1 (mem) and b's .2 (mem).
    s.set_total(&r(100, 10));
    assert_eq!(order(&mut s), ["a", "b"]);
}

#[test]
fn hierarchical_drf_sorter() {
    let mut s = DrfSorter::new();
    s.set_total(&r(100, 100));
    let batch = s.add("eng/batch");
    let svc = s.add("eng/svc");
    let ops = s.add("ops");

    s.allocated(ops, &r(10, 10));
    s.allocated(batch, &r(5, 5));
    s.allocated(svc, &r(2, 2));
    // top level: eng = .07 (batch .05 + svc .02), ops = .1
    // under eng: svc = .02, batch = .05
    assert_eq!(order(&mut s), ["eng/svc", "eng/batch", "ops"]);

    s.allocated(svc, &r(10, 0));
    // top level: eng = .17, ops = .1; under eng: batch = .05, svc = .12
    assert_eq!(order(&mut s), ["ops", "eng/batch", "eng/svc"]);

    s.set_weight("eng", w(2.0));
    // top level: eng = .17 / 2 = .085, ops = .1
    assert_eq!(order(&mut s), ["eng/batch", "eng/svc", "ops"]);

    // A client that is also a parent: eng's own allocation competes with its subroles.
    let eng = s.add("eng");
    s.allocated(eng, &r(1, 0));
    // under eng: eng (itself) = .01, batch = .05, svc = .12; eng = .18 / 2 = .09 < ops .1
    assert_eq!(order(&mut s), ["eng", "eng/batch", "eng/svc", "ops"]);

    s.deactivate(batch);
    s.deactivate(svc);
    s.deactivate(eng);
    // eng has no active clients left: its subtree drops out of the order entirely.
    assert_eq!(order(&mut s), ["ops"]);
    s.activate(svc);
    assert_eq!(order(&mut s), ["eng/svc", "ops"]);
}

#[test]
fn weights_apply_per_level() {
    let mut s = DrfSorter::new();
    s.set_total(&r(100, 100));
    let x = s.add("a/x");
    let y = s.add("b/y");
    s.set_weight("b/y", w(100.0));
    s.allocated(x, &r(10, 0));
    s.allocated(y, &r(20, 0));
    // b/y's weight only matters against its siblings under b, of which it has none:
    // top level compares a = .1 with b = .2.
    assert_eq!(order(&mut s), ["a/x", "b/y"]);
}

#[test]
fn random_sorter_is_reproducible_and_weighted() {
    let mut s1 = RandomSorter::new(StdRng::seed_from_u64(42));
    let mut s2 = RandomSorter::new(StdRng::seed_from_u64(42));
    for p in ["a", "b/x", "b/y", "c"] {
        s1.add(p);
        s2.add(p);
    }
    for _ in 0..10 {
        assert_eq!(order(&mut s1), order(&mut s2));
    }
    // Allocations are tracked for shares but do not change the policy.
    let a = s1.lookup("a").unwrap();
    s1.set_total(&r(100, 100));
    s1.allocated(a, &r(50, 0));
    assert_eq!(s1.share(a), 0.5);
    let mut firsts = std::collections::BTreeMap::<String, u32>::new();
    s1.set_weight("c", w(6.0));
    for _ in 0..3000 {
        *firsts.entry(order(&mut s1)[0].clone()).or_default() += 1;
    }
    // c (weight 6) leads about 6/8 of the time against a and b (weight 1 each).
    let c_first = firsts["c"];
    assert!((2000..2500).contains(&c_first), "{firsts:?}");
}
