//! The launch hooks before the executor, one function each: [`validate`] the description,
//! [`fetch_module`] into the executor's cache, unpack the [`inputs`]; [`spec`] puts the results
//! together. A wire `TaskInfo` becomes a [`TaskSpec`] or a typed [`PrepareError`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use corral_intake::archive;
use corral_proto::auth::Conn;
use corral_proto::{InputSource, limits, v1};
use corral_types::{Digest, FrameworkId, Reason, TaskState};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::status::{StatusParts, status_of};
use crate::cache::ModuleError;
use crate::executor::Executor;
use crate::task::{InputContents, InputFile, ModuleSource, StartError, TaskOutcome, TaskSpec};

/// Why a launch was not handed to the executor.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// The description is malformed.
    #[error("invalid task: {0}")]
    Invalid(String),
    /// The module could not be fetched (unreachable source, mismatching digest, not allowed).
    #[error("cannot fetch module: {0}")]
    Fetch(String),
    /// The module was fetched but not admitted.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// An input file could not be placed.
    #[error("input `{path}` is unavailable: {reason}")]
    Input { path: String, reason: String },
}

impl PrepareError {
    /// The terminal status this failure is reported with.
    pub(crate) fn parts(&self) -> StatusParts {
        let message = self.to_string();
        match self {
            Self::Invalid(_) => StatusParts::new(TaskState::Error, Reason::InvalidTask, message),
            Self::Fetch(_) => StatusParts::new(TaskState::Failed, Reason::FetchFailed, message),
            Self::Module(e) => {
                status_of(&TaskOutcome::FailedToStart(StartError::Module(e.clone())))
            }
            Self::Input { .. } => {
                StatusParts::new(TaskState::Failed, Reason::InputUnavailable, message)
            }
        }
    }
}

/// Where modules and inputs may come from.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// `file://` modules and host-path inputs are allowed (dev mode).
    pub(crate) allow_local_files: bool,
    /// Largest module fetched, in bytes.
    pub(crate) max_module_bytes: u64,
    pub(crate) http: reqwest::Client,
    /// Fetches from the master under way, one per digest.
    pub(crate) fetches: Arc<Fetches>,
}

/// One fetch of a module from the master at a time: launches of a module the agent lacks
/// that arrive together (a framework starting hundreds of tasks of a new module) wait for
/// the first one's download instead of each downloading it.
#[derive(Debug, Default)]
pub(crate) struct Fetches(Mutex<HashMap<Digest, Arc<AsyncMutex<()>>>>);

impl Fetches {
    /// The turn of `digest`'s fetch; held until the module is in the cache.
    async fn turn(&self, digest: Digest) -> OwnedMutexGuard<()> {
        let lock = {
            let mut fetches = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Entries nobody waits on any more are done.
            fetches.retain(|_, lock| Arc::strong_count(lock) > 1);
            fetches.entry(digest).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// The description as a typed task, or why it is not one.
pub(crate) fn validate(info: &v1::TaskInfo) -> Result<corral_proto::TaskInfo, PrepareError> {
    corral_proto::TaskInfo::try_from(info).map_err(|e| PrepareError::Invalid(e.to_string()))
}

/// The task's input files, ready for the sandbox: contents as given, host files where the
/// agent allows them, artifacts fetched from the master (over `master`) and checked against
/// their digest, tar archives (carried or fetched) unpacked on a blocking thread. Unpacked
/// and fetched bytes count against the task's disk, like everything in its sandbox.
pub(crate) async fn inputs(
    sources: &Sources,
    master: Option<Conn>,
    task: &corral_proto::TaskInfo,
) -> Result<Vec<InputFile>, PrepareError> {
    let mut disk_left = task.resources.disk_bytes();
    let mut inputs = Vec::new();
    for input in &task.inputs {
        match &input.source {
            InputSource::Contents(bytes) => {
                disk_left = disk_left.saturating_sub(bytes.len() as u64);
                inputs.push(InputFile {
                    path: input.path.clone(),
                    contents: InputContents::Bytes(Arc::from(&bytes[..])),
                });
            }
            InputSource::HostPath(path) if sources.allow_local_files => inputs.push(InputFile {
                path: input.path.clone(),
                contents: InputContents::HostFile(path.clone()),
            }),
            InputSource::HostPath(_) => {
                return Err(PrepareError::Input {
                    path: input.path.clone(),
                    reason: "host files are not allowed on this agent".into(),
                });
            }
            InputSource::Artifact(digest) => {
                let bytes = artifact(master.clone(), &input.path, digest, disk_left).await?;
                disk_left = disk_left.saturating_sub(bytes.len() as u64);
                inputs.push(InputFile {
                    path: input.path.clone(),
                    contents: InputContents::Bytes(Arc::from(bytes)),
                });
            }
            InputSource::TarArchive(bytes) => {
                let files = unpack_off_runtime(&input.path, bytes.clone(), disk_left).await?;
                disk_left = disk_left.saturating_sub(input_bytes(&files));
                inputs.extend(files);
            }
            InputSource::TarArtifact(digest) => {
                // The archive is held only while it is unpacked: its files are what count
                // against the disk, but it may be no larger than the disk either.
                let bytes = artifact(master.clone(), &input.path, digest, disk_left).await?;
                let files = unpack_off_runtime(&input.path, bytes.into(), disk_left).await?;
                disk_left = disk_left.saturating_sub(input_bytes(&files));
                inputs.extend(files);
            }
        }
    }
    Ok(inputs)
}

/// Artifact `digest` for the input at `path`, fetched from the master and checked against
/// its digest: at most `cap` bytes.
async fn artifact(
    master: Option<Conn>,
    path: &str,
    digest: &Digest,
    cap: u64,
) -> Result<Vec<u8>, PrepareError> {
    let unavailable = |reason: String| PrepareError::Input {
        path: path.to_owned(),
        reason,
    };
    let master =
        master.ok_or_else(|| unavailable("not connected to a master to fetch it from".into()))?;
    let bytes = from_master(master, digest, cap)
        .await
        .map_err(|e| unavailable(format!("artifact {digest}: {e}")))?;
    if Digest::of(&bytes) != *digest {
        return Err(unavailable(format!(
            "artifact {digest}: the master sent other bytes"
        )));
    }
    Ok(bytes)
}

/// [`unpack_tar`] on a blocking thread: unpacking is CPU work on up to a whole archive, kept
/// off the control runtime.
async fn unpack_off_runtime(
    dir: &str,
    archive: bytes::Bytes,
    budget: u64,
) -> Result<Vec<InputFile>, PrepareError> {
    let owned_dir = dir.to_owned();
    tokio::task::spawn_blocking(move || unpack_tar(&owned_dir, &archive, budget))
        .await
        .map_err(|e| PrepareError::Input {
            path: dir.to_owned(),
            reason: format!("unpacking stopped: {e}"),
        })?
}

/// Bytes `files` bring into the sandbox.
fn input_bytes(files: &[InputFile]) -> u64 {
    files
        .iter()
        .map(|file| match &file.contents {
            InputContents::Bytes(data) => data.len() as u64,
            InputContents::HostFile(_) | InputContents::Directory => 0,
        })
        .sum()
}

/// The executor's spec of `task` of `framework_id`, its module in the cache under `digest`.
pub(crate) fn spec(
    framework_id: FrameworkId,
    task: corral_proto::TaskInfo,
    digest: Digest,
    inputs: Vec<InputFile>,
) -> TaskSpec {
    TaskSpec {
        framework_id,
        task_id: task.id,
        module: ModuleSource::Digest(digest),
        entrypoint: task.entrypoint,
        argv0: task.argv0,
        args: task.args,
        env: task.env.into_iter().map(|v| (v.name, v.value)).collect(),
        inputs,
        preopens: task.preopens,
        stdin: task.stdin,
        checkpoint: task.checkpoint,
        resources: task.resources,
        limits: task.limits,
    }
}

/// Makes sure the module is in the executor's cache, fetching it from the master (over
/// `master`), an http(s) URL or a local file; returns its digest and whether it was fetched
/// and added now.
pub(crate) async fn fetch_module(
    executor: &Executor,
    sources: &Sources,
    master: Option<Conn>,
    source: &corral_proto::ModuleSource,
) -> Result<(Digest, bool), PrepareError> {
    let cap = sources.max_module_bytes;
    // Held until the module is added, so a concurrent launch of it finds it cached.
    let mut _turn: Option<OwnedMutexGuard<()>> = None;
    let (bytes, expected) = match source {
        corral_proto::ModuleSource::Digest(digest) => {
            if executor.has_module(digest) {
                return Ok((*digest, false));
            }
            _turn = Some(sources.fetches.turn(*digest).await);
            if executor.has_module(digest) {
                return Ok((*digest, false));
            }
            let master = master.ok_or_else(|| {
                PrepareError::Fetch("not connected to a master to fetch it from".into())
            })?;
            (from_master(master, digest, cap).await?, Some(*digest))
        }
        corral_proto::ModuleSource::Url { url, digest } => {
            if let Some(digest) = digest
                && executor.has_module(digest)
            {
                return Ok((*digest, false));
            }
            (from_url(&sources.http, url, cap).await?, *digest)
        }
        corral_proto::ModuleSource::File(path) => {
            if !sources.allow_local_files {
                return Err(PrepareError::Fetch(
                    "local (file://) modules are not allowed on this agent".into(),
                ));
            }
            (from_file(path, cap).await?, None)
        }
    };
    let digest = Digest::of(&bytes);
    if let Some(expected) = expected
        && digest != expected
    {
        return Err(PrepareError::Fetch(format!(
            "digest mismatch: expected {expected}, got {digest}"
        )));
    }
    let added = !executor.has_module(&digest);
    Ok((executor.add_module(bytes).await?, added))
}

fn too_large(size: u64, limit: u64) -> PrepareError {
    PrepareError::Module(ModuleError::TooLarge { size, limit })
}

/// Why an artifact did not come from the master.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    #[error("{0}")]
    Stream(corral_proto::ProtoError),
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
}

impl From<FetchError> for PrepareError {
    /// As a module's fetch failure.
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::TooLarge { size, limit } => too_large(size, limit),
            e => PrepareError::Fetch(e.to_string()),
        }
    }
}

/// Streams an artifact (a module, an input) from the master's artifact store, refusing more
/// than `cap` bytes.
async fn from_master(channel: Conn, digest: &Digest, cap: u64) -> Result<Vec<u8>, FetchError> {
    let mut client = limits::agent_link_client(channel);
    let request = v1::FetchModuleRequest {
        digest: digest.to_string(),
        offset: 0,
    };
    let mut stream = client
        .fetch_module(request)
        .await
        .map_err(FetchError::Status)?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(FetchError::Status)? {
        let limit = cap;
        if chunk.total_size > cap {
            return Err(FetchError::TooLarge {
                size: chunk.total_size,
                limit,
            });
        }
        let total =
            limits::check_module_chunk(&chunk, bytes.len() as u64).map_err(FetchError::Stream)?;
        if total > cap {
            return Err(FetchError::TooLarge { size: total, limit });
        }
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes)
}

/// Downloads a module over http(s), refusing more than `cap` bytes.
async fn from_url(http: &reqwest::Client, url: &str, cap: u64) -> Result<Vec<u8>, PrepareError> {
    let fetch = |e: reqwest::Error| PrepareError::Fetch(format!("{url}: {e}"));
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fetch)?;
    if let Some(length) = response.content_length()
        && length > cap
    {
        return Err(too_large(length, cap));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch)? {
        let total = (bytes.len() + chunk.len()) as u64;
        if total > cap {
            return Err(too_large(total, cap));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn from_file(path: &Path, cap: u64) -> Result<Vec<u8>, PrepareError> {
    let fetch = |e: std::io::Error| PrepareError::Fetch(format!("{}: {e}", path.display()));
    let size = tokio::fs::metadata(path).await.map_err(fetch)?.len();
    if size > cap {
        return Err(too_large(size, cap));
    }
    tokio::fs::read(path).await.map_err(fetch)
}

/// The files and directories of a tar archive as inputs under `dir` (see
/// [`corral_intake::archive::unpack`]), at most `budget` bytes in all.
pub(crate) fn unpack_tar(
    dir: &str,
    archive: &[u8],
    budget: u64,
) -> Result<Vec<InputFile>, PrepareError> {
    let bounds = archive::Bounds {
        bytes: budget,
        entries: limits::MAX_LIST_ITEMS,
    };
    let unpacked = archive::unpack(dir, archive, bounds).map_err(|reason| PrepareError::Input {
        path: dir.to_owned(),
        reason,
    })?;
    let dirs = unpacked.dirs.into_iter().map(|path| InputFile {
        path,
        contents: InputContents::Directory,
    });
    let files = unpacked.files.into_iter().map(|file| InputFile {
        path: file.path,
        contents: InputContents::Bytes(Arc::from(file.data)),
    });
    Ok(dirs.chain(files).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_archive_is_an_unavailable_input_of_its_directory() {
        let error = unpack_tar("data", b"not a tar archive, and too short", 1 << 20).unwrap_err();
        let PrepareError::Input { path, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(path, "data");
        assert_eq!(error.parts().reason, Reason::InputUnavailable);
    }

    #[test]
    fn unpacked_files_and_directories_are_inputs_under_the_directory() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_cksum();
        builder
            .append_data(&mut header, "a.txt", &b"alpha"[..])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_cksum();
        builder
            .append_data(&mut header, "empty/", std::io::empty())
            .unwrap();
        let files = unpack_tar("data", &builder.into_inner().unwrap(), 1 << 20).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "data/empty/");
        assert!(matches!(&files[0].contents, InputContents::Directory));
        assert_eq!(files[1].path, "data/a.txt");
        assert!(matches!(&files[1].contents, InputContents::Bytes(b) if &b[..] == b"alpha"));
    }
}
