//! The book on a controlled clock: retries and backoff, failure policy, pipelines,
//! placement constraints, and a restore from what it wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use corral_proto::{InputSource as TaskInput, v1};
use corral_scheduler::Offer;
use corral_scheduler::testkit::{OfferBuilder, StatusBuilder};
use corral_types::{Digest, TaskOutput, TaskState};

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
    let plan = book.plan(&[offer("o", "a1", 1_000_000)], now);
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
fn the_failure_policy_stops_a_doomed_job_early_and_kills_the_rest() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 10, "retries = 0\nmax_failures = 2")).unwrap();
    // Room for 4 of 10.
    let plan = book.plan(&[offer("o", "a1", 400)], 0);
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
    let plan = book.plan(&[offer("o", "a1", 1000)], 6);
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
    let env: BTreeMap<_, _> = tasks[0].env.iter().cloned().collect();
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
    let other_role = batch("r", 1, "role = \"eng\"");
    assert!(matches!(
        submit(&mut book, &other_role),
        Err(SubmitError::Invalid(_))
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
    book.plan(&[offer("o", "a1", 200)], 0);
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
    let plan = book.plan(offers, 0);
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
    let plan = book.plan(&[offer("o1", "a", 1000), offer("o2", "b", 1000)], 0);
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
    book.plan(&[offer("o", "a1", 1_000_000)], 0);
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
    let plan = again.plan(&[offer("o", "a1", 1_000_000)], 3);
    let tasks: Vec<_> = plan.launches.into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].id.as_str(), "big.1000");
    assert!(
        tasks[0]
            .env
            .contains(&("CORRAL_TASK_ATTEMPT".into(), "2".into()))
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

// -- cron jobs --

fn ms(rfc3339: &str) -> u64 {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(t.as_millisecond()).unwrap()
}

fn cron(name: &str, extra: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nkind = \"cron\"\nmodule = \"{MODULE}\"\n{extra}\n\
         [resources]\ncpus = 0.1\nmem = \"32MiB\"\n"
    )
}

fn submit_at(book: &mut Book, source: &str, now: u64) {
    let specs = spec::parse(source, Format::Toml, "jobs.toml").expect("valid spec");
    book.submit(specs, submission(source), now).unwrap();
}

/// The runs of a cron job that the book lists, by name, with their states.
fn runs(book: &Book, cron_job: &str) -> Vec<(String, i32)> {
    book.views()
        .into_iter()
        .filter(|j| j.cron_job == cron_job)
        .map(|j| (j.name, j.state))
        .collect()
}

const RUNNING: i32 = v1::JobState::Running as i32;

#[test]
fn cron_runs_at_the_same_local_time_across_a_dst_change() {
    let mut book = Book::default();
    let spec = cron(
        "daily",
        "schedule = \"0 9 * * *\"\ntimezone = \"Europe/Paris\"",
    );
    submit_at(&mut book, &spec, ms("2027-03-26T12:00:00Z"));
    // 09:00 in Paris is 08:00 UTC in winter time...
    let first = ms("2027-03-27T08:00:00Z");
    assert_eq!(book.next_wakeup(), Some(first));
    assert_eq!(job(&book, "daily").next_run_unix_millis, first);
    assert!(book.tick(first - 1).is_empty());
    assert!(runs(&book, "daily").is_empty(), "nothing before it is due");
    book.tick(first);
    assert_eq!(runs(&book, "daily"), [("daily-1".to_owned(), RUNNING)]);
    assert_eq!(job(&book, "daily-1").submitted_unix_millis, first);
    assert_eq!(launch_all(&mut book, first + 5), ["daily-1.0"]);
    report(&mut book, "daily-1.0", TaskState::Finished, first + 10);
    // ... and 07:00 UTC once summer time began on 28 March 2027.
    let second = ms("2027-03-28T07:00:00Z");
    assert_eq!(book.next_wakeup(), Some(second));
    book.tick(second);
    assert_eq!(job(&book, "daily-2").submitted_unix_millis, second);
    assert_eq!(job(&book, "daily-1").state, v1::JobState::Succeeded as i32);
    assert_eq!(job(&book, "daily").state, RUNNING, "a cron job goes on");
}

#[test]
fn concurrency_forbid_skips_replace_kills_and_allow_runs_alongside() {
    let start = ms("2027-01-01T00:00:30Z");
    let minute = 60_000;
    let first = ms("2027-01-01T00:01:00Z");
    for (policy, kills, running) in [
        ("forbid", vec![], vec!["c-1"]),
        ("replace", vec!["c-1.0"], vec!["c-2"]),
        ("allow", vec![], vec!["c-1", "c-2"]),
    ] {
        let mut book = Book::default();
        submit_at(
            &mut book,
            &cron(
                "c",
                &format!("schedule = \"* * * * *\"\nconcurrency = \"{policy}\""),
            ),
            start,
        );
        book.tick(first);
        assert_eq!(launch_all(&mut book, first + 1), ["c-1.0"]);
        let killed: Vec<String> = book
            .tick(first + minute)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(killed, kills, "{policy}");
        if policy == "replace" {
            report(&mut book, "c-1.0", TaskState::Killed, first + minute + 1);
        }
        let still: Vec<String> = runs(&book, "c")
            .into_iter()
            .filter(|(_, state)| *state == RUNNING)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(still, running, "{policy}");
        if policy == "forbid" {
            let message = job(&book, "c").message;
            assert!(
                message.contains("c-1 still runs (concurrency = forbid)"),
                "{message}"
            );
        }
    }
}

#[test]
fn runs_past_their_starting_deadline_are_skipped() {
    let mut book = Book::default();
    let spec = cron(
        "late",
        "schedule = \"*/5 * * * *\"\nstarting_deadline = \"30s\"",
    );
    submit_at(&mut book, &spec, ms("2027-01-01T00:00:30Z"));
    let due = ms("2027-01-01T00:05:00Z");
    // The framework was away until a minute after the run was due: skipped.
    book.tick(due + 60_000);
    assert!(runs(&book, "late").is_empty());
    assert!(
        job(&book, "late")
            .message
            .contains("past its starting deadline")
    );
    // On time, but no offer came within the deadline: skipped too.
    let next = ms("2027-01-01T00:10:00Z");
    book.tick(next);
    assert_eq!(book.next_wakeup(), Some(next + 30_000));
    book.tick(next + 30_000);
    let run = job(&book, "late-1");
    assert_eq!(run.state, v1::JobState::Failed as i32);
    assert_eq!(
        run.message,
        "skipped: not started within its starting deadline"
    );
    assert_eq!(run.attempts, 0);
}

#[test]
fn only_the_history_limit_of_ended_runs_is_kept() {
    let mut book = Book::default();
    submit_at(
        &mut book,
        &cron("h", "schedule = \"0 0 1 1 *\"\nhistory_limit = 2"),
        0,
    );
    book.take_writes();
    for n in 1..=3 {
        assert_eq!(book.run_now("h", n).unwrap(), format!("h-{n}"));
        assert_eq!(launch_all(&mut book, n), [format!("h-{n}.0")]);
        report(&mut book, &format!("h-{n}.0"), TaskState::Finished, n);
    }
    let names: Vec<String> = runs(&book, "h").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["h-2", "h-3"]);
    let writes = book.take_writes();
    assert!(
        writes.contains(&Write::Delete("job/h-1".into())),
        "{writes:?}"
    );
    assert!(matches!(
        book.run_now("nope", 1),
        Err(super::book::CallError::NotFound)
    ));
    submit(&mut book, &batch("b", 1, "")).unwrap();
    assert!(matches!(
        book.run_now("b", 1),
        Err(super::book::CallError::NotCron)
    ));
}

#[test]
fn a_suspended_cron_job_starts_nothing_and_resumes_from_now() {
    let mut book = Book::default();
    submit_at(
        &mut book,
        &cron("s", "schedule = \"0 * * * *\""),
        ms("2027-01-01T00:30:00Z"),
    );
    book.set_suspended("s", true, ms("2027-01-01T00:31:00Z"))
        .unwrap();
    assert_eq!(job(&book, "s").state, v1::JobState::Suspended as i32);
    assert_eq!(job(&book, "s").next_run_unix_millis, 0);
    assert_eq!(book.next_wakeup(), None);
    book.tick(ms("2027-01-01T03:00:00Z"));
    assert!(runs(&book, "s").is_empty());
    // Resumed at 03:10: the runs due while suspended are not made up for.
    book.set_suspended("s", false, ms("2027-01-01T03:10:00Z"))
        .unwrap();
    assert_eq!(book.next_wakeup(), Some(ms("2027-01-01T04:00:00Z")));
    book.tick(ms("2027-01-01T04:00:00Z"));
    assert_eq!(runs(&book, "s").len(), 1);
}

#[test]
fn a_repeating_interval_runs_its_repetitions_then_ends() {
    let mut book = Book::default();
    let spec = cron("r", "schedule = \"R2/2027-01-01T00:00:00Z/PT10S\"");
    let start = ms("2027-01-01T00:00:00Z");
    submit_at(&mut book, &spec, start - 1);
    assert_eq!(book.next_wakeup(), Some(start));
    book.tick(start);
    book.tick(start + 10_000);
    assert_eq!(runs(&book, "r").len(), 2);
    let r = job(&book, "r");
    assert_eq!(r.state, v1::JobState::Succeeded as i32);
    assert_eq!(r.schedule, "R2/2027-01-01T00:00:00Z/PT10S");
    assert_eq!(
        book.next_wakeup(),
        None,
        "the runs are launched: no deadline to watch"
    );
}

#[test]
fn a_restored_cron_job_goes_on_where_it_was() {
    let mut book = Book::default();
    let mut store = BTreeMap::new();
    submit_at(
        &mut book,
        &cron("c", "schedule = \"*/10 * * * *\""),
        ms("2027-01-01T00:00:30Z"),
    );
    book.tick(ms("2027-01-01T00:10:00Z"));
    launch_all(&mut book, ms("2027-01-01T00:10:01Z"));
    apply(&mut store, book.take_writes());

    let mut again = restore(&store, ms("2027-01-01T00:15:00Z"));
    assert_eq!(again.launched().len(), 1, "run 1 is reconciled");
    assert_eq!(again.next_wakeup(), Some(ms("2027-01-01T00:20:00Z")));
    again.tick(ms("2027-01-01T00:20:00Z"));
    assert_eq!(job(&again, "c-2").cron_job, "c", "the next run is run 2");
}

// -- services --

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
        Err(super::book::CallError::NotFound)
    ));
    submit(&mut again, &batch("b", 1, "")).unwrap();
    assert!(matches!(
        again.scale("b", 3),
        Err(super::book::CallError::NotService)
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
    let plan = book.plan(&[offer("o1", "a1", 1000)], 0);
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
    let plan = book.plan(&[offer("o2", "a1", 300)], 2_300);
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
    book.plan(&[offer("o1", "a1", 1000)], 0);
    submit(&mut book, &batch("second", 3, "")).unwrap();
    assert_eq!(book.next_wakeup(), None);
    assert!(book.tick(10_000).is_empty());
}
