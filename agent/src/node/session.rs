//! A session with the master: one `AgentLink::Connect` stream, from the agent's first message
//! to the stream's end. What the agent says on it, and what it does with what it hears.
//!
//! ```text
//!   attach ─► Register, or ReRegister (running tasks, durable unacknowledged updates)
//!     │         snapshot taken and session installed under one lock: no update falls between
//!     ▼
//!   converse ─┬─ up:   status updates as they become durable, module notices,
//!             │        heartbeats once registered, resends of unacknowledged updates
//!             └─ down: fence (epoch) ─► handle: Registered, launch, kill, acknowledge, shutdown
//!     │ the stream ends or fails, or the agent stops
//!     ▼
//!   detach ─► later updates wait in the outbox for the next session
//! ```
//!
//! The link ([`super::link`]) decides which master to talk to and when; everything said
//! within one connection is here.
//!
//! What the agent sends waits in a bounded queue ([`OUTBOUND_CAPACITY`]) until the stream
//! takes it. Nothing waits for room: a message that does not fit means the master stopped
//! reading, and ends the session (the link reconnects). Nothing is lost by that: status
//! updates stay in the outbox until acknowledged, and the next session's ReRegister carries
//! them all, in order. Because the session is over from the first refusal, no later message
//! can reach the master ahead of the refused one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use corral_proto::auth::Conn;
use corral_proto::follow::{self, Follower};
use corral_proto::{ProtoEnum, limits, status::leader_hint, v1};
use corral_types::{AgentId, Reason};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_stream::wrappers::ReceiverStream;

use super::checkpoint::{MAX_BATCH, Op};
use super::link::LinkConfig;
use super::outbox::Outbox;
use super::status::TaskKey;
use super::table::TaskTable;
use super::tasks::Node;

/// How a session ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Stop for good (shutdown asked locally or by the master).
    Stop,
    /// Try the next master, as the shared policy says.
    Next(follow::Ended),
}

/// Messages queued for the master before a session is given up on. A master that reads
/// drains the queue as fast as the network allows, so it fills only when the master (or the
/// path to it) stopped reading; buffering more would only grow the agent's memory. It is
/// sized for the largest burst the agent makes at once: a checkpoint commit releases the
/// updates of at most [`MAX_BATCH`] ops (each update takes two), so this holds four such
/// bursts; resends take at most half the room left, so they cannot cut off a master that
/// keeps reading.
pub(crate) const OUTBOUND_CAPACITY: usize = 2 * MAX_BATCH;

/// What the agent sends on a session, and the session's channel (module fetches use it).
/// Sending never waits: see [`Outbound::send`].
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    tx: mpsc::Sender<v1::AgentMessage>,
    channel: Conn,
    overflow: Arc<Overflow>,
}

/// Set once a message did not fit; the session loop waits on it.
#[derive(Debug, Default)]
struct Overflow {
    happened: AtomicBool,
    notify: Notify,
}

impl Outbound {
    fn new(channel: Conn, capacity: usize) -> (Self, mpsc::Receiver<v1::AgentMessage>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::default();
        let outbound = Self {
            tx,
            channel,
            overflow,
        };
        (outbound, rx)
    }

    /// Queues `message` for the master without waiting; `false` if the session is over. A
    /// message that does not fit ends the session: it and everything after it are refused.
    pub(crate) fn send(&self, message: v1::AgentMessage) -> bool {
        if self.overflow.happened.load(Ordering::Acquire) {
            return false;
        }
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if !self.overflow.happened.swap(true, Ordering::AcqRel) {
                    // A permit is kept if the session loop is not waiting yet.
                    self.overflow.notify.notify_one();
                }
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// How many more messages fit now.
    pub(crate) fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// The channel to the session's master.
    pub(crate) fn channel(&self) -> &Conn {
        &self.channel
    }

    /// Completes once a message did not fit.
    async fn overflowed(&self) {
        self.overflow.notify.notified().await;
    }

    fn same(&self, other: &Outbound) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// Sends `messages` in order on the current session, if any. The first that is refused ends
/// the session here and now, so nothing queued after it goes out on it.
pub(crate) fn deliver(
    session: &mut Option<Outbound>,
    messages: impl IntoIterator<Item = v1::AgentMessage>,
) {
    let Some(outbound) = session else {
        return;
    };
    for message in messages {
        if !outbound.send(message) {
            *session = None;
            return;
        }
    }
}

/// Resends durable unacknowledged updates, at most half the room left in the queue: a resend
/// repeats what the master already has, so it must never crowd out new updates. The outbox
/// goes on where this stopped next time.
fn resend(outbox: &mut Outbox, outbound: &Outbound) {
    for status in outbox.resend(outbound.room() / 2) {
        if !outbound.send(status_message(status)) {
            return;
        }
    }
}

/// Talks with the master at `address` over `channel` until the stream ends, it is stopped, or
/// the master says Shutdown.
pub(crate) async fn run(
    node: &Arc<Node>,
    config: &LinkConfig,
    address: &str,
    channel: Conn,
    stop: &mut watch::Receiver<bool>,
    follower: &mut Follower,
) -> Ended {
    let (outbound, rx) = Outbound::new(channel.clone(), OUTBOUND_CAPACITY);
    node.attach(&outbound, &config.agent_info);
    let ended = converse(
        node, config, address, channel, &outbound, rx, stop, follower,
    )
    .await;
    node.detach(&outbound);
    ended
}

#[allow(
    clippy::too_many_arguments,
    reason = "one session's parts, passed once from `run`"
)]
async fn converse(
    node: &Arc<Node>,
    config: &LinkConfig,
    address: &str,
    channel: Conn,
    outbound: &Outbound,
    rx: mpsc::Receiver<v1::AgentMessage>,
    stop: &mut watch::Receiver<bool>,
    follower: &mut Follower,
) -> Ended {
    let mut client = limits::agent_link_client(channel);
    let lost = |status: &tonic::Status| match leader_hint(status) {
        Some(leader) => Ended::Next(follow::Ended::Redirect(leader.to_owned())),
        None => {
            tracing::info!(master = %address, code = ?status.code(), message = status.message(), "master link lost");
            Ended::Next(follow::Ended::Lost)
        }
    };
    let mut inbound = tokio::select! {
        response = client.connect(ReceiverStream::new(rx)) => match response {
            Ok(response) => response.into_inner(),
            Err(status) => return lost(&status),
        },
        _ = stop.wait_for(|s| *s) => return Ended::Stop,
    };
    let ticker = |period: Duration| {
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    };
    let mut heartbeat = ticker(config.heartbeat_interval);
    let mut registered = false;
    let mut resend = ticker(config.status_retry_interval);
    loop {
        let message = tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => message,
                Ok(None) => {
                    tracing::info!(master = %address, "master closed the link");
                    return Ended::Next(follow::Ended::Lost);
                }
                Err(status) => return lost(&status),
            },
            _ = heartbeat.tick(), if registered => {
                outbound.send(v1::AgentMessage {
                    kind: Some(v1::agent_message::Kind::Heartbeat(
                        v1::agent_message::Heartbeat {},
                    )),
                });
                continue;
            }
            _ = resend.tick() => {
                node.resend(outbound);
                continue;
            }
            () = outbound.overflowed() => {
                // Unacknowledged updates go with the next session's ReRegister.
                tracing::warn!(master = %address, queued = OUTBOUND_CAPACITY, "master stopped reading; ending the session");
                return Ended::Next(follow::Ended::Lost);
            }
            _ = stop.wait_for(|s| *s) => return Ended::Stop,
        };
        if !node.fence(message.epoch).await {
            continue;
        }
        match node.handle(config, message) {
            Next::Continue => {}
            Next::Registered(interval) => {
                registered = true;
                follower.registered();
                heartbeat = ticker(interval);
            }
            Next::Stop => return Ended::Stop,
        }
    }
}

/// What a master message asks of the session.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    /// Registered; heartbeat at this interval.
    Registered(Duration),
    /// Stop the link for good (the master sent Shutdown).
    Stop,
}

impl Node {
    /// Starts a session: sends the first message and installs the session under one lock, so
    /// no update falls between the snapshot and the session, and none goes out before it.
    fn attach(&self, outbound: &Outbound, agent_info: &v1::AgentInfo) {
        let cached_modules = self
            .executor
            .cached_modules()
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut guard = self.state();
        let state = &mut *guard;
        let first = hello(
            state.agent_id.as_ref(),
            state.highest_epoch,
            &state.table,
            &mut state.outbox,
            agent_info,
            cached_modules,
        );
        // The queue is new and empty: the first message always fits.
        if outbound.send(first) {
            state.session = Some(outbound.clone());
        }
    }

    /// Ends a session: later updates wait for the next one.
    fn detach(&self, outbound: &Outbound) {
        let mut state = self.state();
        if state.session.as_ref().is_some_and(|s| s.same(outbound)) {
            state.session = None;
        }
    }

    /// Sends durable unacknowledged updates again, in order, as many as the queue has room
    /// for ([`resend`]).
    fn resend(&self, outbound: &Outbound) {
        resend(&mut self.state().outbox, outbound);
    }

    /// Whether a master message of `epoch` may be acted on. A newer epoch is made durable
    /// first, so that no command of an older leader is obeyed after a restart either.
    async fn fence(&self, epoch: u64) -> bool {
        let highest = self.state().highest_epoch;
        if epoch < highest {
            tracing::warn!(epoch, highest, "ignoring a message from a stale master");
            return false;
        }
        if epoch > highest {
            self.checkpoint.write(Op::Epoch(epoch));
            if !self.checkpoint.sync().await {
                return false;
            }
            let mut state = self.state();
            state.highest_epoch = state.highest_epoch.max(epoch);
        }
        true
    }

    /// Applies one master message that passed [`Node::fence`]. Ids are parsed here: a
    /// command naming an invalid one names no task of this agent and is dropped.
    fn handle(self: &Arc<Self>, config: &LinkConfig, message: v1::MasterMessage) -> Next {
        use v1::master_message::Kind;
        match message.kind {
            None => Next::Continue,
            Some(Kind::Registered(registered)) => {
                let Ok(id) = AgentId::new(&registered.agent_id) else {
                    tracing::warn!(agent_id = %registered.agent_id, "master assigned an invalid agent id");
                    return Next::Continue;
                };
                tracing::info!(agent_id = %id, master_id = %registered.master_id, "registered");
                self.registered_as(id);
                // Not draining, unless MAINTENANCE follows.
                self.draining.send_replace(false);
                let interval = match registered.heartbeat_interval_millis {
                    0 => config.heartbeat_interval,
                    ms => Duration::from_millis(ms),
                };
                Next::Registered(interval)
            }
            Some(Kind::LaunchTasks(launch)) => {
                for task in launch.tasks {
                    match TaskKey::parse(&launch.framework_id, &task.task_id) {
                        Ok(key) => self.launch(key, task),
                        Err(error) => tracing::warn!(%error, "dropping a launch with invalid ids"),
                    }
                }
                Next::Continue
            }
            Some(Kind::KillTask(kill)) => {
                // An unknown or unset reason is an ordinary kill.
                let reason = Reason::from_proto_opt("reason", kill.reason)
                    .ok()
                    .flatten()
                    .unwrap_or(Reason::TaskKilledByRequest);
                match TaskKey::parse(&kill.framework_id, &kill.task_id) {
                    Ok(key) => self.kill(key, reason),
                    Err(error) => tracing::warn!(%error, "ignoring a kill with invalid ids"),
                }
                Next::Continue
            }
            Some(Kind::Acknowledge(ack)) => {
                match TaskKey::parse(&ack.framework_id, &ack.task_id) {
                    Ok(key) => self.acknowledge(&key, &ack.uuid),
                    Err(error) => {
                        tracing::warn!(%error, "ignoring an acknowledgement with invalid ids")
                    }
                }
                Next::Continue
            }
            Some(Kind::Maintenance(m)) => {
                if self.draining.send_replace(m.draining) != m.draining {
                    tracing::info!(draining = m.draining, "maintenance state changed");
                }
                Next::Continue
            }
            Some(Kind::Shutdown(shutdown)) => {
                tracing::warn!(reason = %shutdown.reason, "master asked the agent to shut down");
                self.kill_all();
                Next::Stop
            }
        }
    }

    /// The master named this agent `id`: kept (the checkpoint first, queued ahead of every
    /// update sent under the id) and announced to [`super::Agent::registered`].
    fn registered_as(&self, id: AgentId) {
        {
            let mut state = self.state();
            if state.agent_id.as_ref() != Some(&id) {
                self.checkpoint.write(Op::AgentId(id.clone()));
                state.agent_id = Some(id.clone());
            }
        }
        self.registered.send_replace(Some(id));
    }
}

/// A session's first message: Register for an agent the master never named, else ReRegister
/// with the tasks still running and every durable unacknowledged update (the rest follows on
/// the session as it becomes durable).
fn hello(
    agent_id: Option<&AgentId>,
    highest_epoch: u64,
    table: &TaskTable,
    outbox: &mut Outbox,
    agent_info: &v1::AgentInfo,
    cached_modules: Vec<String>,
) -> v1::AgentMessage {
    use v1::agent_message::{Kind, ReRegister, Register};
    let kind = match agent_id {
        None => Kind::Register(Register {
            agent_info: Some(agent_info.clone()),
            cached_modules,
        }),
        Some(agent_id) => Kind::Reregister(ReRegister {
            agent_id: agent_id.to_string(),
            agent_info: Some(agent_info.clone()),
            tasks: table
                .running()
                .map(|(key, entry)| v1::RunningTask {
                    framework_id: key.framework_id.to_string(),
                    task: Some(entry.info.clone()),
                    status: entry.latest.clone(),
                })
                .collect(),
            unacknowledged_updates: outbox.reregister(),
            cached_modules,
            last_epoch: highest_epoch,
        }),
    };
    v1::AgentMessage { kind: Some(kind) }
}

/// A status update as a message to the master.
pub(crate) fn status_message(status: v1::TaskStatus) -> v1::AgentMessage {
    v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::StatusUpdate(
            v1::agent_message::StatusUpdate {
                status: Some(status),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use corral_proto::ProtoEnum;
    use corral_types::TaskState;

    use super::*;

    fn key(task: &str) -> TaskKey {
        TaskKey::parse("fw", task).unwrap()
    }

    fn status(task: &str, n: u8) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task.into(),
            framework_id: "fw".into(),
            state: TaskState::Running.to_i32(),
            uuid: vec![n; 16].into(),
            ..Default::default()
        }
    }

    fn info() -> v1::AgentInfo {
        v1::AgentInfo {
            hostname: "h".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_agent_without_an_id_registers() {
        let mut outbox = Outbox::new();
        let first = hello(
            None,
            0,
            &TaskTable::new(1),
            &mut outbox,
            &info(),
            vec!["m".into()],
        );
        let Some(v1::agent_message::Kind::Register(register)) = first.kind else {
            panic!("{first:?}");
        };
        assert_eq!(register.agent_info, Some(info()));
        assert_eq!(register.cached_modules, ["m"]);
    }

    #[test]
    fn a_known_agent_reregisters_with_running_tasks_and_durable_updates_in_order() {
        let mut table = TaskTable::new(1);
        let mut outbox = Outbox::new();
        let (a, b) = (key("a"), key("b"));
        for (k, id) in [(&a, "a"), (&b, "b")] {
            let described = v1::TaskInfo {
                task_id: id.into(),
                ..Default::default()
            };
            table.launch(k, described).unwrap();
        }
        table.get_mut(&b).unwrap().run.end();
        let durable = vec![
            {
                let q = outbox.push(&a, status("a", 1));
                (q.seq, q.status)
            },
            {
                let q = outbox.push(&b, status("b", 2));
                (q.seq, q.status)
            },
        ];
        outbox.durable(durable);
        outbox.push(&a, status("a", 3));
        let id = AgentId::new("agent-1").unwrap();
        let first = hello(Some(&id), 7, &table, &mut outbox, &info(), Vec::new());
        let Some(v1::agent_message::Kind::Reregister(reregister)) = first.kind else {
            panic!("{first:?}");
        };
        assert_eq!(reregister.agent_id, "agent-1");
        assert_eq!(reregister.last_epoch, 7);
        let running: Vec<_> = reregister
            .tasks
            .iter()
            .map(|t| {
                (
                    t.framework_id.as_str(),
                    t.task.as_ref().unwrap().task_id.as_str(),
                )
            })
            .collect();
        assert_eq!(running, [("fw", "a")], "only a's run goes on");
        let uuids: Vec<u8> = reregister
            .unacknowledged_updates
            .iter()
            .map(|s| s.uuid[0])
            .collect();
        assert_eq!(uuids, [1, 2], "the third is not durable yet");
    }

    fn lazy_channel() -> Conn {
        corral_proto::auth::Token::none()
            .on(tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy())
    }

    /// Updates of task `a` tagged `tags`, made durable: what the checkpoint releases.
    fn durable(outbox: &mut Outbox, tags: &[u8]) -> Vec<v1::TaskStatus> {
        let batch = tags
            .iter()
            .map(|n| {
                let queued = outbox.push(&key("a"), status("a", *n));
                (queued.seq, queued.status)
            })
            .collect();
        outbox.durable(batch)
    }

    /// What the master would read: `Some(tag)` per status update, `None` for anything else.
    fn read(rx: &mut mpsc::Receiver<v1::AgentMessage>) -> Vec<Option<u8>> {
        let mut read = Vec::new();
        while let Ok(message) = rx.try_recv() {
            read.push(match message.kind {
                Some(v1::agent_message::Kind::StatusUpdate(update)) => {
                    update.status.map(|status| status.uuid[0])
                }
                _ => None,
            });
        }
        read
    }

    fn heartbeat() -> v1::AgentMessage {
        v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::Heartbeat(
                v1::agent_message::Heartbeat {},
            )),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_master_that_stops_reading_ends_the_session_and_loses_nothing() {
        let table = TaskTable::new(1);
        let mut outbox = Outbox::new();
        let id = AgentId::new("agent-1").unwrap();
        let (outbound, mut rx) = Outbound::new(lazy_channel(), 3);
        let mut session = Some(outbound.clone());
        assert!(outbound.send(hello(Some(&id), 1, &table, &mut outbox, &info(), vec![])));

        // The master reads nothing while the checkpoint releases three updates.
        let released = durable(&mut outbox, &[1, 2, 3]);
        deliver(&mut session, released.into_iter().map(status_message));
        assert!(session.is_none(), "the update that did not fit ended it");
        assert_eq!(
            read(&mut rx),
            [None, Some(1), Some(2)],
            "a prefix, in order"
        );
        // There is room again, but the session is over: nothing can overtake update 3.
        assert!(!outbound.send(heartbeat()));
        deliver(&mut Some(outbound.clone()), [heartbeat()]);
        assert!(read(&mut rx).is_empty());
        // The session loop hears of it and ends.
        tokio::time::timeout(Duration::from_secs(1), outbound.overflowed())
            .await
            .unwrap();

        // The next session's ReRegister carries all three, in order.
        let next = hello(Some(&id), 1, &table, &mut outbox, &info(), vec![]);
        let Some(v1::agent_message::Kind::Reregister(reregister)) = next.kind else {
            panic!("{next:?}");
        };
        let tags: Vec<u8> = reregister
            .unacknowledged_updates
            .iter()
            .map(|s| s.uuid[0])
            .collect();
        assert_eq!(tags, [1, 2, 3]);
    }

    #[tokio::test]
    async fn resends_use_half_the_room_left_and_never_end_the_session() {
        let mut outbox = Outbox::new();
        durable(&mut outbox, &(1..=20).collect::<Vec<u8>>());
        let (outbound, mut rx) = Outbound::new(lazy_channel(), 8);
        for _ in 0..5 {
            resend(&mut outbox, &outbound);
        }
        let sent: Vec<_> = read(&mut rx);
        assert_eq!(sent, [1, 2, 3, 4, 5, 6, 7].map(Some), "4, then 2, then 1");
        assert!(outbound.send(heartbeat()), "the session goes on");
        read(&mut rx);
        // The master read it all: the resend goes on where it stopped.
        resend(&mut outbox, &outbound);
        assert_eq!(read(&mut rx), [8, 9, 10, 11].map(Some));
    }
}
