//! [`Driver`]: the handle schedulers use to act (launch, decline, kill, acknowledge, ...)
//! and to keep durable state (`store_*`: the framework's key-value store on the master).
//!
//! Every method is one `Call` (or `Store`) RPC on the current subscription. The handle is cheap to clone
//! and can be used from callbacks and from other tasks; while the driver is reconnecting
//! calls fail with [`SdkError::NotSubscribed`] (the master would refuse them anyway: calls
//! name the stream they belong to).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use corral_proto::auth::Conn;
use corral_proto::v1::call_request::{self, Kind};
use corral_proto::v1::scheduler_client::SchedulerClient;
use corral_proto::v1::store_request::{self, Op};
use corral_proto::{TaskInfo, TaskStatus, UpdateUuid, v1};
use corral_types::{AgentId, FrameworkId, OfferId, TaskId};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, warn};

use crate::dedup::Dedup;
use crate::error::SdkError;

/// One key of the framework's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// The key.
    pub key: String,
    /// Its value (empty in what [`Driver::store_put`] answers).
    pub value: Bytes,
    /// Its version: it changes with every write, and a write may insist on it.
    pub version: u64,
}

/// Tasks whose recent update uuids are remembered for deduplication.
const DEDUP_TASKS: NonZeroUsize = NonZeroUsize::new(65_536).expect("non-zero");

/// Most acknowledgements sent in one call (far below the message size limit).
const MAX_ACK_BATCH: usize = 1024;

/// The longest a call waits in all for its principal's rate limit (the master says how long
/// each time) before the refusal is returned.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// The current subscription, if any.
#[derive(Default)]
pub(crate) struct Session {
    pub(crate) client: Option<SchedulerClient<Conn>>,
    pub(crate) framework_id: Option<FrameworkId>,
    pub(crate) stream_id: Option<String>,
    /// Increases with every subscription (the dedup's notion of "this stream").
    pub(crate) generation: u64,
}

/// An acknowledgement queued by the event loop for the batching acker.
#[derive(Debug)]
pub(crate) struct PendingAck {
    pub(crate) task_id: TaskId,
    pub(crate) agent_id: Option<AgentId>,
    pub(crate) uuid: UpdateUuid,
}

struct Inner {
    session: Mutex<Session>,
    /// The roles the next subscription asks for (changed by [`Driver::update_roles`]).
    roles: Mutex<Vec<String>>,
    /// Asks the event loop to subscribe again (with new roles).
    resubscribe: Notify,
    stop: watch::Sender<bool>,
    teardown: AtomicBool,
    dedup: Mutex<Dedup>,
    acks: mpsc::UnboundedSender<PendingAck>,
}

/// A cheap, cloneable handle to a running framework: every action a scheduler takes goes
/// through it. Obtained in the [`Scheduler`](crate::Scheduler) callbacks or from
/// [`spawn`](crate::spawn).
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("framework_id", &self.framework_id())
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a few field assignments).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Driver {
    /// A driver with no session, and the receiving end of its acknowledgement queue.
    pub(crate) fn new(
        framework_id: Option<FrameworkId>,
        roles: Vec<String>,
    ) -> (Self, mpsc::UnboundedReceiver<PendingAck>) {
        let (acks, rx) = mpsc::unbounded_channel();
        let session = Session {
            framework_id,
            ..Session::default()
        };
        let inner = Inner {
            session: Mutex::new(session),
            roles: Mutex::new(roles),
            resubscribe: Notify::new(),
            stop: watch::Sender::new(false),
            teardown: AtomicBool::new(false),
            dedup: Mutex::new(Dedup::new(DEDUP_TASKS)),
            acks,
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.inner.session)
    }

    pub(crate) fn dedup(&self) -> MutexGuard<'_, Dedup> {
        lock(&self.inner.dedup)
    }

    /// Forgets the subscription: calls fail with `NotSubscribed` until the next one.
    pub(crate) fn end_session(&self) {
        let mut s = self.session();
        s.stream_id = None;
        s.client = None;
    }

    /// Queues an acknowledgement for the batching acker. It is marked acknowledged (on
    /// subscription `generation`) before it is sent so a retransmission racing it is not
    /// acknowledged twice; the acker clears the mark if the call fails.
    pub(crate) fn queue_ack(&self, ack: PendingAck, generation: u64) {
        self.dedup()
            .set_acked(&ack.task_id, ack.uuid, Some(generation));
        // The receiver lives as long as `run`; after it ends there is nobody to ack to.
        let _ = self.inner.acks.send(ack);
    }

    /// The roles the framework subscribes in.
    pub fn roles(&self) -> Vec<String> {
        lock(&self.inner.roles).clone()
    }

    /// Changes the framework's roles: it subscribes again at once with `roles` (as Mesos's
    /// UPDATE_FRAMEWORK). Offers in roles it leaves stop; what its tasks hold in them stays
    /// allocated until they end. The [`Scheduler::subscribed`](crate::Scheduler::subscribed)
    /// callback runs again, and calls fail with [`SdkError::NotSubscribed`] meanwhile.
    pub fn update_roles(&self, roles: Vec<String>) -> Result<(), SdkError> {
        if roles.is_empty() {
            return Err(SdkError::Config(
                "a framework needs at least one role".into(),
            ));
        }
        *lock(&self.inner.roles) = roles;
        self.inner.resubscribe.notify_one();
        Ok(())
    }

    /// Resolves when [`Driver::update_roles`] asked for a new subscription.
    pub(crate) async fn resubscribe_wanted(&self) {
        self.inner.resubscribe.notified().await;
    }

    /// Resolves when [`Driver::stop`] has been called (or `run` ended).
    pub async fn stopped(&self) {
        let mut rx = self.inner.stop.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we wait.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.inner.stop.borrow()
    }

    pub(crate) fn teardown_requested(&self) -> bool {
        self.inner.teardown.load(Ordering::Acquire)
    }

    /// The framework's ID once subscribed (or the one configured for failover).
    pub fn framework_id(&self) -> Option<FrameworkId> {
        self.session().framework_id.clone()
    }

    /// True while a subscription is active.
    pub fn is_subscribed(&self) -> bool {
        self.session().stream_id.is_some()
    }

    /// Ends [`run`](crate::run): it returns `Ok(())` at its next step. The framework stays
    /// registered with the master until its failover timeout passes (use
    /// [`Driver::teardown`] to remove it now).
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    fn call_parts(&self) -> Result<(SchedulerClient<Conn>, String, String), SdkError> {
        let s = self.session();
        match (&s.client, &s.framework_id, &s.stream_id) {
            (Some(client), Some(fw), Some(stream)) => {
                Ok((client.clone(), fw.to_string(), stream.clone()))
            }
            _ => Err(SdkError::NotSubscribed),
        }
    }

    /// Sends a call; one over the principal's rate limit is sent again when the master says
    /// it would be allowed (for up to [`MAX_RATE_LIMIT_WAIT`] in all).
    async fn call(&self, kind: Kind) -> Result<(), SdkError> {
        let (mut client, framework_id, stream_id) = self.call_parts()?;
        let request = v1::CallRequest {
            framework_id,
            stream_id,
            kind: Some(kind),
        };
        let mut waited = Duration::ZERO;
        loop {
            let refusal = match client.call(request.clone()).await {
                Ok(_) => return Ok(()),
                Err(status) => status,
            };
            match corral_proto::status::retry_after(&refusal) {
                Some(wait) if waited + wait <= MAX_RATE_LIMIT_WAIT => {
                    debug!(?wait, "over the rate limit; calling again");
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                _ => return Err(refusal.into()),
            }
        }
    }

    /// Launches `tasks` on `offer_ids` (one ACCEPT with one LAUNCH; the offers must be on
    /// one agent). Whatever the tasks leave unused is refused for the master's default time.
    /// Outcomes arrive as status updates.
    pub async fn launch(
        &self,
        offer_ids: &[OfferId],
        tasks: Vec<TaskInfo>,
    ) -> Result<(), SdkError> {
        let launch = v1::operation::Launch {
            tasks: tasks.iter().map(v1::TaskInfo::from).collect(),
        };
        self.accept(
            offer_ids,
            vec![v1::Operation {
                id: String::new(),
                kind: Some(v1::operation::Kind::Launch(launch)),
            }],
            None,
        )
        .await
    }

    /// Applies raw operations (LAUNCH, RESERVE, UNRESERVE) to offers, refusing the leftovers
    /// for `refuse` (`None`: the master's default).
    pub async fn accept(
        &self,
        offer_ids: &[OfferId],
        operations: Vec<v1::Operation>,
        refuse: Option<Duration>,
    ) -> Result<(), SdkError> {
        self.call(Kind::Accept(call_request::Accept {
            offer_ids: ids(offer_ids),
            operations,
            filters: refuse.map(filters),
        }))
        .await
    }

    /// Refuses offers; their resources are not offered to this framework again for
    /// `refuse` (unless it revives).
    pub async fn decline(&self, offer_ids: &[OfferId], refuse: Duration) -> Result<(), SdkError> {
        self.call(Kind::Decline(call_request::Decline {
            offer_ids: ids(offer_ids),
            filters: Some(filters(refuse)),
        }))
        .await
    }

    /// Asks for offers again in `roles` (empty: all the framework's roles), clearing decline
    /// filters.
    pub async fn revive(&self, roles: &[String]) -> Result<(), SdkError> {
        self.call(Kind::Revive(call_request::Revive {
            roles: roles.to_vec(),
        }))
        .await
    }

    /// Stops offers in `roles` (empty: all) until [`Driver::revive`].
    pub async fn suppress(&self, roles: &[String]) -> Result<(), SdkError> {
        self.call(Kind::Suppress(call_request::Suppress {
            roles: roles.to_vec(),
        }))
        .await
    }

    /// Kills a task; answered by a KILLED (or terminal) update.
    pub async fn kill(&self, task_id: &TaskId, agent_id: Option<&AgentId>) -> Result<(), SdkError> {
        self.call(Kind::Kill(call_request::Kill {
            task_id: task_id.to_string(),
            agent_id: agent_id.map(ToString::to_string),
        }))
        .await
    }

    /// Acknowledges an update (needed only with `auto_acknowledge` off). An update without
    /// a uuid needs no acknowledgement and is ignored.
    pub async fn acknowledge(&self, status: &TaskStatus) -> Result<(), SdkError> {
        let Some(uuid) = status.uuid else {
            return Ok(());
        };
        let acks = vec![ack(&status.task_id, status.agent_id.as_ref(), uuid)];
        let generation = self.session().generation;
        let result = self
            .call(Kind::Acknowledge(call_request::Acknowledge { acks }))
            .await;
        let acked_on = result.is_ok().then_some(generation);
        self.dedup().set_acked(&status.task_id, uuid, acked_on);
        result
    }

    /// Acknowledges an update in the background, batched with others (as
    /// `auto_acknowledge` does): for a framework that acknowledges only once it has recorded
    /// an update's effect, without one call per update. If the batch's call fails the master
    /// redelivers. An update without a uuid is ignored.
    pub fn acknowledge_later(&self, status: &TaskStatus) {
        let Some(uuid) = status.uuid else {
            return;
        };
        let generation = self.session().generation;
        self.queue_ack(
            PendingAck {
                task_id: status.task_id.clone(),
                agent_id: status.agent_id.clone(),
                uuid,
            },
            generation,
        );
    }

    /// Asks for the latest status of `tasks` (empty: implicit reconciliation of every task
    /// the master knows); answers arrive as updates with reason RECONCILIATION.
    pub async fn reconcile(&self, tasks: &[(TaskId, Option<AgentId>)]) -> Result<(), SdkError> {
        let tasks = tasks
            .iter()
            .map(|(task, agent)| v1::ReconcileTask {
                task_id: task.to_string(),
                agent_id: agent.as_ref().map(ToString::to_string),
            })
            .collect();
        self.call(Kind::Reconcile(call_request::Reconcile { tasks }))
            .await
    }

    /// The framework's durable store (Scheduler.Store): `key`'s entry, if it has one.
    pub async fn store_get(&self, key: &str) -> Result<Option<StoreEntry>, SdkError> {
        let entries = self
            .store(Op::Get(store_request::Get {
                key: key.to_owned(),
            }))
            .await?;
        Ok(entries.into_iter().next())
    }

    /// Writes `value` under `key`, durably; returns its new version. With `expected`, only
    /// if the key is at that version (0: only if it does not exist), else
    /// [`SdkError::Rejected`] with FAILED_PRECONDITION.
    pub async fn store_put(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        expected: Option<u64>,
    ) -> Result<u64, SdkError> {
        let entries = self
            .store(Op::Put(store_request::Put {
                key: key.to_owned(),
                value: value.into(),
                expected_version: expected,
            }))
            .await?;
        Ok(entries.first().map_or(0, |e| e.version))
    }

    /// Deletes `key` (an absent key is fine); with `expected`, only at that version.
    pub async fn store_delete(&self, key: &str, expected: Option<u64>) -> Result<(), SdkError> {
        self.store(Op::Delete(store_request::Delete {
            key: key.to_owned(),
            expected_version: expected,
        }))
        .await
        .map(drop)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub async fn store_list(&self, prefix: &str) -> Result<Vec<StoreEntry>, SdkError> {
        self.store(Op::List(store_request::List {
            prefix: prefix.to_owned(),
        }))
        .await
    }

    async fn store(&self, op: Op) -> Result<Vec<StoreEntry>, SdkError> {
        let (mut client, framework_id, stream_id) = self.call_parts()?;
        let response = client
            .store(v1::StoreRequest {
                framework_id,
                stream_id,
                op: Some(op),
            })
            .await?
            .into_inner();
        Ok(response
            .entries
            .into_iter()
            .map(|e| StoreEntry {
                key: e.key,
                value: e.value,
                version: e.version,
            })
            .collect())
    }

    /// Removes the framework for good (its tasks are killed) and ends [`run`](crate::run).
    pub async fn teardown(&self) -> Result<(), SdkError> {
        // Set before the call: the master's ERROR event answering it can arrive first.
        self.inner.teardown.store(true, Ordering::Release);
        if let Err(e) = self.call(Kind::Teardown(call_request::Teardown {})).await {
            self.inner.teardown.store(false, Ordering::Release);
            return Err(e);
        }
        self.stop();
        Ok(())
    }

    /// Sends queued acknowledgements in batches until the queue closes. A failed batch is
    /// forgotten by the dedup so the master's redelivery is acknowledged again.
    pub(crate) async fn run_acker(self, mut rx: mpsc::UnboundedReceiver<PendingAck>) {
        let mut batch = Vec::new();
        loop {
            let stopping = tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, MAX_ACK_BATCH) => n == 0,
                () = self.stopped() => true,
            };
            if stopping {
                // Flush what the last callbacks queued, then end.
                while let Ok(ack) = rx.try_recv() {
                    batch.push(ack);
                }
                for chunk in batch.chunks(MAX_ACK_BATCH) {
                    self.send_acks(chunk).await;
                }
                return;
            }
            self.send_acks(&batch).await;
            batch.clear();
        }
    }

    async fn send_acks(&self, batch: &[PendingAck]) {
        if batch.is_empty() || self.teardown_requested() {
            // After a teardown the framework is gone: acknowledgements would be refused.
            return;
        }
        let acks = batch
            .iter()
            .map(|a| ack(&a.task_id, a.agent_id.as_ref(), a.uuid))
            .collect();
        let result = self
            .call(Kind::Acknowledge(call_request::Acknowledge { acks }))
            .await;
        match result {
            Ok(()) => debug!(count = batch.len(), "acknowledged updates"),
            Err(error) => {
                warn!(%error, count = batch.len(), "acknowledgement failed; the master will redeliver");
                let mut dedup = self.dedup();
                for a in batch {
                    dedup.set_acked(&a.task_id, a.uuid, None);
                }
            }
        }
    }
}

fn ids(offer_ids: &[OfferId]) -> Vec<String> {
    offer_ids.iter().map(ToString::to_string).collect()
}

fn filters(refuse: Duration) -> v1::Filters {
    v1::Filters {
        refuse_seconds: Some(refuse.as_secs_f64()),
    }
}

fn ack(task_id: &TaskId, agent_id: Option<&AgentId>, uuid: UpdateUuid) -> v1::Ack {
    v1::Ack {
        agent_id: agent_id.map(ToString::to_string).unwrap_or_default(),
        task_id: task_id.to_string(),
        uuid: bytes::Bytes::copy_from_slice(uuid.as_bytes()),
    }
}
