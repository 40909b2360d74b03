//! A framework speaking the Scheduler API directly, so a test sees every update the master
//! sends, duplicates included (the SDK would hide them), and acknowledges exactly what it
//! chooses to.

use std::time::Duration;

use corral_proto::{limits, v1};
use tonic::transport::Channel;

/// Bound on every wait for the master.
const WAIT: Duration = Duration::from_secs(60);

pub(crate) struct RawFramework {
    scheduler: v1::scheduler_client::SchedulerClient<Channel>,
    operator: v1::operator_client::OperatorClient<Channel>,
    framework_id: String,
    stream_id: String,
    events: tonic::Streaming<v1::Event>,
    /// Offers received and neither used nor rescinded, oldest first.
    offers: Vec<v1::Offer>,
    /// Every update received, in order, duplicates included.
    pub(crate) updates: Vec<v1::TaskStatus>,
}

impl RawFramework {
    pub(crate) async fn subscribe(master: &str) -> Self {
        let channel = limits::endpoint(format!("http://{master}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut scheduler = limits::scheduler_client(channel.clone());
        let mut events = scheduler
            .subscribe(v1::SubscribeRequest {
                framework_info: Some(v1::FrameworkInfo {
                    name: "raw".into(),
                    roles: vec!["*".into()],
                    failover_timeout_millis: 600_000,
                    ..Default::default()
                }),
                suppressed_roles: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        let first = tokio::time::timeout(WAIT, events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Some(v1::event::Kind::Subscribed(subscribed)) = first.kind else {
            panic!("expected SUBSCRIBED first, got {first:?}");
        };
        RawFramework {
            scheduler,
            operator: limits::operator_client(channel),
            framework_id: subscribed.framework_id,
            stream_id: subscribed.stream_id,
            events,
            offers: Vec::new(),
            updates: Vec::new(),
        }
    }

    /// Uploads a module into the master's store; returns its digest.
    pub(crate) async fn upload(&mut self, path: &str) -> String {
        let chunks = limits::module_chunks(&std::fs::read(path).unwrap());
        self.operator
            .upload_module(tokio_stream::iter(chunks))
            .await
            .unwrap()
            .into_inner()
            .digest
    }

    /// Reads one event: offers are kept, rescinds drop them, updates are recorded.
    async fn next_event(&mut self) -> Option<v1::TaskStatus> {
        let event = tokio::time::timeout(WAIT, self.events.message())
            .await
            .expect("the master sent nothing within 60 s")
            .unwrap()
            .expect("the master closed the framework's stream");
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => self.offers.extend(offers.offers),
            Some(v1::event::Kind::Rescind(rescind)) => {
                self.offers.retain(|o| o.id != rescind.offer_id)
            }
            Some(v1::event::Kind::Update(update)) => {
                let status = update.status.unwrap();
                self.updates.push(status.clone());
                return Some(status);
            }
            Some(v1::event::Kind::Error(error)) => panic!("the master failed us: {error:?}"),
            _ => {}
        }
        None
    }

    pub(crate) async fn next_update(&mut self) -> v1::TaskStatus {
        loop {
            if let Some(status) = self.next_event().await {
                return status;
            }
        }
    }

    /// Launches `task` on an outstanding offer (the newest; waits for one if none).
    pub(crate) async fn launch(&mut self, task: v1::TaskInfo) -> String {
        while self.offers.is_empty() {
            self.next_event().await;
        }
        let offer = self.offers.pop().unwrap();
        self.call(v1::call_request::Kind::Accept(v1::call_request::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::Operation {
                kind: Some(v1::operation::Kind::Launch(v1::operation::Launch {
                    tasks: vec![task],
                })),
            }],
            // The rest of the agent is offered again at once.
            filters: Some(v1::Filters {
                refuse_seconds: Some(0.0),
            }),
        }))
        .await;
        offer.agent_id
    }

    pub(crate) async fn acknowledge(&mut self, status: &v1::TaskStatus) {
        self.call(v1::call_request::Kind::Acknowledge(
            v1::call_request::Acknowledge {
                acks: vec![v1::Ack {
                    agent_id: status.agent_id.clone(),
                    task_id: status.task_id.clone(),
                    uuid: status.uuid.clone(),
                }],
            },
        ))
        .await;
    }

    async fn call(&mut self, kind: v1::call_request::Kind) {
        self.scheduler
            .call(v1::CallRequest {
                framework_id: self.framework_id.clone(),
                stream_id: self.stream_id.clone(),
                kind: Some(kind),
            })
            .await
            .unwrap();
    }
}

/// A small task running `module` with `args`.
pub(crate) fn task(id: &str, module: &str, args: &[&str]) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        module: Some(v1::ModuleRef {
            source: Some(v1::module_ref::Source::Digest(module.into())),
        }),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        resources: Some(v1::Resources {
            cpus_milli: 250,
            mem_bytes: 32 << 20,
            disk_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn state(status: &v1::TaskStatus) -> corral_proto::TaskState {
    corral_proto::TaskState::from_proto("state", status.state).unwrap()
}

pub(crate) fn reason(status: &v1::TaskStatus) -> corral_proto::Reason {
    corral_proto::Reason::from_proto("reason", status.reason).unwrap()
}
