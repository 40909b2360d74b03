//! A recording scheduler and helpers shared by the tests.

use std::time::Duration;

use corral_scheduler::testkit::MockMaster;
use corral_scheduler::{
    AgentId, BackoffConfig, Driver, FrameworkConfig, FrameworkId, Offer, OfferId, OperationUpdate,
    Scheduler, SdkError, TaskStatus,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the scheduler was told, in order.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a test's record: its size does not matter"
)]
pub(crate) enum Seen {
    Subscribed(String),
    Offers(Vec<Offer>),
    Rescinded(String),
    Update(TaskStatus),
    AgentLost(String),
    OperationFailed(OperationUpdate),
    Error(String),
}

pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Seen>,
}

#[async_trait::async_trait]
impl Scheduler for Recorder {
    async fn subscribed(&mut self, _: &Driver, framework_id: &FrameworkId) {
        let _ = self.tx.send(Seen::Subscribed(framework_id.to_string()));
    }
    async fn offers(&mut self, _: &Driver, offers: Vec<Offer>) {
        let _ = self.tx.send(Seen::Offers(offers));
    }
    async fn rescinded(&mut self, _: &Driver, offer_id: &OfferId) {
        let _ = self.tx.send(Seen::Rescinded(offer_id.to_string()));
    }
    async fn status_update(&mut self, _: &Driver, status: TaskStatus) {
        let _ = self.tx.send(Seen::Update(status));
    }
    async fn agent_lost(&mut self, _: &Driver, agent_id: &AgentId) {
        let _ = self.tx.send(Seen::AgentLost(agent_id.to_string()));
    }
    async fn operation_failed(&mut self, _: &Driver, update: OperationUpdate) {
        let _ = self.tx.send(Seen::OperationFailed(update));
    }
    async fn error(&mut self, _: &Driver, message: String) {
        let _ = self.tx.send(Seen::Error(message));
    }
}

pub(crate) struct Events(mpsc::UnboundedReceiver<Seen>);

impl Events {
    pub(crate) async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv())
            .await
            .expect("no callback within 10 s")
            .expect("scheduler dropped")
    }

    /// Nothing more was delivered (the driver's queue is drained by the time a later
    /// marker event arrives, so this is checked after one).
    pub(crate) fn assert_empty(&mut self) {
        if let Ok(seen) = self.0.try_recv() {
            panic!("unexpected callback: {seen:?}");
        }
    }
}

/// A config for `master` with fast reconnection.
pub(crate) fn config(master: &MockMaster) -> FrameworkConfig {
    FrameworkConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        ..FrameworkConfig::new("test-framework", [master.address()])
    }
}

pub(crate) struct Running {
    pub(crate) driver: Driver,
    pub(crate) done: JoinHandle<Result<(), SdkError>>,
    pub(crate) events: Events,
}

/// Spawns a recording framework with `config` (not waiting for anything).
pub(crate) fn spawn(config: FrameworkConfig) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    let (driver, done) = corral_scheduler::spawn(config, Recorder { tx });
    Running {
        driver,
        done,
        events: Events(rx),
    }
}

/// Spawns a recording framework on `master` and waits until it is subscribed.
pub(crate) async fn subscribed(master: &MockMaster) -> Running {
    subscribed_with(master, config(master)).await
}

pub(crate) async fn subscribed_with(master: &MockMaster, config: FrameworkConfig) -> Running {
    let mut r = spawn(config);
    master.next_subscribe().await;
    let Seen::Subscribed(_) = r.events.next().await else {
        panic!("first callback is not subscribed");
    };
    r
}

impl Running {
    /// Stops the framework and checks that `run` ended cleanly.
    pub(crate) async fn stop(self) {
        self.driver.stop();
        let result = tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("run did not end after stop")
            .unwrap();
        assert_eq!(result, Ok(()));
    }
}
