//! The book on a controlled clock: retries and backoff, failure policy, pipelines,
//! placement constraints, and a restore from what it wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cron;
mod pacing;
mod rollout;
mod service;

use std::collections::BTreeMap;

use corral_proto::jobs::Unpaced;
use corral_proto::{InputSource as TaskInput, v1};
use corral_scheduler::Offer;
use corral_scheduler::testkit::{OfferBuilder, StatusBuilder};
use corral_types::{Digest, TaskId, TaskOutput, TaskState};

use super::book::{Book, SubmitError, backoff_delay};
use super::record::{
    JobRecord, OUTPUTS_PREFIX, OutputsRecord, SHARD_PREFIX, ShardRecord, Submission, Write,
    split_key,
};
use crate::spec::{self, Format};

const MODULE: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

fn submission(source: &str) -> Submission {
    Submission {
        source: source.to_owned(),
        format: "toml".into(),
        file: "jobs.toml".into(),
        uploaded: BTreeMap::new(),
        owner: None,
    }
}

fn submit(book: &mut Book, source: &str) -> Result<Vec<String>, SubmitError> {
    let specs = spec::parse(source, Format::Toml, "jobs.toml").expect("valid spec");
    book.submit(specs, submission(source), 0)
}

fn batch(name: &str, instances: u64, extra: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\ninstances = \
         {instances}\n{extra}\n[resources]\ncpus = 0.1\nmem = \"32MiB\"\n"
    )
}

fn offer(id: &str, host: &str, cpus_milli: u64) -> Offer {
    OfferBuilder::new(id)
        .agent(host)
        .cpus_milli(cpus_milli)
        .mem_mib(1 << 20)
        .disk_mib(1 << 20)
        .build()
}

/// Launches everything it can on one big offer; returns the task IDs launched.
fn launch_all(book: &mut Book, now: u64) -> Vec<String> {
    let plan = book.plan(&[offer("o", "a1", 1_000_000)], now, &Unpaced);
    plan.launches
        .into_iter()
        .flat_map(|(_, tasks)| tasks)
        .map(|t| t.id.to_string())
        .collect()
}

fn report(book: &mut Book, task: &str, state: TaskState, now: u64) -> Vec<String> {
    let status = StatusBuilder::new(task, state).build();
    book.update(&status, now)
        .into_iter()
        .map(|t| t.to_string())
        .collect()
}

fn job(book: &Book, name: &str) -> v1::Job {
    book.view(name).expect("job exists")
}

#[test]
fn failed_instances_are_retried_after_their_backoff_and_counted_once() {
    let mut book = Book::default();
    let spec = batch(
        "b",
        5,
        "retries = 2\nbackoff = { initial = \"1s\", factor = 2.0, max = \"1m\" }",
    );
    submit(&mut book, &spec).unwrap();
    let mut launched = launch_all(&mut book, 0);
    launched.sort();
    assert_eq!(launched, ["b.0", "b.1", "b.2", "b.3", "b.4"]);

    for i in [0, 1, 2, 4] {
        report(&mut book, &format!("b.{i}"), TaskState::Finished, 10);
    }
    report(&mut book, "b.3", TaskState::Failed, 10);
    let j = job(&book, "b");
    assert_eq!(
        (j.succeeded, j.retrying, j.running, j.attempts),
        (4, 1, 0, 5)
    );
    // Not before its first backoff (1 s).
    assert!(launch_all(&mut book, 1_009).is_empty());
    assert_eq!(launch_all(&mut book, 1_010), ["b.3"]);
    report(&mut book, "b.3", TaskState::Lost, 1_100);
    // The second backoff is twice as long.
    assert!(launch_all(&mut book, 3_099).is_empty());
    assert_eq!(launch_all(&mut book, 3_100), ["b.3"]);
    report(&mut book, "b.3", TaskState::Finished, 3_200);

    let j = job(&book, "b");
    assert_eq!(j.state, v1::JobState::Succeeded as i32);
    assert_eq!((j.succeeded, j.failed, j.attempts), (5, 0, 7));
    assert_eq!(j.recent_failures.len(), 2);
    assert_eq!(j.recent_failures[0].attempt, 2);
    assert_eq!(j.recent_failures[0].state, "LOST");
    assert!(!book.wants_offers());
}

#[test]
fn an_instance_out_of_retries_fails_the_job_once_the_rest_ended() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 2, "retries = 0")).unwrap();
    launch_all(&mut book, 0);
    report(&mut book, "b.0", TaskState::Failed, 1);
    assert_eq!(job(&book, "b").state, v1::JobState::Running as i32);
    report(&mut book, "b.1", TaskState::Finished, 2);
    let j = job(&book, "b");
    assert_eq!(j.state, v1::JobState::Failed as i32);
    assert_eq!(j.message, "1 of 2 instances failed");
    assert_eq!(j.ended_unix_millis, 2);
}

#[test]
fn a_launch_that_never_reached_an_agent_runs_again_without_using_a_retry() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 1, "retries = 0")).unwrap();
    launch_all(&mut book, 0);
    // The leader died with the launch stored but not taken: the next one answers UNKNOWN.
    report(&mut book, "b.0", TaskState::Unknown, 1);
    assert_eq!(job(&book, "b").state, RUNNING, "not a failure of the task");
    assert_eq!(launch_all(&mut book, 2), ["b.0"], "launched again");
    report(&mut book, "b.0", TaskState::Dropped, 3);
    assert_eq!(launch_all(&mut book, 4), ["b.0"], "and again");
    report(&mut book, "b.0", TaskState::Finished, 5);
    let j = job(&book, "b");
    assert_eq!(j.state, v1::JobState::Succeeded as i32);
    assert_eq!((j.attempts, j.failed), (3, 0));
    assert_eq!(j.recent_failures.len(), 2, "both shown");
}

#[test]
fn the_failure_policy_stops_a_doomed_job_early_and_kills_the_rest() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 10, "retries = 0\nmax_failures = 2")).unwrap();
    // Room for 4 of 10.
    let plan = book.plan(&[offer("o", "a1", 400)], 0, &Unpaced);
    assert_eq!(plan.launches[0].1.len(), 4);
    report(&mut book, "b.0", TaskState::Failed, 1);
    assert!(
        report(&mut book, "b.1", TaskState::Failed, 2).len() == 2,
        "b.2 and b.3 killed"
    );
    let j = job(&book, "b");
    assert_eq!(j.state, v1::JobState::Failed as i32);
    assert!(j.message.contains("max_failures = 2"), "{}", j.message);
    assert_eq!(j.attempts, 4, "nothing more launched");
    assert!(launch_all(&mut book, 3).is_empty());
    report(&mut book, "b.2", TaskState::Killed, 4);
    report(&mut book, "b.3", TaskState::Killed, 4);
    assert_eq!(job(&book, "b").ended_unix_millis, 4);
}

#[test]
fn a_pipeline_runs_in_order_with_the_outputs_of_the_jobs_it_depends_on() {
    let mut book = Book::default();
    let source = format!(
        "version = 1\n[[jobs]]\nname = \"map\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\ninstances = 2\n\
         resources = {{ cpus = 0.1 }}\n\
         [[jobs]]\nname = \"reduce\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\ndepends_on = [\"map\"]\n\
         resources = {{ cpus = 0.1 }}\ninputs = [{{ path = \"parts\", from = \"map\" }}]\n"
    );
    submit(&mut book, &source).unwrap();
    assert_eq!(job(&book, "reduce").state, v1::JobState::Waiting as i32);
    let mut launched = launch_all(&mut book, 0);
    launched.sort();
    assert_eq!(launched, ["map.0", "map.1"]);
    for i in 0..2u8 {
        let mut status = StatusBuilder::new(&format!("map.{i}"), TaskState::Finished).build();
        status.outputs = vec![TaskOutput {
            path: "counts.txt".into(),
            size: 3,
            digest: Digest::of(&[i]),
        }];
        book.update(&status, 5);
    }
    assert_eq!(job(&book, "reduce").state, v1::JobState::Running as i32);
    let plan = book.plan(&[offer("o", "a1", 1000)], 6, &Unpaced);
    let tasks = &plan.launches[0].1;
    assert_eq!(tasks.len(), 1);
    let inputs: Vec<(String, TaskInput)> = tasks[0]
        .inputs
        .iter()
        .map(|i| (i.path.clone(), i.source.clone()))
        .collect();
    assert_eq!(
        inputs,
        [
            (
                "parts/0/counts.txt".to_owned(),
                TaskInput::Artifact(Digest::of(&[0]))
            ),
            (
                "parts/1/counts.txt".to_owned(),
                TaskInput::Artifact(Digest::of(&[1]))
            ),
        ]
    );
    let env: BTreeMap<_, _> = tasks[0]
        .env
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    assert_eq!(env["CORRAL_JOB"], "reduce");
    assert_eq!(env["CORRAL_TASK_INDEX"], "0");
    assert_eq!(env["CORRAL_TASK_ATTEMPT"], "1");
}

#[test]
fn a_failed_dependency_fails_the_jobs_waiting_on_it() {
    let mut book = Book::default();
    let source = format!(
        "version = 1\n[[jobs]]\nname = \"a\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\nretries = 0\n\
         resources = {{ cpus = 0.1 }}\n\
         [[jobs]]\nname = \"b\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\ndepends_on = [\"a\"]\n\
         resources = {{ cpus = 0.1 }}\n\
         [[jobs]]\nname = \"c\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\ndepends_on = [\"b\"]\n\
         resources = {{ cpus = 0.1 }}\n"
    );
    submit(&mut book, &source).unwrap();
    launch_all(&mut book, 0);
    report(&mut book, "a.0", TaskState::Failed, 1);
    for name in ["a", "b", "c"] {
        assert_eq!(
            job(&book, name).state,
            v1::JobState::Failed as i32,
            "{name}"
        );
    }
    assert_eq!(job(&book, "c").message, "dependency b did not succeed");
}

#[test]
fn submissions_are_refused_whole_with_the_reason() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 1, "")).unwrap();
    assert!(matches!(
        submit(&mut book, &batch("b", 1, "")),
        Err(SubmitError::Exists(_))
    ));
    let local = "version = 1\nname = \"l\"\nkind = \"batch\"\nmodule = \"hello.wasm\"\n[resources]\ncpus = 0.1\n";
    let Err(SubmitError::Invalid(m)) = submit(&mut book, local) else {
        panic!("a local path nobody uploaded is refused");
    };
    assert!(m.contains("hello.wasm"), "{m}");
    let orphan = batch("o", 1, "depends_on = [\"nope\"]");
    assert!(matches!(
        submit(&mut book, &orphan),
        Err(SubmitError::UnknownDependency(_))
    ));
    assert_eq!(
        book.views().len(),
        1,
        "nothing of the refused files was added"
    );
    // An ended job's name may be used again.
    launch_all(&mut book, 0);
    report(&mut book, "b.0", TaskState::Finished, 1);
    submit(&mut book, &batch("b", 3, "")).unwrap();
    assert_eq!(job(&book, "b").instances, 3);
}

#[test]
fn killing_a_job_kills_its_instances_and_launches_no_more() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 3, "")).unwrap();
    book.plan(&[offer("o", "a1", 200)], 0, &Unpaced);
    let mut kills: Vec<String> = book
        .kill("b", 1)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    kills.sort();
    assert_eq!(kills, ["b.0", "b.1"]);
    assert_eq!(job(&book, "b").state, v1::JobState::Killed as i32);
    assert!(launch_all(&mut book, 2).is_empty());
    assert!(book.kill("nope", 1).is_none());
}

fn placements(constraint: &str, offers: &[Offer], instances: u64) -> Vec<String> {
    let mut book = Book::default();
    submit(
        &mut book,
        &batch("p", instances, &format!("constraints = [{constraint}]")),
    )
    .unwrap();
    let plan = book.plan(offers, 0, &Unpaced);
    let mut hosts: Vec<String> = plan
        .launches
        .iter()
        .flat_map(|(offer, tasks)| {
            let host = offers
                .iter()
                .find(|o| o.id == *offer)
                .unwrap()
                .hostname
                .clone();
            std::iter::repeat_n(host, tasks.len())
        })
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn constraint_operators_place_as_marathon_does() {
    let rack = |id: &str, host: &str, rack: &str| {
        OfferBuilder::new(id)
            .agent(host)
            .cpus_milli(1000)
            .mem_mib(4096)
            .disk_mib(4096)
            .attribute("rack", rack)
            .build()
    };
    let offers = [
        rack("o1", "a", "r1"),
        rack("o2", "b", "r1"),
        rack("o3", "c", "r2"),
    ];
    let cases: &[(&str, u64, &[&str])] = &[
        (
            r#"["hostname", "UNIQUE"]"#,
            5,
            &["a.local", "b.local", "c.local"],
        ),
        (r#"["rack", "CLUSTER", "r2"]"#, 2, &["c.local", "c.local"]),
        (r#"["rack", "LIKE", "r1"]"#, 2, &["a.local", "a.local"]),
        (r#"["rack", "UNLIKE", "r1"]"#, 1, &["c.local"]),
        (r#"["rack", "MAX_PER", "1"]"#, 5, &["a.local", "c.local"]),
        (
            r#"["rack", "GROUP_BY"]"#,
            4,
            &["a.local", "a.local", "c.local", "c.local"],
        ),
        (r#"["zone", "LIKE", "z1"]"#, 1, &[]),
    ];
    for (constraint, instances, want) in cases {
        assert_eq!(
            placements(constraint, &offers, *instances),
            *want,
            "{constraint}"
        );
    }
}

#[test]
fn a_constraint_no_offer_meets_is_reported_on_the_job() {
    let mut book = Book::default();
    submit(
        &mut book,
        &batch("p", 1, r#"constraints = [["rack", "CLUSTER", "r9"]]"#),
    )
    .unwrap();
    let plan = book.plan(
        &[offer("o1", "a", 1000), offer("o2", "b", 1000)],
        0,
        &Unpaced,
    );
    assert!(plan.launches.is_empty());
    assert_eq!(plan.declines.len(), 2);
    let message = job(&book, "p").message;
    assert_eq!(
        message,
        "waiting for placement: constraint rack CLUSTER r9 not met by any of the 2 agents offered"
    );
}

#[test]
fn spread_uses_every_offer_before_doubling_up() {
    let mut book = Book::default();
    submit(&mut book, &batch("s", 3, "placement = \"spread\"")).unwrap();
    let plan = book.plan(
        &[
            offer("o1", "a", 1000),
            offer("o2", "b", 1000),
            offer("o3", "c", 1000),
        ],
        0,
        &Unpaced,
    );
    assert_eq!(plan.launches.len(), 3);
    let mut book = Book::default();
    submit(&mut book, &batch("s", 3, "")).unwrap();
    let plan = book.plan(
        &[
            offer("o1", "a", 1000),
            offer("o2", "b", 1000),
            offer("o3", "c", 1000),
        ],
        0,
        &Unpaced,
    );
    assert_eq!(plan.launches.len(), 1, "bin-packed onto the first offer");
}

/// Applies writes to a map as the store would.
fn apply(store: &mut BTreeMap<String, Vec<u8>>, writes: Vec<Write>) {
    for w in writes {
        match w {
            Write::Put(k, v) => {
                store.insert(k, v);
            }
            Write::Delete(k) => {
                store.remove(&k);
            }
        }
    }
}

fn restore(store: &BTreeMap<String, Vec<u8>>, now: u64) -> Book {
    let mut shards: BTreeMap<String, BTreeMap<u32, ShardRecord>> = BTreeMap::new();
    let mut outputs: BTreeMap<String, BTreeMap<u32, Vec<TaskOutput>>> = BTreeMap::new();
    for (key, value) in store {
        if let Some((job, n)) = split_key(key, SHARD_PREFIX) {
            shards
                .entry(job.into())
                .or_default()
                .insert(n, serde_json::from_slice(value).unwrap());
        } else if let Some((job, n)) = split_key(key, OUTPUTS_PREFIX) {
            let record: OutputsRecord = serde_json::from_slice(value).unwrap();
            let files = record
                .outputs
                .into_iter()
                .map(|(path, size, d)| TaskOutput {
                    path,
                    size,
                    digest: d.parse().unwrap(),
                })
                .collect();
            outputs.entry(job.into()).or_default().insert(n, files);
        }
    }
    let mut book = Book::default();
    for (key, value) in store {
        if key.starts_with("job/") {
            let record: JobRecord = serde_json::from_slice(value).unwrap();
            let name = record.name.clone();
            book.restore(
                record,
                &shards.remove(&name).unwrap_or_default(),
                outputs.remove(&name).unwrap_or_default(),
            )
            .unwrap();
        }
    }
    book.restored(now);
    book
}

#[test]
fn a_restored_book_has_every_instance_where_it_was_and_reconciles_the_launched() {
    let mut book = Book::default();
    let mut store = BTreeMap::new();
    // Two shards' worth, so both are written and read back.
    submit(&mut book, &batch("big", 1500, "retries = 1")).unwrap();
    book.plan(&[offer("o", "a1", 1_000_000)], 0, &Unpaced);
    for i in 0..1000 {
        report(&mut book, &format!("big.{i}"), TaskState::Finished, 1);
    }
    report(&mut book, "big.1000", TaskState::Failed, 1);
    apply(&mut store, book.take_writes());
    assert!(book.take_writes().is_empty(), "nothing is written twice");

    let mut again = restore(&store, 2);
    let before = job(&book, "big");
    let after = job(&again, "big");
    assert_eq!(
        (after.succeeded, after.running),
        (before.succeeded, before.running)
    );
    assert_eq!(after.attempts, before.attempts);
    assert_eq!(after.state, v1::JobState::Running as i32);
    let launched = again.launched();
    assert_eq!(launched.len(), (before.running) as usize);
    assert!(launched.iter().all(|t| t.as_str().starts_with("big.")));
    // The instance that failed its first attempt is launched again as its second.
    let plan = again.plan(&[offer("o", "a1", 1_000_000)], 3, &Unpaced);
    let tasks: Vec<_> = plan.launches.into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].id.as_str(), "big.1000");
    assert!(
        tasks[0]
            .env
            .contains(&corral_proto::EnvVar::plain("CORRAL_TASK_ATTEMPT", "2"))
    );

    // Ended: the record keeps the counts, the shards go.
    for i in 1000..1500 {
        report(&mut again, &format!("big.{i}"), TaskState::Finished, 4);
    }
    apply(&mut store, again.take_writes());
    assert!(
        store.keys().all(|k| !k.starts_with("inst/")),
        "{:?}",
        store.keys()
    );
    let ended = job(&restore(&store, 5), "big");
    assert_eq!(ended.state, v1::JobState::Succeeded as i32);
    assert_eq!((ended.succeeded, ended.attempts), (1500, 1501));
}

#[test]
fn backoff_grows_by_its_factor_up_to_its_max() {
    let backoff = spec::Backoff {
        initial: std::time::Duration::from_secs(1),
        factor: 2.0,
        max: std::time::Duration::from_secs(5),
    };
    let delays: Vec<u64> = (1..=5)
        .map(|n| backoff_delay(&backoff, n).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 5, 5]);
}

const RUNNING: i32 = v1::JobState::Running as i32;

#[test]
fn launched_instances_not_heard_of_are_asked_about_again() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 2, "")).unwrap();
    let launched = launch_all(&mut book, 500);
    // Stored but not sent yet (a slow store write): the master would answer UNKNOWN for a
    // task it is about to receive, so these are not asked about however long they wait.
    assert!(
        book.unconfirmed(60_000, 2_000).is_empty(),
        "launch not sent"
    );
    assert!(book.launched().is_empty(), "launch not sent");
    let ids: Vec<TaskId> = launched.iter().map(|t| TaskId::new(t).unwrap()).collect();
    book.sent(&ids, 1_000);
    report(&mut book, "b.0", TaskState::Running, 1_100);
    assert!(book.unconfirmed(2_999, 2_000).is_empty(), "not yet");
    let asked: Vec<String> = book
        .unconfirmed(3_000, 2_000)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(asked, ["b.1"], "b.0 reported RUNNING");
    assert!(
        book.unconfirmed(3_001, 2_000).is_empty(),
        "asked again only after another period"
    );
}
