//! `corral-master`: the Corral master. It pools the resources of agents and offers them to
//! frameworks (two-level scheduling, as in Mesos), forwards launches, kills and status
//! updates between them, and stores the Wasm modules tasks run.
//!
//! [`Master::start`] binds one port and serves the three gRPC services of `corral.v1`
//! (Scheduler, AgentLink, Operator) with the limits of `corral_proto::limits`.
//!
//! ```text
//!  frameworks ──Scheduler──┐        ┌──AgentLink── agents
//!  operators ──Operator────┤        │
//!                          ▼        ▼
//!                 service/ (tonic): validate → core::Event ──mpsc──┐
//!                          ▲  oneshot reply / stream senders       │
//!                          │                                       ▼
//!                 runtime.rs: the one task that owns the core ── MasterCore::handle(event, now)
//!                   executes Effects: send to agent / framework       │  owns corral_allocator::Allocator
//!                   streams, replies, timers (tick, 1 ms batching)    └► Vec<Effect>
//!
//!                 artifacts.rs: <work_dir>/artifacts/<sha256>.wasm (UploadModule, FetchModule)
//! ```
//!
//! - `core/` is sans-IO: no sockets, no clock; tests drive it with events and a manual
//!   `Timestamp` and assert the exact effects.
//! - Tasks are soft state, rebuilt from agent re-registration (as in Mesos). The durable
//!   registry and HA (etcd, epochs > 1) come later; every master -> agent message carries
//!   epoch 1 for now.

mod artifacts;
mod core;
mod runtime;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use corral_proto::limits;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::core::{CoreConfig, MasterCore};

/// How long [`Master::shutdown`] waits for the server to finish in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings of a master.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where to serve gRPC; port 0 picks a free port (see [`Master::local_addr`]).
    pub listen: SocketAddr,
    /// The master's directory (the artifact store lives in `artifacts/`).
    pub work_dir: PathBuf,
    /// How often agents send heartbeats.
    pub agent_heartbeat_interval: Duration,
    /// An agent silent this long is UNREACHABLE.
    pub agent_timeout: Duration,
    /// How often frameworks get a HEARTBEAT event.
    pub framework_heartbeat_interval: Duration,
    /// Outstanding offers are rescinded after this long; `None` keeps them.
    pub offer_timeout: Option<Duration>,
    /// Period of the full allocation cycle; changes also trigger a cycle after a ~1 ms
    /// batching window.
    pub allocation_interval: Duration,
}

impl MasterConfig {
    /// Defaults: agent heartbeats every second, agents unreachable after 5 missed
    /// heartbeats, framework heartbeats every 15 s, no offer timeout, a periodic allocation
    /// every second.
    pub fn new(listen: SocketAddr, work_dir: impl Into<PathBuf>) -> Self {
        let agent_heartbeat_interval = Duration::from_secs(1);
        Self {
            listen,
            work_dir: work_dir.into(),
            agent_heartbeat_interval,
            agent_timeout: agent_heartbeat_interval * 5,
            framework_heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            allocation_interval: Duration::from_secs(1),
        }
    }
}

/// A running master.
#[derive(Debug)]
pub struct Master {
    local_addr: SocketAddr,
    core_stop: oneshot::Sender<()>,
    core_task: JoinHandle<()>,
    server_stop: oneshot::Sender<()>,
    server_task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Master {
    /// Binds `config.listen`, opens the artifact store and starts serving.
    pub async fn start(config: MasterConfig) -> anyhow::Result<Master> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let artifacts = artifacts::ArtifactStore::open(&config.work_dir)
            .await
            .with_context(|| {
                format!(
                    "opening the artifact store in {}",
                    config.work_dir.display()
                )
            })?;
        let master_id = format!("{:016x}", rand::random::<u64>());
        let started_at_unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let core = MasterCore::new(CoreConfig {
            master_id: master_id.clone(),
            epoch: 1,
            address: local_addr.to_string(),
            started_at_unix_millis,
            agent_heartbeat_interval: config.agent_heartbeat_interval,
            agent_timeout: config.agent_timeout,
            framework_heartbeat_interval: config.framework_heartbeat_interval,
            offer_timeout: config.offer_timeout,
            allocation_interval: config.allocation_interval,
        });
        let (core_stop, core_rx) = oneshot::channel();
        let (handle, core_task) = runtime::spawn(core, core_rx);

        let scheduler = service::SchedulerService {
            core: handle.clone(),
        };
        let agent_link = service::AgentLinkService {
            core: handle.clone(),
            artifacts: artifacts.clone(),
        };
        let operator = service::OperatorService {
            core: handle,
            artifacts,
        };
        let (server_stop, server_rx) = oneshot::channel::<()>();
        let server = limits::server_builder()
            .add_service(limits::scheduler_server(scheduler))
            .add_service(limits::agent_link_server(agent_link))
            .add_service(limits::operator_server(operator))
            .serve_with_incoming_shutdown(limits::incoming(listener), async {
                let _ = server_rx.await;
            });
        let server_task = tokio::spawn(server);
        tracing::info!(%local_addr, %master_id, "master started");
        Ok(Master {
            local_addr,
            core_stop,
            core_task,
            server_stop,
            server_task,
        })
    }

    /// The address the master serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the core (which ends every subscription and agent stream), then the server.
    pub async fn shutdown(self) {
        let _ = self.core_stop.send(());
        let _ = self.core_task.await;
        let _ = self.server_stop.send(());
        let mut server = self.server_task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
        {
            tracing::warn!("server did not stop in time; aborting it");
            server.abort();
        }
    }
}
