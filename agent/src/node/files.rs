//! The agent's `Operator` service: `ListFiles` and `ReadFile` on task sandboxes, which the
//! master proxies for `corral logs`, to masters only ([`Readers`]). Every other Operator RPC
//! is the master's: UNIMPLEMENTED.
//!
//! A sandbox reads as one tree whatever its layout on disk: `stdout`, `stderr` and `root/...`
//! (the guest's files; absent when the run needed no root). A path with `..`, an absolute
//! path, or one that resolves (through symlinks the guest made) outside the root is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use corral_proto::{ServiceError, limits, v1};
use corral_types::{FrameworkId, TaskId};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tonic::{Request, Response, Status};

use super::readers::Readers;
use super::tasks::Node;
use crate::output::{LogContents, RunOutput, Stream};

/// Serves task files from the node's sandboxes.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    node: Arc<Node>,
    readers: Readers,
}

impl Files {
    pub(crate) fn new(node: Arc<Node>, readers: Readers) -> Self {
        Self { node, readers }
    }

    /// The run named by a request's ids. No task can have an invalid id: such a request
    /// names nothing, as an unknown id does.
    fn sandbox_of(
        &self,
        task_id: &str,
        framework_id: Option<&str>,
    ) -> Result<(Arc<RunOutput>, bool), ServiceError> {
        let not_found = || ServiceError::NotFound {
            kind: "task",
            id: task_id.to_owned(),
        };
        let task_id = TaskId::new(task_id).map_err(|_| not_found())?;
        let framework_id = framework_id
            .map(FrameworkId::new)
            .transpose()
            .map_err(|_| not_found())?;
        self.node.sandbox_of(framework_id.as_ref(), &task_id)
    }
}

/// What a sandbox path names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The sandbox itself: its logs and root.
    Sandbox,
    /// stdout or stderr, wherever it is held.
    Log(Stream),
    /// A file or directory under the root.
    Root(PathBuf),
}

const LOGS: [(&str, Stream); 2] = [("stderr", Stream::Stderr), ("stdout", Stream::Stdout)];

/// `path` in a run's files, or why not: no `..` or absolute paths, and a path under `root`
/// (symlinks followed) stays under the resolved root. Resolving reads the file system, on a
/// blocking thread (`tokio::fs`) so a slow disk cannot stall the agent's control runtime.
pub(crate) async fn resolve(output: &RunOutput, path: &str) -> Result<Target, ServiceError> {
    let invalid = || {
        ServiceError::InvalidArgument(format!(
            "path {path:?} must be relative and stay inside the sandbox"
        ))
    };
    let not_found = || ServiceError::NotFound {
        kind: "file",
        id: path.to_owned(),
    };
    // An empty path is the sandbox itself, as `.` is.
    let components = if path.is_empty() {
        Vec::new()
    } else {
        corral_intake::paths::inside(path).ok_or_else(invalid)?
    };
    let Some((first, rest)) = components.split_first() else {
        return Ok(Target::Sandbox);
    };
    if let Some((_, stream)) = LOGS.iter().find(|(name, _)| *first == *name) {
        // A log the task has not written to yet reads as empty, not as missing: a reader
        // following a task's output from its start must not fail before its first line.
        return if rest.is_empty() {
            Ok(Target::Log(*stream))
        } else {
            Err(not_found())
        };
    }
    if *first != "root" {
        return Err(not_found());
    }
    let base = tokio::fs::canonicalize(output.sandbox().root())
        .await
        .map_err(|_| not_found())?;
    let resolved =
        tokio::fs::canonicalize(rest.iter().fold(base.clone(), |dir, name| dir.join(name)))
            .await
            .map_err(|_| not_found())?;
    if resolved.starts_with(&base) {
        Ok(Target::Root(resolved))
    } else {
        Err(invalid())
    }
}

fn io_error(path: &str, error: &std::io::Error) -> Status {
    ServiceError::Internal(format!("reading {path}: {error}")).into()
}

fn modified_millis(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn file_info(path: String, meta: &std::fs::Metadata) -> v1::FileInfo {
    v1::FileInfo {
        path,
        size: if meta.is_dir() { 0 } else { meta.len() },
        is_dir: meta.is_dir(),
        modified_millis: modified_millis(meta),
        symlink_target: None,
    }
}

async fn list(output: &RunOutput, path: &str) -> Result<v1::ListFilesResponse, Status> {
    let target = match resolve(output, path).await? {
        Target::Root(target) => target,
        Target::Log(stream) => {
            return Ok(v1::ListFilesResponse {
                files: log_info(output, path, stream).await.into_iter().collect(),
            });
        }
        Target::Sandbox => {
            let mut files = Vec::new();
            if let Ok(meta) = tokio::fs::metadata(output.sandbox().root()).await {
                files.push(file_info("root".into(), &meta));
            }
            for (name, stream) in LOGS {
                files.extend(log_info(output, name, stream).await);
            }
            files.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(v1::ListFilesResponse { files });
        }
    };
    let meta = tokio::fs::metadata(&target)
        .await
        .map_err(|e| io_error(path, &e))?;
    let prefix = Path::new(path);
    if !meta.is_dir() {
        return Ok(v1::ListFilesResponse {
            files: vec![file_info(path.to_owned(), &meta)],
        });
    }
    let mut files = Vec::new();
    let mut entries = tokio::fs::read_dir(&target)
        .await
        .map_err(|e| io_error(path, &e))?;
    while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(path, &e))? {
        // Not followed: a symlink is listed as what it is, never as what it points at.
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        let name = prefix
            .join(entry.file_name())
            .to_string_lossy()
            .into_owned();
        let mut info = file_info(name, &meta);
        if meta.file_type().is_symlink() {
            info.symlink_target = tokio::fs::read_link(entry.path())
                .await
                .ok()
                .map(|target| target.to_string_lossy().into_owned());
        }
        files.push(info);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(v1::ListFilesResponse { files })
}

/// A log's listing entry; `None` if it holds nothing.
async fn log_info(output: &RunOutput, name: &str, stream: Stream) -> Option<v1::FileInfo> {
    match output.contents(stream) {
        LogContents::Empty => None,
        LogContents::Memory(bytes, written) => Some(v1::FileInfo {
            path: name.to_owned(),
            size: bytes.len() as u64,
            is_dir: false,
            modified_millis: written
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            symlink_target: None,
        }),
        LogContents::File(file) => {
            let meta = tokio::fs::metadata(file).await.ok()?;
            Some(file_info(name.to_owned(), &meta))
        }
    }
}

async fn read(
    output: &RunOutput,
    path: &str,
    offset: u64,
    length: u64,
) -> Result<(Vec<u8>, u64), Status> {
    let target = match resolve(output, path).await? {
        Target::Sandbox => {
            return Err(ServiceError::InvalidArgument("the sandbox is a directory".into()).into());
        }
        Target::Root(target) => target,
        Target::Log(stream) => match output.contents(stream) {
            LogContents::Memory(bytes, _) => {
                let size = bytes.len() as u64;
                let start = offset.min(size) as usize;
                let end = start + limits::read_length(length).min(size - start as u64) as usize;
                return Ok((bytes[start..end].to_vec(), size));
            }
            LogContents::File(file) => file,
            LogContents::Empty => return Ok((Vec::new(), 0)),
        },
    };
    let mut file = tokio::fs::File::open(&target)
        .await
        .map_err(|e| io_error(path, &e))?;
    let meta = file.metadata().await.map_err(|e| io_error(path, &e))?;
    if meta.is_dir() {
        return Err(ServiceError::InvalidArgument(format!("{path} is a directory")).into());
    }
    let size = meta.len();
    let length = limits::read_length(length).min(size.saturating_sub(offset));
    let mut data = vec![0; length as usize];
    if length > 0 {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error(path, &e))?;
        let mut filled = 0;
        while filled < data.len() {
            match file.read(&mut data[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(io_error(path, &e)),
            }
        }
        data.truncate(filled);
    }
    Ok((data, size))
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "agents serve only ListFiles and ReadFile; ask the master",
    ))
}

#[tonic::async_trait]
impl v1::operator_server::Operator for Files {
    async fn list_files(
        &self,
        request: Request<v1::ListFilesRequest>,
    ) -> Result<Response<v1::ListFilesResponse>, Status> {
        self.readers.admit(&request)?;
        let request = request.into_inner();
        let (output, _) = self.sandbox_of(&request.task_id, request.framework_id.as_deref())?;
        list(&output, &request.path).await.map(Response::new)
    }

    async fn read_file(
        &self,
        request: Request<v1::ReadFileRequest>,
    ) -> Result<Response<v1::ReadFileResponse>, Status> {
        self.readers.admit(&request)?;
        let request = request.into_inner();
        let (output, complete) =
            self.sandbox_of(&request.task_id, request.framework_id.as_deref())?;
        let (data, size) = read(&output, &request.path, request.offset, request.length).await?;
        Ok(Response::new(v1::ReadFileResponse {
            data: data.into(),
            offset: request.offset,
            size,
            complete,
        }))
    }

    async fn get_state(
        &self,
        _: Request<v1::GetStateRequest>,
    ) -> Result<Response<v1::GetStateResponse>, Status> {
        unimplemented()
    }

    async fn list_agents(
        &self,
        _: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        unimplemented()
    }

    async fn list_frameworks(
        &self,
        _: Request<v1::ListFrameworksRequest>,
    ) -> Result<Response<v1::ListFrameworksResponse>, Status> {
        unimplemented()
    }

    async fn list_tasks(
        &self,
        _: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        unimplemented()
    }

    async fn get_roles(
        &self,
        _: Request<v1::GetRolesRequest>,
    ) -> Result<Response<v1::GetRolesResponse>, Status> {
        unimplemented()
    }

    async fn set_weight(
        &self,
        _: Request<v1::SetWeightRequest>,
    ) -> Result<Response<v1::SetWeightResponse>, Status> {
        unimplemented()
    }

    async fn set_quota(
        &self,
        _: Request<v1::SetQuotaRequest>,
    ) -> Result<Response<v1::SetQuotaResponse>, Status> {
        unimplemented()
    }

    async fn remove_quota(
        &self,
        _: Request<v1::RemoveQuotaRequest>,
    ) -> Result<Response<v1::RemoveQuotaResponse>, Status> {
        unimplemented()
    }

    async fn drain_agent(
        &self,
        _: Request<v1::DrainAgentRequest>,
    ) -> Result<Response<v1::DrainAgentResponse>, Status> {
        unimplemented()
    }

    async fn reactivate_agent(
        &self,
        _: Request<v1::ReactivateAgentRequest>,
    ) -> Result<Response<v1::ReactivateAgentResponse>, Status> {
        unimplemented()
    }

    async fn kill_task(
        &self,
        _: Request<v1::KillTaskRequest>,
    ) -> Result<Response<v1::KillTaskResponse>, Status> {
        unimplemented()
    }
    async fn reserve_resources(
        &self,
        _: Request<v1::ReserveResourcesRequest>,
    ) -> Result<Response<v1::ReserveResourcesResponse>, Status> {
        unimplemented()
    }
    async fn unreserve_resources(
        &self,
        _: Request<v1::UnreserveResourcesRequest>,
    ) -> Result<Response<v1::UnreserveResourcesResponse>, Status> {
        unimplemented()
    }

    async fn upload_module(
        &self,
        _: Request<tonic::Streaming<v1::ModuleChunk>>,
    ) -> Result<Response<v1::UploadModuleResponse>, Status> {
        unimplemented()
    }

    async fn list_task_outputs(
        &self,
        _: Request<v1::ListTaskOutputsRequest>,
    ) -> Result<Response<v1::ListTaskOutputsResponse>, Status> {
        unimplemented()
    }

    type FetchArtifactStream = tokio_stream::Empty<Result<v1::ModuleChunk, Status>>;

    async fn fetch_artifact(
        &self,
        _: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        unimplemented()
    }

    async fn list_modules(
        &self,
        _: Request<v1::ListModulesRequest>,
    ) -> Result<Response<v1::ListModulesResponse>, Status> {
        unimplemented()
    }

    async fn decide_jobs(
        &self,
        _: Request<v1::DecideJobsRequest>,
    ) -> Result<Response<v1::DecideJobsResponse>, Status> {
        unimplemented()
    }

    type SubscribeStream = tokio_stream::Empty<Result<v1::OperatorEvent, Status>>;

    async fn subscribe(
        &self,
        _: Request<v1::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        unimplemented()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::SandboxPaths;

    /// A finished run: stdout kept in memory, a root with a file and a link out of it.
    fn run(dir: &Path) -> Arc<RunOutput> {
        let sandbox = SandboxPaths::from_base(dir.join("fw/t.1"));
        std::fs::create_dir_all(sandbox.root().join("data")).unwrap();
        std::fs::write(sandbox.root().join("data/in"), b"in").unwrap();
        std::fs::write(dir.join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), sandbox.root().join("link")).unwrap();
        RunOutput::finished(sandbox, Some(b"out".to_vec()), Some(Vec::new()))
    }

    #[tokio::test]
    async fn paths_stay_inside_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let output = run(dir.path());
        assert_eq!(resolve(&output, "").await.unwrap(), Target::Sandbox);
        assert_eq!(resolve(&output, "./").await.unwrap(), Target::Sandbox);
        assert_eq!(
            resolve(&output, "stdout").await.unwrap(),
            Target::Log(Stream::Stdout)
        );
        let root = output.sandbox().root().canonicalize().unwrap();
        assert_eq!(
            resolve(&output, "root/data/in").await.unwrap(),
            Target::Root(root.join("data/in"))
        );
        for bad in ["../secret", "/etc/passwd", "root/../../secret", "root/link"] {
            let error = resolve(&output, bad).await.unwrap_err();
            assert!(
                matches!(error, ServiceError::InvalidArgument(_)),
                "{bad}: {error}"
            );
        }
        // stderr holds nothing yet: it reads as empty, not as missing.
        assert_eq!(
            resolve(&output, "stderr").await.unwrap(),
            Target::Log(Stream::Stderr)
        );
        assert_eq!(
            read(&output, "stderr", 0, 100).await.unwrap(),
            (Vec::new(), 0)
        );
        // Logs have no children; other names do not exist.
        for missing in ["stdout/x", "missing", "root/missing"] {
            assert!(
                matches!(
                    resolve(&output, missing).await,
                    Err(ServiceError::NotFound { .. })
                ),
                "{missing}"
            );
        }
    }

    #[tokio::test]
    async fn the_sandbox_lists_its_logs_and_root_and_reads_logs_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let output = run(dir.path());
        let names = |response: v1::ListFilesResponse| {
            response
                .files
                .into_iter()
                .map(|f| f.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(list(&output, "").await.unwrap()), ["root", "stdout"]);
        assert_eq!(
            names(list(&output, "root").await.unwrap()),
            ["root/data", "root/link"]
        );
        let (data, size) = read(&output, "stdout", 0, 1024).await.unwrap();
        assert_eq!((data.as_slice(), size), (&b"out"[..], 3));
        let (data, size) = read(&output, "stdout", 1, 1).await.unwrap();
        assert_eq!((data.as_slice(), size), (&b"u"[..], 3));
        let (data, _) = read(&output, "stdout", 10, 1024).await.unwrap();
        assert!(data.is_empty());
        assert!(read(&output, "", 0, 0).await.is_err());
        assert_eq!(read(&output, "root/data/in", 0, 16).await.unwrap().0, b"in");
    }
}
