//! A task's stdout or stderr read through the master (Operator.ReadFile, proxied to the
//! task's agent): the one reader behind `corral run`, `corral dev` and `corral logs`.

use std::io::Write;

use corral_proto::{limits, v1};
use tonic::Status;

use crate::client::OperatorClient;

/// How far back `logs --tail` looks for line starts.
const TAIL_SCAN_BYTES: u64 = 4 << 20;
/// How much of it one request reads.
const TAIL_CHUNK_BYTES: u64 = 64 << 10;

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

    /// Moves to the start of the file's last `lines` lines (as `tail -n`), so the next
    /// [`FileFollower::read_new`] prints only those. Reads backwards from the end, at most
    /// [`TAIL_SCAN_BYTES`]: lines longer than that together are cut at its start.
    pub(crate) async fn skip_to_tail(
        &mut self,
        client: &mut OperatorClient,
        lines: u64,
    ) -> Result<(), Status> {
        let size = self.read_at(client, 0, 0).await?.size;
        if lines == 0 {
            self.offset = size;
            return Ok(());
        }
        let floor = size.saturating_sub(TAIL_SCAN_BYTES);
        let mut end = size;
        // A final newline ends the last line; it does not start another.
        let mut newlines = 0u64;
        let mut skip_last = true;
        while end > floor {
            let start = end.saturating_sub(TAIL_CHUNK_BYTES).max(floor);
            let chunk = self.read_at(client, start, end - start).await?.data;
            for (i, byte) in chunk.iter().enumerate().rev() {
                if *byte != b'\n' {
                    skip_last = false;
                    continue;
                }
                if skip_last {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == lines {
                    self.offset = start + i as u64 + 1;
                    return Ok(());
                }
            }
            if chunk.is_empty() {
                break;
            }
            end = start;
        }
        // Fewer lines than asked for: all of them (or all that was scanned).
        self.offset = floor;
        Ok(())
    }

    async fn read_at(
        &self,
        client: &mut OperatorClient,
        offset: u64,
        length: u64,
    ) -> Result<v1::ReadFileResponse, Status> {
        client
            .read_file(v1::ReadFileRequest {
                task_id: self.task.clone(),
                path: self.path.into(),
                offset,
                length,
                framework_id: self.framework.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
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
