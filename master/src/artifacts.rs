//! The content-addressed artifact store: `<work_dir>/artifacts/<sha256 hex>`, holding
//! uploaded modules and the files tasks leave in their outputs folders alike (the registry's
//! artifact index says which is which).
//!
//! Uploads stream into a temporary file in the same directory while the sha256 is computed,
//! then are renamed into place atomically, so a reader never sees a partial module and a
//! crashed upload leaves only a temporary file. Fetches stream a stored module back in
//! [`MODULE_CHUNK_BYTES`] chunks.
//!
//! Bytes leave the store when the index no longer holds them ([`ArtifactStore::sweep`]):
//! every master sweeps its own store, so the leader unindexing an output frees the disk of
//! every master. A stored artifact is indexed only after it is on disk (and on another
//! master's), so the sweep spares what was stored within [`UNINDEXED_GRACE`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use corral_proto::limits::{self, MODULE_CHUNK_BYTES};
use corral_proto::{ProtoError, ServiceError, v1};
use corral_types::Digest;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{RwLock, Semaphore, mpsc};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// Why a module could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreModuleError {
    /// The sender's stream failed (a client went away, a peer refused).
    #[error("the module stream failed: {}", .0.message())]
    Stream(Status),
    /// A chunk or the module is over the protocol's limits.
    #[error(transparent)]
    Limit(ProtoError),
    #[error("the module is empty")]
    Empty,
    /// The bytes received are another module than the one asked for.
    #[error("expected module {expected}, received {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("artifact store: {what}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl From<StoreModuleError> for ServiceError {
    fn from(e: StoreModuleError) -> Self {
        match e {
            StoreModuleError::Stream(status) => {
                ServiceError::Unavailable(format!("the module stream failed: {}", status.message()))
            }
            StoreModuleError::Limit(e) => ServiceError::Invalid(e),
            StoreModuleError::Empty => ServiceError::InvalidArgument(e.to_string()),
            StoreModuleError::DigestMismatch { .. } => ServiceError::Internal(e.to_string()),
            StoreModuleError::Io { what, source } => internal(what, source),
        }
    }
}

impl From<StoreModuleError> for Status {
    fn from(e: StoreModuleError) -> Self {
        match e {
            // A client's own stream error (a cancelled upload) is passed through as is.
            StoreModuleError::Stream(status) => status,
            e => ServiceError::from(e).into(),
        }
    }
}

/// Module downloads read from disk at once; more wait their turn. Each holds up to a few
/// chunks in memory, so this bounds what a burst of launches (every agent fetching a new
/// module at the same moment) can cost the master.
const CONCURRENT_FETCHES: usize = 32;

/// How long an artifact stored (or stored again) but not indexed is kept: far longer than
/// copying it to another master and indexing it take.
pub(crate) const UNINDEXED_GRACE: Duration = Duration::from_secs(60 * 60);

/// The module store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactStore {
    dir: PathBuf,
    fetches: Arc<Semaphore>,
    /// Held to place (or refresh) an artifact, and exclusively by the sweep to delete one:
    /// an artifact stored again is never deleted between its check and its refresh.
    placing: Arc<RwLock<()>>,
}

fn internal(what: &str, e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("artifact store: {what}: {e}"))
}

impl ArtifactStore {
    /// Opens (creating) the store under `work_dir`.
    pub(crate) async fn open(work_dir: &Path) -> std::io::Result<Self> {
        let dir = work_dir.join("artifacts");
        tokio::fs::create_dir_all(&dir).await?;
        Self::rename_legacy(&dir).await?;
        Ok(Self {
            dir,
            fetches: Arc::new(Semaphore::new(CONCURRENT_FETCHES)),
            placing: Arc::new(RwLock::new(())),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Renames artifacts stored as `<hex>.wasm` (before outputs shared the store) to `<hex>`.
    async fn rename_legacy(dir: &Path) -> std::io::Result<()> {
        let mut entries = tokio::fs::read_dir(dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                tokio::fs::rename(entry.path(), dir.join(hex)).await?;
            }
        }
        Ok(())
    }

    /// True when the module is stored here.
    pub(crate) async fn contains(&self, digest: &Digest) -> bool {
        tokio::fs::try_exists(self.path(digest))
            .await
            .unwrap_or(false)
    }

    /// Deletes a stored artifact (one that should not have been kept); a missing one is fine.
    pub(crate) async fn remove(&self, digest: &Digest) {
        if let Err(error) = tokio::fs::remove_file(self.path(digest)).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%digest, %error, "cannot remove an artifact");
        }
    }

    /// Stores a streamed module; answers with its digest.
    pub(crate) async fn upload<S>(&self, chunks: S) -> Result<v1::UploadModuleResponse, Status>
    where
        S: Stream<Item = Result<v1::ModuleChunk, Status>> + Unpin,
    {
        self.store(chunks, None, false).await.map_err(Status::from)
    }

    /// Stores artifact `expected` streamed from another master (a copy) or an agent (a
    /// task's output, which may be empty); refuses (and keeps nothing of) a stream whose
    /// bytes are another artifact, so a faulty or confused sender cannot put wrong bytes
    /// under a digest.
    pub(crate) async fn store_copy<S>(
        &self,
        chunks: S,
        expected: &Digest,
    ) -> Result<v1::UploadModuleResponse, StoreModuleError>
    where
        S: Stream<Item = Result<v1::ModuleChunk, Status>> + Unpin,
    {
        self.store(chunks, Some(expected), true).await
    }

    /// Stores a stream of chunks; an empty one only when `allow_empty` (a module is never
    /// empty, a task's output or a copy of one may be).
    async fn store<S>(
        &self,
        mut chunks: S,
        expected: Option<&Digest>,
        allow_empty: bool,
    ) -> Result<v1::UploadModuleResponse, StoreModuleError>
    where
        S: Stream<Item = Result<v1::ModuleChunk, Status>> + Unpin,
    {
        let tmp = self
            .dir
            .join(format!(".upload-{:016x}.tmp", rand::random::<u64>()));
        let result = self.receive(&mut chunks, &tmp, expected, allow_empty).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn receive<S>(
        &self,
        chunks: &mut S,
        tmp: &Path,
        expected: Option<&Digest>,
        allow_empty: bool,
    ) -> Result<v1::UploadModuleResponse, StoreModuleError>
    where
        S: Stream<Item = Result<v1::ModuleChunk, Status>> + Unpin,
    {
        let io = |what: &'static str| move |source| StoreModuleError::Io { what, source };
        let mut file = tokio::fs::File::create(tmp).await.map_err(io("create"))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(StoreModuleError::Stream)?;
            size = limits::check_module_chunk(&chunk, size)
                .map_err(|e| StoreModuleError::Limit(e.within("chunk")))?;
            hasher.update(&chunk.data);
            file.write_all(&chunk.data).await.map_err(io("write"))?;
        }
        if size == 0 && !allow_empty {
            return Err(StoreModuleError::Empty);
        }
        file.sync_all().await.map_err(io("sync"))?;
        drop(file);
        let digest = Digest::from_bytes(hasher.finalize().into());
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreModuleError::DigestMismatch {
                expected: *expected,
                actual: digest,
            });
        }
        let path = self.path(&digest);
        let _placing = self.placing.read().await;
        let already_present = tokio::fs::try_exists(&path).await.unwrap_or(false);
        if already_present {
            let _ = tokio::fs::remove_file(tmp).await;
            // Stored again: its index entry may be on its way (see `sweep`). Not being able
            // to say so fails nothing: the sweep would have to read the index in the moment
            // before it is written.
            if let Err(error) = refresh(&path).await {
                tracing::warn!(%digest, %error, "cannot mark an artifact as stored again");
            }
        } else {
            tokio::fs::rename(tmp, &path).await.map_err(io("rename"))?;
            // The rename is durable only once the directory is: an acknowledged module
            // must survive a power loss, not just a process crash.
            let dir = tokio::fs::File::open(&self.dir)
                .await
                .map_err(io("open the directory"))?;
            dir.sync_all().await.map_err(io("sync the directory"))?;
        }
        tracing::info!(%digest, size, already_present, "artifact stored");
        Ok(v1::UploadModuleResponse {
            digest: digest.to_string(),
            size,
            already_present,
            // Counted by the upload handler, which copies the module to other masters.
            replicas: 0,
        })
    }

    /// Deletes the artifacts stored here that `indexed` does not hold and that were stored
    /// longer than [`UNINDEXED_GRACE`] before `now`; returns how many. Temporary files of
    /// uploads and anything not named as an artifact are left alone.
    pub(crate) async fn sweep(&self, indexed: &HashSet<Digest>, now: SystemTime) -> usize {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "cannot list the artifact store");
                return 0;
            }
        };
        let mut deleted = 0;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("{}{hex}", Digest::PREFIX).parse::<Digest>().ok())
            else {
                continue;
            };
            if indexed.contains(&digest) {
                continue;
            }
            let _placing = self.placing.write().await;
            let stored = tokio::fs::metadata(entry.path())
                .await
                .and_then(|m| m.modified());
            let old = stored.is_ok_and(|at| {
                now.duration_since(at)
                    .is_ok_and(|age| age > UNINDEXED_GRACE)
            });
            if !old {
                continue;
            }
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => {
                    deleted += 1;
                    tracing::info!(%digest, "unindexed artifact deleted");
                }
                Err(error) => tracing::warn!(%digest, %error, "cannot delete an artifact"),
            }
        }
        deleted
    }

    /// Streams a stored module from `offset`; the first chunk carries the total size.
    pub(crate) async fn fetch(
        &self,
        digest: &Digest,
        offset: u64,
    ) -> Result<mpsc::Receiver<Result<v1::ModuleChunk, Status>>, ServiceError> {
        let path = self.path(digest);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ServiceError::NotFound {
                    kind: "artifact",
                    id: digest.to_string(),
                });
            }
            Err(e) => return Err(internal("open", e)),
        };
        let total = file
            .metadata()
            .await
            .map_err(|e| internal("stat", e))?
            .len();
        if offset > total {
            return Err(ServiceError::InvalidArgument(format!(
                "offset: {offset} is beyond the artifact's {total} bytes"
            )));
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| internal("seek", e))?;
        let (tx, rx) = mpsc::channel(4);
        let fetches = self.fetches.clone();
        tokio::spawn(async move {
            let Ok(_turn) = fetches.acquire_owned().await else {
                return;
            };
            let mut first = true;
            let mut left = total - offset;
            loop {
                // A small module is read in one chunk of its own size.
                let size =
                    usize::try_from(left).map_or(MODULE_CHUNK_BYTES, |l| l.min(MODULE_CHUNK_BYTES));
                let mut buf = vec![0u8; size];
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            let _ = tx.send(Err(Status::from(internal("read", e)))).await;
                            return;
                        }
                    }
                }
                if filled == 0 && !first {
                    return;
                }
                buf.truncate(filled);
                left = left.saturating_sub(filled as u64);
                let chunk = v1::ModuleChunk {
                    data: Bytes::from(buf),
                    total_size: if first { total } else { 0 },
                };
                first = false;
                if tx.send(Ok(chunk)).await.is_err() || left == 0 {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Marks a stored artifact as stored now (see [`ArtifactStore::sweep`]).
async fn refresh(path: &Path) -> std::io::Result<()> {
    let file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await?;
    file.into_std().await.set_modified(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8]) -> impl Stream<Item = Result<v1::ModuleChunk, Status>> + Unpin {
        let items: Vec<_> = data
            .chunks(MODULE_CHUNK_BYTES)
            .map(|c| {
                Ok(v1::ModuleChunk {
                    data: Bytes::copy_from_slice(c),
                    total_size: 0,
                })
            })
            .collect();
        tokio_stream::iter(items)
    }

    #[tokio::test]
    async fn upload_then_fetch_round_trips_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let data: Vec<u8> = (0..MODULE_CHUNK_BYTES * 2 + 17).map(|i| i as u8).collect();
        let r = store.upload(chunks(&data)).await.unwrap();
        assert_eq!(r.digest, Digest::of(&data).to_string());
        assert_eq!(r.size, data.len() as u64);
        assert!(!r.already_present);
        assert!(store.upload(chunks(&data)).await.unwrap().already_present);

        let mut rx = store.fetch(&Digest::of(&data), 0).await.unwrap();
        let mut got = Vec::new();
        let mut n = 0;
        while let Some(c) = rx.recv().await {
            let c = c.unwrap();
            if n == 0 {
                assert_eq!(c.total_size, data.len() as u64);
            }
            assert!(c.data.len() <= MODULE_CHUNK_BYTES);
            got.extend_from_slice(&c.data);
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(got, data);
        let mut rx = store.fetch(&Digest::of(&data), 10).await.unwrap();
        let c = rx.recv().await.unwrap().unwrap();
        assert_eq!(&c.data[..], &data[10..10 + c.data.len()]);
    }

    #[tokio::test]
    async fn empty_outputs_are_kept_and_wrong_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let empty = Digest::of(b"");
        let stored = store.store_copy(chunks(b""), &empty).await.unwrap();
        assert_eq!((stored.size, stored.digest), (0, empty.to_string()));
        let mut rx = store.fetch(&empty, 0).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap().data.len(), 0);
        let err = store
            .store_copy(chunks(b"other"), &Digest::of(b"announced"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreModuleError::DigestMismatch { .. }),
            "{err}"
        );
        assert!(!store.contains(&Digest::of(b"other")).await);
    }

    /// Stores `data` and answers its digest.
    async fn stored(store: &ArtifactStore, data: &[u8]) -> Digest {
        store
            .upload(chunks(data))
            .await
            .unwrap()
            .digest
            .parse()
            .unwrap()
    }

    /// Backdates a stored artifact, as if stored `ago`.
    fn stored_ago(store: &ArtifactStore, digest: &Digest, ago: Duration) {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(store.path(digest))
            .unwrap();
        file.set_modified(SystemTime::now() - ago).unwrap();
    }

    #[tokio::test]
    async fn the_sweep_deletes_only_what_is_unindexed_past_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let indexed = stored(&store, b"\0asm indexed").await;
        let unindexed = stored(&store, b"an output no task lists").await;
        let fresh = stored(&store, b"on its way to the index").await;
        let long_ago = UNINDEXED_GRACE + Duration::from_secs(60);
        stored_ago(&store, &indexed, long_ago);
        stored_ago(&store, &unindexed, long_ago);
        let artifacts = dir.path().join("artifacts");
        std::fs::write(artifacts.join(".upload-0000000000000001.tmp"), b"partial").unwrap();
        std::fs::write(artifacts.join("notes.txt"), b"not an artifact").unwrap();

        let index = HashSet::from([indexed]);
        assert_eq!(store.sweep(&index, SystemTime::now()).await, 1);
        assert!(store.contains(&indexed).await);
        assert!(!store.contains(&unindexed).await);
        assert!(store.contains(&fresh).await, "stored within the grace");
        assert!(artifacts.join(".upload-0000000000000001.tmp").exists());
        assert!(artifacts.join("notes.txt").exists());

        let later = SystemTime::now() + UNINDEXED_GRACE + Duration::from_secs(60);
        assert_eq!(store.sweep(&index, later).await, 1);
        assert!(!store.contains(&fresh).await);
        assert!(store.contains(&indexed).await);
    }

    #[tokio::test]
    async fn storing_an_artifact_again_restarts_its_grace() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let digest = stored(&store, b"left again by a rerun").await;
        stored_ago(&store, &digest, UNINDEXED_GRACE * 2);
        let again = store
            .upload(chunks(b"left again by a rerun"))
            .await
            .unwrap();
        assert!(again.already_present);
        assert_eq!(store.sweep(&HashSet::new(), SystemTime::now()).await, 0);
        assert!(store.contains(&digest).await);
    }

    #[tokio::test]
    async fn modules_stored_under_their_older_name_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of(b"\0asm old");
        std::fs::create_dir_all(dir.path().join("artifacts")).unwrap();
        let old = dir
            .path()
            .join("artifacts")
            .join(format!("{}.wasm", digest.hex()));
        std::fs::write(&old, b"\0asm old").unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        assert!(store.contains(&digest).await);
        assert!(!old.exists());
    }

    #[tokio::test]
    async fn unknown_empty_and_oversized_modules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).await.unwrap();
        let err = store.fetch(&Digest::of(b"nope"), 0).await.unwrap_err();
        assert!(matches!(err, ServiceError::NotFound { .. }));
        let err = store.upload(chunks(b"")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let big = tokio_stream::iter(vec![Ok(v1::ModuleChunk {
            data: Bytes::from_static(b"x"),
            total_size: limits::MAX_MODULE_BYTES + 1,
        })]);
        let err = store.upload(big).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        // Nothing but the store directory is left behind.
        let left = std::fs::read_dir(dir.path().join("artifacts"))
            .unwrap()
            .count();
        assert_eq!(left, 0);
    }
}
