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
use crate::event_batch::{EventBatch, EventBatchBuilder};
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

/// Operator events are queued to subscribers in batches: when the core has nothing more to
/// handle, or once this many wait, or once the oldest has waited [`OBSERVED_WAIT`]. One wake
/// of a subscriber's stream then writes many events, not one each.
const OBSERVED_BATCH: usize = 512;
const OBSERVED_WAIT: Duration = Duration::from_millis(2);

/// Requests from the services that may wait for the core; a handler sending more waits
/// (back-pressure to its client) rather than growing the master's memory.
const REQUEST_QUEUE: usize = 16_384;

/// What an agent stream receives.
pub(crate) type AgentSender = QueueSender<v1::MasterMessage>;
/// What a framework stream receives.
pub(crate) type FrameworkSender = QueueSender<v1::Event>;
/// What an operator event stream receives: batches encoded once for every subscriber.
pub(crate) type ObserverSender = QueueSender<Delivery>;

/// A batch of operator events for one subscriber: its events from `from` on (those before
/// came before it subscribed).
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) batch: Arc<EventBatch>,
    pub(crate) from: usize,
}

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
    pub(crate) fn observer_stream(&self) -> (ObserverSender, QueueReceiver<Delivery>) {
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
    /// Events for them not queued yet, and since when the oldest waits.
    observed: EventBatchBuilder,
    observed_since: Option<Instant>,
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
        observed: EventBatchBuilder::default(),
        observed_since: None,
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
            rt.flush_observed(false);
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
        rt.flush_observed(!rx.is_empty());
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
            Effect::Changes { seq, changes } => self.observed(seq, changes),
        }
    }

    /// Encodes changes for the event streams, queued to them in batches (see
    /// [`OBSERVED_BATCH`]); the core stops noting changes when no stream is left.
    fn observed(&mut self, seq: u64, changes: Vec<crate::core::Change>) {
        if self.observers.is_empty() {
            self.core.unwatch();
            return;
        }
        for change in changes {
            self.observed_since.get_or_insert_with(Instant::now);
            self.observed
                .push_with(seq, |event| wire::write_change(event, change));
            if self.observed.len() >= OBSERVED_BATCH {
                self.flush_observed(false);
            }
        }
    }

    /// Queues the events waiting to every stream that started before them, unless `busy`
    /// (more requests wait) and the batch may wait longer; a stream whose client is gone or
    /// fell behind is dropped, and the core stops noting changes when none is left.
    fn flush_observed(&mut self, busy: bool) {
        let Some(since) = self.observed_since else {
            return;
        };
        if busy && since.elapsed() < OBSERVED_WAIT {
            return;
        }
        self.observed_since = None;
        let batch = Arc::new(self.observed.finish());
        let len = batch.events().len();
        self.observers.retain(|conn, (tx, after)| {
            let from = batch.first_after(*after);
            if from == len {
                return true;
            }
            let delivery = Delivery {
                batch: batch.clone(),
                from,
            };
            match tx.send_counted(delivery, len - from) {
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
            }
        });
        if self.observers.is_empty() {
            self.core.unwatch();
        }
    }
}

#[cfg(test)]
mod tests;
