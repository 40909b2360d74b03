//! Cron jobs on a controlled clock: time zones and DST, concurrency policies, late runs,
//! history, suspension, repeating intervals, a restore.

use std::collections::BTreeMap;

use corral_proto::v1;
use corral_types::TaskState;

use super::*;
use crate::jobs::book::Book;
use crate::spec::{self, Format};

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
        Err(crate::jobs::book::CallError::NotFound)
    ));
    submit(&mut book, &batch("b", 1, "")).unwrap();
    assert!(matches!(
        book.run_now("b", 1),
        Err(crate::jobs::book::CallError::NotCron)
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
