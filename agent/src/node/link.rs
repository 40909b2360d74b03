//! The master link: find the leader, keep one `AgentLink::Connect` stream to it, reconnect
//! with exponential backoff and jitter. Which master next and how long to wait is
//! [`corral_proto::follow`], shared with the simulated agents that benchmark the master.
//! What is said within one connection is in [`super::session`].
//!
//! ```text
//!   ┌─► try masters in order (the leader hint first) ──all fail──► backoff ─┐
//!   │        │ connected                                                   │
//!   │        ▼                                                             │
//!   │   session: Register / ReRegister, heartbeats, resends, master msgs   │
//!   │        │ stream ends or fails (UNAVAILABLE + corral-leader → hint)   │
//!   └────────┴─────────────────────────────────────────────────────────────┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use corral_proto::follow::{self, Follower, Step};
use corral_proto::tls::Dialer;
use corral_proto::v1;
use tokio::sync::watch;

use super::session::{self, Ended};
use super::tasks::Node;

/// What the link and its sessions are configured with (from [`super::AgentConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    /// Masters as `host:port`, tried in order (a non-leader's hint is followed first).
    pub(crate) masters: Vec<String>,
    /// What the agent announces in Register and ReRegister.
    pub(crate) agent_info: v1::AgentInfo,
    /// Heartbeat period unless the master's Registered sets another.
    pub(crate) heartbeat_interval: Duration,
    /// How often unacknowledged status updates are sent again.
    pub(crate) status_retry_interval: Duration,
    /// How the masters are reached (TLS, certificate, token).
    pub(crate) dialer: Dialer,
}

/// Runs the link until `stop` turns true or the master sends Shutdown.
pub(crate) async fn run(node: Arc<Node>, config: LinkConfig, mut stop: watch::Receiver<bool>) {
    let mut follower = Follower::new(config.masters.clone(), follow::BackoffConfig::default());
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
        match connect(&node, &config, &address, &mut stop, &mut follower).await {
            Ended::Stop => return,
            Ended::Next(ended) => {
                if let follow::Ended::Redirect(leader) = &ended {
                    tracing::info!(master = %address, %leader, "following the leader");
                }
                follower.ended(ended);
            }
        }
    }
}

/// Connects to the master at `address` and holds a session with it.
async fn connect(
    node: &Arc<Node>,
    config: &LinkConfig,
    address: &str,
    stop: &mut watch::Receiver<bool>,
    follower: &mut Follower,
) -> Ended {
    let endpoint = match config.dialer.endpoint(address) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            tracing::warn!(master = %address, %error, "bad master address");
            return Ended::Next(follow::Ended::Lost);
        }
    };
    let channel = tokio::select! {
        connected = endpoint.connect() => match connected {
            Ok(channel) => config.dialer.wrap(channel),
            Err(error) => {
                tracing::debug!(master = %address, %error, "cannot connect");
                return Ended::Next(follow::Ended::Lost);
            }
        },
        _ = stop.wait_for(|s| *s) => return Ended::Stop,
    };
    session::run(node, config, address, channel, stop, follower).await
}
