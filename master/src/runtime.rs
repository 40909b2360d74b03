//! The one tokio task that owns the [`MasterCore`]: it reads requests from the services,
//! feeds them to the core with the current time, and executes the effects — messages to agent
//! and framework streams, replies, registry writes, and timers (the periodic tick and the
//! allocation batching window).
//!
//! Registry writes are group-committed: while one batch is being made durable the next one
//! collects. Every effect the core emitted after a write waits, in order, until that write
//! is durable, so nothing that depends on a write (REGISTERED, SUBSCRIBED, a reply) leaves
//! before it; the core meanwhile keeps handling events. A failed write stops the runtime:
//! the master cannot promise what it would acknowledge.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_proto::{ServiceError, v1};
use corral_types::Timestamp;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::core::{ConnId, Effect, Event, FrameworkEvent, MasterCore, RegistryWrite, Reply};
use crate::metrics::MasterMetrics;
use crate::queue::{
    QueueReceiver, QueueSender, RequestReceiver, RequestSender, Sent, queue, requests,
};
use crate::store::{Registry, StoreError};
use crate::wire;

/// The shortest gap between two allocation cycles triggered by changes. A change after a quiet
/// spell is allocated at once (as soon as the requests already queued are handled, so a burst
/// that arrived together is one cycle); changes within this window of the last cycle wait for
/// its end and become one cycle and one OFFERS event.
const ALLOCATION_BATCH: Duration = Duration::from_millis(1);

/// Longest gap between ticks (heartbeat checks, offer and failover timeouts).
const MAX_TICK: Duration = Duration::from_millis(100);

/// Requests from the services that may wait for the core; a handler sending more waits
/// (back-pressure to its client) rather than growing the master's memory.
const REQUEST_QUEUE: usize = 16_384;

/// What an agent stream receives.
pub(crate) type AgentSender = QueueSender<v1::MasterMessage>;
/// What a framework stream receives.
pub(crate) type FrameworkSender = QueueSender<v1::Event>;
/// What an operator event stream receives (one encoding shared by every subscriber).
pub(crate) type ObserverSender = QueueSender<Arc<v1::OperatorEvent>>;

/// A new stream for the runtime to deliver to.
#[derive(Debug)]
pub(crate) enum Sink {
    Agent(ConnId, AgentSender),
    Framework(ConnId, FrameworkSender),
    /// An operator event stream, opened with a `Subscribe` request.
    Observer(ConnId, ObserverSender),
}

#[derive(Debug)]
pub(crate) struct Request {
    event: Event,
    reply: Option<oneshot::Sender<Reply>>,
    sink: Option<Sink>,
}

/// How services reach the core. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct CoreHandle {
    tx: RequestSender<Request>,
    next_conn: Arc<AtomicU64>,
    stream_queue: usize,
}

impl CoreHandle {
    /// A queue for a new agent or framework stream. Each holds at most the configured
    /// number of messages: a peer that stops reading is cut off when its queue is full.
    pub(crate) fn stream<T>(&self) -> (QueueSender<T>, QueueReceiver<T>) {
        queue(self.stream_queue)
    }

    /// A queue for a new operator event stream, of `limits::OPERATOR_EVENT_QUEUE` events.
    pub(crate) fn observer_stream(
        &self,
    ) -> (ObserverSender, QueueReceiver<Arc<v1::OperatorEvent>>) {
        queue(corral_proto::limits::OPERATOR_EVENT_QUEUE)
    }

    /// A fresh stream ID.
    pub(crate) fn conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves when the core task has stopped (the master is shutting down).
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends an event that needs no answer, waiting while the core's queue is full.
    pub(crate) async fn tell(&self, event: Event) {
        let _ = self
            .tx
            .send(Request {
                event,
                reply: None,
                sink: None,
            })
            .await;
    }

    /// [`CoreHandle::tell`] from where nothing can wait (a stream being dropped): on a
    /// task of its own when the queue is full, so the event is never lost.
    pub(crate) fn tell_later(&self, event: Event) {
        let request = Request {
            event,
            reply: None,
            sink: None,
        };
        if let Err(request) = self.tx.try_send(request)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let tx = self.tx.clone();
            runtime.spawn(async move {
                let _ = tx.send(request).await;
            });
        }
    }

    /// Sends an event (opening `sink` first) and waits for the core's answer.
    pub(crate) async fn ask(
        &self,
        event: Event,
        sink: Option<Sink>,
    ) -> Result<Reply, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                event,
                reply: Some(reply),
                sink,
            })
            .await
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())
    }

    /// Sends an event that opens a stream, without waiting for the core's answer.
    pub(crate) async fn open(&self, event: Event, sink: Sink) {
        let _ = self
            .tx
            .send(Request {
                event,
                reply: None,
                sink: Some(sink),
            })
            .await;
    }
}

fn shutting_down() -> ServiceError {
    ServiceError::Unavailable("the master stopped serving (shutting down or stepping down)".into())
}

/// Starts the core task. It runs until `shutdown` fires or every handle is dropped (`Ok`), or
/// a registry write fails (`Err`); then it drops every stream sender, which ends the streams.
/// Each agent or framework stream queues at most `stream_queue` messages.
pub(crate) fn spawn(
    core: MasterCore,
    registry: Arc<dyn Registry>,
    stream_queue: usize,
    shutdown: oneshot::Receiver<()>,
) -> (CoreHandle, tokio::task::JoinHandle<Result<(), StoreError>>) {
    let (tx, rx) = requests(REQUEST_QUEUE);
    let handle = CoreHandle {
        tx,
        next_conn: Arc::new(AtomicU64::new(1)),
        stream_queue: stream_queue.max(2),
    };
    let task = tokio::spawn(run(core, registry, rx, shutdown));
    (handle, task)
}

type Commit = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>>;

/// Registry writes in flight and the effects waiting for them.
struct Durability {
    registry: Arc<dyn Registry>,
    metrics: Arc<MasterMetrics>,
    /// The batch collecting now, and its number.
    batch: Vec<RegistryWrite>,
    batch_no: u64,
    /// The number of the batch holding the latest write emitted.
    last_write: u64,
    /// The latest batch known durable.
    durable: u64,
    in_flight: Option<Commit>,
    /// Effects waiting for batch `.0`, in emission order, with the reply they answer.
    held: VecDeque<(u64, Effect, Option<oneshot::Sender<Reply>>)>,
}

impl Durability {
    fn new(registry: Arc<dyn Registry>, metrics: Arc<MasterMetrics>) -> Self {
        Self {
            registry,
            metrics,
            batch: Vec::new(),
            batch_no: 1,
            last_write: 0,
            durable: 0,
            in_flight: None,
            held: VecDeque::new(),
        }
    }

    /// Nothing emitted so far is waiting for a write.
    fn clear(&self) -> bool {
        self.held.is_empty() && self.durable >= self.last_write
    }

    fn write(&mut self, w: RegistryWrite) {
        self.batch.push(w);
        self.last_write = self.batch_no;
    }

    /// Starts committing the collected batch if none is in flight.
    fn flush(&mut self) {
        if self.in_flight.is_some() || self.batch.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.batch);
        let no = self.batch_no;
        self.batch_no += 1;
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        self.in_flight = Some(Box::pin(async move {
            let started = Instant::now();
            registry.commit(writes).await.map(|()| {
                metrics
                    .registry_write_seconds
                    .observe(started.elapsed().as_secs_f64());
                no
            })
        }));
    }

    /// Resolves when the batch in flight is durable (never, if none is).
    async fn committed(&mut self) -> Result<u64, StoreError> {
        match self.in_flight.as_mut() {
            Some(commit) => commit.await,
            None => std::future::pending().await,
        }
    }
}

struct Runtime {
    core: MasterCore,
    start: Instant,
    agents: HashMap<ConnId, AgentSender>,
    frameworks: HashMap<ConnId, FrameworkSender>,
    /// Operator event streams, and the last changes each started after.
    observers: HashMap<ConnId, (ObserverSender, u64)>,
    /// Streams cut off because their peer stopped reading, for the core to hear of.
    cut_off: Vec<Event>,
    /// When the pending change-triggered allocation may run, if one is pending.
    allocation: Option<Instant>,
    /// When the last change-triggered allocation ran.
    last_allocation: Option<Instant>,
    durability: Durability,
}

async fn run(
    core: MasterCore,
    registry: Arc<dyn Registry>,
    mut rx: RequestReceiver<Request>,
    mut shutdown: oneshot::Receiver<()>,
) -> Result<(), StoreError> {
    let tick_every = (core.config().agent_heartbeat_interval / 2)
        .min(MAX_TICK)
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = core.config().metrics.clone();
    let mut rt = Runtime {
        core,
        start: Instant::now(),
        agents: HashMap::new(),
        frameworks: HashMap::new(),
        observers: HashMap::new(),
        cut_off: Vec::new(),
        allocation: None,
        last_allocation: None,
        durability: Durability::new(registry, metrics),
    };
    loop {
        // A due cycle runs once the requests already queued are handled (one burst, one cycle).
        if rt.allocation.is_some_and(|at| at <= Instant::now()) && rx.is_empty() {
            rt.allocate();
            rt.settle();
            rt.durability.flush();
            continue;
        }
        let allocation = async {
            match rt.allocation {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            req = rx.recv() => match req {
                Some(req) => rt.request(req),
                None => break,
            },
            _ = tick.tick() => rt.event(Event::Tick, None),
            () = allocation => rt.allocate(),
            done = rt.durability.committed() => match done {
                Ok(no) => rt.durable(no),
                Err(e) => {
                    tracing::error!(error = %e, "registry write failed; the master stops serving");
                    return Err(e);
                }
            },
        }
        rt.settle();
        rt.durability.flush();
    }
    tracing::debug!("master core stopped");
    Ok(())
}

impl Runtime {
    fn now(&self) -> Timestamp {
        let ms = self.start.elapsed().as_millis();
        Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Tells the core of the streams cut off while executing effects (which may cut off
    /// more).
    fn settle(&mut self) {
        while !self.cut_off.is_empty() {
            for event in std::mem::take(&mut self.cut_off) {
                self.event(event, None);
            }
        }
    }

    fn allocate(&mut self) {
        self.allocation = None;
        let started = Instant::now();
        self.last_allocation = Some(started);
        self.event(Event::Allocate, None);
        self.core
            .config()
            .metrics
            .allocation_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    fn request(&mut self, req: Request) {
        match req.sink {
            Some(Sink::Agent(conn, tx)) => {
                self.agents.insert(conn, tx);
            }
            Some(Sink::Framework(conn, tx)) => {
                self.frameworks.insert(conn, tx);
            }
            Some(Sink::Observer(conn, tx)) => {
                // It gets the changes the core emits from now on, held or not.
                let after = self.core.changes_emitted();
                self.observers.insert(conn, (tx, after));
            }
            None => {}
        }
        self.event(req.event, req.reply);
    }

    fn event(&mut self, event: Event, reply: Option<oneshot::Sender<Reply>>) {
        let now = self.now();
        let mut reply = reply;
        for effect in self.core.handle(event, now) {
            match effect {
                Effect::Persist(w) => self.durability.write(w),
                // Scheduling a cycle announces nothing; its offers wait like any effect.
                Effect::AllocateSoon => self.execute(Effect::AllocateSoon, None),
                Effect::Reply(r) if self.durability.clear() => {
                    self.execute(Effect::Reply(r), reply.take());
                }
                Effect::Reply(r) => {
                    let wait = self.durability.last_write;
                    self.durability
                        .held
                        .push_back((wait, Effect::Reply(r), reply.take()));
                }
                effect if self.durability.clear() => self.execute(effect, None),
                effect => {
                    let wait = self.durability.last_write;
                    self.durability.held.push_back((wait, effect, None));
                }
            }
        }
    }

    /// Batch `no` is durable: release what waited for it.
    fn durable(&mut self, no: u64) {
        self.durability.in_flight = None;
        self.durability.durable = no;
        while self
            .durability
            .held
            .front()
            .is_some_and(|(wait, _, _)| *wait <= no)
        {
            if let Some((_, effect, reply)) = self.durability.held.pop_front() {
                self.execute(effect, reply);
            }
        }
    }

    fn execute(&mut self, effect: Effect, reply: Option<oneshot::Sender<Reply>>) {
        match effect {
            Effect::ToAgent { conn, command } => {
                let message = wire::master_message(self.core.config(), command);
                if let Some(Sent::CutOff { unread }) =
                    self.agents.get(&conn).map(|tx| tx.send(message))
                {
                    self.agents.remove(&conn);
                    tracing::warn!(
                        conn,
                        unread,
                        "agent stream cut off: the agent stopped reading; it must reconnect"
                    );
                    self.cut_off.push(Event::AgentDisconnected { conn });
                }
            }
            Effect::ToFramework { conn, event } => {
                let Some(tx) = self.frameworks.get(&conn) else {
                    return;
                };
                let again = matches!(event, FrameworkEvent::Redelivery(_));
                let event = wire::scheduler_event(self.core.config(), event);
                if again {
                    // Left out while the stream is half full: it comes again.
                    if !tx.send_if_room(event) {
                        tracing::trace!(conn, "redelivery left out: the framework is behind");
                    }
                } else if let Sent::CutOff { unread } = tx.send(event) {
                    self.frameworks.remove(&conn);
                    tracing::warn!(
                        conn,
                        unread,
                        "framework stream cut off: the framework stopped reading; its \
                         unacknowledged updates wait for it to re-subscribe"
                    );
                    self.cut_off.push(Event::FrameworkDisconnected { conn });
                }
            }
            Effect::CloseAgent { conn, error } => {
                if let Some(tx) = self.agents.remove(&conn)
                    && let Some(e) = error
                {
                    tx.end(e.into());
                }
            }
            Effect::CloseFramework { conn } => {
                self.frameworks.remove(&conn);
            }
            Effect::AllocateSoon => {
                if self.allocation.is_none() {
                    let earliest = self.last_allocation.map(|at| at + ALLOCATION_BATCH);
                    self.allocation =
                        Some(earliest.map_or_else(Instant::now, |e| e.max(Instant::now())));
                }
            }
            Effect::Reply(r) => {
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
            }
            // Not held: `event` takes writes before anything waits.
            Effect::Persist(w) => self.durability.write(w),
            Effect::Changes { seq, changes } => self.observed(seq, &changes),
        }
    }

    /// Sends changes to the event streams that started before them; a stream whose client is
    /// gone or fell behind is dropped, and the core stops noting changes when none is left.
    fn observed(&mut self, seq: u64, changes: &[crate::core::Change]) {
        let events: Vec<Arc<v1::OperatorEvent>> = changes
            .iter()
            .map(|c| Arc::new(v1::OperatorEvent::from(c)))
            .collect();
        self.observers.retain(|conn, (tx, after)| {
            if seq <= *after {
                return true;
            }
            events.iter().all(|e| match tx.send(e.clone()) {
                Sent::Queued => true,
                Sent::Closed => false,
                Sent::CutOff { unread } => {
                    tracing::warn!(
                        conn,
                        unread,
                        "operator event stream cut off: it fell behind"
                    );
                    false
                }
            })
        });
        if self.observers.is_empty() {
            self.core.unwatch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AgentInfo, CoreConfig, FrameworkInfo, OperatorRequest, RegistryWrite};
    use crate::store::testing::GatedRegistry;
    use corral_types::{FrameworkState, Resources, Role, Weight};
    use tonic::Status;

    fn config() -> CoreConfig {
        CoreConfig {
            master_id: "m".into(),
            epoch: 1,
            address: "127.0.0.1:5050".into(),
            started_at_unix_millis: 0,
            agent_heartbeat_interval: Duration::from_secs(1),
            // Long enough that the silent test agent is not lost meanwhile.
            agent_timeout: Duration::from_secs(3600),
            agent_reregister_timeout: Duration::from_secs(3600),
            framework_heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            allocation_interval: Duration::from_secs(1),
            max_output_bytes: 1 << 30,
            metrics: Arc::default(),
        }
    }

    fn kind(e: Option<Result<v1::Event, Status>>) -> v1::event::Kind {
        e.unwrap().unwrap().kind.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn offers_follow_changes_within_the_batching_window_and_heartbeats_flow() {
        let (stop, stopped) = oneshot::channel();
        let registry = Arc::new(GatedRegistry::open());
        let (core, task) = spawn(MasterCore::new(config()), registry.clone(), 64, stopped);
        let start = Instant::now();

        let (atx, mut arx) = core.stream();
        let info = AgentInfo {
            resources: Resources::new().with_cpus_milli(1000).with_mem_mib(64),
            ..AgentInfo::default()
        };
        core.open(
            Event::AgentRegister {
                conn: 1,
                info,
                cached_modules: vec![],
            },
            Sink::Agent(1, atx),
        )
        .await;
        let registered = arx.recv().await.unwrap().unwrap();
        assert!(matches!(
            registered.kind,
            Some(v1::master_message::Kind::Registered(_))
        ));

        let (ftx, mut frx) = core.stream();
        let info = FrameworkInfo {
            id: None,
            name: "f".into(),
            user: String::new(),
            roles: vec![Role::default_role()],
            failover_timeout: Duration::ZERO,
            labels: Default::default(),
        };
        let reply = core
            .ask(
                Event::Subscribe {
                    conn: 2,
                    info,
                    suppressed: vec![],
                },
                Some(Sink::Framework(2, ftx)),
            )
            .await
            .unwrap();
        assert_eq!(reply, Reply::Done(Ok(())));
        assert!(matches!(
            kind(frx.recv().await),
            v1::event::Kind::Subscribed(_)
        ));
        // The registration was allocated at once (after a quiet spell); the subscription came
        // within the batching window of that cycle, so its offers wait for the window's end.
        assert!(matches!(kind(frx.recv().await), v1::event::Kind::Offers(_)));
        assert_eq!(start.elapsed(), ALLOCATION_BATCH);
        // Then a heartbeat every 15 s.
        assert!(matches!(
            kind(frx.recv().await),
            v1::event::Kind::Heartbeat(_)
        ));
        assert!(start.elapsed() >= Duration::from_secs(15));

        // The agent and the framework were recorded, in one group commit or two.
        let written: Vec<RegistryWrite> = registry.batches().into_iter().flatten().collect();
        assert!(matches!(
            written[..],
            [RegistryWrite::Agent(_), RegistryWrite::Framework(_)]
        ));

        // Stopping the core ends every stream.
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(frx.recv().await.is_none());
        assert!(arx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_framework_that_stops_reading_is_cut_off_and_disconnected_in_the_core() {
        let (_stop, stopped) = oneshot::channel();
        let registry = Arc::new(GatedRegistry::open());
        let (core, _task) = spawn(MasterCore::new(config()), registry, 8, stopped);
        let subscribe = |conn| Event::Subscribe {
            conn,
            info: FrameworkInfo {
                id: None,
                name: "f".into(),
                user: String::new(),
                roles: vec![Role::default_role()],
                failover_timeout: Duration::from_secs(3600),
                labels: Default::default(),
            },
            suppressed: vec![],
        };
        let (slow_tx, mut slow) = core.stream();
        let reply = core
            .ask(subscribe(1), Some(Sink::Framework(1, slow_tx)))
            .await;
        assert_eq!(reply.unwrap(), Reply::Done(Ok(())));
        let (live_tx, mut live) = core.stream();
        let reply = core
            .ask(subscribe(2), Some(Sink::Framework(2, live_tx)))
            .await;
        assert_eq!(reply.unwrap(), Reply::Done(Ok(())));
        assert!(matches!(
            kind(live.recv().await),
            v1::event::Kind::Subscribed(_)
        ));

        // A heartbeat every 15 s: the reading framework sees them all; the other's queue of
        // 8 fills (SUBSCRIBED and 6 heartbeats), and the last slot ends its stream.
        for _ in 0..10 {
            assert!(matches!(
                kind(live.recv().await),
                v1::event::Kind::Heartbeat(_)
            ));
        }
        assert!(matches!(
            kind(slow.recv().await),
            v1::event::Kind::Subscribed(_)
        ));
        for _ in 0..6 {
            assert!(matches!(
                kind(slow.recv().await),
                v1::event::Kind::Heartbeat(_)
            ));
        }
        let end = slow.recv().await.unwrap().unwrap_err();
        assert_eq!(end.code(), tonic::Code::ResourceExhausted);
        assert!(
            end.message().contains("7 messages were left unread"),
            "{end}"
        );
        assert!(slow.recv().await.is_none());

        // The core treats it as a disconnection (it may re-subscribe within its failover
        // timeout); the other framework is untouched.
        let reply = core
            .ask(
                Event::Operator(OperatorRequest::ListFrameworks {
                    include_completed: true,
                }),
                None,
            )
            .await
            .unwrap();
        let Reply::Operator(Ok(crate::core::OperatorResponse::Frameworks(frameworks))) = reply
        else {
            panic!("{reply:?}");
        };
        let states: Vec<_> = frameworks.iter().map(|f| f.state).collect();
        assert_eq!(
            states,
            [FrameworkState::Disconnected, FrameworkState::Active]
        );
    }

    fn set_weight(role: &str, w: f64) -> Event {
        Event::Operator(OperatorRequest::SetWeight {
            role: Role::new(role).unwrap(),
            weight: Weight::new(w).unwrap(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn replies_wait_until_their_write_is_durable_and_writes_group_commit() {
        let (_stop, stopped) = oneshot::channel();
        let registry = Arc::new(GatedRegistry::closed());
        let (core, _task) = spawn(MasterCore::new(config()), registry.clone(), 64, stopped);

        let first = tokio::spawn({
            let core = core.clone();
            async move { core.ask(set_weight("a", 2.0), None).await }
        });
        // A read that follows the write waits for it too: nothing not durable is shown.
        let read = tokio::spawn({
            let core = core.clone();
            async move {
                core.ask(Event::Operator(OperatorRequest::GetRoles), None)
                    .await
            }
        });
        let second = tokio::spawn({
            let core = core.clone();
            async move { core.ask(set_weight("b", 3.0), None).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!first.is_finished() && !read.is_finished() && !second.is_finished());
        assert!(registry.batches().is_empty());

        // The first batch becomes durable: its reply and the read go; the second write,
        // collected while the first was in flight, is the next batch.
        registry.permits.add_permits(1);
        assert_eq!(
            first.await.unwrap(),
            Ok(Reply::Operator(Ok(crate::core::OperatorResponse::Done)))
        );
        let roles = read.await.unwrap().unwrap();
        assert!(matches!(
            roles,
            Reply::Operator(Ok(crate::core::OperatorResponse::Roles(_)))
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!second.is_finished());
        registry.permits.add_permits(1);
        assert!(second.await.unwrap().is_ok());
        let batches = registry.batches();
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert!(
            matches!(&batches[1][..], [RegistryWrite::Weight { role, .. }] if role.as_str() == "b")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_stops_the_core_and_its_reply_is_never_sent() {
        let (_stop, stopped) = oneshot::channel();
        let registry = Arc::new(GatedRegistry::open());
        registry.fail.store(true, Ordering::SeqCst);
        let (core, task) = spawn(MasterCore::new(config()), registry.clone(), 64, stopped);
        let err = core.ask(set_weight("a", 2.0), None).await.unwrap_err();
        assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_subscriber_that_stops_reading_is_cut_off_and_the_others_go_on() {
        let (_stop, stopped) = oneshot::channel();
        let registry = Arc::new(GatedRegistry::open());
        let (core, _task) = spawn(MasterCore::new(config()), registry, 64, stopped);
        let subscribe = || Event::Operator(OperatorRequest::Subscribe { max_tasks: 0 });
        // Room for three events and the end.
        let (slow_tx, mut slow) = queue(4);
        core.ask(subscribe(), Some(Sink::Observer(1, slow_tx)))
            .await
            .unwrap();
        let (tx, mut reader) = queue(1024);
        core.ask(subscribe(), Some(Sink::Observer(2, tx)))
            .await
            .unwrap();

        let mut agents = Vec::new();
        for conn in 10..20 {
            let (atx, arx) = core.stream();
            agents.push(arx);
            let info = AgentInfo {
                resources: Resources::new().with_cpus_milli(1000).with_mem_mib(64),
                ..AgentInfo::default()
            };
            let event = Event::AgentRegister {
                conn,
                info,
                cached_modules: vec![],
            };
            core.open(event, Sink::Agent(conn, atx)).await;
        }
        // The reader sees every agent added, in order.
        for _ in 0..10 {
            let event = reader.recv().await.unwrap().unwrap();
            assert!(
                matches!(event.event, Some(v1::operator_event::Event::AgentAdded(_))),
                "{event:?}"
            );
        }
        // The one that never read: what fitted, then the end, saying why.
        let mut fitted = 0;
        let status = loop {
            match slow.recv().await.unwrap() {
                Ok(_) => fitted += 1,
                Err(status) => break status,
            }
        };
        assert_eq!(fitted, 3);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(slow.recv().await.is_none());
    }
}
