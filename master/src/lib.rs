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
//!                 service/ (tonic): validate → core::Event ──bounded mpsc──┐
//!                          ▲  oneshot reply / stream senders               │
//!                          │                                               ▼
//!                 runtime.rs: the one task that owns the core ── MasterCore::handle(event, now)
//!                   executes Effects through wire.rs (AgentCommand,   │  owns corral_allocator
//!                   FrameworkEvent, views → corral.v1 messages):      └► Vec<Effect> (typed)
//!                   bounded stream queues, replies, timers (tick, 1 ms batching)
//!
//!                 artifacts.rs: <work_dir>/artifacts/<sha256>: modules (UploadModule) and
//!                   tasks' outputs (UploadOutput), served by FetchModule / FetchArtifact
//!                 peers.rs: artifact bytes copied between masters (MasterPeer), so an
//!                   acknowledged upload survives the leader's death
//!                 store/: the registry (redb file or etcd), written before acknowledging
//!                 leadership.rs: campaign → load registry → core; standbys redirect
//! ```
//!
//! [`simulated`] is a kit for benchmarks and tests: agents without Wasm that load a master.
//!
//! - `core/` is sans-IO: no sockets, no clock, no protobufs; tests drive it with events and a
//!   manual `Timestamp` and assert the exact typed effects, and property tests check its
//!   invariants after every event of random sequences. Registry writes are effects too.
//! - `wire.rs` is the one place the core's commands, events and views become `corral.v1`
//!   messages (and agent and framework descriptions come back from them).
//! - Every queue is bounded: a framework or agent that stops reading its stream is cut off
//!   once its queue ([`MasterConfig::stream_queue`]) is full, and handlers wait while the
//!   core is behind.
//! - The registry keeps agents, frameworks, weights, quotas, reservations, drain state, the
//!   artifact index and tasks' outputs; a master restarted on the same store comes back with everything it
//!   acknowledged. Tasks are soft state, rebuilt from agent re-registration (as in Mesos).
//! - Every master -> agent message carries the leader's epoch: a counter in the embedded
//!   registry, or the etcd election key's create revision.

mod artifacts;
pub mod auth;
mod core;
mod event_batch;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod leadership;
mod metrics;
mod peers;
mod queue;
mod runtime;
mod service;
pub mod simulated;
mod store;
mod wire;

pub use auth::AuthConfig;
pub use store::StoreConfig;
pub use store::etcd::EtcdAccess;
pub use store::etcd_login::EtcdUser;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use corral_proto::auth::Token;
use corral_proto::tls::{Dialer, Tls};
use corral_proto::{introspection, limits, one_port};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use crate::core::CoreConfig;
use crate::leadership::{Election, EmbeddedElection, Gate, Supervisor};
use crate::metrics::MasterMetrics;
use crate::peers::Peers;
use crate::store::Registry as _;
use crate::store::embedded::EmbeddedRegistry;
use crate::store::etcd::{AbortOnDrop, EtcdElection};
use crate::store::members::{EtcdMembership, Membership, SoleMaster};

/// How long [`Master::shutdown`] waits for the server to finish in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings of a master.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where to serve gRPC; port 0 picks a free port (see [`Master::local_addr`]).
    pub listen: SocketAddr,
    /// The master's directory (the artifact store lives in `artifacts/`, the embedded
    /// registry in `registry.redb`).
    pub work_dir: PathBuf,
    /// Where the registry lives.
    pub store: StoreConfig,
    /// The address other masters, agents and clients reach this master at; defaults to the
    /// bound address. Standbys name the leader by it.
    pub advertise_address: Option<String>,
    /// etcd only: the TTL of the leader's lease (whole seconds, at least etcd's minimum). A
    /// leader that cannot renew it steps down before it ends; a standby takes over within
    /// about this long after a leader dies.
    pub leader_lease: Duration,
    /// How often agents send heartbeats.
    pub agent_heartbeat_interval: Duration,
    /// An agent silent this long is UNREACHABLE.
    pub agent_timeout: Duration,
    /// After a restart or failover, agents recovered from the registry that have not
    /// re-registered within this are UNREACHABLE.
    pub agent_reregister_timeout: Duration,
    /// How often frameworks get a HEARTBEAT event.
    pub framework_heartbeat_interval: Duration,
    /// Outstanding offers are rescinded after this long; `None` keeps them.
    pub offer_timeout: Option<Duration>,
    /// Period of the full allocation cycle; changes also trigger a cycle after a ~1 ms
    /// batching window.
    pub allocation_interval: Duration,
    /// The most messages an agent's or a framework's stream may hold unread. A peer that
    /// falls this far behind is cut off (its stream ends with RESOURCE_EXHAUSTED): an agent
    /// reconnects, a framework re-subscribes and is sent its unacknowledged updates again.
    /// The master's memory per stream stays bounded by it.
    pub stream_queue: usize,
    /// The most bytes tasks' outputs may hold in the artifact store, cluster-wide. To make
    /// room for new outputs, the outputs of the tasks that finished first are dropped (their
    /// listings, then their bytes on every master); a new output is not kept (its task's
    /// terminal status says so) only when nothing can be dropped.
    pub max_output_bytes: u64,
    /// Credentials, ACLs and the audit log; none by default (no authentication).
    pub auth: AuthConfig,
    /// The token this master presents to the other masters.
    pub token: Token,
    /// Serve TLS with this certificate, trust this CA, and require agents and other masters
    /// to present a certificate it signed; `None` serves plaintext.
    pub tls: Option<Tls>,
    /// How long a request may take to be answered ([`limits::REQUEST_TIMEOUT`] by default).
    pub request_timeout: Duration,
    /// How to reach etcd (`--store etcd://...`): over TLS, with this master's client
    /// certificate when etcd authenticates clients by certificate (`--client-cert-auth`),
    /// and as a user with a password when etcd's authentication is enabled.
    pub etcd: EtcdAccess,
}

/// [`MasterConfig::max_output_bytes`] by default.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 10 << 30;

/// [`MasterConfig::stream_queue`] by default: a third of a second of every update of a
/// cluster at its measured peak (~18,000 tasks/s, three updates each), far longer at ordinary
/// rates, so a healthy framework that pauses briefly keeps its stream; a few MiB at most.
pub const DEFAULT_STREAM_QUEUE: usize = 16_384;

impl MasterConfig {
    /// Defaults: the embedded registry, agent heartbeats every second, agents unreachable
    /// after 5 missed heartbeats or a minute without re-registering after a restart,
    /// framework heartbeats every 15 s, no offer timeout, a periodic allocation every second.
    pub fn new(listen: SocketAddr, work_dir: impl Into<PathBuf>) -> Self {
        let agent_heartbeat_interval = Duration::from_secs(1);
        Self {
            listen,
            work_dir: work_dir.into(),
            store: StoreConfig::Embedded,
            advertise_address: None,
            leader_lease: Duration::from_secs(10),
            agent_heartbeat_interval,
            agent_timeout: agent_heartbeat_interval * 5,
            agent_reregister_timeout: Duration::from_secs(60),
            framework_heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            allocation_interval: Duration::from_secs(1),
            stream_queue: DEFAULT_STREAM_QUEUE,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            auth: AuthConfig::default(),
            token: Token::none(),
            tls: None,
            etcd: EtcdAccess::default(),
            request_timeout: limits::REQUEST_TIMEOUT,
        }
    }
}

/// The interceptor in front of the master's public services: while this master does not
/// lead, every call is refused with UNAVAILABLE and the leader's address (`corral-leader`
/// metadata), before its request is read.
#[derive(Debug, Clone)]
pub struct LeaderOnly {
    gate: Gate,
}

impl tonic::service::Interceptor for LeaderOnly {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.gate.core().map(|_| req).map_err(tonic::Status::from)
    }
}

/// Whether a master leads; see [`Master::leadership`].
#[derive(Debug, Clone)]
pub struct Leadership {
    core: tokio::sync::watch::Receiver<Option<runtime::CoreHandle>>,
}

impl Leadership {
    /// Resolves once the master leads; `false` if it stopped first.
    pub async fn leading(&mut self) -> bool {
        self.core.wait_for(Option::is_some).await.is_ok()
    }

    /// Resolves once the master does not lead, or stopped.
    pub async fn not_leading(&mut self) {
        let _ = self.core.wait_for(Option::is_none).await;
    }
}

/// A running master.
#[derive(Debug)]
pub struct Master {
    local_addr: SocketAddr,
    gate: Gate,
    supervisor_stop: oneshot::Sender<()>,
    supervisor: JoinHandle<()>,
    server_stop: oneshot::Sender<()>,
    server_task: JoinHandle<Result<(), tonic::transport::Error>>,
    auth: Arc<auth::Auth>,
    /// The background fetch of indexed modules this master lacks (etcd only).
    _sync: Option<AbortOnDrop>,
    /// The deletion of artifacts the index no longer holds.
    _sweep: AbortOnDrop,
}

impl Master {
    /// Binds `config.listen`, opens the artifact store and the registry, and starts serving:
    /// as the leader at once with the embedded registry (an unreadable registry fails the
    /// start), or as a standby until it wins the election with etcd.
    pub async fn start(config: MasterConfig) -> anyhow::Result<Master> {
        Self::start_with(config, |routes, _| routes).await
    }

    /// Like [`Master::start`], also serving what `mount` adds to the master's gRPC routes on
    /// its port (the built-in frameworks' services). `mount` gets the [`LeaderOnly`]
    /// interceptor the master's own public services are behind, to put them behind it too.
    pub async fn start_with(
        config: MasterConfig,
        mount: impl FnOnce(Routes, LeaderOnly) -> Routes,
    ) -> anyhow::Result<Master> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let auth = Arc::new(auth::Auth::new(config.auth.clone()).map_err(anyhow::Error::msg)?);
        let artifacts = artifacts::ArtifactStore::open(&config.work_dir)
            .await
            .with_context(|| {
                format!(
                    "opening the artifact store in {}",
                    config.work_dir.display()
                )
            })?;
        let master_id = format!("{:016x}", rand::random::<u64>());
        let metrics = Arc::new(MasterMetrics::new());
        let address = config
            .advertise_address
            .clone()
            .unwrap_or_else(|| local_addr.to_string());
        let core_config = CoreConfig {
            master_id: master_id.clone(),
            epoch: 0,
            address,
            started_at_unix_millis: 0,
            agent_heartbeat_interval: config.agent_heartbeat_interval,
            agent_timeout: config.agent_timeout,
            agent_reregister_timeout: config.agent_reregister_timeout,
            framework_heartbeat_interval: config.framework_heartbeat_interval,
            offer_timeout: config.offer_timeout,
            allocation_interval: config.allocation_interval,
            max_output_bytes: config.max_output_bytes,
            metrics: metrics.clone(),
        };
        let (election, first, members) = match &config.store {
            StoreConfig::Embedded => {
                let registry = EmbeddedRegistry::open(&config.work_dir).await?;
                let election = EmbeddedElection::new(registry.clone());
                // Fail the start, not a later term, on an unreadable registry.
                let term = election
                    .campaign()
                    .await
                    .with_context(|| format!("starting a term on {}", registry.path().display()))?;
                let recovered = registry
                    .load()
                    .await
                    .with_context(|| format!("reading {}", registry.path().display()))?;
                let mut missing = 0usize;
                for a in &recovered.artifacts {
                    if !artifacts.contains(&a.digest).await {
                        missing += 1;
                    }
                }
                if missing > 0 {
                    tracing::warn!(
                        missing,
                        "modules in the registry's index are missing from the artifact store"
                    );
                }
                let election: Arc<dyn Election> = Arc::new(election);
                let members: Arc<dyn Membership> = Arc::new(SoleMaster(registry.clone()));
                (election, Some((term, recovered)), members)
            }
            StoreConfig::Etcd { endpoints, prefix } => {
                let election = EtcdElection::new(
                    endpoints,
                    &config.etcd,
                    prefix,
                    core_config.address.clone(),
                    config.leader_lease,
                )?;
                let election: Arc<dyn Election> = Arc::new(election);
                let members: Arc<dyn Membership> = Arc::new(EtcdMembership::new(
                    endpoints,
                    &config.etcd,
                    prefix,
                    &master_id,
                    core_config.address.clone(),
                    config.leader_lease,
                )?);
                (election, None, members)
            }
        };
        // How this master reaches other masters and agents.
        let dialer = Dialer::new(config.tls.clone(), config.token.clone());
        let peers = Peers::new(members, artifacts.clone(), dialer.clone());
        // Every master, leader or standby, comes to hold every indexed module (embedded: one
        // master, nothing to sync).
        let sync = matches!(config.store, StoreConfig::Etcd { .. })
            .then(|| tokio::spawn(peers.clone().sync_forever()));
        // Every master frees what the index dropped (outputs no task lists any more).
        let sweep = tokio::spawn(peers.clone().sweep_forever());
        let (supervisor, gate) = Supervisor::new(election, core_config, config.stream_queue);
        let (supervisor_stop, stop_rx) = oneshot::channel();
        let supervisor = tokio::spawn(supervisor.run(first, stop_rx));

        let scheduler = service::SchedulerService {
            gate: gate.clone(),
            auth: auth.clone(),
        };
        let agent_link = service::AgentLinkService {
            gate: gate.clone(),
            artifacts: artifacts.clone(),
            peers: peers.clone(),
        };
        let operator = service::OperatorService {
            gate: gate.clone(),
            auth: auth.clone(),
            dialer: dialer.clone(),
            artifacts: artifacts.clone(),
            peers,
        };
        let master_peer = service::MasterPeerService { artifacts };
        let (server_stop, server_rx) = oneshot::channel::<()>();
        // Every call of the public services is refused with the leader's address while this
        // master does not lead, before its request is even read. MasterPeer is not: the
        // leader copies module bytes to and from standbys through it.
        let redirect = LeaderOnly { gate: gate.clone() };
        // Health: the process serves; its public services while it leads.
        let (health, health_service) = introspection::health();
        let mut leadership = gate.leadership();
        tokio::spawn(async move {
            loop {
                let leads = leadership.borrow_and_update().is_some();
                introspection::report(&health, introspection::LEADER_SERVICES, leads).await;
                introspection::report(&health, &["corral.v1.MasterPeer"], true).await;
                // Ends with the supervisor.
                if leadership.changed().await.is_err() {
                    return;
                }
            }
        });
        let routes = introspection::with_reflection(
            Routes::new(health_service),
            introspection::MASTER_SERVICES,
        )
        .add_service(InterceptedService::new(
            limits::scheduler_server(scheduler),
            redirect.clone(),
        ))
        .add_service(InterceptedService::new(
            limits::agent_link_server(agent_link),
            redirect.clone(),
        ))
        .add_service(InterceptedService::new(
            service::SubscribeRoute::new(
                limits::operator_server(operator.clone()),
                operator.clone(),
            ),
            redirect.clone(),
        ))
        .add_service(limits::master_peer_server(master_peer));
        // gRPC and HTTP on one listener, every request through the authentication gate.
        let http = http::router(
            gate.clone(),
            operator,
            loopback(local_addr).to_string(),
            metrics,
            auth.clone(),
            Dialer::new(config.tls.clone(), auth.master_token()),
        );
        let routes = Routes::from(
            one_port::router(mount(routes, redirect), http, http::SERVED_HERE).layer(
                axum::middleware::from_fn_with_state(
                    auth::GateState {
                        auth: auth.clone(),
                        leadership: gate.clone(),
                        mutual_tls: config.tls.is_some(),
                    },
                    auth::gate,
                ),
            ),
        );
        let mut builder = limits::server_builder().timeout(config.request_timeout);
        if let Some(tls) = &config.tls {
            // Client certificates are optional at the handshake (the CLI and frameworks have
            // none); the gate requires one of agents and masters.
            builder = builder
                .tls_config(tls.server_config(false)?)
                .context("configuring TLS")?;
        }
        let server = builder
            .accept_http1(true)
            .add_routes(routes)
            .serve_with_incoming_shutdown(limits::incoming(listener), async {
                let _ = server_rx.await;
            });
        let server_task = tokio::spawn(server);
        tracing::info!(%local_addr, %master_id, store = %config.store, "master started");
        Ok(Master {
            local_addr,
            gate,
            supervisor_stop,
            supervisor,
            server_stop,
            server_task,
            auth,
            _sync: sync.map(AbortOnDrop),
            _sweep: AbortOnDrop(sweep),
        })
    }

    /// Reads the credentials and ACL files again (`corral master` does on SIGHUP): a revoked
    /// token fails from the next request on. On an error the rules in force stay. Answers how
    /// many tokens the credentials file holds.
    pub fn reload_auth(&self) -> anyhow::Result<usize> {
        self.auth.reload().map_err(anyhow::Error::msg)
    }

    /// The token of this master's own frameworks (the built-in jobs framework): it acts as
    /// the master, allowed everything. Known only to this process; a new one every start.
    pub fn master_token(&self) -> Token {
        self.auth.master_token()
    }

    /// Paces the launches of the built-in jobs framework for each job's owner by the owner's
    /// launch rate (`launches` in the rate limits).
    pub fn owners_launches(&self) -> Arc<dyn corral_proto::jobs::LaunchPacer> {
        Arc::new(auth::OwnersLaunches(self.auth.clone()))
    }

    /// The address the master serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Resolves once this master leads (at once for a single master on the embedded store).
    pub async fn leading(&self) {
        self.gate.leading().await;
    }

    /// Follows whether this master leads, apart from the master itself (for work that runs
    /// only on the leader, as the built-in frameworks).
    pub fn leadership(&self) -> Leadership {
        Leadership {
            core: self.gate.leadership(),
        }
    }

    /// Stops the core (which ends every subscription and agent stream), then the server.
    pub async fn shutdown(self) {
        let _ = self.supervisor_stop.send(());
        let _ = self.supervisor.await;
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

/// `addr` as this host reaches it: a wildcard bind (`0.0.0.0`, `::`) is reached on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}
