//! A directory per task run, the guest's only view of the host's file system.
//!
//! ```text
//! <work_dir>/sandboxes/<framework>/<task>/<run>/
//!     root/      preopened as the guest's `/`; input files are placed here before start
//!     stdout     the guest's stdout, capped; created on the first write
//!     stderr     the guest's stderr, capped; created on the first write
//! ```
//!
//! Logs are opened lazily so that a task that has not written holds a single file descriptor
//! (its root), which is what lets one agent keep ten thousand sleeping tasks.
//!
//! The logs sit beside the guest's root rather than inside it so a task can neither read nor
//! rewrite its own logs. Everything under the run directory counts toward the task's `disk`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::task::{InputContents, InputFile, StartError};

/// Where a run's files live.
#[derive(Debug, Clone)]
pub struct SandboxPaths {
    run_dir: PathBuf,
}

impl SandboxPaths {
    /// The layout for one run; `None` if an id cannot be a single path component.
    pub(crate) fn new(sandboxes: &Path, framework: &str, task: &str, run: &str) -> Option<Self> {
        [framework, task, run]
            .iter()
            .all(|id| is_plain_component(id))
            .then(|| Self {
                run_dir: sandboxes.join(framework).join(task).join(run),
            })
    }

    /// The run's directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The directory preopened as the guest's `/`.
    pub fn root(&self) -> PathBuf {
        self.run_dir.join("root")
    }

    /// The guest's stdout.
    pub fn stdout(&self) -> PathBuf {
        self.run_dir.join("stdout")
    }

    /// The guest's stderr.
    pub fn stderr(&self) -> PathBuf {
        self.run_dir.join("stderr")
    }

    /// Creates the run directory and places the inputs; returns the bytes they occupy.
    pub(crate) fn create(&self, inputs: &[InputFile]) -> Result<u64, StartError> {
        let sandbox_error = |e: io::Error| StartError::Sandbox {
            reason: format!("{}: {e}", self.run_dir.display()),
        };
        let root = self.root();
        fs::create_dir_all(&root).map_err(sandbox_error)?;
        let mut placed = 0;
        for input in inputs {
            let relative = input_path(&input.path)?;
            let target = root.join(relative);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(sandbox_error)?;
            }
            let unavailable = |e: io::Error| StartError::InputUnavailable {
                path: input.path.clone(),
                reason: e.to_string(),
            };
            placed += match &input.contents {
                InputContents::Bytes(bytes) => {
                    fs::write(&target, bytes).map_err(sandbox_error)?;
                    bytes.len() as u64
                }
                InputContents::HostFile(source) => {
                    if !source.is_file() {
                        return Err(unavailable(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} is not a file", source.display()),
                        )));
                    }
                    fs::copy(source, &target).map_err(unavailable)?
                }
            };
        }
        Ok(placed)
    }
}

/// Whether `id` can name one directory: no separators, no `.`/`..`, nothing odd.
fn is_plain_component(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

/// An input's path, checked to stay inside the sandbox.
fn input_path(path: &str) -> Result<&Path, StartError> {
    let candidate = Path::new(path);
    let stays_inside = !path.is_empty()
        && candidate
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && candidate
            .components()
            .any(|c| matches!(c, Component::Normal(_)));
    if stays_inside {
        Ok(candidate)
    } else {
        Err(StartError::InvalidInputPath { path: path.into() })
    }
}

/// Bytes the files under `dir` hold, holes excluded: what the `disk` limit measures.
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_usage(&entry.path()),
            Ok(meta) if meta.is_file() => meta.size().min(meta.blocks() * 512),
            _ => 0,
        })
        .sum()
}

/// stdout and stderr share one `max_output` budget.
#[derive(Debug)]
pub(crate) struct OutputCap {
    limit: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
}

impl OutputCap {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
        })
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Takes up to `want` bytes from the budget; returns how many may be written.
    fn take(&self, want: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let grant = (self.limit.saturating_sub(used)).min(want as u64);
            match self.used.compare_exchange_weak(
                used,
                used + grant,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if (grant as usize) < want {
                        self.exceeded.store(true, Ordering::Relaxed);
                    }
                    return grant as usize;
                }
                Err(actual) => used = actual,
            }
        }
    }
}

/// One of the guest's output streams: a file in the run directory, written up to the cap.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    path: Arc<Path>,
    file: Arc<Mutex<Option<File>>>,
    cap: Arc<OutputCap>,
}

impl CappedOutput {
    pub(crate) fn new(path: PathBuf, cap: Arc<OutputCap>) -> Self {
        Self {
            path: path.into(),
            file: Arc::default(),
            cap,
        }
    }

    fn write_capped(&self, bytes: &[u8]) -> io::Result<()> {
        let granted = self.cap.take(bytes.len());
        if granted > 0 {
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            if file.is_none() {
                *file = Some(
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)?,
                );
            }
            if let Some(file) = file.as_mut() {
                file.write_all(&bytes[..granted])?;
            }
        }
        if granted < bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "output limit reached",
            ));
        }
        Ok(())
    }
}

/// Appends the line that tells a reader of the log why it ends where it does.
pub(crate) fn append_output_marker(path: &Path, limit: u64) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(
        file,
        "\n[corral] output limit of {limit} bytes reached; the task was stopped"
    )
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

// Writes to a local file land in the page cache in microseconds; like wasmtime's own
// `OutputFile`, they are done inline rather than on a blocking thread.
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_capped(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.write_capped(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_single_plain_components() {
        let base = Path::new("/w");
        assert!(SandboxPaths::new(base, "fw-1", "task.7", "run_1").is_some());
        for bad in ["", ".", "..", "a/b", "a\0b", "../x", "é"] {
            assert!(SandboxPaths::new(base, bad, "t", "r").is_none(), "{bad:?}");
            assert!(SandboxPaths::new(base, "f", bad, "r").is_none(), "{bad:?}");
        }
    }

    #[test]
    fn input_paths_cannot_leave_the_sandbox() {
        for good in ["input.txt", "data/in.csv", "./a"] {
            assert!(input_path(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "/etc/passwd", "../x", "a/../../x", "a/.."] {
            assert!(input_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_cap_grants_the_remainder_then_nothing() {
        let cap = OutputCap::new(10);
        assert_eq!(cap.take(4), 4);
        assert!(!cap.exceeded());
        assert_eq!(cap.take(10), 6);
        assert!(cap.exceeded());
        assert_eq!(cap.take(1), 0);
    }
}
