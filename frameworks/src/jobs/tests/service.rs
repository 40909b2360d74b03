//! Services (restart, scale, kill) and tiers (preemption).

use std::collections::BTreeMap;

use corral_proto::v1;
use corral_types::TaskState;

use super::*;
use crate::jobs::book::Book;

fn service(name: &str, instances: u64) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nkind = \"service\"\nmodule = \"{MODULE}\"\n\
         instances = {instances}\n[resources]\ncpus = 0.1\nmem = \"32MiB\"\n"
    )
}

#[test]
fn a_service_restarts_every_instance_that_ends_after_a_growing_backoff() {
    let mut book = Book::default();
    submit(&mut book, &service("web", 2)).unwrap();
    let mut launched = launch_all(&mut book, 0);
    launched.sort();
    assert_eq!(launched, ["web.0", "web.1"]);
    report(&mut book, "web.0", TaskState::Running, 10);
    assert_eq!(
        (job(&book, "web").running, job(&book, "web").started),
        (2, 1)
    );
    // Whatever way an instance ends, it starts again: after 1 s (Marathon's first backoff)...
    report(&mut book, "web.0", TaskState::Finished, 20);
    assert!(launch_all(&mut book, 1_019).is_empty());
    assert_eq!(launch_all(&mut book, 1_020), ["web.0"]);
    // ... then 1.15 times longer while it keeps ending soon after starting ...
    report(&mut book, "web.0", TaskState::Failed, 1_100);
    assert!(launch_all(&mut book, 2_249).is_empty());
    assert_eq!(launch_all(&mut book, 2_250), ["web.0"]);
    // ... and from 1 s again once it ran a while.
    report(&mut book, "web.0", TaskState::Running, 3_000);
    report(&mut book, "web.0", TaskState::Lost, 70_000);
    assert_eq!(launch_all(&mut book, 71_000), ["web.0"]);
    let j = job(&book, "web");
    assert_eq!(j.state, RUNNING);
    assert_eq!((j.instances, j.running, j.attempts), (2, 2, 5));
    assert!(book.wants_offers() || j.waiting == 0);
}

#[test]
fn scaling_a_service_starts_new_instances_and_kills_the_highest() {
    let mut book = Book::default();
    let mut store = BTreeMap::new();
    submit(&mut book, &service("web", 2)).unwrap();
    launch_all(&mut book, 0);
    assert!(book.scale("web", 5).unwrap().is_empty());
    let mut more = launch_all(&mut book, 1);
    more.sort();
    assert_eq!(more, ["web.2", "web.3", "web.4"]);
    let mut killed: Vec<String> = book
        .scale("web", 2)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    killed.sort();
    assert_eq!(killed, ["web.2", "web.3", "web.4"]);
    assert_eq!(job(&book, "web").instances, 2);
    // The killed ones are not started again.
    for i in 2..5 {
        report(&mut book, &format!("web.{i}"), TaskState::Killed, 2);
    }
    assert!(launch_all(&mut book, 10_000).is_empty());
    let j = job(&book, "web");
    assert_eq!((j.instances, j.running), (2, 2));
    apply(&mut store, book.take_writes());
    // Restored, the service has its scaled size, not its spec's.
    let mut again = restore(&store, 3);
    assert_eq!(job(&again, "web").instances, 2);
    assert_eq!(again.launched().len(), 2);
    again.scale("web", 3).unwrap();
    assert_eq!(launch_all(&mut again, 4), ["web.2"]);
    assert!(matches!(
        again.scale("nope", 1),
        Err(crate::jobs::book::CallError::NotFound)
    ));
    submit(&mut again, &batch("b", 1, "")).unwrap();
    assert!(matches!(
        again.scale("b", 3),
        Err(crate::jobs::book::CallError::NotService)
    ));
}

#[test]
fn a_killed_service_starts_nothing_more() {
    let mut book = Book::default();
    submit(&mut book, &service("web", 3)).unwrap();
    launch_all(&mut book, 0);
    let kills = book.kill("web", 1).unwrap();
    assert_eq!(kills.len(), 3);
    for i in 0..3 {
        report(&mut book, &format!("web.{i}"), TaskState::Killed, 2);
    }
    assert!(launch_all(&mut book, 5_000).is_empty());
    let j = job(&book, "web");
    assert_eq!(j.state, v1::JobState::Killed as i32);
    assert_eq!(j.running, 0);
    assert!(j.ended_unix_millis > 0);
}

// -- tiers and preemption --

#[test]
fn production_work_takes_the_place_of_preemptible_instances_which_run_again_later() {
    let mut book = Book::default();
    submit(
        &mut book,
        &batch("low", 10, "tier = \"preemptible\"\nretries = 0"),
    )
    .unwrap();
    // The preemptible job fills the cluster (1 cpu, 0.1 each).
    let plan = book.plan(&[offer("o1", "a1", 1000)], 0, &Unpaced);
    assert_eq!(plan.launches[0].1.len(), 10);
    submit(&mut book, &batch("high", 3, "")).unwrap();
    // No offer comes (the cluster is full): after a while the production job preempts.
    assert!(book.tick(100).is_empty(), "not at once");
    assert_eq!(book.next_wakeup(), Some(2_100));
    let mut victims: Vec<String> = book.tick(2_100).iter().map(ToString::to_string).collect();
    victims.sort();
    assert_eq!(
        victims,
        ["low.7", "low.8", "low.9"],
        "the highest instances, just enough"
    );
    assert!(book.tick(4_200).is_empty(), "one round at a time");
    for v in &victims {
        report(&mut book, v, TaskState::Killed, 2_200);
    }
    let low = job(&book, "low");
    assert_eq!(
        (low.failed, low.waiting + low.retrying, low.running),
        (0, 3, 7),
        "not failures: back to wait"
    );
    assert!(
        low.message.contains("3 instances preempted"),
        "{}",
        low.message
    );
    // The freed resources go to production first, though it was submitted later.
    let plan = book.plan(&[offer("o2", "a1", 300)], 2_300, &Unpaced);
    let ids: Vec<String> = plan.launches[0]
        .1
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["high.0", "high.1", "high.2"]);
    // Preempted instances run again later and may still succeed (retries = 0 untouched).
    for i in 0..3 {
        report(&mut book, &format!("high.{i}"), TaskState::Finished, 2_400);
    }
    let mut again = launch_all(&mut book, 2_500);
    again.sort();
    assert_eq!(again, ["low.7", "low.8", "low.9"]);
    for i in 0..10 {
        report(&mut book, &format!("low.{i}"), TaskState::Finished, 2_600);
    }
    let low = job(&book, "low");
    assert_eq!(
        (low.state, low.succeeded, low.attempts),
        (v1::JobState::Succeeded as i32, 10, 13)
    );
}

#[test]
fn production_never_preempts_production() {
    let mut book = Book::default();
    submit(&mut book, &batch("first", 10, "")).unwrap();
    book.plan(&[offer("o1", "a1", 1000)], 0, &Unpaced);
    submit(&mut book, &batch("second", 3, "")).unwrap();
    assert_eq!(book.next_wakeup(), None);
    assert!(book.tick(10_000).is_empty());
}

#[test]
fn preemption_never_crosses_roles() {
    let mut book = Book::default();
    submit(
        &mut book,
        &batch("low", 10, "tier = \"preemptible\"\nretries = 0"),
    )
    .unwrap();
    book.plan(&[offer("o1", "a1", 1000)], 0, &Unpaced);
    submit(&mut book, &batch("other", 3, "role = \"analytics\"")).unwrap();
    book.tick(100);
    assert!(
        book.tick(10_000).is_empty(),
        "role * work is not preempted for role analytics"
    );
}

// -- roles --

#[test]
fn jobs_take_only_offers_of_their_role_and_the_framework_subscribes_in_each() {
    let mut book = Book::default();
    submit(&mut book, &batch("a", 2, "role = \"analytics\"")).unwrap();
    submit(&mut book, &batch("b", 2, "")).unwrap();
    let roles: Vec<String> = book.roles().into_iter().collect();
    assert_eq!(roles, ["*", "analytics"]);
    let offers = [
        offer("star", "a1", 1000),
        OfferBuilder::new("analytics")
            .agent("a2")
            .role("analytics")
            .cpus_milli(1000)
            .mem_mib(1 << 20)
            .disk_mib(1 << 20)
            .build(),
    ];
    let plan = book.plan(&offers, 0, &Unpaced);
    let placed: BTreeMap<String, Vec<String>> = plan
        .launches
        .iter()
        .map(|(offer, tasks)| {
            let mut ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
            ids.sort();
            (offer.to_string(), ids)
        })
        .collect();
    assert_eq!(placed["star"], ["b.0", "b.1"]);
    assert_eq!(placed["analytics"], ["a.0", "a.1"]);
    for id in ["a.0", "a.1"] {
        report(&mut book, id, TaskState::Finished, 1);
    }
    let roles: Vec<String> = book.roles().into_iter().collect();
    assert_eq!(roles, ["*"], "an ended job's role is not needed");
}
