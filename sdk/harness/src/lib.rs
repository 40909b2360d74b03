//! `corral-task-harness`: test a task before it reaches a cluster.
//!
//! A [`Harness`] runs task modules (and components) in-process under the agent's real
//! executor, with the limits, arguments, environment, inputs and previous checkpoint a test
//! chooses, and returns what the platform would see: outcome, stdout and stderr, the last
//! progress, the result, the checkpoint, the outputs it left and usage. Add it as a dev-dependency of a task
//! crate; [`build_module`] builds the crate's module from its test (or build it first:
//! `cargo build --release --target wasm32-wasip1`). `corral new task` sets all this up.
//!
//! ```no_run
//! # async fn demo() {
//! use corral_task_harness::Harness;
//!
//! let harness = Harness::new().unwrap();
//! let run = harness
//!     .task_file("target/wasm32-wasip1/release/counter.wasm")
//!     .unwrap()
//!     .args(["count", "5", "1"])
//!     .previous_checkpoint([3u64.to_le_bytes(), 6u64.to_le_bytes()].concat())
//!     .run()
//!     .await;
//! assert_eq!(run.exit_code(), Some(0));
//! assert_eq!(run.result.as_deref(), Some(r#"{"count": 5, "sum": 15}"#));
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use corral_agent::collect::collect;
use corral_agent::{
    Executor, ExecutorConfig, InputContents, InputFile, LogContents, ModuleSource, Stream,
    TaskOutcome, TaskSpec,
};
use corral_types::{FrameworkId, Progress, TaskId, Usage};

/// An executor of its own in a temporary directory; compiled modules are cached across the
/// tasks it runs.
#[derive(Debug)]
pub struct Harness {
    executor: Executor,
    next: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A harness with the executor's defaults.
    ///
    /// # Errors
    ///
    /// The temporary directory or the executor cannot be made.
    pub fn new() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let executor = Executor::new(ExecutorConfig::new(dir.path()))?;
        Ok(Self {
            executor,
            next: AtomicU64::new(0),
            _dir: dir,
        })
    }

    /// A task running `wasm` (a module's or a component's bytes), with the defaults of
    /// [`TaskSpec::new`]: 1 cpu, 256 MiB of memory and of disk, no other limit.
    pub fn task(&self, wasm: impl Into<Arc<[u8]>>) -> Task<'_> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let ids = (
            FrameworkId::new("harness"),
            TaskId::new(format!("task-{n}")),
        );
        let (Ok(framework), Ok(task)) = ids else {
            unreachable!("the harness's IDs are valid names");
        };
        Task {
            harness: self,
            spec: TaskSpec::new(framework, task, ModuleSource::Bytes(wasm.into())),
        }
    }

    /// [`Harness::task`] with the module read from `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read.
    pub fn task_file(&self, path: impl AsRef<Path>) -> std::io::Result<Task<'_>> {
        Ok(self.task(std::fs::read(path)?))
    }
}

/// Why [`build_module`] found no module.
#[derive(Debug)]
pub enum BuildError {
    /// Cargo could not be started.
    Cargo(std::io::Error),
    /// The build failed (cargo's own messages went to stderr).
    Failed(String),
    /// The crate built no binary, so there is no module to run.
    NoModule,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cargo(e) => write!(f, "cannot run cargo: {e}"),
            Self::Failed(status) => write!(
                f,
                "cargo build --target {WASM_TARGET} failed ({status}); is the target installed \
                 (`rustup target add {WASM_TARGET}`)?"
            ),
            Self::NoModule => write!(f, "the crate has no binary to build into a module"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The target task modules are built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Builds the task crate at `crate_dir` (its `Cargo.toml`'s directory; in a test,
/// `env!("CARGO_MANIFEST_DIR")`) for [`WASM_TARGET`] in release mode, as a cluster would
/// run it, and returns the module's path (`target/wasm32-wasip1/release/<name>.wasm`).
///
/// # Errors
///
/// Cargo cannot run, the build fails, or it makes no binary.
pub fn build_module(crate_dir: impl AsRef<Path>) -> Result<std::path::PathBuf, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", WASM_TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(crate_dir.as_ref().join("Cargo.toml"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(BuildError::Cargo)?;
    if !output.status.success() {
        return Err(BuildError::Failed(output.status.to_string()));
    }
    // The last binary cargo reports having made is the crate's.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|message| message["executable"].as_str().map(std::path::PathBuf::from))
        .next_back()
        .ok_or(BuildError::NoModule)
}

/// One task to run, set up builder-style.
#[derive(Debug)]
pub struct Task<'h> {
    harness: &'h Harness,
    spec: TaskSpec,
}

impl Task<'_> {
    /// The arguments after `argv[0]`.
    #[must_use]
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.spec.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.push((name.into(), value.into()));
        self
    }

    /// Places a file at `path` in the sandbox root (which the task sees as `/`).
    #[must_use]
    pub fn input(mut self, path: impl Into<String>, contents: impl Into<Arc<[u8]>>) -> Self {
        self.spec.inputs.push(InputFile {
            path: path.into(),
            contents: InputContents::Bytes(contents.into()),
        });
        self
    }

    /// What the task reads on stdin.
    #[must_use]
    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> Self {
        self.spec.stdin = bytes.into();
        self
    }

    /// The checkpoint a previous attempt left (`corral_task::previous_checkpoint`).
    #[must_use]
    pub fn previous_checkpoint(mut self, bytes: impl Into<Bytes>) -> Self {
        self.spec.checkpoint = bytes.into();
        self
    }

    /// Bounds memory (all memories and tables together).
    #[must_use]
    pub fn mem_bytes(mut self, bytes: u64) -> Self {
        self.spec.resources = self.spec.resources.with_mem_bytes(bytes);
        self
    }

    /// Bounds what the task may write (files and logs).
    #[must_use]
    pub fn disk_bytes(mut self, bytes: u64) -> Self {
        self.spec.resources = self.spec.resources.with_disk_bytes(bytes);
        self
    }

    /// Bounds the fuel it may use.
    #[must_use]
    pub fn max_fuel(mut self, fuel: u64) -> Self {
        self.spec.limits.max_fuel = Some(fuel);
        self
    }

    /// Stops it after `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.limits.timeout = Some(timeout);
        self
    }

    /// Runs the task to its end.
    pub async fn run(self) -> Run {
        let handle = self.harness.executor.launch(self.spec);
        let output = handle.output().cloned();
        handle.started().await;
        let control = handle.control_dir();
        let result = handle.wait().await;
        let log = |stream| match output.as_ref().map(|o| o.contents(stream)) {
            Some(LogContents::Memory(bytes, _)) => bytes.to_vec(),
            Some(LogContents::File(path)) => std::fs::read(path).unwrap_or_default(),
            Some(LogContents::Empty) | None => Vec::new(),
        };
        let (progress, result_json, checkpoint) = match &control {
            Some(dir) => (
                corral_agent::sdk::read_progress(dir).await,
                corral_agent::sdk::read_result(dir).await,
                corral_agent::sdk::read_checkpoint(dir).await,
            ),
            _ => (None, None, None),
        };
        // What the platform would keep: the outputs folder's files, as the agent collects
        // them (bounded, links not followed).
        let outputs = match output.as_ref().filter(|o| o.has_root()) {
            Some(output) => collect(&output.sandbox().root())
                .files
                .into_iter()
                .filter_map(|f| Some((f.path, std::fs::read(f.host_path).ok()?)))
                .collect(),
            None => BTreeMap::new(),
        };
        Run {
            outcome: result.outcome,
            usage: result.usage,
            stdout: log(Stream::Stdout),
            stderr: log(Stream::Stderr),
            progress,
            result: result_json.clone().and_then(Result::ok),
            result_error: result_json.and_then(Result::err),
            checkpoint,
            outputs,
        }
    }
}

/// How a task run ended and what it left.
#[derive(Debug, Clone)]
pub struct Run {
    /// How it ended.
    pub outcome: TaskOutcome,
    /// What it used.
    pub usage: Usage,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    /// The last progress it reported (`corral_task::progress`).
    pub progress: Option<Progress>,
    /// Its result, checked to be JSON within the limit (`corral_task::set_result`).
    pub result: Option<String>,
    /// Why a result it set is not handed on (not JSON, too large).
    pub result_error: Option<String>,
    /// The last checkpoint it kept (`corral_task::checkpoint`).
    pub checkpoint: Option<Bytes>,
    /// The files it left in its outputs folder (`corral_task::write_output`), by path.
    pub outputs: BTreeMap<String, Vec<u8>>,
}

impl Run {
    /// The exit code, if it exited.
    #[must_use]
    pub fn exit_code(&self) -> Option<i32> {
        match self.outcome {
            TaskOutcome::Exited { code } => Some(code),
            _ => None,
        }
    }

    /// Its stdout as text (lossy).
    #[must_use]
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Its stderr as text (lossy).
    #[must_use]
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_demo() -> Vec<u8> {
        corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO)
    }

    #[tokio::test]
    async fn a_run_returns_output_progress_result_checkpoint_and_usage() {
        let harness = Harness::new().unwrap();
        let run = harness
            .task(sdk_demo())
            .args(["count", "4", "1"])
            .run()
            .await;
        assert_eq!(run.exit_code(), Some(0), "{}", run.stderr_text());
        assert_eq!(run.stdout_text(), "counted to 4\n");
        assert_eq!(run.progress, Some(Progress::new(1.0, "counted to 4")));
        assert_eq!(run.result.as_deref(), Some(r#"{"count": 4, "sum": 10}"#));
        let expected: Vec<u8> = [4u64.to_le_bytes(), 10u64.to_le_bytes()].concat();
        assert_eq!(run.checkpoint.as_deref(), Some(&expected[..]));
        assert!(run.usage.fuel_consumed > 0);
    }

    #[tokio::test]
    async fn a_previous_checkpoint_and_limits_are_the_tests_to_choose() {
        let harness = Harness::new().unwrap();
        let run = harness
            .task(sdk_demo())
            .args(["count", "4", "1"])
            .previous_checkpoint([2u64.to_le_bytes(), 3u64.to_le_bytes()].concat())
            .run()
            .await;
        assert_eq!(run.stdout_text(), "resumed at 2\ncounted to 4\n");
        assert_eq!(run.result.as_deref(), Some(r#"{"count": 4, "sum": 10}"#));

        let run = harness
            .task(sdk_demo())
            .args(["count", "1000000", "0"])
            .max_fuel(5_000_000)
            .run()
            .await;
        assert_eq!(run.outcome, TaskOutcome::OutOfFuel);

        let run = harness
            .task(sdk_demo())
            .args(["reverse", "/in.txt", "out/reversed.txt"])
            .input("in.txt", &b"abc"[..])
            .run()
            .await;
        assert_eq!(run.exit_code(), Some(0), "{}", run.stderr_text());
        assert_eq!(
            run.outputs,
            BTreeMap::from([("out/reversed.txt".to_owned(), b"cba".to_vec())])
        );

        let run = harness
            .task(sdk_demo())
            .args(["result", "{oops"])
            .run()
            .await;
        assert_eq!(run.result, None);
        assert!(run.result_error.unwrap().contains("not JSON"));
    }
}
