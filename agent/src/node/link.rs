//! The master link: find the leader, keep one `AgentLink::Connect` stream to it, reconnect
//! with exponential backoff and jitter.
//!
//! ```text
//!   ┌─► try masters in order (the leader hint first) ──all fail──► backoff ─┐
//!   │        │ connected                                                   │
//!   │        ▼                                                             │
//!   │   Register / ReRegister ─► session: heartbeats, resends, master msgs │
//!   │        │ stream ends or fails (UNAVAILABLE + corral-leader → hint)   │
//!   └────────┴─────────────────────────────────────────────────────────────┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use corral_proto::{limits, status::leader_hint, v1};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::tasks::{Next, Node};

/// How a session ended.
#[derive(Debug)]
enum Ended {
    /// Stop for good (shutdown asked locally or by the master).
    Stop,
    /// A master that is not the leader named the leader.
    Redirect(String),
    /// Could not connect, or the stream broke.
    Lost,
}

/// Exponential backoff with full jitter between `BASE` and the current ceiling, and a few
/// immediate retries when a standby names the leader.
#[derive(Debug)]
struct Backoff {
    ceiling: Duration,
    /// Redirects followed at once since the last registration.
    follows: u32,
    /// The leader the last redirect named.
    last_hint: Option<String>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);
    /// Beyond this many immediate follows the backoff applies, so two masters naming each
    /// other cannot make the agent spin.
    const IMMEDIATE_FOLLOWS: u32 = 3;

    fn new() -> Self {
        Self {
            ceiling: Self::BASE,
            follows: 0,
            last_hint: None,
        }
    }

    fn reset(&mut self) {
        self.ceiling = Self::BASE;
        self.follows = 0;
        self.last_hint = None;
    }

    /// Whether to follow a redirect to `leader` without waiting: a standby that names a new
    /// leader means one was just elected, and the backoff may have grown while none led. A
    /// hint repeated (a standby still naming a dead leader until its lease ends) waits.
    fn follow_now(&mut self, leader: &str) -> bool {
        if self.last_hint.as_deref() == Some(leader) {
            return false;
        }
        self.last_hint = Some(leader.to_owned());
        self.follows += 1;
        self.follows <= Self::IMMEDIATE_FOLLOWS
    }

    fn next(&mut self) -> Duration {
        let low = Self::BASE.as_millis() as u64 / 2;
        let high = (self.ceiling.as_millis() as u64).max(low + 1);
        self.ceiling = (self.ceiling * 2).min(Self::MAX);
        Duration::from_millis(rand::random_range(low..high))
    }
}

/// Runs the link until `stop` turns true or the master sends Shutdown.
pub(crate) async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    let mut hint: Option<String> = None;
    loop {
        let candidates: Vec<String> = hint
            .take()
            .into_iter()
            .chain(node.masters.clone())
            .collect();
        for address in candidates {
            if *stop.borrow() {
                return;
            }
            match session(&node, &address, &mut stop, &mut backoff).await {
                Ended::Stop => return,
                Ended::Redirect(leader) => {
                    tracing::info!(master = %address, %leader, "following the leader");
                    hint = Some(leader);
                    break;
                }
                Ended::Lost => {}
            }
        }
        if hint
            .as_deref()
            .is_some_and(|leader| backoff.follow_now(leader))
        {
            continue;
        }
        let delay = backoff.next();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn session(
    node: &Arc<Node>,
    address: &str,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Ended {
    let endpoint = match limits::endpoint(format!("http://{address}")) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            tracing::warn!(master = %address, %error, "bad master address");
            return Ended::Lost;
        }
    };
    let channel = tokio::select! {
        connected = endpoint.connect() => match connected {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(master = %address, %error, "cannot connect");
                return Ended::Lost;
            }
        },
        _ = stop.wait_for(|s| *s) => return Ended::Stop,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = node.attach(tx.clone(), channel.clone());
    let _ = tx.send(hello);
    let ended = converse(node, address, channel, &tx, rx, stop, backoff).await;
    node.detach(&tx);
    ended
}

async fn converse(
    node: &Arc<Node>,
    address: &str,
    channel: tonic::transport::Channel,
    tx: &mpsc::UnboundedSender<v1::AgentMessage>,
    rx: mpsc::UnboundedReceiver<v1::AgentMessage>,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Ended {
    let mut client = limits::agent_link_client(channel);
    let lost = |status: &tonic::Status| match leader_hint(status) {
        Some(leader) => Ended::Redirect(leader.to_owned()),
        None => {
            tracing::info!(master = %address, code = ?status.code(), message = status.message(), "master link lost");
            Ended::Lost
        }
    };
    let mut inbound = tokio::select! {
        response = client.connect(UnboundedReceiverStream::new(rx)) => match response {
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
    let mut heartbeat = ticker(node.heartbeat_interval);
    let mut registered = false;
    let mut resend = ticker(node.status_retry_interval);
    loop {
        let message = tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => message,
                Ok(None) => {
                    tracing::info!(master = %address, "master closed the link");
                    return Ended::Lost;
                }
                Err(status) => return lost(&status),
            },
            _ = heartbeat.tick(), if registered => {
                let _ = tx.send(v1::AgentMessage {
                    kind: Some(v1::agent_message::Kind::Heartbeat(
                        v1::agent_message::Heartbeat {},
                    )),
                });
                continue;
            }
            _ = resend.tick() => {
                node.resend(tx);
                continue;
            }
            _ = stop.wait_for(|s| *s) => return Ended::Stop,
        };
        if !node.fence(message.epoch).await {
            continue;
        }
        match node.handle(message) {
            Next::Continue => {}
            Next::Registered(interval) => {
                registered = true;
                backoff.reset();
                heartbeat = ticker(interval);
            }
            Next::Stop => return Ended::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..12).map(|_| backoff.next()).collect();
        assert!(delays.iter().all(|d| *d >= Backoff::BASE / 2));
        assert!(delays.iter().all(|d| *d <= Backoff::MAX));
        assert_eq!(backoff.ceiling, Backoff::MAX);
        backoff.reset();
        assert!(backoff.next() <= Backoff::BASE);
    }

    #[test]
    fn new_leaders_are_followed_at_once_a_few_times_until_registered() {
        let mut backoff = Backoff::new();
        // A repeated hint (a dead leader still named) waits for the backoff.
        assert!(backoff.follow_now("a:1"));
        assert!(!backoff.follow_now("a:1"));
        // Masters naming each other: three immediate follows, then the backoff.
        let pingpong: Vec<bool> = ["b:1", "a:1", "b:1", "a:1"]
            .iter()
            .map(|l| backoff.follow_now(l))
            .collect();
        assert_eq!(pingpong, [true, true, false, false]);
        backoff.reset();
        assert!(backoff.follow_now("a:1"));
    }
}
