//! The event loop behind [`run`](crate::run): connect, subscribe, dispatch events, detect a
//! dead stream, reconnect with backoff, follow the leader.
//!
//! ```text
//!        ┌──────────────► pick master (corral_proto::follow: the leader hint, else the
//!        │                 next in the list)
//!        │                        │ connect + Subscribe(framework id if known)
//!        │     UNAVAILABLE +      ▼
//!        ├──── corral-leader ◄── subscribe ──► fatal rejection ──► Err
//!        │     (retry at once)    │ SUBSCRIBED
//!  backoff + jitter               ▼
//!        │                   dispatch events ──► ERROR event ──► Err / Ok after teardown
//!        │                        │
//!        └── stream ended, ◄──────┘  (3 × heartbeat interval without any event)
//!            failed or silent                stop() ends the loop at any point
//! ```

use std::time::Duration;

use corral_proto::convert::parse_id;
use corral_proto::follow::{self, Follower, Step};
use corral_proto::status::leader_hint;
use corral_proto::tls::Dialer;
use corral_proto::v1::event::Kind;
use corral_proto::{OperationUpdate, TaskStatus, limits, v1};
use corral_types::{AgentId, FrameworkId, OfferId};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tonic::{Code, Streaming};
use tracing::{debug, info, warn};

use crate::dedup::Verdict;
use crate::driver::{Driver, PendingAck};
use crate::error::SdkError;
use crate::offer::Offer;
use crate::{FrameworkConfig, Scheduler};

/// Heartbeat interval assumed when the master announces none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// How long a master may take to answer a subscription with its SUBSCRIBED event.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Heartbeat intervals of silence after which the stream is considered dead.
const MISSED_HEARTBEATS: u32 = 3;

/// How one connection ended.
#[derive(Debug)]
enum Outcome {
    /// `stop()` was called.
    Stopped,
    /// The connection failed or the stream ended; `subscribed` says whether it got that far.
    Lost { subscribed: bool },
    /// A master that is not the leader named the leader.
    Redirect(String),
    /// [`Driver::update_roles`] asked to subscribe again.
    Resubscribe,
    /// The run cannot continue.
    Fatal(SdkError),
}

pub(crate) struct Session<S> {
    config: FrameworkConfig,
    scheduler: S,
    driver: Driver,
}

impl<S: Scheduler> Session<S> {
    pub(crate) fn new(config: FrameworkConfig, scheduler: S, driver: Driver) -> Self {
        Self {
            config,
            scheduler,
            driver,
        }
    }

    pub(crate) async fn run(mut self) -> Result<(), SdkError> {
        if self.config.masters.is_empty() {
            return Err(SdkError::Config("no master addresses".into()));
        }
        let mut follower = Follower::new(self.config.masters.clone(), self.config.backoff);
        let mut rng = StdRng::from_os_rng();
        loop {
            if self.driver.is_stopped() {
                return Ok(());
            }
            let address = match follower.next(&mut rng) {
                Step::Connect(address) => address,
                Step::Wait(delay) => {
                    debug!(?delay, "reconnecting after backoff");
                    tokio::select! {
                        () = self.driver.stopped() => return Ok(()),
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            let uri = address.clone();
            let mut outcome = self.connect_and_serve(&uri).await;
            while let Outcome::Resubscribe = outcome {
                self.end_session();
                info!(roles = ?self.driver.roles(), master = %uri, "subscribing again in new roles");
                outcome = self.connect_and_serve(&uri).await;
            }
            if let Outcome::Stopped = outcome {
                // The session stays up so queued acknowledgements can still be sent.
                return Ok(());
            }
            self.end_session();
            match outcome {
                Outcome::Stopped => return Ok(()),
                // Taken care of where it came from.
                Outcome::Resubscribe => {}
                Outcome::Fatal(error) => return Err(error),
                Outcome::Redirect(leader) => {
                    info!(%leader, from = %uri, "following the leader");
                    follower.ended(follow::Ended::Redirect(leader));
                }
                Outcome::Lost { subscribed } => {
                    if subscribed {
                        follower.registered();
                    }
                    follower.ended(follow::Ended::Lost);
                }
            }
        }
    }

    fn end_session(&self) {
        self.driver.end_session();
    }

    fn subscribe_request(&self) -> v1::SubscribeRequest {
        let c = &self.config;
        v1::SubscribeRequest {
            framework_info: Some(v1::FrameworkInfo {
                id: self.driver.framework_id().map(|id| id.to_string()),
                name: c.name.clone(),
                user: c.user.clone(),
                roles: self.driver.roles(),
                failover_timeout_millis: u64::try_from(c.failover_timeout.as_millis())
                    .unwrap_or(u64::MAX),
                labels: c.labels.clone().into_iter().collect(),
                principal: None,
            }),
            suppressed_roles: c.suppressed_roles.clone(),
        }
    }

    async fn connect_and_serve(&mut self, uri: &str) -> Outcome {
        let dialer = Dialer::new(self.config.tls.clone(), self.config.token.clone());
        let endpoint = match dialer.endpoint(uri) {
            Ok(e) => e,
            Err(e) => return Outcome::Fatal(SdkError::Config(format!("master {uri:?}: {e}"))),
        };
        let channel = tokio::select! {
            () = self.driver.stopped() => return Outcome::Stopped,
            c = endpoint.connect() => c,
        };
        let channel = match channel {
            Ok(c) => c,
            Err(error) => {
                warn!(master = %uri, %error, "cannot connect to master");
                return Outcome::Lost { subscribed: false };
            }
        };
        let mut client = limits::scheduler_client(dialer.wrap(channel));
        let request = self.subscribe_request();
        let response = tokio::select! {
            () = self.driver.stopped() => return Outcome::Stopped,
            r = tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.subscribe(request)) => r,
        };
        let mut stream = match response {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return self.subscribe_failed(uri, &status).await,
            Err(_) => {
                warn!(master = %uri, "subscription timed out");
                return Outcome::Lost { subscribed: false };
            }
        };
        let first = tokio::select! {
            () = self.driver.stopped() => return Outcome::Stopped,
            e = tokio::time::timeout(SUBSCRIBE_TIMEOUT, stream.message()) => e,
        };
        let subscribed = match first {
            Ok(Ok(Some(v1::Event {
                kind: Some(Kind::Subscribed(s)),
            }))) => s,
            Ok(Err(status)) => return self.subscribe_failed(uri, &status).await,
            other => {
                warn!(master = %uri, ?other, "stream did not start with SUBSCRIBED");
                return Outcome::Lost { subscribed: false };
            }
        };
        let framework_id: FrameworkId = match parse_id("framework_id", &subscribed.framework_id) {
            Ok(id) => id,
            Err(e) => return Outcome::Fatal(e.within("subscribed").into()),
        };
        {
            let mut s = self.driver.session();
            s.client = Some(client);
            s.framework_id = Some(framework_id.clone());
            s.stream_id = Some(subscribed.stream_id.clone());
            s.generation += 1;
        }
        let heartbeat = match subscribed.heartbeat_interval_millis {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(ms),
        };
        info!(framework_id = %framework_id, master = %uri, leader = %subscribed.leader_address, "subscribed");
        self.scheduler.subscribed(&self.driver, &framework_id).await;
        self.serve(&mut stream, heartbeat * MISSED_HEARTBEATS).await
    }

    async fn subscribe_failed(&mut self, uri: &str, status: &tonic::Status) -> Outcome {
        if let Some(leader) = leader_hint(status) {
            return Outcome::Redirect(leader.to_owned());
        }
        let error = SdkError::from(status.clone());
        match status.code() {
            // Retrying the same subscription cannot succeed.
            Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition => {
                warn!(master = %uri, %error, "subscription refused");
                self.scheduler.error(&self.driver, error.to_string()).await;
                Outcome::Fatal(error)
            }
            _ => {
                warn!(master = %uri, %error, "subscription failed");
                Outcome::Lost { subscribed: false }
            }
        }
    }

    async fn serve(&mut self, stream: &mut Streaming<v1::Event>, silence: Duration) -> Outcome {
        loop {
            let next = tokio::select! {
                () = self.driver.stopped() => return Outcome::Stopped,
                () = self.driver.resubscribe_wanted() => return Outcome::Resubscribe,
                e = tokio::time::timeout(silence, stream.message()) => e,
            };
            match next {
                Err(_) => {
                    warn!(?silence, "no heartbeat from the master; reconnecting");
                    return Outcome::Lost { subscribed: true };
                }
                Ok(Ok(None)) => {
                    warn!("event stream ended; reconnecting");
                    return Outcome::Lost { subscribed: true };
                }
                Ok(Err(status)) => {
                    if let Some(leader) = leader_hint(&status) {
                        return Outcome::Redirect(leader.to_owned());
                    }
                    warn!(code = ?status.code(), message = status.message(), "event stream failed; reconnecting");
                    return Outcome::Lost { subscribed: true };
                }
                Ok(Ok(Some(event))) => {
                    if let Some(outcome) = self.dispatch(event).await {
                        return outcome;
                    }
                }
            }
        }
    }

    /// Hands one event to the scheduler; `Some` ends the connection.
    async fn dispatch(&mut self, event: v1::Event) -> Option<Outcome> {
        let driver = &self.driver;
        match event.kind? {
            Kind::Subscribed(_) => warn!("unexpected second SUBSCRIBED event; ignored"),
            Kind::Heartbeat(_) => {}
            Kind::Offers(o) => {
                let offers: Vec<Offer> = o
                    .offers
                    .iter()
                    .filter_map(|p| match Offer::try_from(p) {
                        Ok(offer) => Some(offer),
                        Err(error) => {
                            warn!(offer_id = %p.id, %error, "invalid offer ignored");
                            None
                        }
                    })
                    .collect();
                if !offers.is_empty() {
                    self.scheduler.offers(driver, offers).await;
                }
            }
            Kind::Rescind(r) => match parse_id::<OfferId>("offer_id", &r.offer_id) {
                Ok(id) => self.scheduler.rescinded(driver, &id).await,
                Err(error) => warn!(%error, "invalid rescind ignored"),
            },
            Kind::Update(u) => {
                let status = u
                    .status
                    .as_ref()
                    .ok_or_else(|| corral_proto::ProtoError::missing("status"))
                    .and_then(|s| TaskStatus::try_from(s).map_err(|e| e.within("status")));
                match status {
                    Ok(status) => self.update(status).await,
                    Err(error) => warn!(%error, "invalid update ignored"),
                }
            }
            Kind::Failure(f) => match parse_id::<AgentId>("agent_id", &f.agent_id) {
                Ok(id) => {
                    warn!(agent_id = %id, message = %f.message, "agent lost");
                    self.scheduler.agent_lost(driver, &id).await;
                }
                Err(error) => warn!(%error, "invalid failure event ignored"),
            },
            Kind::OperationUpdate(u) => match OperationUpdate::try_from(&u) {
                Ok(update) => self.scheduler.operation_failed(driver, update).await,
                Err(error) => warn!(%error, "invalid operation update ignored"),
            },
            Kind::Error(e) => {
                // The answer to our own TEARDOWN is the normal end, not a problem.
                if self.driver.teardown_requested() {
                    tracing::debug!(message = %e.message, "framework torn down");
                } else {
                    warn!(message = %e.message, "framework removed by the master");
                }
                self.scheduler.error(driver, e.message.clone()).await;
                return Some(if self.driver.teardown_requested() {
                    Outcome::Stopped
                } else {
                    Outcome::Fatal(SdkError::FrameworkRemoved(e.message))
                });
            }
        }
        None
    }

    /// Delivers an update once per uuid and acknowledges it after the callback returns.
    async fn update(&mut self, status: TaskStatus) {
        let Some(uuid) = status.uuid else {
            // No acknowledgement expected (reconciliation, master-generated): always deliver.
            self.scheduler.status_update(&self.driver, status).await;
            return;
        };
        let generation = self.driver.session().generation;
        let verdict = self
            .driver
            .dedup()
            .observe(&status.task_id, uuid, generation);
        let ack = PendingAck {
            task_id: status.task_id.clone(),
            agent_id: status.agent_id.clone(),
            uuid,
        };
        match verdict {
            Verdict::New => {
                self.scheduler.status_update(&self.driver, status).await;
            }
            Verdict::DuplicateReack => {
                debug!(task_id = %ack.task_id, %uuid, "duplicate update; acknowledging again");
            }
            Verdict::Duplicate => {
                debug!(task_id = %ack.task_id, %uuid, "duplicate update dropped");
                return;
            }
        }
        if self.config.auto_acknowledge {
            self.driver.queue_ack(ack, generation);
        }
    }
}
