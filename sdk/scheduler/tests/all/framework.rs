//! A small but complete scheduler tested end to end with the test kit, the way a framework
//! author would: it places tasks with `matching`, launches from its offers callback, and
//! tears down when every task has finished.

use std::collections::HashSet;
use std::time::Duration;

use corral_proto::v1;
use corral_proto::v1::call_request::Kind;
use corral_scheduler::matching::{self, Constraint, ResourceRequest, Strategy, TaskRequest};
use corral_scheduler::testkit::{MockMaster, OfferBuilder, StatusBuilder};
use corral_scheduler::{
    Digest, Driver, ModuleSource, Offer, Scheduler, TaskId, TaskInfo, TaskLimits, TaskState,
    TaskStatus,
};

use crate::util::config;

/// Runs `total` tasks on x86_64 agents, bin-packed.
struct Batch {
    total: usize,
    launched: usize,
    finished: HashSet<TaskId>,
}

impl Batch {
    fn request() -> TaskRequest {
        TaskRequest::new(ResourceRequest::new(500, 256))
            .constraint(Constraint::equals("arch", "x86_64"))
    }

    fn task(n: usize) -> TaskInfo {
        TaskInfo {
            id: TaskId::new(format!("job-{n}")).unwrap(),
            name: "job".into(),
            module: ModuleSource::Digest(Digest::of(b"job")),
            entrypoint: "_start".into(),
            args: Vec::new(),
            env: Vec::new(),
            inputs: Vec::new(),
            resources: Self::request().resources.to_resources(),
            limits: TaskLimits::default(),
            labels: Default::default(),
            argv0: None,
            preopens: Vec::new(),
            stdin: Default::default(),
            checkpoint: Default::default(),
            owner: None,
        }
    }
}

#[async_trait::async_trait]
impl Scheduler for Batch {
    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
        let requests = vec![Self::request(); self.total - self.launched];
        let placement = matching::place(&requests, &offers, Strategy::BinPack);
        let mut used = HashSet::new();
        let base = self.launched;
        for (offer_id, indices) in placement {
            self.launched += indices.len();
            let tasks = indices.iter().map(|i| Self::task(base + i + 1)).collect();
            driver
                .launch(std::slice::from_ref(&offer_id), tasks)
                .await
                .unwrap();
            used.insert(offer_id);
        }
        let unused: Vec<_> = offers
            .into_iter()
            .map(|o| o.id)
            .filter(|id| !used.contains(id))
            .collect();
        if !unused.is_empty() {
            driver
                .decline(&unused, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }

    async fn status_update(&mut self, driver: &Driver, status: TaskStatus) {
        if status.state == TaskState::Finished {
            self.finished.insert(status.task_id);
            if self.finished.len() == self.total {
                driver.teardown().await.unwrap();
            }
        }
    }
}

fn launched_tasks(accept: &v1::call_request::Accept) -> Vec<String> {
    accept
        .operations
        .iter()
        .filter_map(|op| match &op.kind {
            Some(v1::operation::Kind::Launch(l)) => Some(l.tasks.iter().map(|t| t.task_id.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn a_batch_framework_places_launches_and_tears_down() {
    let master = MockMaster::start().await;
    let scheduler = Batch {
        total: 3,
        launched: 0,
        finished: HashSet::new(),
    };
    let (_driver, done) = corral_scheduler::spawn(config(&master), scheduler);
    master.next_subscribe().await;

    let small = OfferBuilder::new("small")
        .agent("a1")
        .cpus_milli(1000)
        .mem_mib(512)
        .attribute("arch", "x86_64")
        .build();
    let big = OfferBuilder::new("big")
        .agent("a2")
        .cpus_milli(8000)
        .mem_mib(8192)
        .attribute("arch", "x86_64")
        .build();
    let arm = OfferBuilder::new("arm")
        .agent("a3")
        .cpus_milli(8000)
        .mem_mib(8192)
        .attribute("arch", "aarch64")
        .build();
    // The first offer batch can only arrive after SUBSCRIBED has been processed.
    assert!(master.send_offers([big, small, arm]));

    // Bin-pack fills `small` (2 tasks) before using `big` (1 task); `arm` is declined.
    let mut launched = Vec::new();
    let mut declined = Vec::new();
    while launched
        .iter()
        .map(|(_, t): &(_, Vec<_>)| t.len())
        .sum::<usize>()
        < 3
        || declined.is_empty()
    {
        match master.next_call().await.kind {
            Some(Kind::Accept(a)) => launched.push((a.offer_ids.clone(), launched_tasks(&a))),
            Some(Kind::Decline(d)) => declined = d.offer_ids,
            other => panic!("unexpected call {other:?}"),
        }
    }
    launched.sort();
    assert_eq!(
        launched,
        [
            (vec!["big".to_owned()], vec!["job-3".to_owned()]),
            (
                vec!["small".to_owned()],
                vec!["job-1".to_owned(), "job-2".to_owned()]
            ),
        ]
    );
    assert_eq!(declined, ["arm"]);

    for n in 1..=3 {
        let status = StatusBuilder::new(&format!("job-{n}"), TaskState::Finished).build();
        master.send_update(&status);
    }
    let result = tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result, Ok(()));
    let calls = master.calls();
    // Acks of earlier updates may race the teardown; nothing else follows it.
    let teardown = calls
        .iter()
        .position(|c| matches!(c.kind, Some(Kind::Teardown(_))))
        .expect("no teardown");
    assert!(
        calls[teardown + 1..]
            .iter()
            .all(|c| matches!(c.kind, Some(Kind::Acknowledge(_)))),
        "{:?}",
        &calls[teardown + 1..]
    );
}
