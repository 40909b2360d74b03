//! Shared helpers: start a master, connect clients, fake an agent, await with a guard.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use corral_master::{Master, MasterConfig};
use corral_proto::auth::Token;
use corral_proto::{limits, v1};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// A connection to a master: a channel presenting a token (or none).
pub(crate) use corral_proto::auth::Conn as Channel;

/// Fails the test instead of hanging when something never arrives.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub(crate) struct TestMaster {
    pub(crate) master: Master,
    pub(crate) channel: Channel,
    pub(crate) dir: std::sync::Arc<tempfile::TempDir>,
}

pub(crate) async fn start() -> TestMaster {
    start_with(|_| {}).await
}

/// A master whose config `tweak` adjusts (short timeouts, say).
pub(crate) async fn start_with(tweak: impl FnOnce(&mut MasterConfig)) -> TestMaster {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    start_in(dir, tweak).await
}

/// A master on `dir` (a restart, when an earlier master used it).
pub(crate) async fn start_in(
    dir: std::sync::Arc<tempfile::TempDir>,
    tweak: impl FnOnce(&mut MasterConfig),
) -> TestMaster {
    let mut config = MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    tweak(&mut config);
    let master = Master::start(config).await.unwrap();
    let channel = connect(master.local_addr()).await;
    TestMaster {
        master,
        channel,
        dir,
    }
}

pub(crate) async fn connect(addr: std::net::SocketAddr) -> Channel {
    connect_as(addr, &Token::none()).await
}

/// A connection presenting `token`.
pub(crate) async fn connect_as(addr: std::net::SocketAddr, token: &Token) -> Channel {
    let channel = limits::endpoint(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    token.on(channel)
}

pub(crate) fn resources(cpus_milli: u64, mem_bytes: u64) -> v1::Resources {
    v1::Resources {
        cpus_milli,
        mem_bytes,
        ..Default::default()
    }
}

/// An agent speaking AgentLink by hand.
pub(crate) struct FakeAgent {
    pub(crate) id: String,
    /// The epoch of the master it registered with.
    pub(crate) epoch: u64,
    pub(crate) tx: mpsc::Sender<v1::AgentMessage>,
    pub(crate) rx: Streaming<v1::MasterMessage>,
}

impl FakeAgent {
    pub(crate) async fn register(channel: Channel) -> FakeAgent {
        Self::register_at(channel, "127.0.0.1:1").await
    }

    /// Registers an agent that says it serves its own API at `address`.
    pub(crate) async fn register_at(channel: Channel, address: &str) -> FakeAgent {
        let register = v1::agent_message::Kind::Register(v1::agent_message::Register {
            agent_info: Some(agent_info(address)),
            cached_modules: vec![],
        });
        let agent = Self::connect(channel, register).await;
        // A fresh master's first term.
        assert_eq!(agent.epoch, 1);
        agent
    }

    /// Re-registers agent `id` (with no tasks), as after a master restart.
    pub(crate) async fn reregister(channel: Channel, id: &str) -> FakeAgent {
        let reregister = v1::agent_message::Kind::Reregister(v1::agent_message::ReRegister {
            agent_id: id.into(),
            agent_info: Some(agent_info("127.0.0.1:1")),
            ..Default::default()
        });
        let agent = Self::connect(channel, reregister).await;
        assert_eq!(agent.id, id);
        agent
    }

    async fn connect(channel: Channel, first: v1::agent_message::Kind) -> FakeAgent {
        let mut client = limits::agent_link_client(channel);
        let (tx, rx) = mpsc::channel(64);
        tx.send(v1::AgentMessage { kind: Some(first) })
            .await
            .unwrap();
        let mut rx = client
            .connect(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let (id, epoch) = match within("REGISTERED", rx.message()).await.unwrap() {
            Some(v1::MasterMessage {
                epoch,
                kind: Some(v1::master_message::Kind::Registered(r)),
            }) => (r.agent_id, epoch),
            other => panic!("expected REGISTERED, got {other:?}"),
        };
        FakeAgent { id, epoch, tx, rx }
    }

    /// The next command from the master, which carries the epoch of its registration.
    pub(crate) async fn next(&mut self, what: &str) -> v1::master_message::Kind {
        let msg = within(what, self.rx.message()).await.unwrap().unwrap();
        assert_eq!(msg.epoch, self.epoch);
        msg.kind.unwrap()
    }

    pub(crate) async fn status(
        &self,
        framework_id: &str,
        task_id: &str,
        state: v1::TaskState,
        uuid: u8,
    ) {
        let status = v1::TaskStatus {
            task_id: task_id.into(),
            framework_id: framework_id.into(),
            agent_id: self.id.clone(),
            state: state as i32,
            reason: if state == v1::TaskState::Finished {
                v1::Reason::Exited as i32
            } else {
                v1::Reason::Launched as i32
            },
            uuid: Bytes::from(vec![uuid; 16]),
            source: v1::StatusSource::Agent as i32,
            ..Default::default()
        };
        self.tx
            .send(v1::AgentMessage {
                kind: Some(v1::agent_message::Kind::StatusUpdate(
                    v1::agent_message::StatusUpdate {
                        status: Some(status),
                    },
                )),
            })
            .await
            .unwrap();
    }
}

fn agent_info(address: &str) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: "fake-host".into(),
        address: address.into(),
        resources: Some(resources(2000, 1 << 30)),
        ..Default::default()
    }
}

/// A subscription of framework `id` (or a new one) to `role`.
pub(crate) fn subscribe_request(id: Option<String>, role: &str) -> v1::SubscribeRequest {
    v1::SubscribeRequest {
        framework_info: Some(v1::FrameworkInfo {
            id,
            name: "raw".into(),
            roles: vec![role.into()],
            failover_timeout_millis: 60_000,
            ..Default::default()
        }),
        suppressed_roles: vec![],
    }
}

/// A framework speaking the Scheduler API by hand.
pub(crate) struct RawScheduler {
    pub(crate) client: v1::scheduler_client::SchedulerClient<Channel>,
    pub(crate) events: Streaming<v1::Event>,
    pub(crate) framework_id: String,
    pub(crate) stream_id: String,
    pub(crate) epoch: u64,
}

impl RawScheduler {
    pub(crate) async fn subscribe(channel: Channel) -> RawScheduler {
        let s = Self::resubscribe(channel, None).await;
        // A fresh master's first term.
        assert_eq!(s.epoch, 1);
        s
    }

    /// Subscribes with a framework ID (failover) or without (a new framework).
    pub(crate) async fn resubscribe(channel: Channel, id: Option<String>) -> RawScheduler {
        Self::subscribe_with(channel, id, "*").await
    }

    /// Subscribes a new framework to `role`.
    pub(crate) async fn subscribe_as(channel: Channel, role: &str) -> RawScheduler {
        Self::subscribe_with(channel, None, role).await
    }

    async fn subscribe_with(channel: Channel, id: Option<String>, role: &str) -> RawScheduler {
        let mut client = limits::scheduler_client(channel);
        let req = subscribe_request(id, role);
        let mut events = client.subscribe(req).await.unwrap().into_inner();
        let s = match within("SUBSCRIBED", events.message()).await.unwrap() {
            Some(v1::Event {
                kind: Some(v1::event::Kind::Subscribed(s)),
            }) => s,
            other => panic!("expected SUBSCRIBED, got {other:?}"),
        };
        RawScheduler {
            client,
            events,
            framework_id: s.framework_id,
            stream_id: s.stream_id,
            epoch: s.epoch,
        }
    }

    /// The next event other than a heartbeat.
    pub(crate) async fn next(&mut self, what: &str) -> v1::event::Kind {
        loop {
            let e = within(what, self.events.message()).await.unwrap().unwrap();
            match e.kind.unwrap() {
                v1::event::Kind::Heartbeat(_) => continue,
                k => return k,
            }
        }
    }

    pub(crate) async fn offers(&mut self) -> Vec<v1::Offer> {
        match self.next("OFFERS").await {
            v1::event::Kind::Offers(o) => o.offers,
            other => panic!("expected OFFERS, got {other:?}"),
        }
    }

    pub(crate) async fn update(&mut self) -> v1::TaskStatus {
        match self.next("UPDATE").await {
            v1::event::Kind::Update(u) => u.status.unwrap(),
            other => panic!("expected UPDATE, got {other:?}"),
        }
    }

    pub(crate) fn request(&self, kind: v1::call_request::Kind) -> v1::CallRequest {
        v1::CallRequest {
            framework_id: self.framework_id.clone(),
            stream_id: self.stream_id.clone(),
            kind: Some(kind),
        }
    }

    /// One operation on the framework's store, by this subscription.
    pub(crate) async fn store(
        &mut self,
        op: v1::store_request::Op,
    ) -> Result<Vec<v1::StoreEntry>, tonic::Status> {
        let request = v1::StoreRequest {
            framework_id: self.framework_id.clone(),
            stream_id: self.stream_id.clone(),
            op: Some(op),
        };
        Ok(self.client.store(request).await?.into_inner().entries)
    }

    pub(crate) async fn call(&mut self, kind: v1::call_request::Kind) -> Result<(), tonic::Status> {
        let req = self.request(kind);
        self.client.call(req).await.map(|_| ())
    }
}

pub(crate) fn task(id: &str, cpus_milli: u64) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        module: Some(v1::ModuleRef {
            source: Some(v1::module_ref::Source::Digest(
                corral_types::Digest::of(b"module").to_string(),
            )),
        }),
        resources: Some(resources(cpus_milli, 1 << 20)),
        ..Default::default()
    }
}

/// Uploads `module` in one chunk.
pub(crate) async fn upload(
    channel: Channel,
    module: &[u8],
) -> Result<v1::UploadModuleResponse, tonic::Status> {
    let chunk = v1::ModuleChunk {
        data: Bytes::copy_from_slice(module),
        total_size: module.len() as u64,
    };
    limits::operator_client(channel)
        .upload_module(tokio_stream::once(chunk))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) fn launch(offer_id: &str, tasks: Vec<v1::TaskInfo>) -> v1::call_request::Kind {
    v1::call_request::Kind::Accept(v1::call_request::Accept {
        offer_ids: vec![offer_id.into()],
        operations: vec![v1::Operation {
            id: String::new(),
            kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })),
        }],
        filters: None,
    })
}
