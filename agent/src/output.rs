//! A run's stdout and stderr: held in memory while small, in files beside its root once larger.
//!
//! Most tasks print a few lines. Creating a file for them is the single most expensive thing
//! an agent does per task (an inode allocation, and another to free it when the sandbox is
//! collected), so each stream stays in memory up to [`INLINE_LOG_BYTES`] and only a stream that
//! grows past it, or whose run outlasts [`KEPT_IN_MEMORY_FOR`], moves into its file
//! (`<task>.<run>.stdout`). The node keeps a finished run's in-memory logs in its checkpoint,
//! so they outlive the agent's process like files do.
//!
//! stdout and stderr share one `max_output` budget. When it runs out the task stops with
//! OUTPUT_LIMIT and stdout ends with a marker line: output is never truncated silently.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::sandbox::SandboxPaths;

/// Largest stream kept in memory; a stream that grows past it moves to its file.
pub const INLINE_LOG_BYTES: usize = 8 * 1024;

/// How long a run's logs may stay in memory only. A run that lasts longer has them moved to
/// its files, so an agent that crashes loses at most this much of a running task's output.
pub const KEPT_IN_MEMORY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// One of a guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }
}

/// Where a stream's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogContents {
    /// Held in memory: all of it, and when it was last written.
    Memory(Bytes, SystemTime),
    /// In this file.
    File(PathBuf),
    /// Nothing was ever written.
    Empty,
}

#[derive(Debug)]
enum Log {
    /// Everything written so far, and when.
    Memory(Vec<u8>, SystemTime),
    /// Spilled into its file, kept open for appends.
    Spilled(File),
    /// In its file or never written: a run recovered from the checkpoint.
    OnDisk,
}

/// A run's stdout and stderr.
#[derive(Debug)]
pub struct RunOutput {
    sandbox: SandboxPaths,
    limit: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
    /// Set by [`RunOutput::move_to_disk`]: every write goes to the files from then on.
    on_disk: AtomicBool,
    /// Whether the run's root directory was created.
    has_root: AtomicBool,
    logs: [Mutex<Log>; 2],
}

impl RunOutput {
    /// Empty logs for a new run, with `limit` bytes of output allowed.
    pub(crate) fn new(sandbox: SandboxPaths, limit: u64) -> Arc<Self> {
        let empty = || Mutex::new(Log::Memory(Vec::new(), SystemTime::UNIX_EPOCH));
        Arc::new(Self {
            sandbox,
            limit,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            on_disk: AtomicBool::new(false),
            has_root: AtomicBool::new(false),
            logs: [empty(), empty()],
        })
    }

    /// The logs of a finished run: in-memory contents where the checkpoint kept them, the
    /// files otherwise.
    pub fn finished(
        sandbox: SandboxPaths,
        stdout: Option<Vec<u8>>,
        stderr: Option<Vec<u8>>,
    ) -> Arc<Self> {
        let log = |kept: Option<Vec<u8>>| {
            Mutex::new(kept.map_or(Log::OnDisk, |bytes| Log::Memory(bytes, SystemTime::now())))
        };
        Arc::new(Self {
            sandbox,
            limit: 0,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            on_disk: AtomicBool::new(true),
            // Not recorded in the checkpoint: assume there is one.
            has_root: AtomicBool::new(true),
            logs: [log(stdout), log(stderr)],
        })
    }

    /// The logs of a run that failed before it had a sandbox: empty, nothing on disk.
    pub(crate) fn never_written() -> Arc<Self> {
        Self::new(SandboxPaths::from_base(PathBuf::new()), 0)
    }

    /// The run's sandbox.
    pub fn sandbox(&self) -> &SandboxPaths {
        &self.sandbox
    }

    fn log(&self, stream: Stream) -> MutexGuard<'_, Log> {
        self.logs[stream.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, stream: Stream) -> PathBuf {
        match stream {
            Stream::Stdout => self.sandbox.stdout(),
            Stream::Stderr => self.sandbox.stderr(),
        }
    }

    /// Notes that the run's root directory exists.
    pub(crate) fn root_created(&self) {
        self.has_root.store(true, Ordering::Relaxed);
    }

    /// Whether the run's root directory exists (the run could reach files, or had inputs).
    pub fn has_root(&self) -> bool {
        self.has_root.load(Ordering::Relaxed)
    }

    /// Whether the run may have left anything on disk (a root, or a log in its file); a run
    /// that did not needs no clean-up.
    pub fn has_files(&self) -> bool {
        self.has_root()
            || [Stream::Stdout, Stream::Stderr]
                .into_iter()
                .any(|stream| !matches!(&*self.log(stream), Log::Memory(..)))
    }

    /// Whether the guest tried to write past `max_output`.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Where `stream`'s bytes are now.
    pub fn contents(&self, stream: Stream) -> LogContents {
        match &*self.log(stream) {
            Log::Memory(bytes, _) if bytes.is_empty() => LogContents::Empty,
            Log::Memory(bytes, at) => LogContents::Memory(Bytes::copy_from_slice(bytes), *at),
            Log::Spilled(_) | Log::OnDisk => LogContents::File(self.path(stream)),
        }
    }

    /// `stream`'s contents if it is held in memory (what the checkpoint keeps).
    pub fn inline(&self, stream: Stream) -> Option<Vec<u8>> {
        match &*self.log(stream) {
            Log::Memory(bytes, _) => Some(bytes.clone()),
            Log::Spilled(_) | Log::OnDisk => None,
        }
    }

    /// Bytes held in memory; the `disk` limit counts them as if they were on disk.
    pub(crate) fn in_memory_bytes(&self) -> u64 {
        [Stream::Stdout, Stream::Stderr]
            .into_iter()
            .map(|stream| match &*self.log(stream) {
                Log::Memory(bytes, _) => bytes.len() as u64,
                Log::Spilled(_) | Log::OnDisk => 0,
            })
            .sum()
    }

    /// Takes up to `want` bytes from the shared budget; returns how many may be written.
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

    /// Writes what the budget allows; fails once it has run out.
    fn write_capped(&self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let granted = self.take(bytes.len());
        if granted > 0 {
            self.append(stream, &bytes[..granted])?;
        }
        if granted < bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "output limit reached",
            ));
        }
        Ok(())
    }

    /// Appends to the stream in memory, moving it into its file once it would outgrow
    /// [`INLINE_LOG_BYTES`] or the run has been moved to disk.
    fn append(&self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let mut log = self.log(stream);
        if let Log::Memory(held, at) = &mut *log
            && !self.on_disk.load(Ordering::Relaxed)
            && held.len() + bytes.len() <= INLINE_LOG_BYTES
        {
            held.extend_from_slice(bytes);
            *at = SystemTime::now();
            return Ok(());
        }
        self.spill(stream, &mut log)?;
        match &mut *log {
            Log::Spilled(file) => file.write_all(bytes),
            Log::Memory(..) | Log::OnDisk => Err(io::Error::other("the run has finished")),
        }
    }

    /// Moves a stream held in memory into its file (created even if empty).
    fn spill(&self, stream: Stream, log: &mut Log) -> io::Result<()> {
        if let Log::Memory(held, _) = log {
            self.sandbox.create_parent()?;
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(stream))?;
            file.write_all(held)?;
            *log = Log::Spilled(file);
        }
        Ok(())
    }

    /// Moves both streams to their files, now for what they hold and for every later write.
    /// A stream that holds nothing gets its file on its first write.
    pub(crate) fn move_to_disk(&self) -> io::Result<()> {
        self.on_disk.store(true, Ordering::Relaxed);
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut log = self.log(stream);
            if matches!(&*log, Log::Memory(held, _) if !held.is_empty()) {
                self.spill(stream, &mut log)?;
            }
        }
        Ok(())
    }

    /// Ends stdout with the line that tells a reader why the output stops where it does.
    pub(crate) fn mark_limit_reached(&self) -> io::Result<()> {
        let marker = format!(
            "\n[corral] output limit of {} bytes reached; the task was stopped\n",
            self.limit
        );
        self.append(Stream::Stdout, marker.as_bytes())
    }

    /// Writes what an entrypoint returned to stdout, one value per line, as `wasmtime run
    /// --invoke` prints them; fails once the output budget has run out.
    pub(crate) fn write_results(&self, results: &[String]) -> io::Result<()> {
        let text: String = results.iter().map(|r| format!("{r}\n")).collect();
        self.write_capped(Stream::Stdout, text.as_bytes())
    }

    /// The guest-facing end of `stream`.
    pub(crate) fn writer(self: &Arc<Self>, stream: Stream) -> GuestOutput {
        GuestOutput {
            output: self.clone(),
            stream,
        }
    }
}

/// One of the guest's output streams, as wasmtime-wasi sees it.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    output: Arc<RunOutput>,
    stream: Stream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

// Writes land in memory or the page cache in microseconds; like wasmtime's own `OutputFile`,
// they are done inline rather than on a blocking thread.
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output
            .write_capped(self.stream, &bytes)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            self.output
                .write_capped(self.stream, buf)
                .map(|()| buf.len()),
        )
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

    fn output(limit: u64) -> (tempfile::TempDir, Arc<RunOutput>) {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = SandboxPaths::from_base(dir.path().join("fw/t.1"));
        (dir, RunOutput::new(sandbox, limit))
    }

    #[test]
    fn the_budget_grants_the_remainder_then_nothing() {
        let (_dir, output) = output(10);
        assert_eq!(output.take(4), 4);
        assert!(!output.exceeded());
        assert_eq!(output.take(10), 6);
        assert!(output.exceeded());
        assert_eq!(output.take(1), 0);
    }

    #[test]
    fn small_logs_stay_in_memory_and_large_ones_spill_whole_into_their_file() {
        let (dir, output) = output(1 << 20);
        assert_eq!(output.contents(Stream::Stderr), LogContents::Empty);
        output.write_capped(Stream::Stdout, b"hello\n").unwrap();
        assert!(matches!(
            output.contents(Stream::Stdout),
            LogContents::Memory(bytes, _) if bytes == "hello\n"
        ));
        assert_eq!(output.in_memory_bytes(), 6);
        assert!(!output.has_files());
        assert!(
            !dir.path().join("fw").exists(),
            "nothing on disk, not even a directory"
        );

        let big = vec![b'x'; INLINE_LOG_BYTES];
        output.write_capped(Stream::Stdout, &big).unwrap();
        let path = output.sandbox().stdout();
        assert_eq!(
            output.contents(Stream::Stdout),
            LogContents::File(path.clone())
        );
        assert_eq!(output.inline(Stream::Stdout), None);
        assert_eq!(
            fs::read(&path).unwrap(),
            [b"hello\n".as_slice(), &big].concat()
        );
        assert_eq!(output.in_memory_bytes(), 0);
    }

    #[test]
    fn a_run_moved_to_disk_writes_its_files_from_then_on() {
        let (_dir, output) = output(1 << 20);
        output.write_capped(Stream::Stdout, b"early\n").unwrap();
        output.move_to_disk().unwrap();
        let sandbox = output.sandbox().clone();
        assert_eq!(fs::read(sandbox.stdout()).unwrap(), b"early\n");
        assert!(!sandbox.stderr().exists(), "nothing written, no file");
        output.write_capped(Stream::Stderr, b"late\n").unwrap();
        output.write_capped(Stream::Stdout, b"more\n").unwrap();
        assert_eq!(fs::read(sandbox.stderr()).unwrap(), b"late\n");
        assert_eq!(fs::read(sandbox.stdout()).unwrap(), b"early\nmore\n");
        assert_eq!(output.inline(Stream::Stdout), None);
    }

    #[test]
    fn the_marker_follows_the_output_that_fit() {
        let (_dir, output) = output(4);
        assert!(output.write_capped(Stream::Stdout, b"abcdef").is_err());
        output.mark_limit_reached().unwrap();
        let kept = String::from_utf8(output.inline(Stream::Stdout).unwrap()).unwrap();
        assert!(
            kept.starts_with("abcd\n[corral] output limit of 4 bytes"),
            "{kept}"
        );
    }

    #[test]
    fn finished_runs_read_from_memory_or_their_files() {
        let sandbox = SandboxPaths::from_base("/nowhere/t.1".into());
        let output = RunOutput::finished(sandbox.clone(), Some(b"kept".to_vec()), None);
        assert!(
            matches!(output.contents(Stream::Stdout), LogContents::Memory(b, _) if b == "kept")
        );
        assert_eq!(
            output.contents(Stream::Stderr),
            LogContents::File(sandbox.stderr())
        );
    }
}
