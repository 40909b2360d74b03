//! The one tokio task that owns the [`MasterCore`]: it reads requests from the services,
//! feeds them to the core with the current time, and executes the effects — messages to agent
//! and framework streams, replies, and timers (the periodic tick and the allocation batching
//! window).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_allocator::Timestamp;
use corral_proto::{ServiceError, v1};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;

use crate::core::{ConnId, Effect, Event, MasterCore, Reply};

/// The shortest gap between two allocation cycles triggered by changes. A change after a quiet
/// spell is allocated at once (as soon as the requests already queued are handled, so a burst
/// that arrived together is one cycle); changes within this window of the last cycle wait for
/// its end and become one cycle and one OFFERS event.
const ALLOCATION_BATCH: Duration = Duration::from_millis(1);

/// Longest gap between ticks (heartbeat checks, offer and failover timeouts).
const MAX_TICK: Duration = Duration::from_millis(100);

/// What an agent stream receives.
pub(crate) type AgentSender = mpsc::UnboundedSender<Result<v1::MasterMessage, Status>>;
/// What a framework stream receives.
pub(crate) type FrameworkSender = mpsc::UnboundedSender<Result<v1::Event, Status>>;

/// A new stream for the runtime to deliver to.
#[derive(Debug)]
pub(crate) enum Sink {
    Agent(ConnId, AgentSender),
    Framework(ConnId, FrameworkSender),
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
    tx: mpsc::UnboundedSender<Request>,
    next_conn: Arc<AtomicU64>,
}

impl CoreHandle {
    /// A fresh stream ID.
    pub(crate) fn conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves when the core task has stopped (the master is shutting down).
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends an event that needs no answer.
    pub(crate) fn tell(&self, event: Event) {
        let _ = self.tx.send(Request {
            event,
            reply: None,
            sink: None,
        });
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
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())
    }

    /// Sends an event that opens a stream, without waiting.
    pub(crate) fn open(&self, event: Event, sink: Sink) {
        let _ = self.tx.send(Request {
            event,
            reply: None,
            sink: Some(sink),
        });
    }
}

fn shutting_down() -> ServiceError {
    ServiceError::Unavailable("the master is shutting down".into())
}

/// Starts the core task. It runs until `shutdown` fires or every handle is dropped; then it
/// drops every stream sender, which ends the streams.
pub(crate) fn spawn(
    core: MasterCore,
    shutdown: oneshot::Receiver<()>,
) -> (CoreHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = CoreHandle {
        tx,
        next_conn: Arc::new(AtomicU64::new(1)),
    };
    let task = tokio::spawn(run(core, rx, shutdown));
    (handle, task)
}

struct Runtime {
    core: MasterCore,
    start: Instant,
    agents: HashMap<ConnId, AgentSender>,
    frameworks: HashMap<ConnId, FrameworkSender>,
    /// When the pending change-triggered allocation may run, if one is pending.
    allocation: Option<Instant>,
    /// When the last change-triggered allocation ran.
    last_allocation: Option<Instant>,
}

async fn run(
    core: MasterCore,
    mut rx: mpsc::UnboundedReceiver<Request>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let tick_every = (core.config().agent_heartbeat_interval / 2)
        .min(MAX_TICK)
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rt = Runtime {
        core,
        start: Instant::now(),
        agents: HashMap::new(),
        frameworks: HashMap::new(),
        allocation: None,
        last_allocation: None,
    };
    loop {
        if rt.allocation.is_some_and(|at| at <= Instant::now()) && rx.is_empty() {
            rt.allocate();
            continue;
        }
        let allocation = async {
            match rt.allocation {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            req = rx.recv() => match req {
                Some(req) => rt.request(req),
                None => break,
            },
            _ = tick.tick() => rt.event(Event::Tick, None),
            () = allocation => rt.allocate(),
        }
    }
    tracing::debug!("master core stopped");
}

impl Runtime {
    fn now(&self) -> Timestamp {
        let ms = self.start.elapsed().as_millis();
        Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn allocate(&mut self) {
        self.allocation = None;
        self.last_allocation = Some(Instant::now());
        self.event(Event::Allocate, None);
    }

    fn request(&mut self, req: Request) {
        match req.sink {
            Some(Sink::Agent(conn, tx)) => {
                self.agents.insert(conn, tx);
            }
            Some(Sink::Framework(conn, tx)) => {
                self.frameworks.insert(conn, tx);
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
                Effect::ToAgent { conn, msg } => {
                    if let Some(tx) = self.agents.get(&conn) {
                        let _ = tx.send(Ok(msg));
                    }
                }
                Effect::ToFramework { conn, event } => {
                    if let Some(tx) = self.frameworks.get(&conn) {
                        let _ = tx.send(Ok(event));
                    }
                }
                Effect::CloseAgent { conn, error } => {
                    if let Some(tx) = self.agents.remove(&conn)
                        && let Some(e) = error
                    {
                        let _ = tx.send(Err(e.into()));
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
                    if let Some(tx) = reply.take() {
                        let _ = tx.send(r);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AgentInfo, CoreConfig, FrameworkInfo};
    use corral_allocator::{Resources, Role};

    fn config() -> CoreConfig {
        CoreConfig {
            master_id: "m".into(),
            epoch: 1,
            address: "127.0.0.1:5050".into(),
            started_at_unix_millis: 0,
            agent_heartbeat_interval: Duration::from_secs(1),
            // Long enough that the silent test agent is not lost meanwhile.
            agent_timeout: Duration::from_secs(3600),
            framework_heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            allocation_interval: Duration::from_secs(1),
        }
    }

    fn kind(e: Option<Result<v1::Event, Status>>) -> v1::event::Kind {
        e.unwrap().unwrap().kind.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn offers_follow_changes_within_the_batching_window_and_heartbeats_flow() {
        let (stop, stopped) = oneshot::channel();
        let (core, task) = spawn(MasterCore::new(config()), stopped);
        let start = Instant::now();

        let (atx, mut arx) = mpsc::unbounded_channel();
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
        );
        let registered = arx.recv().await.unwrap().unwrap();
        assert!(matches!(
            registered.kind,
            Some(v1::master_message::Kind::Registered(_))
        ));

        let (ftx, mut frx) = mpsc::unbounded_channel();
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

        // Stopping the core ends every stream.
        stop.send(()).unwrap();
        task.await.unwrap();
        assert!(frx.recv().await.is_none());
        assert!(arx.recv().await.is_none());
    }
}
