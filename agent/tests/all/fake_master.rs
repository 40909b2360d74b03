//! An in-process master for the agent's tests: an AgentLink server that records what the
//! agent sends, answers Register/ReRegister, pushes commands on demand and serves modules
//! from memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_proto::ProtoEnum;
use corral_proto::{limits, v1};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// What the agent sent, heartbeats left out.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Register(v1::agent_message::Register),
    ReRegister(v1::agent_message::ReRegister),
    Status(v1::TaskStatus),
    ModuleCached(String),
    /// The agent's stream ended; everything it sent came before.
    Disconnected,
}

type Downstream = mpsc::Sender<Result<v1::MasterMessage, Status>>;

#[derive(Debug, Default)]
struct Shared {
    modules: Mutex<HashMap<String, Vec<u8>>>,
    /// FetchModule calls served.
    fetches: std::sync::atomic::AtomicUsize,
    /// Outputs are refused as if the cluster's output store were full.
    outputs_full: std::sync::atomic::AtomicBool,
    current: Mutex<Option<Downstream>>,
    epoch: Mutex<u64>,
    events: Mutex<Option<mpsc::UnboundedSender<Event>>>,
}

impl Shared {
    fn record(&self, event: Event) {
        let events = self.events.lock().unwrap().clone();
        if let Some(events) = events {
            let _ = events.send(event);
        }
    }
}

#[derive(Debug, Clone)]
struct Service(Arc<Shared>);

/// The test's handle on the fake master.
#[derive(Debug)]
pub(crate) struct FakeMaster {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
}

const WAIT: Duration = Duration::from_secs(30);

impl FakeMaster {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            epoch: Mutex::new(1),
            events: Mutex::new(Some(tx)),
            ..Shared::default()
        });
        let service = limits::agent_link_server(Service(shared.clone()));
        tokio::spawn(
            limits::server_builder()
                .add_service(service)
                .serve_with_incoming(limits::incoming(listener)),
        );
        Self {
            addr,
            shared,
            events,
        }
    }

    /// Serves `bytes` from FetchModule under its digest; returns the digest.
    pub(crate) fn add_module(&self, bytes: Vec<u8>) -> String {
        let digest = corral_types::Digest::of(&bytes).to_string();
        self.shared
            .modules
            .lock()
            .unwrap()
            .insert(digest.clone(), bytes);
        digest
    }

    /// The bytes stored under `digest` (a module added, or an output uploaded).
    pub(crate) fn artifact(&self, digest: &str) -> Option<Vec<u8>> {
        self.shared.modules.lock().unwrap().get(digest).cloned()
    }

    /// Refuses outputs from now on, as a master whose output store is full.
    pub(crate) fn refuse_outputs(&self) {
        self.shared
            .outputs_full
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many module downloads the agent asked for.
    pub(crate) fn fetches(&self) -> usize {
        self.shared
            .fetches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_epoch(&self, epoch: u64) {
        *self.shared.epoch.lock().unwrap() = epoch;
    }

    /// Sends a message to the connected agent with the current epoch (or `epoch`).
    pub(crate) async fn send_at(&self, epoch: u64, kind: v1::master_message::Kind) {
        let tx = self.shared.current.lock().unwrap().clone().unwrap();
        let message = v1::MasterMessage {
            epoch,
            kind: Some(kind),
        };
        tx.send(Ok(message)).await.unwrap();
    }

    pub(crate) async fn send(&self, kind: v1::master_message::Kind) {
        let epoch = *self.shared.epoch.lock().unwrap();
        self.send_at(epoch, kind).await;
    }

    pub(crate) async fn launch(&self, framework_id: &str, task: v1::TaskInfo) {
        self.send(v1::master_message::Kind::LaunchTasks(
            v1::master_message::LaunchTasks {
                framework_id: framework_id.into(),
                tasks: vec![task],
            },
        ))
        .await;
    }

    pub(crate) async fn kill(&self, framework_id: &str, task_id: &str) {
        self.kill_because(framework_id, task_id, 0).await;
    }

    /// A kill giving the wire value of a reason (0: none).
    pub(crate) async fn kill_because(&self, framework_id: &str, task_id: &str, reason: i32) {
        self.send(v1::master_message::Kind::KillTask(
            v1::master_message::KillTask {
                framework_id: framework_id.into(),
                task_id: task_id.into(),
                reason,
            },
        ))
        .await;
    }

    pub(crate) async fn acknowledge(&self, status: &v1::TaskStatus) {
        self.send(v1::master_message::Kind::Acknowledge(
            v1::master_message::Acknowledge {
                framework_id: status.framework_id.clone(),
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone(),
            },
        ))
        .await;
    }

    /// Waits until the agent has handled every message sent so far: a kill of an unknown task
    /// is answered LOST straight away, after the messages before it.
    pub(crate) async fn handled(&mut self, framework_id: &str) {
        self.kill(framework_id, "probe-unknown").await;
        let lost = self.next_status_of("probe-unknown").await;
        assert_eq!(state_of(&lost), corral_types::TaskState::Lost);
    }

    /// Ends the agent's stream as a master restart would; the agent reconnects.
    pub(crate) async fn drop_link(&self) {
        let tx = self.shared.current.lock().unwrap().take().unwrap();
        tx.send(Err(Status::unavailable("master restarting")))
            .await
            .unwrap();
    }

    /// The next thing the agent sent.
    pub(crate) async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("timed out waiting for the agent")
            .expect("event channel closed")
    }

    /// Skips what the agent sent until its stream ended.
    pub(crate) async fn disconnected(&mut self) {
        while !matches!(self.next().await, Event::Disconnected) {}
    }

    /// The next status update (registrations and module notices are skipped).
    pub(crate) async fn next_status(&mut self) -> v1::TaskStatus {
        loop {
            if let Event::Status(status) = self.next().await {
                return status;
            }
        }
    }

    /// The next status update of `task_id`.
    pub(crate) async fn next_status_of(&mut self, task_id: &str) -> v1::TaskStatus {
        loop {
            let status = self.next_status().await;
            if status.task_id == task_id {
                return status;
            }
        }
    }

    /// Status updates of `task_id` until a terminal one, duplicates (resends) skipped.
    pub(crate) async fn statuses_until_terminal(&mut self, task_id: &str) -> Vec<v1::TaskStatus> {
        let mut seen: Vec<v1::TaskStatus> = Vec::new();
        loop {
            let status = self.next_status_of(task_id).await;
            if seen.iter().any(|s| s.uuid == status.uuid) {
                continue;
            }
            let state = corral_types::TaskState::from_proto("state", status.state).unwrap();
            seen.push(status);
            if state.is_terminal() {
                return seen;
            }
        }
    }
}

fn state_of(status: &v1::TaskStatus) -> corral_types::TaskState {
    corral_types::TaskState::from_proto("state", status.state).unwrap()
}

pub(crate) fn states(statuses: &[v1::TaskStatus]) -> Vec<corral_types::TaskState> {
    statuses.iter().map(state_of).collect()
}

#[tonic::async_trait]
impl v1::agent_link_server::AgentLink for Service {
    type ConnectStream = ReceiverStream<Result<v1::MasterMessage, Status>>;
    type FetchModuleStream = ReceiverStream<Result<v1::ModuleChunk, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        *self.0.current.lock().unwrap() = Some(tx.clone());
        let shared = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                use v1::agent_message::Kind;
                let event = match message.kind {
                    Some(Kind::Register(register)) => {
                        reply_registered(&shared, &tx, "agent-1").await;
                        Event::Register(register)
                    }
                    Some(Kind::Reregister(reregister)) => {
                        reply_registered(&shared, &tx, &reregister.agent_id).await;
                        Event::ReRegister(reregister)
                    }
                    Some(Kind::StatusUpdate(update)) => Event::Status(update.status.unwrap()),
                    Some(Kind::ModuleCached(cached)) => Event::ModuleCached(cached.digest),
                    Some(Kind::Heartbeat(_)) | Some(Kind::ModuleEvicted(_)) | None => continue,
                };
                shared.record(event);
            }
            shared.record(Event::Disconnected);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_module(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        let digest = request.into_inner().digest;
        self.0
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bytes = self
            .0
            .modules
            .lock()
            .unwrap()
            .get(&digest)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("unknown module {digest}")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let total_size = bytes.len() as u64;
            for (i, chunk) in bytes.chunks(limits::MODULE_CHUNK_BYTES).enumerate() {
                let chunk = v1::ModuleChunk {
                    data: chunk.to_vec().into(),
                    total_size: if i == 0 { total_size } else { 0 },
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn upload_output(
        &self,
        request: Request<Streaming<v1::OutputChunk>>,
    ) -> Result<Response<v1::UploadOutputResponse>, Status> {
        if self
            .0
            .outputs_full
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Status::resource_exhausted("the output store is full"));
        }
        let mut chunks = request.into_inner();
        let first = chunks.message().await?.unwrap();
        let mut bytes = first.data.to_vec();
        while let Some(chunk) = chunks.message().await? {
            bytes.extend_from_slice(&chunk.data);
        }
        let digest = corral_types::Digest::of(&bytes).to_string();
        if digest != first.digest || bytes.len() as u64 != first.total_size {
            return Err(Status::invalid_argument("not the bytes announced"));
        }
        self.0.modules.lock().unwrap().insert(digest.clone(), bytes);
        Ok(Response::new(v1::UploadOutputResponse {
            digest,
            already_present: false,
        }))
    }
}

async fn reply_registered(shared: &Shared, tx: &Downstream, agent_id: &str) {
    let epoch = *shared.epoch.lock().unwrap();
    let message = v1::MasterMessage {
        epoch,
        kind: Some(v1::master_message::Kind::Registered(
            v1::master_message::Registered {
                agent_id: agent_id.into(),
                heartbeat_interval_millis: 100,
                master_id: "fake-master".into(),
            },
        )),
    };
    let _ = tx.send(Ok(message)).await;
}
