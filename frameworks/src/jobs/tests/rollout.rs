//! Rolling updates of services on a controlled clock: bounds kept at every step, rollback,
//! restore mid-update, and what an update refuses.

use std::collections::{BTreeMap, BTreeSet};

use corral_types::TaskState;

use super::*;

fn service(name: &str, instances: u64, args: &str, update: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nkind = \"service\"\nmodule = \"{MODULE}\"\n\
         args = [\"{args}\"]\ninstances = {instances}\n[resources]\ncpus = 0.1\n\
         mem = \"32MiB\"\n[update]\n{update}\n"
    )
}

/// Updates from `source`; returns the tasks to kill.
fn update(book: &mut Book, source: &str, now: u64) -> Result<Vec<String>, SubmitError> {
    let specs = spec::parse(source, Format::Toml, "jobs.toml").expect("valid spec");
    let (_, kills) = book.update_services(specs, submission(source), now)?;
    Ok(kills.iter().map(ToString::to_string).collect())
}

/// A cluster running one service's tasks (`live`), every 250 ms from `now` until its update
/// ends: `kills` end first; launched tasks run at once, except those `fails` names, which
/// fail 100 ms after they start; killed tasks end at once. After every step the tasks
/// running are checked to be within `bounds`.
fn drive(
    book: &mut Book,
    live: &mut BTreeSet<String>,
    mut kills: Vec<String>,
    mut now: u64,
    bounds: (usize, usize),
    fails: impl Fn(&str) -> bool,
) {
    for _ in 0..400 {
        for id in launch_all(book, now) {
            kills.extend(report(book, &id, TaskState::Running, now));
            if fails(&id) {
                kills.extend(report(book, &id, TaskState::Failed, now + 100));
            } else {
                live.insert(id);
            }
        }
        kills.extend(book.tick(now).into_iter().map(|t| t.to_string()));
        while let Some(id) = kills.pop() {
            assert!(live.remove(&id), "{id} killed but not running");
            kills.extend(report(book, &id, TaskState::Killed, now));
        }
        assert!(
            (bounds.0..=bounds.1).contains(&live.len()),
            "{} tasks running at {now} ms, outside {bounds:?}: {live:?}",
            live.len()
        );
        if job(book, "web").rollout.is_empty() {
            return;
        }
        now += 250;
    }
    panic!(
        "the update did not end: {:?} {:?}",
        job(book, "web"),
        book.launched()
    );
}

fn start(book: &mut Book, source: &str, live: &mut BTreeSet<String>) {
    submit(book, source).unwrap();
    for id in launch_all(book, 0) {
        report(book, &id, TaskState::Running, 0);
        live.insert(id);
    }
}

#[test]
fn a_rolling_update_with_surge_keeps_every_instance_up_and_replaces_them_all() {
    let mut book = Book::default();
    let mut live = BTreeSet::new();
    let policy = "max_unavailable = 0\nmax_surge = 1\nmin_running = \"1s\"";
    start(&mut book, &service("web", 3, "v1", policy), &mut live);
    let kills = update(&mut book, &service("web", 3, "v2", policy), 10).unwrap();
    assert!(
        kills.is_empty(),
        "nothing stops before its replacement is up"
    );
    let j = job(&book, "web");
    assert_eq!((j.version, j.outdated), (2, 3));
    assert_eq!(j.rollout, "updating to version 2: 0 of 3 instances updated");
    drive(&mut book, &mut live, kills, 10, (3, 4), |_| false);
    assert_eq!(
        live.into_iter().collect::<Vec<_>>(),
        ["web.0.v2", "web.1.v2", "web.2.v2"]
    );
    let j = job(&book, "web");
    assert_eq!((j.outdated, j.running, j.started), (0, 3, 3));
    assert_eq!(j.message, "updated to version 2");
}

#[test]
fn a_rolling_update_without_surge_stops_at_most_max_unavailable_at_once() {
    let mut book = Book::default();
    let mut live = BTreeSet::new();
    let policy = "max_unavailable = 2\nmax_surge = 0\nmin_running = \"0s\"";
    start(&mut book, &service("web", 5, "v1", policy), &mut live);
    let kills = update(&mut book, &service("web", 5, "v2", policy), 10).unwrap();
    assert_eq!(kills, ["web.0", "web.1"], "two stop at once");
    drive(&mut book, &mut live, kills, 10, (3, 5), |_| false);
    assert!(live.iter().all(|t| t.ends_with(".v2")), "{live:?}");
    assert_eq!(live.len(), 5);
}

#[test]
fn an_update_whose_new_instances_keep_failing_is_rolled_back() {
    let mut book = Book::default();
    let mut live = BTreeSet::new();
    let policy = "max_surge = 1\nrollback_after = 3";
    start(&mut book, &service("web", 3, "good", policy), &mut live);
    let kills = update(&mut book, &service("web", 3, "crash", policy), 10).unwrap();
    // Version 2 never comes up, so no old instance is ever stopped.
    drive(&mut book, &mut live, kills, 10, (3, 4), |id| {
        id.ends_with(".v2")
    });
    let j = job(&book, "web");
    assert_eq!(j.version, 3, "the previous spec, as a version of its own");
    assert!(
        j.message
            .starts_with("rolled back: version 2 failed 3 times"),
        "{}",
        j.message
    );
    assert_eq!(
        live.into_iter().collect::<Vec<_>>(),
        ["web.0.v3", "web.1.v3", "web.2.v3"]
    );
    let plan = book.plan(&[offer("o", "a1", 1_000_000)], 0, &Unpaced);
    assert!(plan.launches.is_empty());
    report(&mut book, "web.0.v3", TaskState::Failed, 0);
    let plan = book.plan(&[offer("o", "a1", 1_000_000)], 60_000, &Unpaced);
    let relaunched = &plan.launches[0].1[0];
    assert_eq!(relaunched.args, ["good"], "running the spec from before");
}

#[test]
fn an_update_restored_midway_goes_on_and_reconciles_the_old_tasks_it_kept() {
    let mut book = Book::default();
    let mut store = BTreeMap::new();
    let mut live = BTreeSet::new();
    let policy = "max_surge = 2\nmin_running = \"1s\"";
    start(&mut book, &service("web", 3, "v1", policy), &mut live);
    assert!(
        update(&mut book, &service("web", 3, "v2", policy), 10)
            .unwrap()
            .is_empty()
    );
    for id in launch_all(&mut book, 20) {
        report(&mut book, &id, TaskState::Running, 20);
        live.insert(id);
    }
    apply(&mut store, book.take_writes());
    // The framework restarts: its book is read back, the master answers its reconciliation.
    let mut book = restore(&store, 30);
    let mut launched: Vec<String> = book.launched().iter().map(ToString::to_string).collect();
    launched.sort();
    assert_eq!(
        launched,
        ["web.0", "web.0.v2", "web.1", "web.1.v2", "web.2"],
        "the old tasks kept beside new ones are asked about too"
    );
    let mut kills = Vec::new();
    for id in &launched {
        kills.extend(report(&mut book, id, TaskState::Running, 40));
    }
    let j = job(&book, "web");
    assert_eq!((j.version, j.outdated), (2, 3));
    drive(&mut book, &mut live, kills, 40, (3, 5), |_| false);
    assert_eq!(
        live.into_iter().collect::<Vec<_>>(),
        ["web.0.v2", "web.1.v2", "web.2.v2"]
    );
}

#[test]
fn updates_are_refused_whole_for_unknown_jobs_and_jobs_that_are_not_services() {
    let mut book = Book::default();
    submit(&mut book, &batch("b", 1, "")).unwrap();
    submit(&mut book, &service("web", 1, "v1", "")).unwrap();
    let unknown = service("nope", 1, "v1", "");
    assert!(matches!(
        update(&mut book, &unknown, 0),
        Err(SubmitError::NotFound(_))
    ));
    let both = format!(
        "version = 1\n[[jobs]]\nname = \"web\"\nkind = \"service\"\nmodule = \"{MODULE}\"\n\
         args = [\"v2\"]\nresources = {{ cpus = 0.1 }}\n\
         [[jobs]]\nname = \"b\"\nkind = \"batch\"\nmodule = \"{MODULE}\"\n\
         resources = {{ cpus = 0.1 }}\n"
    );
    let Err(SubmitError::NotApplicable(message)) = update(&mut book, &both, 0) else {
        panic!("a batch job updated");
    };
    assert!(message.contains("only services"), "{message}");
    assert_eq!(job(&book, "web").version, 1, "nothing of the file applied");
    // A spec that changes nothing starts no update.
    update(&mut book, &service("web", 1, "v1", ""), 0).unwrap();
    assert_eq!(job(&book, "web").version, 1);
    assert!(job(&book, "web").rollout.is_empty());
}

#[test]
fn an_update_that_changes_only_the_count_or_bounds_replaces_nothing() {
    let mut book = Book::default();
    let mut live = BTreeSet::new();
    start(
        &mut book,
        &service("web", 2, "v1", "max_surge = 1"),
        &mut live,
    );
    let kills = update(&mut book, &service("web", 3, "v1", "max_surge = 2"), 10).unwrap();
    assert!(kills.is_empty());
    let j = job(&book, "web");
    assert_eq!((j.version, j.instances, j.outdated), (1, 3, 0));
    assert!(j.rollout.is_empty());
    assert_eq!(launch_all(&mut book, 20), ["web.2"], "one more, as it was");
}

#[test]
fn a_slot_restored_beside_its_old_task_starts_its_new_one_and_stops_nothing_yet() {
    let mut book = Book::default();
    let mut store = BTreeMap::new();
    let mut live = BTreeSet::new();
    let policy = "max_unavailable = 0\nmax_surge = 1\nmin_running = \"1s\"";
    start(&mut book, &service("web", 2, "v1", policy), &mut live);
    assert!(
        update(&mut book, &service("web", 2, "v2", policy), 10)
            .unwrap()
            .is_empty()
    );
    // Slot 0 waits to launch version 2 beside its old task when the framework restarts.
    apply(&mut store, book.take_writes());
    let mut book = restore(&store, 20);
    let mut kills = Vec::new();
    for id in ["web.0", "web.1"] {
        kills.extend(report(&mut book, id, TaskState::Running, 30));
    }
    assert!(kills.is_empty(), "no instance may go down: {kills:?}");
    assert_eq!(launch_all(&mut book, 40), ["web.0.v2"]);
    let kills = report(&mut book, "web.0.v2", TaskState::Running, 40);
    live.insert("web.0.v2".to_owned());
    drive(&mut book, &mut live, kills, 40, (2, 3), |_| false);
    assert_eq!(
        live.into_iter().collect::<Vec<_>>(),
        ["web.0.v2", "web.1.v2"]
    );
}
