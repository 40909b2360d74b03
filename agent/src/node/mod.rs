//! The agent as a cluster member: registers with the master, runs the tasks it is sent on the
//! [`Executor`], reports their status reliably and serves their files.
//!
//! ```text
//!            master (leader)                                 corral logs (via the master)
//!   AgentLink::Connect │ ▲ Register / ReRegister, heartbeats,          │ Operator:
//!   Registered, launch,│ │ status updates (until acknowledged)         │ ListFiles, ReadFile
//!   kill, ack, shutdown▼ │                                             ▼
//!   ┌── link: leader hints, backoff ─┐   ┌──────────── files ───────────────┐
//!   │ session: hello, epochs, resend │   │ run dirs by (framework, task)    │
//!   └───────────────┬────────────────┘   └──────────────▲───────────────────┘
//!                   ▼ launch, kill, ack                  │
//!   tasks (Node) ── table: tasks, run states ───────────┘
//!     │  ▲ │ └──── runner per run: prepare (validate, module, inputs) ─► Executor ─► sandboxes
//!     │  │ └────── outbox: unacknowledged updates, in order (pure)
//!     ▼  │ durable updates
//!   checkpoint: id, epoch, tasks, unacknowledged updates (redb, group commit)
//! ```
//!
//! Configuration goes one way: [`AgentConfig`] gives the node what runs tasks (executor,
//! sources, work directory, how many finished tasks to keep) and the link what talks to the
//! master (masters, heartbeats, resends, what to announce); the link hands master commands
//! to the node, and the node sends on whatever session is current.
//!
//! A task's status, as this agent reports it (each arrow is one update with a fresh uuid,
//! kept and resent until the master forwards the framework's acknowledgement):
//!
//! ```text
//!   LaunchTasks ─► STARTING ─┬─► RUNNING ─┬─► FINISHED          (exit 0)
//!                            │            ├─► FAILED            (exit n, trap, limit)
//!                            │            └─► KILLED            (KillTask)
//!                            ├─► FAILED   (fetch, invalid module, link, inputs, no capacity)
//!                            ├─► ERROR    (invalid task description)
//!                            └─► KILLED   (KillTask before it ran)
//!   KillTask of an unknown task ─► LOST (no acknowledgement expected)
//! ```
//!
//! Master messages carry the leader's epoch; one below the highest seen is ignored. A newer
//! epoch is checkpointed before its message is acted on, so the fence holds across restarts.
//!
//! What survives a restart of the agent's process is in the [`checkpoint`](CHECKPOINT_FILE)
//! (`<work_dir>/checkpoint.redb`): the agent id, the highest epoch, the tasks and their
//! unacknowledged status updates. A restarted agent re-registers with the same id, reports
//! the tasks that were running FAILED with reason AGENT_RESTARTED, and redelivers every
//! unacknowledged update in order. A corrupt checkpoint stops it ([`CheckpointError`]) unless
//! it runs with [`Recover::Cleanup`].

mod checkpoint;
mod files;
mod http;
mod link;
mod outbox;
mod outputs;
mod prepare;
mod readers;
mod runner;
mod session;
mod status;
mod table;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context as _;
use corral_proto::auth::Token;
use corral_proto::tls::{Dialer, Tls};
use corral_proto::{introspection, limits, one_port, v1};
use corral_types::{AgentId, COMPONENTS_ATTRIBUTE};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::compile_worker::CompileWorker;
use crate::executor::{Executor, ExecutorConfig};
use checkpoint::Checkpoint;
pub use checkpoint::{CHECKPOINT_FILE, CheckpointError, Recover};
use link::LinkConfig;
use prepare::Sources;
use readers::Readers;
use tasks::Node;

/// How long a graceful shutdown waits for killed tasks to report their end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Resources to announce instead of the detected ones; `None` keeps the detected value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceOverrides {
    /// Thousandths of a core.
    pub cpus_milli: Option<u64>,
    /// Memory in bytes.
    pub mem_bytes: Option<u64>,
    /// Disk in bytes.
    pub disk_bytes: Option<u64>,
}

/// How an [`Agent`] runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Masters as `host:port`, tried in order (a non-leader's hint is followed first).
    pub masters: Vec<String>,
    /// Where the Operator ListFiles/ReadFile service listens; port 0 picks one.
    pub listen: SocketAddr,
    /// Holds the executor's sandboxes and module cache.
    pub work_dir: PathBuf,
    /// Announced resources; `None` detects them all.
    pub resources: Option<ResourceOverrides>,
    /// Operator attributes; the agent's facts ([`AGENT_FACTS`]) are added and cannot be set.
    pub attributes: Vec<(String, String)>,
    /// Default heartbeat period; the master's Registered may set another.
    pub heartbeat_interval: Duration,
    /// Free-form labels announced with the agent.
    pub labels: BTreeMap<String, String>,
    /// Allow `file://` modules and host-path inputs (dev mode). Off by default.
    pub allow_local_files: bool,
    /// How often unacknowledged status updates are sent again.
    pub status_retry_interval: Duration,
    /// What to do when the checkpoint in `work_dir` cannot be read.
    pub recover: Recover,
    /// Parts of the resources reserved to roles (static reservations): `(role, amounts)`.
    pub static_reservations: Vec<(String, ResourceOverrides)>,
    /// Finished tasks whose sandboxes and logs are kept; beyond this many, the oldest
    /// (fully acknowledged) ones are removed, files and all.
    pub max_completed_tasks: usize,
    /// The bearer token presented to the masters, whose principal must be allowed to
    /// register agents.
    pub token: Token,
    /// TLS: the agent's certificate (presented to masters, and served to them on its own
    /// port, which then serves only clients with a certificate the CA signed) and the
    /// cluster's CA; `None` is plaintext both ways.
    pub tls: Option<Tls>,
    /// Over TLS, the subject common names of the masters' certificates: only a client
    /// presenting one reads the agent's files (other agents hold certificates of the same
    /// CA). By default [`MASTER_CERT_NAME`](corral_proto::tls::MASTER_CERT_NAME), what
    /// `corral tls init` gives masters.
    pub master_cert_names: Vec<String>,
    /// Compile modules in a child process held to a time and memory budget (see
    /// [`crate::compile_worker`]); `None` compiles in the agent's process, unbudgeted.
    pub compile_worker: Option<CompileWorker>,
}

impl AgentConfig {
    /// Defaults: listen on `0.0.0.0:5051`, detected resources, 1 s heartbeats.
    pub fn new(masters: Vec<String>, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            masters,
            listen: SocketAddr::from(([0, 0, 0, 0], 5051)),
            work_dir: work_dir.into(),
            resources: None,
            attributes: Vec::new(),
            heartbeat_interval: Duration::from_secs(1),
            labels: BTreeMap::new(),
            allow_local_files: false,
            status_retry_interval: Duration::from_secs(5),
            recover: Recover::Strict,
            static_reservations: Vec::new(),
            max_completed_tasks: 1000,
            token: Token::none(),
            tls: None,
            master_cert_names: vec![corral_proto::tls::MASTER_CERT_NAME.to_owned()],
            compile_worker: None,
        }
    }
}

/// A running agent: the master link and the files service, around one [`Executor`].
#[derive(Debug)]
pub struct Agent {
    node: Arc<Node>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    link: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Agent {
    /// Recovers the checkpoint, builds the executor, binds `listen`, and starts the master
    /// link in the background. A corrupt checkpoint is a [`CheckpointError::Corrupt`] unless
    /// `config.recover` is [`Recover::Cleanup`].
    pub async fn start(config: AgentConfig) -> anyhow::Result<Agent> {
        anyhow::ensure!(!config.masters.is_empty(), "no master address given");
        anyhow::ensure!(
            config.tls.is_none() || !config.master_cert_names.is_empty(),
            "no master certificate name given: no master could read the agent's files"
        );
        // Before the executor: a cleanup removes the old sandboxes and compiled modules.
        let (work_dir, recover) = (config.work_dir.clone(), config.recover);
        let (db, recovered) =
            tokio::task::spawn_blocking(move || checkpoint::open(&work_dir, recover))
                .await
                .context("checkpoint recovery panicked")??;
        let executor_config = ExecutorConfig {
            compile_worker: config.compile_worker.clone(),
            ..ExecutorConfig::new(&config.work_dir)
        };
        let max_module_bytes = executor_config.max_module_size;
        // Builds the engine, calibrates fuel and reads the host's resources: blocking work.
        let work_dir = config.work_dir.clone();
        let (executor, detected) = tokio::task::spawn_blocking(move || {
            (Executor::new(executor_config), detect_resources(&work_dir))
        })
        .await
        .context("executor setup panicked")?;
        let executor = executor.context("cannot start the executor")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener.local_addr().context("listener address")?;
        let info = agent_info(&config, &executor, detected, local_addr);
        let sources = Sources {
            fetches: Default::default(),
            allow_local_files: config.allow_local_files,
            max_module_bytes,
            http: reqwest::Client::builder()
                .connect_timeout(limits::CONNECT_TIMEOUT)
                .build()
                .context("cannot build the http client")?,
        };
        // The writer thread reaches the node through a weak handle set once the node exists;
        // nothing is written before `recover`.
        let target: Arc<OnceLock<Weak<Node>>> = Arc::default();
        let sink = target.clone();
        let checkpoint = Checkpoint::start(
            db,
            config.work_dir.join(CHECKPOINT_FILE),
            Box::new(move |updates| {
                if let Some(node) = sink.get().and_then(Weak::upgrade) {
                    node.durable(updates);
                }
            }),
        )
        .context("cannot start the checkpoint writer")?;
        let link_config = LinkConfig {
            masters: config.masters.clone(),
            agent_info: info,
            heartbeat_interval: config.heartbeat_interval,
            status_retry_interval: config.status_retry_interval,
            dialer: Dialer::new(config.tls.clone(), config.token.clone()),
        };
        let node = Arc::new(Node::new(
            executor,
            sources,
            checkpoint,
            config.work_dir.clone(),
            config.max_completed_tasks,
        ));
        let _ = target.set(Arc::downgrade(&node));
        node.recover(recovered.restore());
        node.remove_unknown_runs().await;
        // The first (re-)registration then carries everything recovery reported.
        node.checkpoint.sync().await;
        let (stop, stop_rx) = watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let readers = match &config.tls {
            None => Readers::Anyone,
            Some(_) => Readers::Masters(config.master_cert_names.clone().into()),
        };
        let service = limits::operator_server(files::Files::new(node.clone(), readers));
        let (health, health_service) = introspection::health();
        introspection::report(&health, introspection::AGENT_SERVICES, true).await;
        // The server as a whole is NOT_SERVING while an operator drains the agent, so load
        // balancers and probes take it out; its files API goes on serving.
        let mut draining = node.draining.subscribe();
        tokio::spawn(async move {
            loop {
                let serving = !*draining.borrow_and_update();
                introspection::report(&health, &[""], serving).await;
                if draining.changed().await.is_err() {
                    return;
                }
            }
        });
        // gRPC and HTTP (the metrics) on one listener.
        let grpc = introspection::with_reflection(
            tonic::service::Routes::new(health_service),
            introspection::AGENT_SERVICES,
        )
        .add_service(service);
        let routes = one_port::router(grpc, http::router(node.clone()), http::SERVED_HERE);
        let mut builder = limits::server_builder();
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(tls.server_config(true)?)
                .context("configuring TLS")?;
        }
        let server = tokio::spawn(async move {
            let served = builder
                .accept_http1(true)
                .add_routes(routes.into())
                .serve_with_incoming_shutdown(limits::incoming(listener), async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "files service failed");
            }
        });
        let link = tokio::spawn(link::run(node.clone(), link_config, stop_rx));
        tracing::info!(%local_addr, masters = ?config.masters, "agent started");
        Ok(Agent {
            node,
            local_addr,
            stop,
            link,
            server,
        })
    }

    /// Where the files service listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the first Registered and returns the agent's id.
    pub async fn registered(&self) -> AgentId {
        let mut registered = self.node.registered.subscribe();
        loop {
            if let Some(id) = registered.borrow_and_update().clone() {
                return id;
            }
            if registered.changed().await.is_err() {
                // The node (which owns the sender) outlives this borrow of `self`.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Kills the tasks, waits (briefly) for their KILLED updates to be checkpointed and
    /// sent, then closes the link, the files service and the checkpoint.
    pub async fn shutdown(self) {
        self.node.kill_all();
        self.node.wait_all_ended(SHUTDOWN_GRACE).await;
        self.stop.send_replace(true);
        let _ = self.link.await;
        let _ = self.server.await;
        close_checkpoint(self.node).await;
    }

    /// Stops as if the process had died: what is already queued for the checkpoint is
    /// committed, then nothing more is recorded or sent and the tasks are dropped unreported.
    /// A later start on the same work directory recovers exactly what a restart after a
    /// crash at that point would. For tests of recovery; [`Agent::shutdown`] is the graceful
    /// stop.
    pub async fn halt(self) {
        close_checkpoint(self.node.clone()).await;
        self.node.kill_all();
        self.stop.send_replace(true);
        let _ = self.link.await;
        let _ = self.server.await;
    }
}

/// Commits what is queued and closes the checkpoint file (joins the writer thread).
async fn close_checkpoint(node: Arc<Node>) {
    if tokio::task::spawn_blocking(move || node.checkpoint.close())
        .await
        .is_err()
    {
        tracing::error!("closing the checkpoint panicked");
    }
}

/// Attributes the agent states about itself: its architecture, operating system, and that it
/// runs WASI 0.2 components ([`COMPONENTS_ATTRIBUTE`]).
pub const AGENT_FACTS: [&str; 3] = ["arch", "os", COMPONENTS_ATTRIBUTE.0];

/// What the agent announces in Register.
fn agent_info(
    config: &AgentConfig,
    executor: &Executor,
    detected: Detected,
    listen: SocketAddr,
) -> v1::AgentInfo {
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let address = if listen.ip().is_unspecified() {
        format!("{hostname}:{}", listen.port())
    } else {
        listen.to_string()
    };
    let overrides = config.resources.unwrap_or_default();
    let mut attributes: Vec<v1::Attribute> = config
        .attributes
        .iter()
        .filter(|(key, _)| !AGENT_FACTS.contains(&key.as_str()))
        .map(|(key, value)| v1::Attribute {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    for (key, value) in [
        ("arch", std::env::consts::ARCH),
        ("os", std::env::consts::OS),
        COMPONENTS_ATTRIBUTE,
    ] {
        attributes.push(v1::Attribute {
            key: key.into(),
            value: value.into(),
        });
    }
    v1::AgentInfo {
        hostname,
        address,
        resources: Some(v1::Resources {
            cpus_milli: overrides.cpus_milli.unwrap_or(detected.cpus_milli),
            mem_bytes: overrides.mem_bytes.unwrap_or(detected.mem_bytes),
            disk_bytes: overrides.disk_bytes.unwrap_or(detected.disk_bytes),
            scalars_milli: BTreeMap::new(),
        }),
        attributes,
        engine_hash: executor.compatibility().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        labels: config.labels.clone(),
        fuel_per_cpu_second: executor.fuel_per_cpu_second(),
        static_reservations: config
            .static_reservations
            .iter()
            .map(|(role, r)| v1::StaticReservation {
                role: role.clone(),
                resources: Some(v1::Resources {
                    cpus_milli: r.cpus_milli.unwrap_or(0),
                    mem_bytes: r.mem_bytes.unwrap_or(0),
                    disk_bytes: r.disk_bytes.unwrap_or(0),
                    scalars_milli: BTreeMap::new(),
                }),
            })
            .collect(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Detected {
    cpus_milli: u64,
    mem_bytes: u64,
    disk_bytes: u64,
}

/// The host's cores, available memory and free disk under `work_dir`. Blocking (it reads
/// `/proc/meminfo` and asks the file system).
fn detect_resources(work_dir: &Path) -> Detected {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_available(&text))
        .unwrap_or(1 << 30);
    let disk_bytes = rustix::fs::statvfs(work_dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0);
    Detected {
        cpus_milli: cores * 1000,
        mem_bytes,
        disk_bytes,
    }
}

/// `MemAvailable` (or `MemTotal` on old kernels) from `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    field("MemAvailable").or_else(|| field("MemTotal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_prefers_available_over_total() {
        let text = "MemTotal:       16000 kB\nMemFree:  1 kB\nMemAvailable:    8000 kB\n";
        assert_eq!(mem_available(text), Some(8000 * 1024));
        assert_eq!(mem_available("MemTotal: 4 kB\n"), Some(4096));
        assert_eq!(mem_available("nothing"), None);
    }

    #[test]
    fn detected_resources_are_plausible() {
        let detected = detect_resources(Path::new("."));
        assert!(detected.cpus_milli >= 1000);
        assert!(detected.mem_bytes > 0);
        assert!(detected.disk_bytes > 0);
    }
}
