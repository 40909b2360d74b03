//! `corral-scheduler`: the SDK for writing Corral frameworks.
//!
//! A framework implements [`Scheduler`] (callbacks for offers, status updates, ...) and hands
//! it to [`run`], which talks to the master's Scheduler service (`scheduler.proto`) and keeps
//! talking through failures:
//!
//! ```text
//!   your Scheduler ◄── callbacks ── run(config, scheduler) ◄── events ── master (leader)
//!        │                           │  subscribe, heartbeat watchdog,    ▲
//!        │ Driver::launch/decline/   │  reconnect with backoff+jitter,    │
//!        │ kill/reconcile/...        │  follow `corral-leader` hints,     │
//!        └──────────── Call ─────────┴─ dedup + batched auto-acks ────────┘
//! ```
//!
//! - [`run`] subscribes (with [`FrameworkConfig::framework_id`] to fail over an existing
//!   framework), dispatches events to the [`Scheduler`], reconnects with exponential backoff
//!   and jitter when the stream breaks or the master is silent for 3 heartbeat intervals,
//!   re-subscribes with the same framework ID, and follows the leader when a standby master
//!   answers with its address. It returns after [`Driver::stop`] or [`Driver::teardown`].
//! - Status updates are delivered at least once by the master; the driver hands each
//!   `(task_id, uuid)` to [`Scheduler::status_update`] once and, with
//!   [`FrameworkConfig::auto_acknowledge`] (the default), acknowledges it after the callback
//!   returns, in batches.
//! - [`Driver`] is a cheap cloneable handle for every call: launch, decline, revive,
//!   suppress, kill, acknowledge, reconcile, teardown.
//! - [`matching`] places task requests onto offers (constraints, first-fit, bin-pack,
//!   spread).
//! - [`testkit`] (feature `testkit`, on by default) tests a scheduler without a cluster:
//!   [`testkit::MockMaster`] is an in-process Scheduler server on `127.0.0.1:0` that records
//!   calls and lets the test push offers, updates, heartbeats and errors or drop the stream;
//!   [`testkit::OfferBuilder`] and [`testkit::StatusBuilder`] build the events.
//!
//! # A scheduler
//!
//! ```no_run
//! use corral_scheduler::{Driver, FrameworkConfig, Offer, Scheduler, TaskStatus};
//! use std::time::Duration;
//!
//! struct Sleepy;
//!
//! #[async_trait::async_trait]
//! impl Scheduler for Sleepy {
//!     async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
//!         let ids: Vec<_> = offers.into_iter().map(|o| o.id).collect();
//!         let _ = driver.decline(&ids, Duration::from_secs(30)).await;
//!     }
//!     async fn status_update(&mut self, _driver: &Driver, status: TaskStatus) {
//!         println!("{} is {:?}", status.task_id, status.state);
//!     }
//! }
//!
//! # async fn f() -> Result<(), corral_scheduler::SdkError> {
//! let config = FrameworkConfig::new("sleepy", ["127.0.0.1:5050"]);
//! corral_scheduler::run(config, Sleepy).await
//! # }
//! ```
//!
//! # Testing a scheduler without a cluster
//!
//! ```no_run
//! use corral_scheduler::testkit::{MockMaster, OfferBuilder};
//! # use corral_scheduler::{Driver, FrameworkConfig, Offer, Scheduler, TaskStatus};
//! # struct Mine;
//! # #[async_trait::async_trait]
//! # impl Scheduler for Mine {
//! #     async fn offers(&mut self, _: &Driver, _: Vec<Offer>) {}
//! #     async fn status_update(&mut self, _: &Driver, _: TaskStatus) {}
//! # }
//! # async fn f() {
//! let master = MockMaster::start().await;
//! let config = FrameworkConfig::new("mine", [master.address()]);
//! let (driver, done) = corral_scheduler::spawn(config, Mine);
//! master.next_subscribe().await;
//! master.send_offers([OfferBuilder::new("o1").agent("a1").cpus_milli(1000).build()]);
//! let call = master.next_call().await; // e.g. the ACCEPT your scheduler sent
//! driver.stop();
//! done.await.unwrap().unwrap();
//! # }
//! ```
//!
//! # The example framework
//!
//! `examples/hello_framework.rs` launches N tasks of one module, prints their updates and
//! exits when all have finished. Against a local development cluster:
//!
//! ```text
//! corral dev &                                   # master on 127.0.0.1:5050 + an agent
//! cargo run -p corral-scheduler --example hello_framework -- \
//!     --master 127.0.0.1:5050 --tasks 10 --module path/to/hello.wasm
//! ```
//!
//! `--module` takes a `sha256:<hex>` digest already in the master's artifact store, or a file
//! path, which the example uploads first with `Operator.UploadModule`.

mod dedup;
mod driver;
mod error;
pub mod matching;
mod offer;
mod session;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

use std::collections::BTreeMap;
use std::time::Duration;

use corral_proto::auth::TOKEN_ENV;

pub use corral_proto::auth::Token;
pub use corral_proto::follow::BackoffConfig;
pub use corral_proto::tls::Tls;
pub use corral_proto::{ModuleSource, OperationUpdate, TaskInfo, TaskStatus, UpdateUuid};
pub use corral_types::{
    AgentId, Digest, FrameworkId, OfferId, OperationState, Preopen, Reason, Resources, Role,
    TaskId, TaskLimits, TaskState,
};
pub use driver::{Driver, StoreEntry};
pub use error::SdkError;
pub use offer::Offer;

/// What a framework does with what the master tells it. Only [`Scheduler::offers`] and
/// [`Scheduler::status_update`] are required.
///
/// Callbacks run one at a time, in event order, on the driver's task: a slow callback
/// delays the next event (not the heartbeat watchdog, which only watches the stream).
#[async_trait::async_trait]
pub trait Scheduler: Send {
    /// Subscribed (or re-subscribed after a reconnection) as `framework_id`.
    async fn subscribed(&mut self, _driver: &Driver, _framework_id: &FrameworkId) {}

    /// New offers. Launch on them or decline them: an offer held is a resource others
    /// cannot use (the master rescinds it after its offer timeout).
    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>);

    /// An offer is no longer valid.
    async fn rescinded(&mut self, _driver: &Driver, _offer_id: &OfferId) {}

    /// A task's status changed. Called once per update; acknowledged when this returns
    /// (with `auto_acknowledge`).
    async fn status_update(&mut self, driver: &Driver, status: TaskStatus);

    /// An agent was lost; updates for its tasks follow separately.
    async fn agent_lost(&mut self, _driver: &Driver, _agent_id: &AgentId) {}

    /// A RESERVE or UNRESERVE of an ACCEPT was not applied (launches report through
    /// [`Scheduler::status_update`]). Logged by default.
    async fn operation_failed(&mut self, _driver: &Driver, update: OperationUpdate) {
        tracing::warn!(
            operation_id = %update.operation_id,
            index = update.index,
            state = %update.state,
            message = %update.message,
            "offer operation not applied"
        );
    }

    /// The master removed the framework (an ERROR event), or refused the subscription; `run`
    /// returns after this.
    async fn error(&mut self, _driver: &Driver, _message: String) {}
}

/// How to register and where the masters are.
#[derive(Debug, Clone)]
pub struct FrameworkConfig {
    /// A human-readable name.
    pub name: String,
    /// The user the framework acts for (default: `$USER`).
    pub user: String,
    /// Roles to receive offers in (default: `["*"]`).
    pub roles: Vec<String>,
    /// Roles that start suppressed.
    pub suppressed_roles: Vec<String>,
    /// How long the master keeps the framework and its tasks after the stream breaks
    /// (default: 60 s). Zero tears down at the first disconnection.
    pub failover_timeout: Duration,
    /// Set to fail over an existing framework (re-subscribe with its ID).
    pub framework_id: Option<FrameworkId>,
    /// Master addresses, `host:port` (or `http://host:port`); tried in turn, and the leader
    /// is followed when a standby names it.
    pub masters: Vec<String>,
    /// Acknowledge updates automatically after [`Scheduler::status_update`] returns
    /// (default: true). Off: call [`Driver::acknowledge`] yourself.
    pub auto_acknowledge: bool,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Reconnection delays (the policy agents follow too: `corral_proto::follow`).
    pub backoff: BackoffConfig,
    /// The bearer token presented to the masters (default: `CORRAL_TOKEN`, when set). The
    /// framework belongs to the token's principal.
    pub token: Token,
    /// TLS to the masters: the cluster's CA (default: none, plaintext).
    pub tls: Option<Tls>,
}

impl Default for FrameworkConfig {
    fn default() -> Self {
        Self {
            name: "corral-framework".into(),
            user: std::env::var("USER").unwrap_or_default(),
            roles: vec!["*".into()],
            suppressed_roles: Vec::new(),
            failover_timeout: Duration::from_secs(60),
            framework_id: None,
            masters: vec!["127.0.0.1:5050".into()],
            auto_acknowledge: true,
            labels: BTreeMap::new(),
            backoff: BackoffConfig::default(),
            token: Token::from_env().unwrap_or_else(|error| {
                tracing::warn!(%error, "ignoring {TOKEN_ENV}");
                Token::none()
            }),
            tls: None,
        }
    }
}

impl FrameworkConfig {
    /// The defaults, with a name and master addresses.
    pub fn new(
        name: impl Into<String>,
        masters: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            masters: masters.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Runs a framework until [`Driver::stop`] or [`Driver::teardown`] (`Ok`), or until the
/// master removes it or refuses it for good (`Err`). See the crate docs for what it does on
/// failures.
pub async fn run(
    config: FrameworkConfig,
    scheduler: impl Scheduler + 'static,
) -> Result<(), SdkError> {
    let (driver, acks) = Driver::new(config.framework_id.clone(), config.roles.clone());
    run_with(driver, acks, config, scheduler).await
}

/// Like [`run`], on a spawned task; returns the driver at once (for use from other tasks,
/// or to stop the framework) and the task's handle.
pub fn spawn(
    config: FrameworkConfig,
    scheduler: impl Scheduler + 'static,
) -> (Driver, tokio::task::JoinHandle<Result<(), SdkError>>) {
    let (driver, acks) = Driver::new(config.framework_id.clone(), config.roles.clone());
    let handle = tokio::spawn(run_with(driver.clone(), acks, config, scheduler));
    (driver, handle)
}

/// How long `run` waits at the end for queued acknowledgements to be sent.
const ACK_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

async fn run_with(
    driver: Driver,
    acks: tokio::sync::mpsc::UnboundedReceiver<driver::PendingAck>,
    config: FrameworkConfig,
    scheduler: impl Scheduler + 'static,
) -> Result<(), SdkError> {
    let acker = tokio::spawn(driver.clone().run_acker(acks));
    let result = session::Session::new(config, scheduler, driver.clone())
        .run()
        .await;
    // Stopping lets the acker flush what is queued; it gets a bounded time for that.
    driver.stop();
    if tokio::time::timeout(ACK_FLUSH_TIMEOUT, acker)
        .await
        .is_err()
    {
        tracing::warn!("pending acknowledgements dropped at shutdown");
    }
    driver.end_session();
    result
}
