//! The master link: find the leader, keep one `AgentLink::Connect` stream to it, reconnect
//! with exponential backoff and jitter. Which master next and how long to wait is
//! [`corral_proto::follow`], shared with the simulated agents that benchmark the master.
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

use corral_proto::follow::{self, Follower, Step};
use corral_proto::{limits, status::leader_hint, v1};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::tasks::{Next, Node};

/// How a session ended.
#[derive(Debug)]
enum Session {
    /// Stop for good (shutdown asked locally or by the master).
    Stop,
    /// Try the next master, as the shared policy says.
    Ended(follow::Ended),
}

/// Runs the link until `stop` turns true or the master sends Shutdown.
pub(crate) async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut follower = Follower::new(node.masters.clone());
    loop {
        if *stop.borrow() {
            return;
        }
        // The generator is not Send: dropped before any await.
        let step = follower.next(&mut rand::rng());
        let address = match step {
            Step::Connect(address) => address,
            Step::Wait(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        match session(&node, &address, &mut stop, &mut follower).await {
            Session::Stop => return,
            Session::Ended(ended) => {
                if let follow::Ended::Redirect(leader) = &ended {
                    tracing::info!(master = %address, %leader, "following the leader");
                }
                follower.ended(ended);
            }
        }
    }
}

async fn session(
    node: &Arc<Node>,
    address: &str,
    stop: &mut watch::Receiver<bool>,
    follower: &mut Follower,
) -> Session {
    let endpoint = match limits::endpoint(format!("http://{address}")) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            tracing::warn!(master = %address, %error, "bad master address");
            return Session::Ended(follow::Ended::Lost);
        }
    };
    let channel = tokio::select! {
        connected = endpoint.connect() => match connected {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(master = %address, %error, "cannot connect");
                return Session::Ended(follow::Ended::Lost);
            }
        },
        _ = stop.wait_for(|s| *s) => return Session::Stop,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = node.attach(tx.clone(), channel.clone());
    let _ = tx.send(hello);
    let ended = converse(node, address, channel, &tx, rx, stop, follower).await;
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
    follower: &mut Follower,
) -> Session {
    let mut client = limits::agent_link_client(channel);
    let lost = |status: &tonic::Status| match leader_hint(status) {
        Some(leader) => Session::Ended(follow::Ended::Redirect(leader.to_owned())),
        None => {
            tracing::info!(master = %address, code = ?status.code(), message = status.message(), "master link lost");
            Session::Ended(follow::Ended::Lost)
        }
    };
    let mut inbound = tokio::select! {
        response = client.connect(UnboundedReceiverStream::new(rx)) => match response {
            Ok(response) => response.into_inner(),
            Err(status) => return lost(&status),
        },
        _ = stop.wait_for(|s| *s) => return Session::Stop,
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
                    return Session::Ended(follow::Ended::Lost);
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
            _ = stop.wait_for(|s| *s) => return Session::Stop,
        };
        if !node.fence(message.epoch).await {
            continue;
        }
        match node.handle(message) {
            Next::Continue => {}
            Next::Registered(interval) => {
                registered = true;
                follower.registered();
                heartbeat = ticker(interval);
            }
            Next::Stop => return Session::Stop,
        }
    }
}
