//! Who serves: the supervisor that turns leadership into a running core, and the gate the
//! services pass through.
//!
//! ```text
//!   ┌──────────► campaign (embedded: at once; etcd: wait for the election) ──► Term{epoch}
//!   │                                                                            │
//!   │   load the registry ─► MasterCore::recover ─► runtime::spawn ─► gate: Leader(core)
//!   │                                                                            │
//!   └── gate: standby ◄── stop the core (streams end) ◄── lease lost | write failed | error
//! ```
//!
//! A term is one core: losing leadership drops the core and all its streams, and winning
//! again rebuilds it from the registry with a new, higher epoch. While not leading, every
//! call is answered `UNAVAILABLE` with the leader's address (`corral-leader`), which the
//! SDK, the CLI and agents follow; only MasterPeer, through which the leader copies module
//! bytes to and from standbys, is served regardless.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_proto::ServiceError;
use corral_types::Timestamp;
use tokio::sync::{oneshot, watch};

use crate::core::{CoreConfig, MasterCore, Recovered};
use crate::runtime::{self, CoreHandle};
use crate::store::embedded::EmbeddedRegistry;
use crate::store::{Registry, StoreError};

/// How long to wait before campaigning again after a failed term or campaign.
const RETRY: Duration = Duration::from_secs(1);

/// Resolves when a term's leadership is lost, with why.
pub(crate) type Lost = Pin<Box<dyn Future<Output = String> + Send>>;

/// A period of leadership.
pub(crate) struct Term {
    /// The epoch every master -> agent message of this term carries.
    pub epoch: u64,
    /// The registry, fenced to this term where the backend can.
    pub registry: Arc<dyn Registry>,
    pub lost: Lost,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term").field("epoch", &self.epoch).finish()
    }
}

/// How a master becomes leader.
#[async_trait::async_trait]
pub(crate) trait Election: Send + Sync + std::fmt::Debug {
    /// Waits until this master leads.
    async fn campaign(&self) -> Result<Term, StoreError>;
    /// Gives up leadership of a term that ended, so another master can lead at once.
    async fn resign(&self, epoch: u64);
    /// The leader's address as last seen (`None`: unknown).
    fn leader(&self) -> watch::Receiver<Option<String>>;
}

/// A single master on an embedded registry always leads; each term bumps the epoch kept in
/// the file.
#[derive(Debug)]
pub(crate) struct EmbeddedElection {
    registry: EmbeddedRegistry,
    leader: watch::Sender<Option<String>>,
}

impl EmbeddedElection {
    pub(crate) fn new(registry: EmbeddedRegistry) -> Self {
        Self {
            registry,
            leader: watch::Sender::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Election for EmbeddedElection {
    async fn campaign(&self) -> Result<Term, StoreError> {
        let epoch = self.registry.next_epoch().await?;
        Ok(Term {
            epoch,
            registry: Arc::new(self.registry.clone()),
            lost: Box::pin(std::future::pending()),
        })
    }

    async fn resign(&self, _epoch: u64) {}

    fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }
}

/// What the services go through to reach the core.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    core: watch::Receiver<Option<CoreHandle>>,
    leader: watch::Receiver<Option<String>>,
    own_address: String,
}

impl Gate {
    /// The leading core, or `NotLeader` naming the leader when known.
    pub(crate) fn core(&self) -> Result<CoreHandle, ServiceError> {
        if let Some(core) = self.core.borrow().as_ref() {
            return Ok(core.clone());
        }
        // A leader key that still names this master (it just stepped down) is no hint.
        let leader = self
            .leader
            .borrow()
            .clone()
            .filter(|l| *l != self.own_address);
        Err(ServiceError::NotLeader { leader })
    }

    /// The leading core, watched: `Some` while this master leads.
    pub(crate) fn leadership(&self) -> watch::Receiver<Option<CoreHandle>> {
        self.core.clone()
    }

    /// Resolves once this master leads (or immediately if it does).
    pub(crate) async fn leading(&self) {
        let mut core = self.core.clone();
        let _ = core.wait_for(Option::is_some).await;
    }
}

/// Runs terms until `shutdown` fires.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pub election: Arc<dyn Election>,
    /// The core's settings; `epoch` and `started_at_unix_millis` are set per term.
    pub config: CoreConfig,
    /// The most messages an agent's or a framework's stream may queue (see
    /// `MasterConfig::stream_queue`).
    pub stream_queue: usize,
    core: watch::Sender<Option<CoreHandle>>,
}

impl Supervisor {
    pub(crate) fn new(
        election: Arc<dyn Election>,
        config: CoreConfig,
        stream_queue: usize,
    ) -> (Self, Gate) {
        let (core, rx) = watch::channel(None);
        let gate = Gate {
            core: rx,
            leader: election.leader(),
            own_address: config.address.clone(),
        };
        (
            Self {
                election,
                config,
                stream_queue,
                core,
            },
            gate,
        )
    }

    /// Serves terms until `shutdown`; `first` is a term already won and loaded (a start
    /// that must fail loudly on an unreadable registry does that before spawning this).
    pub(crate) async fn run(
        self,
        mut first: Option<(Term, Recovered)>,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        loop {
            let won = match first.take() {
                Some(won) => Ok(won),
                None => tokio::select! {
                    won = self.win() => won,
                    _ = &mut shutdown => return,
                },
            };
            let (term, recovered) = match won {
                Ok(won) => won,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot lead; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        _ = &mut shutdown => return,
                    }
                }
            };
            if self.serve(term, recovered, &mut shutdown).await {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    async fn win(&self) -> Result<(Term, Recovered), StoreError> {
        let term = self.election.campaign().await?;
        match term.registry.load().await {
            Ok(recovered) => Ok((term, recovered)),
            Err(e) => {
                self.election.resign(term.epoch).await;
                Err(e)
            }
        }
    }

    /// Serves one term; true when it ended because of `shutdown`.
    async fn serve(
        &self,
        term: Term,
        recovered: Recovered,
        shutdown: &mut oneshot::Receiver<()>,
    ) -> bool {
        let started_at_unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let config = CoreConfig {
            epoch: term.epoch,
            started_at_unix_millis,
            ..self.config.clone()
        };
        let mut core = MasterCore::new(config);
        core.recover(recovered, Timestamp::ZERO);
        let (stop, stopped) = oneshot::channel();
        let (handle, mut task) =
            runtime::spawn(core, term.registry.clone(), self.stream_queue, stopped);
        self.core.send_replace(Some(handle));
        tracing::info!(epoch = term.epoch, "leading");
        let mut lost = term.lost;
        let shut = tokio::select! {
            ended = &mut task => {
                match ended {
                    Ok(Ok(())) => tracing::warn!(epoch = term.epoch, "core stopped"),
                    Ok(Err(e)) => tracing::error!(epoch = term.epoch, error = %e, "stepping down"),
                    Err(e) => tracing::error!(epoch = term.epoch, error = %e, "core task failed"),
                }
                false
            }
            why = &mut lost => {
                tracing::warn!(epoch = term.epoch, reason = %why, "leadership lost; stepping down");
                false
            }
            _ = &mut *shutdown => true,
        };
        // Refuse new calls first, then end the core and with it every stream.
        self.core.send_replace(None);
        let _ = stop.send(());
        if !task.is_finished() {
            let _ = task.await;
        }
        self.election.resign(term.epoch).await;
        shut
    }
}
