//! Shared helpers: one executor for the whole test binary, and shortcuts to run a guest.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use corral_agent::{
    Executor, ExecutorConfig, InputFile, LogContents, ModuleSource, Phase, Stream, TaskHandle,
    TaskResult, TaskSpec,
};
use corral_types::{FrameworkId, TaskId};

/// An executor shared by tests that need no special configuration; its work directory lives
/// under cargo's target tmp dir for the life of the test process.
pub(crate) fn executor() -> &'static Executor {
    static EXECUTOR: OnceLock<Executor> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("executor-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        Executor::new(ExecutorConfig::new(dir)).unwrap()
    })
}

/// A fresh executor with its own work directory (for tests about restarts and settings).
pub(crate) fn executor_in(dir: &Path) -> Executor {
    Executor::new(ExecutorConfig::new(dir)).unwrap()
}

/// A spec for `module` as task `task` of the tests' framework.
pub(crate) fn named(task: impl AsRef<str>, module: ModuleSource) -> TaskSpec {
    TaskSpec::new(
        FrameworkId::new("tests").unwrap(),
        TaskId::new(task).unwrap(),
        module,
    )
}

/// A spec for the program at `path` (one of `corral_wasm_tasks`'s constants) with `args`.
pub(crate) fn spec(path: &str, args: &[&str]) -> TaskSpec {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = Path::new(path).file_stem().unwrap().to_str().unwrap();
    let mut spec = named(
        format!("{name}-{n}"),
        ModuleSource::Bytes(Arc::from(corral_wasm_tasks::bytes(path))),
    );
    spec.args = args.iter().map(|s| s.to_string()).collect();
    spec
}

/// An input file carried with the task.
pub(crate) fn input(path: &str, contents: &[u8]) -> InputFile {
    InputFile {
        path: path.into(),
        contents: corral_agent::InputContents::Bytes(Arc::from(contents)),
    }
}

/// What a finished run left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) result: TaskResult,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) root: std::path::PathBuf,
}

/// Launches `spec` on `executor` and waits for it.
pub(crate) async fn run_on(executor: &Executor, spec: TaskSpec) -> Finished {
    finish(executor.launch(spec)).await
}

/// Launches `spec` on the shared executor and waits for it.
pub(crate) async fn run(spec: TaskSpec) -> Finished {
    run_on(executor(), spec).await
}

/// Waits for a launched task and reads its logs.
pub(crate) async fn finish(handle: TaskHandle) -> Finished {
    let output = handle.output().cloned();
    let result = handle.wait().await;
    let read = |stream| {
        let bytes = match output.as_ref().map(|o| o.contents(stream)) {
            Some(LogContents::Memory(bytes, _)) => bytes.to_vec(),
            Some(LogContents::File(path)) => std::fs::read(path).unwrap(),
            Some(LogContents::Empty) | None => Vec::new(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Finished {
        result,
        stdout: read(Stream::Stdout),
        stderr: read(Stream::Stderr),
        root: output.map(|o| o.sandbox().root()).unwrap_or_default(),
    }
}

/// Waits until the task has burnt some CPU (for guests that never reach their entrypoint).
pub(crate) async fn until_busy(handle: &TaskHandle) {
    while handle.cpu_time() < std::time::Duration::from_millis(2) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Waits until the task's entrypoint is running.
pub(crate) async fn until_running(handle: &TaskHandle) {
    assert_eq!(handle.started().await, Phase::Running);
}
