//! A job's launches taken from its owner's launch rate.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use corral_proto::jobs::LaunchPacer;

use super::*;

/// Launches left to each owner named; once none are left, the next is `wait` away.
#[derive(Debug)]
struct Budget {
    left: Mutex<BTreeMap<&'static str, u32>>,
    wait: Duration,
}

impl Budget {
    fn new(owner: &'static str, launches: u32, wait: Duration) -> Self {
        Self {
            left: Mutex::new([(owner, launches)].into()),
            wait,
        }
    }

    fn grant(&self, owner: &'static str, launches: u32) {
        self.left.lock().unwrap().insert(owner, launches);
    }
}

impl LaunchPacer for Budget {
    fn take(&self, owner: &str) -> Result<(), Duration> {
        match self.left.lock().unwrap().get_mut(owner) {
            Some(0) => Err(self.wait),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn submit_as(book: &mut Book, owner: &str, source: &str) {
    let specs = spec::parse(source, Format::Toml, "jobs.toml").expect("valid spec");
    let submission = Submission {
        owner: Some(owner.to_owned()),
        ..submission(source)
    };
    book.submit(specs, submission, 0).unwrap();
}

fn ids(launches: &[(corral_types::OfferId, Vec<corral_proto::TaskInfo>)]) -> Vec<String> {
    launches
        .iter()
        .flat_map(|(_, tasks)| tasks)
        .map(|t| t.id.to_string())
        .collect()
}

#[test]
fn a_jobs_launches_wait_for_its_owners_launch_rate_and_other_owners_go_on() {
    let mut book = Book::default();
    submit_as(&mut book, "alice", &batch("a", 5, ""));
    submit_as(&mut book, "bob", &batch("b", 2, ""));
    let budget = Budget::new("alice", 2, Duration::from_millis(1_500));

    let plan = book.plan(&[offer("o1", "a1", 1_000_000)], 0, &budget);
    assert_eq!(ids(&plan.launches), ["a.0", "a.1", "b.0", "b.1"]);
    let a = job(&book, "a");
    assert_eq!(a.waiting, 3);
    assert!(
        a.message
            .contains("held back by the launch rate of principal alice"),
        "{}",
        a.message
    );
    // Offers come back when the rate allows the next launch, not after the usual 5 s.
    assert_eq!(plan.refuse, Duration::from_millis(1_500));

    let plan = book.plan(&[offer("o2", "a1", 1_000_000)], 100, &budget);
    assert!(plan.launches.is_empty(), "{:?}", ids(&plan.launches));
    assert_eq!(plan.declines.len(), 1);
    assert_eq!(plan.refuse, Duration::from_millis(1_500));

    budget.grant("alice", 3);
    let plan = book.plan(&[offer("o3", "a1", 1_000_000)], 1_600, &budget);
    assert_eq!(ids(&plan.launches), ["a.2", "a.3", "a.4"]);
    assert_eq!(job(&book, "a").message, "");
}

#[test]
fn production_work_held_back_by_its_owners_rate_preempts_nothing() {
    let mut book = Book::default();
    submit_as(
        &mut book,
        "bob",
        &batch("low", 10, "tier = \"preemptible\"\nretries = 0"),
    );
    let budget = Budget::new("alice", 0, Duration::from_secs(60));
    let plan = book.plan(&[offer("o1", "a1", 1000)], 0, &budget);
    assert_eq!(plan.launches[0].1.len(), 10, "bob's job fills the cluster");

    submit_as(&mut book, "alice", &batch("high", 3, ""));
    let plan = book.plan(&[offer("o2", "a2", 300)], 100, &budget);
    assert!(plan.launches.is_empty(), "{:?}", ids(&plan.launches));
    // Room is not what it lacks: bob's instances keep running.
    assert_eq!(book.next_wakeup(), Some(62_100));
    assert!(book.tick(2_200).is_empty());
    assert!(book.tick(4_400).is_empty());
}
