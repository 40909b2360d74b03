//! Test a scheduler without a cluster.
//!
//! [`MockMaster`] is an in-process Scheduler service on `127.0.0.1:0`, served with Corral's
//! real limits over a real socket. It answers `Subscribe` with a SUBSCRIBED event (assigning
//! `fw-1`, `fw-2`, ... unless the framework fails over with its own ID, and a fresh stream ID
//! each time), checks that calls name the current framework and stream (like the master:
//! `NOT_FOUND` / `FAILED_PRECONDITION`), and records every subscription and call. The test
//! pushes events ([`MockMaster::send_offers`], [`MockMaster::send_update`],
//! [`MockMaster::send_heartbeat`], [`MockMaster::send_error`]), breaks the stream
//! ([`MockMaster::drop_stream`]) and waits for what the driver does
//! ([`MockMaster::next_subscribe`], [`MockMaster::next_call`]) — readiness signals, never
//! sleeps.
//!
//! [`OfferBuilder`] and [`StatusBuilder`] build offers and status updates fluently.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use corral_proto::v1::scheduler_server::Scheduler as SchedulerService;
use corral_proto::{OperationUpdate, ServiceError, TaskStatus, UpdateUuid, limits, v1};
use corral_types::{
    AgentId, Digest, FrameworkId, OfferId, Reason, Resources, Role, ScalarName, StatusSource,
    TaskId, TaskState,
};
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::offer::Offer;

/// How long [`MockMaster::next_call`] and [`MockMaster::next_subscribe`] wait before
/// panicking: generous, since they only wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);

type EventTx = mpsc::Sender<Result<v1::Event, Status>>;

#[derive(Debug, Default)]
struct State {
    subscriptions: u64,
    framework_id: Option<String>,
    stream_id: Option<String>,
    stream: Option<EventTx>,
    heartbeat_interval: Duration,
    not_leader: Option<Option<String>>,
    fail_subscribe: VecDeque<Status>,
    fail_call: VecDeque<Status>,
    calls: Vec<v1::CallRequest>,
    /// The framework's store: key -> (value, version), and the last version given.
    store: std::collections::BTreeMap<String, (bytes::Bytes, u64)>,
    revision: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    calls_tx: mpsc::UnboundedSender<v1::CallRequest>,
    subscribes_tx: mpsc::UnboundedSender<v1::SubscribeRequest>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An in-process stand-in for the master's Scheduler service. See the module docs.
#[derive(Debug)]
pub struct MockMaster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    calls_rx: AsyncMutex<mpsc::UnboundedReceiver<v1::CallRequest>>,
    subscribes_rx: AsyncMutex<mpsc::UnboundedReceiver<v1::SubscribeRequest>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockMaster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Debug, Clone)]
struct Service(Arc<Shared>);

#[tonic::async_trait]
impl SchedulerService for Service {
    type SubscribeStream = ReceiverStream<Result<v1::Event, Status>>;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let _ = self.0.subscribes_tx.send(request.clone());
        let mut s = self.0.state();
        if let Some(leader) = s.not_leader.clone() {
            return Err(ServiceError::NotLeader { leader }.into());
        }
        if let Some(status) = s.fail_subscribe.pop_front() {
            return Err(status);
        }
        s.subscriptions += 1;
        let n = s.subscriptions;
        let framework_id = request
            .framework_info
            .and_then(|f| f.id)
            .unwrap_or_else(|| format!("fw-{n}"));
        let stream_id = format!("stream-{n}");
        let (tx, rx) = mpsc::channel(1024);
        let subscribed = v1::Event {
            kind: Some(v1::event::Kind::Subscribed(v1::event::Subscribed {
                framework_id: framework_id.clone(),
                stream_id: stream_id.clone(),
                heartbeat_interval_millis: u64::try_from(s.heartbeat_interval.as_millis())
                    .unwrap_or(u64::MAX),
                master_id: "mock-master".into(),
                leader_address: String::new(),
                epoch: 1,
            })),
        };
        // A fresh channel has room for one event.
        let _ = tx.try_send(Ok(subscribed));
        s.framework_id = Some(framework_id);
        s.stream_id = Some(stream_id);
        // Replacing the sender ends the previous subscription's stream, as a failover does.
        s.stream = Some(tx);
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn call(
        &self,
        request: Request<v1::CallRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        let call = request.into_inner();
        let mut s = self.0.state();
        if let Some(leader) = s.not_leader.clone() {
            return Err(ServiceError::NotLeader { leader }.into());
        }
        if s.framework_id.as_deref() != Some(call.framework_id.as_str()) {
            return Err(Status::not_found(format!(
                "unknown framework {}",
                call.framework_id
            )));
        }
        if s.stream_id.as_deref() != Some(call.stream_id.as_str()) {
            return Err(Status::failed_precondition(format!(
                "stream {} is not the framework's current stream",
                call.stream_id
            )));
        }
        s.calls.push(call.clone());
        let _ = self.0.calls_tx.send(call);
        match s.fail_call.pop_front() {
            Some(status) => Err(status),
            None => Ok(Response::new(v1::CallResponse {})),
        }
    }

    /// The store as the master keeps it (versions, compare-and-set), without its limits.
    async fn store(
        &self,
        request: Request<v1::StoreRequest>,
    ) -> Result<Response<v1::StoreResponse>, Status> {
        use v1::store_request::Op;
        let request = request.into_inner();
        let mut s = self.0.state();
        if s.stream_id.as_deref() != Some(request.stream_id.as_str()) {
            return Err(Status::failed_precondition("not the current stream"));
        }
        let entry = |key: &str, (value, version): &(bytes::Bytes, u64)| v1::StoreEntry {
            key: key.to_owned(),
            value: value.clone(),
            version: *version,
        };
        let check = |current: Option<u64>, expected: Option<u64>| match expected {
            Some(e) if e != current.unwrap_or(0) => {
                Err(Status::failed_precondition("version mismatch"))
            }
            _ => Ok(()),
        };
        let entries = match request.op {
            None => return Err(Status::invalid_argument("op: required field is missing")),
            Some(Op::Get(g)) => s
                .store
                .get(&g.key)
                .map(|e| entry(&g.key, e))
                .into_iter()
                .collect(),
            Some(Op::List(l)) => s
                .store
                .iter()
                .filter(|(k, _)| k.starts_with(&l.prefix))
                .map(|(k, e)| entry(k, e))
                .collect(),
            Some(Op::Put(p)) => {
                check(s.store.get(&p.key).map(|e| e.1), p.expected_version)?;
                s.revision += 1;
                let version = s.revision;
                s.store.insert(p.key.clone(), (p.value, version));
                vec![entry(&p.key, &(bytes::Bytes::new(), version))]
            }
            Some(Op::Delete(d)) => {
                check(s.store.get(&d.key).map(|e| e.1), d.expected_version)?;
                s.store.remove(&d.key);
                Vec::new()
            }
        };
        Ok(Response::new(v1::StoreResponse { entries }))
    }
}

impl MockMaster {
    /// Starts a mock master with a 60 s heartbeat interval (heartbeats are sent only by
    /// [`MockMaster::send_heartbeat`]).
    pub async fn start() -> Self {
        Self::with_heartbeat(Duration::from_secs(60)).await
    }

    /// Starts a mock master announcing `interval` as its heartbeat interval; the driver
    /// reconnects after 3 intervals without an event.
    ///
    /// # Panics
    /// If no port on 127.0.0.1 can be bound.
    #[allow(
        clippy::expect_used,
        reason = "test kit: failing to bind is a test failure"
    )]
    pub async fn with_heartbeat(interval: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let (subscribes_tx, subscribes_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                heartbeat_interval: interval,
                ..State::default()
            }),
            calls_tx,
            subscribes_tx,
        });
        let serve = limits::server_builder()
            .add_service(limits::scheduler_server(Service(Arc::clone(&shared))))
            .serve_with_incoming(limits::incoming(listener));
        let server = tokio::spawn(async move {
            let _ = serve.await;
        });
        Self {
            addr,
            shared,
            calls_rx: AsyncMutex::new(calls_rx),
            subscribes_rx: AsyncMutex::new(subscribes_rx),
            server,
        }
    }

    /// `127.0.0.1:port`, for [`FrameworkConfig::masters`](crate::FrameworkConfig::masters).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The next subscription request (in arrival order, including refused ones).
    ///
    /// # Panics
    /// After 10 s without one.
    #[allow(
        clippy::expect_used,
        reason = "test kit: a missing event is a test failure"
    )]
    pub async fn next_subscribe(&self) -> v1::SubscribeRequest {
        let mut rx = self.subscribes_rx.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no subscription within 10 s")
            .expect("mock master gone")
    }

    /// The next accepted call (in arrival order; refused calls are not recorded).
    ///
    /// # Panics
    /// After 10 s without one.
    #[allow(
        clippy::expect_used,
        reason = "test kit: a missing call is a test failure"
    )]
    pub async fn next_call(&self) -> v1::CallRequest {
        let mut rx = self.calls_rx.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no call within 10 s")
            .expect("mock master gone")
    }

    /// The next accepted call, or `None` if none arrives within `wait`.
    pub async fn next_call_within(&self, wait: Duration) -> Option<v1::CallRequest> {
        let mut rx = self.calls_rx.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }

    /// Every accepted call so far.
    pub fn calls(&self) -> Vec<v1::CallRequest> {
        self.shared.state().calls.clone()
    }

    /// The framework ID of the current (or last) subscription.
    pub fn framework_id(&self) -> Option<String> {
        self.shared.state().framework_id.clone()
    }

    /// The current stream ID.
    pub fn stream_id(&self) -> Option<String> {
        self.shared.state().stream_id.clone()
    }

    /// How many subscriptions were accepted.
    pub fn subscriptions(&self) -> u64 {
        self.shared.state().subscriptions
    }

    /// Pushes an event on the current stream; false when no stream is open (or it is full).
    pub fn send_event(&self, event: v1::Event) -> bool {
        let s = self.shared.state();
        s.stream
            .as_ref()
            .is_some_and(|tx| tx.try_send(Ok(event)).is_ok())
    }

    /// Pushes an OFFERS event (framework IDs are set to the subscriber's).
    pub fn send_offers(&self, offers: impl IntoIterator<Item = Offer>) -> bool {
        let framework_id = self.framework_id().unwrap_or_default();
        let offers = offers
            .into_iter()
            .map(|o| v1::Offer {
                framework_id: framework_id.clone(),
                ..v1::Offer::from(&o)
            })
            .collect();
        self.send_event(kind(v1::event::Kind::Offers(v1::event::Offers { offers })))
    }

    /// Pushes an UPDATE event (the framework ID is set to the subscriber's).
    pub fn send_update(&self, status: &TaskStatus) -> bool {
        let mut status = v1::TaskStatus::from(status);
        status.framework_id = self.framework_id().unwrap_or_default();
        self.send_event(kind(v1::event::Kind::Update(Box::new(v1::event::Update {
            status: Some(status),
        }))))
    }

    /// Pushes a RESCIND event.
    pub fn send_rescind(&self, offer_id: &str) -> bool {
        self.send_event(kind(v1::event::Kind::Rescind(v1::event::Rescind {
            offer_id: offer_id.into(),
        })))
    }

    /// Pushes a FAILURE event (agent lost).
    pub fn send_agent_lost(&self, agent_id: &str) -> bool {
        self.send_event(kind(v1::event::Kind::Failure(v1::event::Failure {
            agent_id: agent_id.into(),
            message: "agent unreachable".into(),
        })))
    }

    /// Pushes an OPERATION_UPDATE event (an operation of an ACCEPT was not applied).
    pub fn send_operation_update(&self, update: &OperationUpdate) -> bool {
        self.send_event(kind(v1::event::Kind::OperationUpdate(update.into())))
    }

    /// Pushes a HEARTBEAT event.
    pub fn send_heartbeat(&self) -> bool {
        self.send_event(kind(v1::event::Kind::Heartbeat(v1::event::Heartbeat {})))
    }

    /// Pushes an ERROR event (the master removed the framework) and ends the stream.
    pub fn send_error(&self, message: &str) -> bool {
        let sent = self.send_event(kind(v1::event::Kind::Error(v1::event::Error {
            message: message.into(),
        })));
        self.drop_stream();
        sent
    }

    /// Ends the current stream (the driver sees it close and reconnects).
    pub fn drop_stream(&self) {
        self.shared.state().stream = None;
    }

    /// Ends the current stream with an error status (UNAVAILABLE with `leader` in the
    /// `corral-leader` metadata, for a leadership change).
    pub fn fail_stream(&self, status: Status) {
        if let Some(tx) = self.shared.state().stream.take() {
            let _ = tx.try_send(Err(status));
        }
    }

    /// From now on answer everything with UNAVAILABLE naming `leader` (`None`: unknown), as
    /// a standby master does; `clear_not_leader` undoes it.
    pub fn set_not_leader(&self, leader: Option<String>) {
        self.shared.state().not_leader = Some(leader);
    }

    /// Serve normally again after [`MockMaster::set_not_leader`].
    pub fn clear_not_leader(&self) {
        self.shared.state().not_leader = None;
    }

    /// Refuse the next subscription with `status`.
    pub fn fail_next_subscribe(&self, status: Status) {
        self.shared.state().fail_subscribe.push_back(status);
    }

    /// Answer the next accepted call with `status` (it is still recorded).
    pub fn fail_next_call(&self, status: Status) {
        self.shared.state().fail_call.push_back(status);
    }

    /// Make the current stream ID stale, as when another instance of the framework
    /// subscribed with the same ID: the driver's calls are then refused with
    /// FAILED_PRECONDITION.
    pub fn rotate_stream_id(&self) {
        let mut s = self.shared.state();
        s.stream_id = Some(format!("stream-{}-rotated", s.subscriptions));
    }
}

fn kind(kind: v1::event::Kind) -> v1::Event {
    v1::Event { kind: Some(kind) }
}

/// Builds an [`Offer`] fluently. Defaults: agent `agent-1`, host `host-1`, role `*`, no
/// resources, attributes or cached modules, framework `fw-1`.
#[derive(Debug, Clone)]
pub struct OfferBuilder {
    offer: Offer,
}

impl OfferBuilder {
    /// An offer named `id`.
    ///
    /// # Panics
    /// If `id` is not a valid ID (as every builder method with an ID or name argument).
    #[allow(clippy::expect_used, reason = "test kit: bad literals are test bugs")]
    pub fn new(id: &str) -> Self {
        Self {
            offer: Offer {
                id: OfferId::new(id).expect("valid offer id"),
                framework_id: FrameworkId::new("fw-1").expect("valid framework id"),
                agent_id: AgentId::new("agent-1").expect("valid agent id"),
                hostname: "host-1".into(),
                role: Role::default_role(),
                resources: Resources::new(),
                reserved: Resources::new(),
                attributes: Default::default(),
                cached_modules: Vec::new(),
            },
        }
    }

    /// The agent (and hostname, `<agent>.local`).
    #[allow(clippy::expect_used, reason = "test kit: bad literals are test bugs")]
    #[must_use]
    pub fn agent(mut self, agent_id: &str) -> Self {
        self.offer.agent_id = AgentId::new(agent_id).expect("valid agent id");
        self.offer.hostname = format!("{agent_id}.local");
        self
    }

    /// The role.
    #[allow(clippy::expect_used, reason = "test kit: bad literals are test bugs")]
    #[must_use]
    pub fn role(mut self, role: &str) -> Self {
        self.offer.role = Role::new(role).expect("valid role");
        self
    }

    /// All resources at once.
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.offer.resources = resources;
        self
    }

    /// CPUs, in thousandths.
    #[must_use]
    pub fn cpus_milli(mut self, milli: u64) -> Self {
        self.offer.resources = self.offer.resources.with_cpus_milli(milli);
        self
    }

    /// Memory, in MiB.
    #[must_use]
    pub fn mem_mib(mut self, mib: u64) -> Self {
        self.offer.resources = self.offer.resources.with_mem_mib(mib);
        self
    }

    /// Disk, in MiB.
    #[must_use]
    pub fn disk_mib(mut self, mib: u64) -> Self {
        self.offer.resources = self.offer.resources.with_disk_mib(mib);
        self
    }

    /// A custom scalar, in milli-units.
    #[allow(clippy::expect_used, reason = "test kit: bad literals are test bugs")]
    #[must_use]
    pub fn scalar(mut self, name: &str, milli: u64) -> Self {
        let name = ScalarName::new(name).expect("valid scalar name");
        self.offer.resources = self.offer.resources.with_scalar_milli(&name, milli);
        self
    }

    /// An agent attribute.
    #[must_use]
    pub fn attribute(mut self, key: &str, value: &str) -> Self {
        self.offer.attributes.insert(key.into(), value.into());
        self
    }

    /// A module the agent has cached.
    #[must_use]
    pub fn cached_module(mut self, digest: Digest) -> Self {
        self.offer.cached_modules.push(digest);
        self
    }

    /// The offer.
    pub fn build(self) -> Offer {
        self.offer
    }
}

/// Builds a [`TaskStatus`] fluently. Defaults: framework `fw-1`, agent `agent-1`, reason
/// LAUNCHED (EXITED for FINISHED/FAILED), source agent, a fresh random uuid.
#[derive(Debug, Clone)]
pub struct StatusBuilder {
    status: TaskStatus,
}

impl StatusBuilder {
    /// An update of `task_id` to `state`.
    #[allow(clippy::expect_used, reason = "test kit: bad literals are test bugs")]
    pub fn new(task_id: &str, state: TaskState) -> Self {
        let reason = match state {
            TaskState::Finished | TaskState::Failed => Reason::Exited,
            TaskState::Killing | TaskState::Killed => Reason::TaskKilledByRequest,
            _ => Reason::Launched,
        };
        Self {
            status: TaskStatus {
                task_id: TaskId::new(task_id).expect("valid task id"),
                framework_id: FrameworkId::new("fw-1").expect("valid framework id"),
                agent_id: Some(AgentId::new("agent-1").expect("valid agent id")),
                state,
                reason,
                message: String::new(),
                usage: None,
                timestamp_millis: 0,
                uuid: Some(UpdateUuid::from_bytes(rand::random())),
                source: StatusSource::Agent,
                trap_kind: None,
                healthy: None,
                progress: None,
                result_json: None,
                checkpoint: Default::default(),
                outputs: Vec::new(),
                outputs_not_kept: None,
            },
        }
    }

    /// The agent.
    #[allow(clippy::expect_used, reason = "test kit: bad literals are test bugs")]
    #[must_use]
    pub fn agent(mut self, agent_id: &str) -> Self {
        self.status.agent_id = Some(AgentId::new(agent_id).expect("valid agent id"));
        self
    }

    /// The reason.
    #[must_use]
    pub fn reason(mut self, reason: Reason) -> Self {
        self.status.reason = reason;
        self
    }

    /// The message.
    #[must_use]
    pub fn message(mut self, message: &str) -> Self {
        self.status.message = message.into();
        self
    }

    /// A fixed uuid (to send a duplicate, say).
    #[must_use]
    pub fn uuid(mut self, bytes: [u8; 16]) -> Self {
        self.status.uuid = Some(UpdateUuid::from_bytes(bytes));
        self
    }

    /// No uuid: an update that needs no acknowledgement (reconciliation answers).
    #[must_use]
    pub fn without_uuid(mut self) -> Self {
        self.status.uuid = None;
        self.status.source = StatusSource::Master;
        self
    }

    /// The status.
    pub fn build(self) -> TaskStatus {
        self.status
    }
}
