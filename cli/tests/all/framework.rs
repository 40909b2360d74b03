//! A framework speaking the Scheduler API directly, so a test sees every update the master
//! sends, duplicates included (the SDK would hide them), and acknowledges exactly what it
//! chooses to.

use std::time::Duration;

use corral_proto::ProtoEnum;
use corral_proto::{limits, v1};
use tonic::transport::Channel;

/// Bound on every wait for the master.
const WAIT: Duration = Duration::from_secs(60);

pub(crate) struct RawFramework {
    scheduler: v1::scheduler_client::SchedulerClient<Channel>,
    operator: v1::operator_client::OperatorClient<Channel>,
    framework_id: String,
    stream_id: String,
    /// The epoch of the leader this stream is subscribed to (from SUBSCRIBED).
    pub(crate) epoch: u64,
    /// The master this stream is subscribed to.
    pub(crate) master: String,
    events: tonic::Streaming<v1::Event>,
    /// Offers received and neither used nor rescinded, oldest first.
    offers: Vec<v1::Offer>,
    /// Every update received, in order, duplicates included.
    pub(crate) updates: Vec<v1::TaskStatus>,
}

impl RawFramework {
    pub(crate) async fn subscribe(master: &str) -> Self {
        Self::try_subscribe(master, None)
            .await
            .unwrap_or_else(|status| panic!("subscribing to {master} failed: {status:?}"))
    }

    /// [`RawFramework::subscribe`] over a connection whose HTTP/2 receive windows are the
    /// protocol's minimum (64 KiB): a framework that stops reading stops the master's sends
    /// after that much, not after the megabytes a default client buffers.
    pub(crate) async fn subscribe_with_small_windows(master: &str) -> Self {
        let endpoint = limits::endpoint(format!("http://{master}"))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535);
        Self::subscribe_on(endpoint, master, None)
            .await
            .unwrap_or_else(|status| panic!("subscribing to {master} failed: {status:?}"))
    }

    /// Subscribes through whichever of `masters` leads (standbys refuse), polling until one
    /// does (bounded: 60 s).
    pub(crate) async fn subscribe_to_leader(masters: &[String]) -> Self {
        Self::subscribe_following(masters, None).await
    }

    /// After the stream broke (a master died or stepped down): subscribes again, with the
    /// same framework ID, through whichever of `masters` leads now (bounded: 60 s). Offers
    /// of the old stream are gone; updates recorded so far are kept.
    pub(crate) async fn resubscribe(&mut self, masters: &[String]) {
        let next = Self::subscribe_following(masters, Some(self.framework_id.clone())).await;
        assert_eq!(
            next.framework_id, self.framework_id,
            "re-subscribed as another framework"
        );
        let updates = std::mem::take(&mut self.updates);
        *self = next;
        self.updates = updates;
    }

    async fn subscribe_following(masters: &[String], id: Option<String>) -> Self {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for master in masters {
                // A master that does not answer at all (stopped) must not hold up the others.
                if let Ok(Ok(framework)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    Self::try_subscribe(master, id.clone()),
                )
                .await
                {
                    return framework;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no master of {masters:?} accepted a subscription within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_subscribe(master: &str, id: Option<String>) -> Result<Self, tonic::Status> {
        let endpoint = limits::endpoint(format!("http://{master}")).unwrap();
        Self::subscribe_on(endpoint, master, id).await
    }

    async fn subscribe_on(
        endpoint: tonic::transport::Endpoint,
        master: &str,
        id: Option<String>,
    ) -> Result<Self, tonic::Status> {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut scheduler = limits::scheduler_client(channel.clone());
        let mut events = scheduler
            .subscribe(v1::SubscribeRequest {
                framework_info: Some(v1::FrameworkInfo {
                    id,
                    name: "raw".into(),
                    roles: vec!["*".into()],
                    failover_timeout_millis: 600_000,
                    ..Default::default()
                }),
                suppressed_roles: vec![],
            })
            .await?
            .into_inner();
        let first = tokio::time::timeout(WAIT, events.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no SUBSCRIBED within 60 s"))??
            .ok_or_else(|| tonic::Status::unavailable("the stream ended before SUBSCRIBED"))?;
        let Some(v1::event::Kind::Subscribed(subscribed)) = first.kind else {
            panic!("expected SUBSCRIBED first, got {first:?}");
        };
        Ok(RawFramework {
            scheduler,
            operator: limits::operator_client(channel),
            framework_id: subscribed.framework_id,
            stream_id: subscribed.stream_id,
            epoch: subscribed.epoch,
            master: master.to_owned(),
            events,
            offers: Vec::new(),
            updates: Vec::new(),
        })
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
        self.try_next_event()
            .await
            .expect("the master closed the framework's stream")
    }

    /// [`RawFramework::next_event`], or `Err` when the stream broke or ended.
    async fn try_next_event(&mut self) -> Result<Option<v1::TaskStatus>, tonic::Status> {
        let event = tokio::time::timeout(WAIT, self.events.message())
            .await
            .expect("the master sent nothing within 60 s")?
            .ok_or_else(|| tonic::Status::unavailable("the stream ended"))?;
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => self.offers.extend(offers.offers),
            Some(v1::event::Kind::Rescind(rescind)) => {
                self.offers.retain(|o| o.id != rescind.offer_id)
            }
            Some(v1::event::Kind::Update(update)) => {
                let status = update.status.unwrap();
                self.updates.push(status.clone());
                return Ok(Some(status));
            }
            Some(v1::event::Kind::Error(error)) => panic!("the master failed us: {error:?}"),
            _ => {}
        }
        Ok(None)
    }

    /// The next update, or `Err` once the stream broke (the master died or stepped down).
    pub(crate) async fn try_next_update(&mut self) -> Result<v1::TaskStatus, tonic::Status> {
        loop {
            if let Some(status) = self.try_next_event().await? {
                return Ok(status);
            }
        }
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
        self.launch_all(vec![task]).await
    }

    /// Launches `tasks` together on an outstanding offer (the newest; waits for one if none).
    pub(crate) async fn launch_all(&mut self, tasks: Vec<v1::TaskInfo>) -> String {
        while self.offers.is_empty() {
            self.next_event().await;
        }
        let offer = self.offers.pop().unwrap();
        self.call(v1::call_request::Kind::Accept(v1::call_request::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::Operation {
                id: String::new(),
                kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })),
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

    /// Asks the master for the state of `tasks` (explicit reconciliation); answers arrive
    /// as updates.
    pub(crate) async fn reconcile(&mut self, tasks: &[&str]) {
        self.call(v1::call_request::Kind::Reconcile(
            v1::call_request::Reconcile {
                tasks: tasks
                    .iter()
                    .map(|t| v1::ReconcileTask {
                        task_id: (*t).to_owned(),
                        agent_id: None,
                    })
                    .collect(),
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

pub(crate) fn state(status: &v1::TaskStatus) -> corral_types::TaskState {
    corral_types::TaskState::from_proto("state", status.state).unwrap()
}

pub(crate) fn reason(status: &v1::TaskStatus) -> corral_types::Reason {
    corral_types::Reason::from_proto("reason", status.reason).unwrap()
}
