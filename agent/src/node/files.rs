//! The agent's `Operator` service: `ListFiles` and `ReadFile` on task sandboxes, which the
//! master proxies for `corral logs`. Every other Operator RPC is the master's: UNIMPLEMENTED.
//!
//! Paths are relative to the task's run directory (`stdout`, `stderr`, `root/...`). A path
//! with `..`, an absolute path, or one that resolves (through symlinks the guest made) outside
//! the run directory is refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use corral_proto::{ServiceError, limits, v1};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tonic::{Request, Response, Status};

use super::tasks::Node;

/// Serves task files from the node's sandboxes.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    node: Arc<Node>,
}

impl Files {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// `path` inside `run_dir`, or why not: no `..` or absolute paths, and the resolved path
/// (symlinks followed) stays under the resolved run directory.
pub(crate) fn resolve(run_dir: &Path, path: &str) -> Result<PathBuf, ServiceError> {
    let invalid = || {
        ServiceError::InvalidArgument(format!(
            "path {path:?} must be relative and stay inside the sandbox"
        ))
    };
    if !Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid());
    }
    let not_found = || ServiceError::NotFound {
        kind: "file",
        id: path.to_owned(),
    };
    let base = run_dir.canonicalize().map_err(|_| not_found())?;
    let resolved = base.join(path).canonicalize().map_err(|_| not_found())?;
    if resolved.starts_with(&base) {
        Ok(resolved)
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
    }
}

async fn list(run_dir: &Path, path: &str) -> Result<v1::ListFilesResponse, Status> {
    let target = resolve(run_dir, path)?;
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
        files.push(file_info(name, &meta));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(v1::ListFilesResponse { files })
}

async fn read(
    run_dir: &Path,
    path: &str,
    offset: u64,
    length: u64,
) -> Result<(Vec<u8>, u64), Status> {
    let target = resolve(run_dir, path)?;
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
        let request = request.into_inner();
        let (run_dir, _) = self
            .node
            .sandbox_of(request.framework_id.as_deref(), &request.task_id)?;
        list(&run_dir, &request.path).await.map(Response::new)
    }

    async fn read_file(
        &self,
        request: Request<v1::ReadFileRequest>,
    ) -> Result<Response<v1::ReadFileResponse>, Status> {
        let request = request.into_inner();
        let (run_dir, complete) = self
            .node
            .sandbox_of(request.framework_id.as_deref(), &request.task_id)?;
        let (data, size) = read(&run_dir, &request.path, request.offset, request.length).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("root")).unwrap();
        std::fs::write(run.join("stdout"), b"out").unwrap();
        std::fs::write(dir.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), run.join("root/link")).unwrap();

        assert!(resolve(&run, "stdout").is_ok());
        assert!(resolve(&run, "").is_ok());
        for bad in ["../secret", "/etc/passwd", "root/../../secret", "root/link"] {
            let error = resolve(&run, bad).unwrap_err();
            assert!(
                matches!(error, ServiceError::InvalidArgument(_)),
                "{bad}: {error}"
            );
        }
        assert!(matches!(
            resolve(&run, "missing"),
            Err(ServiceError::NotFound { .. })
        ));
    }
}
