//! A task's stdout or stderr read through the master (Operator.ReadFile, proxied to the
//! task's agent): the one reader behind `corral run`, `corral dev` and `corral logs`.

use std::io::Write;

use corral_proto::{limits, v1};
use tonic::Status;

use crate::client::OperatorClient;

/// Where one of a task's files was read up to.
#[derive(Debug)]
pub(crate) struct FileFollower {
    task: String,
    /// The task's framework, when known (a task id may be used by several).
    pub(crate) framework: Option<String>,
    path: &'static str,
    offset: u64,
}

/// What one [`FileFollower::read_new`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// Something new was written to the sink.
    pub(crate) any: bool,
    /// The task has ended and its file is read to the end: nothing more will come.
    pub(crate) complete: bool,
}

impl FileFollower {
    /// Follows `path` (`stdout` or `stderr`) of `task` from its start.
    pub(crate) fn new(
        task: impl Into<String>,
        framework: Option<String>,
        path: &'static str,
    ) -> Self {
        Self {
            task: task.into(),
            framework,
            path,
            offset: 0,
        }
    }

    /// The file's name.
    pub(crate) fn path(&self) -> &'static str {
        self.path
    }

    /// Copies what was written since the last call into `sink`, all of it.
    pub(crate) async fn read_new(
        &mut self,
        client: &mut OperatorClient,
        sink: &mut dyn Write,
    ) -> Result<Read, Status> {
        let mut any = false;
        loop {
            let response = client
                .read_file(v1::ReadFileRequest {
                    task_id: self.task.clone(),
                    path: self.path.into(),
                    offset: self.offset,
                    length: limits::MAX_READ_FILE_BYTES,
                    framework_id: self.framework.clone(),
                })
                .await?
                .into_inner();
            if response.data.is_empty() {
                return Ok(Read {
                    any,
                    complete: response.complete,
                });
            }
            any = true;
            self.offset += response.data.len() as u64;
            // A closed sink (a pipe to `head`) ends nothing here: the caller decides.
            let _ = sink.write_all(&response.data);
            let _ = sink.flush();
        }
    }
}
