//! Module bytes across masters, so an acknowledged upload survives the leader's death.
//!
//! The artifact index is in the registry, which every master reads; the bytes are in each
//! master's own artifact store. Three mechanisms keep them together:
//!
//! ```text
//!  UploadModule ─► leader's store (fsync) ─ReplicateModule─► ≥1 standby's store (fsync)
//!                                                   └──────► index (registry) ─► ack
//!  FetchModule (agent) on the leader, module indexed but not here
//!                     ─MasterPeer.FetchModule─► the first peer that holds it ─► serve
//!  every master, every SYNC_INTERVAL: indexed modules it lacks ─► fetched from peers
//!  every master, every SWEEP_INTERVAL: stored artifacts no longer indexed ─► deleted
//! ```
//!
//! Why synchronous replication rather than only standbys pulling in the background: a pull
//! leaves a window (from the acknowledgement until a standby has pulled) in which the
//! leader's death loses an acknowledged module, which an operator of Mesos, Nomad or
//! Kubernetes would not expect. Copying to one standby before the index records the module
//! closes it: once an upload is acknowledged, two masters hold the bytes on disk (one when
//! no other master runs). The background pull then brings every other master, including one
//! started later, to hold every module, so the next failover finds a copy too.
//!
//! What remains: a module acknowledged while no other master was registered (a single
//! master, or a standby not yet registered or dead with its key not yet expired, whose port
//! refuses connections) is on the leader only until a standby pulls it, within
//! [`SYNC_INTERVAL`] of the standby registering; the leader dying in that window loses it,
//! as does losing both holders before any other master pulled it.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::auth::Conn;
use corral_proto::tls::Dialer;
use corral_proto::{ServiceError, limits, v1};
use corral_types::Digest;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::artifacts::{ArtifactStore, StoreModuleError};
use crate::store::members::Membership;

/// How often every master looks for indexed modules it lacks and fetches them.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// How long a copy to or from another master may take (64 MiB at the very least 4 MB/s).
const COPY_TIMEOUT: Duration = Duration::from_secs(20);

/// How often every master deletes the artifacts the index no longer holds.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why a copy to or from one other master failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// Nothing listens at the peer's address: it is not running (its registration has not
    /// expired yet), so it holds nothing and will not.
    #[error("master {peer} is not running")]
    NotRunning { peer: String },
    /// The peer could not be reached or did not answer in time.
    #[error("master {peer} is unreachable: {reason}")]
    Unreachable { peer: String, reason: String },
    /// The peer does not hold the module.
    #[error("master {peer} does not hold module {digest}")]
    NotHeld { peer: String, digest: Digest },
    /// The peer refused the call.
    #[error("master {peer}: {code:?}: {message}")]
    Refused {
        peer: String,
        code: tonic::Code,
        message: String,
    },
    /// The peer stored other bytes than those sent.
    #[error("master {peer} stored {actual} instead of {expected}")]
    DigestMismatch {
        peer: String,
        expected: Digest,
        actual: String,
    },
    /// What the peer sent could not be stored here (another module, too large, ...).
    #[error("module from master {peer}: {source}")]
    Store {
        peer: String,
        source: StoreModuleError,
    },
    /// This master's own copy could not be read.
    #[error("reading module {digest} here: {source}")]
    Local {
        digest: Digest,
        source: ServiceError,
    },
}

/// Copies modules between this master's artifact store and the other masters'. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    members: Arc<dyn Membership>,
    artifacts: ArtifactStore,
    /// How this master reaches the others (its certificate and token: they authenticate
    /// MasterPeer calls).
    dialer: Dialer,
}

impl Peers {
    pub(crate) fn new(
        members: Arc<dyn Membership>,
        artifacts: ArtifactStore,
        dialer: Dialer,
    ) -> Self {
        Self {
            members,
            artifacts,
            dialer,
        }
    }

    /// Copies module `digest` (stored here) to the other masters. Resolves as soon as one
    /// holds it, with the number of masters that do (this one included); the copies to the
    /// others go on in the background. Fails when other masters run but none took a copy,
    /// so the upload is not acknowledged with a single copy while a standby is merely slow
    /// or unreachable.
    pub(crate) async fn replicate(&self, digest: &Digest) -> Result<u32, ServiceError> {
        let peers = self.members.peers().await.map_err(|e| {
            ServiceError::Unavailable(format!("cannot list the other masters: {e}"))
        })?;
        if peers.is_empty() {
            return Ok(1);
        }
        let (tx, mut rx) = mpsc::channel(peers.len());
        for peer in &peers {
            let (this, peer, digest, tx) = (self.clone(), peer.clone(), *digest, tx.clone());
            tokio::spawn(async move {
                let pushed = this.push(&peer, &digest).await;
                let _ = tx.send(pushed).await;
            });
        }
        drop(tx);
        let mut failures = Vec::new();
        while let Some(pushed) = rx.recv().await {
            match pushed {
                Ok(()) => return Ok(2),
                Err(e) => failures.push(e),
            }
        }
        if failures
            .iter()
            .all(|e| matches!(e, PeerError::NotRunning { .. }))
        {
            tracing::warn!(%digest, "no other master runs; the module has one copy until one does");
            return Ok(1);
        }
        let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
        Err(ServiceError::Unavailable(format!(
            "no other master took a copy of module {digest}: {}",
            reasons.join("; ")
        )))
    }

    /// Fetches module `digest` from the first other master that holds it and stores it here.
    pub(crate) async fn fetch(&self, digest: &Digest) -> Result<(), ServiceError> {
        let peers = self.members.peers().await.map_err(|e| {
            ServiceError::Unavailable(format!("cannot list the other masters: {e}"))
        })?;
        let mut failures = Vec::new();
        for peer in &peers {
            match self.fetch_from(peer, digest).await {
                Ok(()) => {
                    tracing::info!(%digest, %peer, "module fetched from another master");
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(%digest, error = %e, "module not fetched");
                    failures.push(e);
                }
            }
        }
        let not_held =
            |e: &PeerError| matches!(e, PeerError::NotHeld { .. } | PeerError::NotRunning { .. });
        if failures.iter().all(not_held) {
            return Err(ServiceError::NotFound {
                kind: "module",
                id: digest.to_string(),
            });
        }
        let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
        Err(ServiceError::Unavailable(format!(
            "module {digest} is not here and no other master gave it: {}",
            reasons.join("; ")
        )))
    }

    /// Fetches module `digest` from master `peer` into this master's store: digest-checked
    /// and size-capped like an upload.
    pub(crate) async fn fetch_from(&self, peer: &str, digest: &Digest) -> Result<(), PeerError> {
        let copy = async {
            let mut client = limits::master_peer_client(connect(peer, &self.dialer).await?);
            let request = v1::FetchModuleRequest {
                digest: digest.to_string(),
                offset: 0,
            };
            let chunks = client
                .fetch_module(request)
                .await
                .map_err(|s| refused(peer, digest, &s))?
                .into_inner();
            self.artifacts
                .store_copy(chunks, digest)
                .await
                .map_err(|source| match source {
                    StoreModuleError::Stream(s) => refused(peer, digest, &s),
                    source => PeerError::Store {
                        peer: peer.to_owned(),
                        source,
                    },
                })
        };
        match tokio::time::timeout(COPY_TIMEOUT, copy).await {
            Ok(copied) => copied.map(|_| ()),
            Err(_) => Err(timed_out(peer)),
        }
    }

    /// Copies module `digest` from this master's store to master `peer`.
    async fn push(&self, peer: &str, digest: &Digest) -> Result<(), PeerError> {
        let copy = async {
            let channel = connect(peer, &self.dialer).await?;
            let local =
                self.artifacts
                    .fetch(digest, 0)
                    .await
                    .map_err(|source| PeerError::Local {
                        digest: *digest,
                        source,
                    })?;
            // A local read error ends the stream early: the peer then computes another
            // digest, which is refused below.
            let chunks = tokio_stream::wrappers::ReceiverStream::new(local).map_while(Result::ok);
            let stored = limits::master_peer_client(channel)
                .replicate_module(chunks)
                .await
                .map_err(|s| refused(peer, digest, &s))?
                .into_inner();
            if stored.digest != digest.to_string() {
                return Err(PeerError::DigestMismatch {
                    peer: peer.to_owned(),
                    expected: *digest,
                    actual: stored.digest,
                });
            }
            Ok(())
        };
        match tokio::time::timeout(COPY_TIMEOUT, copy).await {
            Ok(copied) => copied,
            Err(_) => Err(timed_out(peer)),
        }
    }

    /// Fetches, from the other masters, every indexed module this master lacks; then again
    /// every [`SYNC_INTERVAL`], forever. Failures are retried at the next round.
    pub(crate) async fn sync_forever(self) {
        let mut every = rounds(SYNC_INTERVAL);
        loop {
            every.tick().await;
            for digest in self.indexed().await.unwrap_or_default() {
                if self.artifacts.contains(&digest).await {
                    continue;
                }
                if let Err(e) = self.fetch(&digest).await {
                    tracing::warn!(%digest, error = %e, "an indexed module is missing here");
                }
            }
        }
    }

    /// Every [`SWEEP_INTERVAL`], forever: deletes what this master stores and the index no
    /// longer holds (see [`ArtifactStore::sweep`]). A round that cannot read the index
    /// deletes nothing.
    pub(crate) async fn sweep_forever(self) {
        let mut every = rounds(SWEEP_INTERVAL);
        loop {
            every.tick().await;
            if let Some(indexed) = self.indexed().await {
                let indexed = indexed.into_iter().collect();
                self.artifacts
                    .sweep(&indexed, std::time::SystemTime::now())
                    .await;
            }
        }
    }

    /// The artifact index, or `None` when it cannot be read now.
    async fn indexed(&self) -> Option<Vec<Digest>> {
        self.members
            .indexed_artifacts()
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "cannot read the artifact index"))
            .ok()
    }
}

/// Ticks every `interval`, the first at once; a late round delays the next.
fn rounds(interval: Duration) -> tokio::time::Interval {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every
}

fn timed_out(peer: &str) -> PeerError {
    PeerError::Unreachable {
        peer: peer.to_owned(),
        reason: format!("no copy within {COPY_TIMEOUT:?}"),
    }
}

fn refused(peer: &str, digest: &Digest, status: &tonic::Status) -> PeerError {
    match status.code() {
        tonic::Code::NotFound => PeerError::NotHeld {
            peer: peer.to_owned(),
            digest: *digest,
        },
        code => PeerError::Refused {
            peer: peer.to_owned(),
            code,
            message: status.message().to_owned(),
        },
    }
}

/// Connects to master `peer`; a refused connection means nothing runs there.
async fn connect(peer: &str, dialer: &Dialer) -> Result<Conn, PeerError> {
    let unreachable = |reason: String| PeerError::Unreachable {
        peer: peer.to_owned(),
        reason,
    };
    let endpoint = dialer
        .endpoint(peer)
        .map_err(|e| unreachable(e.to_string()))?;
    let channel = endpoint.connect().await.map_err(|e| {
        if connection_refused(&e) {
            PeerError::NotRunning {
                peer: peer.to_owned(),
            }
        } else {
            unreachable(e.to_string())
        }
    })?;
    Ok(dialer.wrap(channel))
}

/// Whether an I/O error in `e`'s chain is a refused connection.
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use corral_proto::v1::master_peer_server::MasterPeer;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;
    use crate::service::MasterPeerService;
    use crate::store::StoreError;

    /// A fixed list of other masters.
    #[derive(Debug)]
    struct Listed(Vec<String>);

    #[async_trait::async_trait]
    impl Membership for Listed {
        async fn peers(&self) -> Result<Vec<String>, StoreError> {
            Ok(self.0.clone())
        }

        async fn indexed_artifacts(&self) -> Result<Vec<Digest>, StoreError> {
            Ok(Vec::new())
        }
    }

    /// A peer that sends `chunks` for any fetch and refuses every copy.
    #[derive(Debug, Clone)]
    struct Faulty {
        chunks: Vec<v1::ModuleChunk>,
    }

    #[tonic::async_trait]
    impl MasterPeer for Faulty {
        type FetchModuleStream =
            tokio_stream::Iter<std::vec::IntoIter<Result<v1::ModuleChunk, Status>>>;

        async fn fetch_module(
            &self,
            _request: Request<v1::FetchModuleRequest>,
        ) -> Result<Response<Self::FetchModuleStream>, Status> {
            let chunks: Vec<_> = self.chunks.iter().cloned().map(Ok).collect();
            Ok(Response::new(tokio_stream::iter(chunks)))
        }

        async fn replicate_module(
            &self,
            _request: Request<Streaming<v1::ModuleChunk>>,
        ) -> Result<Response<v1::UploadModuleResponse>, Status> {
            Err(Status::resource_exhausted("disk full"))
        }
    }

    /// Serves `service` on a free local port; returns its address.
    async fn serve<S: MasterPeer>(service: S) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            limits::server_builder()
                .add_service(limits::master_peer_server(service))
                .serve_with_incoming(limits::incoming(listener)),
        );
        addr.to_string()
    }

    /// A master's artifact store serving MasterPeer; returns it with its address.
    async fn master(dir: &tempfile::TempDir) -> (ArtifactStore, String) {
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let addr = serve(MasterPeerService {
            artifacts: store.clone(),
        })
        .await;
        (store, addr)
    }

    async fn store_module(store: &ArtifactStore, module: &[u8]) -> Digest {
        let chunks = limits::module_chunks(module).into_iter().map(Ok);
        let r = store.upload(tokio_stream::iter(chunks)).await.unwrap();
        r.digest.parse().unwrap()
    }

    fn stored_files(dir: &tempfile::TempDir) -> usize {
        std::fs::read_dir(dir.path().join("artifacts"))
            .unwrap()
            .count()
    }

    /// An address nothing listens on.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_module_missing_here_is_fetched_from_the_peer_that_holds_it() {
        let (dir_a, dir_b, dir_c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (a, _) = master(&dir_a).await;
        let (b, b_addr) = master(&dir_b).await;
        let (_, c_addr) = master(&dir_c).await;
        let module = vec![7u8; limits::MODULE_CHUNK_BYTES + 5];
        let digest = store_module(&b, &module).await;
        // The first peer does not hold it, the second does, a third is not running.
        let peers = Peers::new(
            Arc::new(Listed(vec![c_addr, b_addr, closed_port()])),
            a.clone(),
            Dialer::default(),
        );
        peers.fetch(&digest).await.unwrap();
        assert!(a.contains(&digest).await);
        let mut rx = a.fetch(&digest, 0).await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = rx.recv().await {
            got.extend_from_slice(&chunk.unwrap().data);
        }
        assert_eq!(got, module);
    }

    #[tokio::test]
    async fn an_unknown_digest_is_not_found_on_any_peer() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, _) = master(&dir_a).await;
        let (_, b_addr) = master(&dir_b).await;
        let unknown = Digest::of(b"never uploaded");
        let peers = Peers::new(
            Arc::new(Listed(vec![b_addr.clone()])),
            a.clone(),
            Dialer::default(),
        );
        let err = peers.fetch_from(&b_addr, &unknown).await.unwrap_err();
        assert!(matches!(err, PeerError::NotHeld { .. }), "{err:?}");
        let err = peers.fetch(&unknown).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::NotFound { kind: "module", .. }),
            "{err:?}"
        );
        // With no other master at all, the same.
        let alone = Peers::new(Arc::new(Listed(vec![])), a.clone(), Dialer::default());
        let err = alone.fetch(&unknown).await.unwrap_err();
        assert!(matches!(err, ServiceError::NotFound { .. }), "{err:?}");
        assert_eq!(stored_files(&dir_a), 0);
    }

    #[tokio::test]
    async fn a_peer_sending_another_module_is_refused_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let wanted = Digest::of(b"the module asked for");
        let liar = serve(Faulty {
            chunks: limits::module_chunks(b"another module"),
        })
        .await;
        let peers = Peers::new(
            Arc::new(Listed(vec![liar.clone()])),
            store.clone(),
            Dialer::default(),
        );
        let err = peers.fetch_from(&liar, &wanted).await.unwrap_err();
        assert!(
            matches!(
                &err,
                PeerError::Store { source: StoreModuleError::DigestMismatch { expected, actual }, .. }
                    if *expected == wanted && *actual == Digest::of(b"another module")
            ),
            "{err:?}"
        );
        // Neither the module asked for nor the one sent, nor a temporary file.
        assert!(!store.contains(&wanted).await);
        assert!(!store.contains(&Digest::of(b"another module")).await);
        assert_eq!(stored_files(&dir), 0);
        // A peer that cannot give the right bytes is no source: the fetch fails, but not
        // as "not found" (something is wrong with that peer).
        let err = peers.fetch(&wanted).await.unwrap_err();
        assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_peer_sending_an_oversized_module_is_refused_like_an_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let wanted = Digest::of(b"x");
        let oversized = serve(Faulty {
            chunks: vec![v1::ModuleChunk {
                data: Bytes::from_static(b"x"),
                total_size: limits::MAX_MODULE_BYTES + 1,
            }],
        })
        .await;
        let peers = Peers::new(
            Arc::new(Listed(vec![oversized.clone()])),
            store.clone(),
            Dialer::default(),
        );
        let err = peers.fetch_from(&oversized, &wanted).await.unwrap_err();
        assert!(
            matches!(
                &err,
                PeerError::Store { source: StoreModuleError::Limit(e), .. }
                    if e.field().ends_with("total_size")
            ),
            "{err:?}"
        );
        assert!(!store.contains(&wanted).await);
        assert_eq!(stored_files(&dir), 0);
    }

    #[tokio::test]
    async fn an_upload_is_copied_to_a_standby_and_counts_two_copies() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, _) = master(&dir_a).await;
        let (b, b_addr) = master(&dir_b).await;
        let module = vec![3u8; 2 * limits::MODULE_CHUNK_BYTES + 1];
        let digest = store_module(&a, &module).await;
        let peers = Peers::new(
            Arc::new(Listed(vec![closed_port(), b_addr])),
            a,
            Dialer::default(),
        );
        assert_eq!(peers.replicate(&digest).await, Ok(2));
        assert!(b.contains(&digest).await);
    }

    #[tokio::test]
    async fn without_a_running_standby_an_upload_has_one_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = master(&dir).await;
        let digest = store_module(&a, b"module").await;
        let alone = Peers::new(Arc::new(Listed(vec![])), a.clone(), Dialer::default());
        assert_eq!(alone.replicate(&digest).await, Ok(1));
        // A registered master whose port refuses connections is dead: no copy, no failure.
        let dead = Peers::new(Arc::new(Listed(vec![closed_port()])), a, Dialer::default());
        assert_eq!(dead.replicate(&digest).await, Ok(1));
    }

    #[tokio::test]
    async fn an_upload_fails_when_running_standbys_all_refuse_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = master(&dir).await;
        let digest = store_module(&a, b"module").await;
        let full = serve(Faulty { chunks: vec![] }).await;
        let peers = Peers::new(
            Arc::new(Listed(vec![full, closed_port()])),
            a,
            Dialer::default(),
        );
        let err = peers.replicate(&digest).await.unwrap_err();
        assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
    }
}
