//! The executor: runs tasks on a runtime of their own and reports how each ended.
//!
//! A task's life, one hook per concern:
//!
//! ```text
//!  launch ─► validate spec ─► resolve module ─► prepare sandbox ─► build store ─► instantiate ─► run
//!              │                 │ (cache)         │ (inputs)         │ (wasi, limits)  └─────┬────┘
//!              ▼                 ▼                 ▼                  ▼          kill / timeout / trap /
//!           FailedToStart ◄──────┴─────────────────┴──────────────────┘          exit ─► classify ─► result
//! ```
//!
//! Guests run on the executor's own multi-threaded runtime, never on the caller's: a busy guest
//! cannot delay the agent's heartbeats. Each guest yields every few tens of microseconds of
//! fuel; those yield points are where its CPU share, kill and timeout take effect.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use wasmtime::{Engine, Store, Trap, Val};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use corral_types::{Digest, OUTPUTS_DIR, OUTPUTS_GUEST_PATH, TrapKind, Usage};

use crate::cache::{BoundWorker, CacheStats, Code, Linkers, ModuleCache, ModuleError, Prepared};
use crate::compile_slots::Owner;
use crate::compile_worker::CompileWorker;
use crate::cpu::{CpuCounter, Kill, Metered};
use crate::engine::{AllocatorKind, EngineError, EngineOptions, TaskEngine};
use crate::guest::{DiskBudget, DiskLimitExceeded, OutputLimitExceeded, TaskState};
use crate::invoke::{self, Call};
use crate::memory::MemoryLimiter;
use crate::metrics::AgentMetrics;
use crate::output::{KEPT_IN_MEMORY_FOR, RunOutput, Stream};
use crate::sandbox::SandboxPaths;
use crate::sdk;
use crate::task::{ModuleSource, StartError, TaskOutcome, TaskResult, TaskSpec};

/// Settings for an [`Executor`].
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Holds `sandboxes/` and `modules/`.
    pub work_dir: PathBuf,
    /// How the wasmtime engine is built.
    pub engine: EngineOptions,
    /// Largest module admitted, in bytes.
    pub max_module_size: u64,
    /// Pre-instantiated modules kept in memory.
    pub cached_modules: NonZeroUsize,
    /// Threads that run guests.
    pub threads: NonZeroUsize,
    /// Guest execution between yield points; bounds how late a kill or throttle lands.
    pub yield_every: Duration,
    /// Compile in a child process held to a budget; `None` compiles in this process.
    pub compile_worker: Option<CompileWorker>,
}

impl ExecutorConfig {
    /// Defaults for an executor whose state lives under `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            engine: EngineOptions::default(),
            max_module_size: 64 << 20,
            cached_modules: NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN),
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            yield_every: Duration::from_micros(100),
            compile_worker: None,
        }
    }
}

/// The executor could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The wasmtime engine could not be configured.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The work directory is unusable.
    #[error("work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The WASI linker or the calibration guest could not be set up.
    #[error("cannot set up guest execution: {0}")]
    Setup(String),
}

/// State shared by the executor and its running tasks.
struct Shared {
    engine: TaskEngine,
    metrics: Arc<AgentMetrics>,
    cache: Arc<ModuleCache<TaskState>>,
    sandboxes: PathBuf,
    fuel_per_cpu_second: u64,
    yield_interval: u64,
    next_run: AtomicU64,
}

/// Runs tasks. Dropping it stops every task still running.
pub struct Executor {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("engine", &self.shared.engine)
            .field("fuel_per_cpu_second", &self.shared.fuel_per_cpu_second)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Builds the engine, opens the module cache, calibrates fuel and starts the runtime.
    pub fn new(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        let work_dir_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecutorError::WorkDir { path, source }
        };
        let sandboxes = config.work_dir.join("sandboxes");
        std::fs::create_dir_all(&sandboxes).map_err(work_dir_error(&sandboxes))?;
        let engine = TaskEngine::new(&config.engine)?;
        let setup = |e: wasmtime::Error| ExecutorError::Setup(format!("{e:#}"));
        let linkers = Linkers {
            module: crate::guest::linker(engine.engine()).map_err(setup)?,
            component: crate::guest::component_linker(engine.engine()).map_err(setup)?,
        };
        let modules = config.work_dir.join("modules");
        let metrics = Arc::new(AgentMetrics::default());
        let cache = ModuleCache::new(
            engine.engine().clone(),
            linkers,
            &modules,
            engine.compatibility(),
            config.max_module_size,
            config.cached_modules,
            metrics.clone(),
        )
        .map_err(work_dir_error(&modules))?;
        let cache = match config.compile_worker.clone() {
            Some(worker) => cache.with_compile_worker(BoundWorker {
                worker,
                compatibility: engine.compatibility().to_owned(),
                max_wasm_stack: config.engine.max_wasm_stack,
            }),
            None => cache,
        };
        let fuel_per_cpu_second = crate::calibrate::fuel_per_cpu_second(engine.engine())
            .map_err(|e| ExecutorError::Setup(format!("fuel calibration failed: {e:#}")))?;
        let yield_interval = ((fuel_per_cpu_second as u128 * config.yield_every.as_nanos())
            / 1_000_000_000)
            .max(1_000) as u64;
        tracing::info!(
            allocator = ?engine.allocator(),
            fuel_per_cpu_second,
            yield_interval,
            "executor ready"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.get())
            .thread_name("corral-task")
            .enable_all()
            .build()
            .map_err(|e| ExecutorError::Setup(format!("cannot start task runtime: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                metrics,
                cache: Arc::new(cache),
                sandboxes,
                fuel_per_cpu_second,
                yield_interval,
                next_run: AtomicU64::new(run_seed()),
            }),
            runtime: Some(runtime),
        })
    }

    /// The agent's metrics (what `/metrics` serves).
    pub(crate) fn metrics(&self) -> &AgentMetrics {
        &self.shared.metrics
    }

    /// The wasmtime engine tasks run on (for benchmarks and tools that compare against it).
    pub fn engine(&self) -> &Engine {
        self.shared.engine.engine()
    }

    /// The instance allocator in use after any fallback.
    pub fn allocator(&self) -> AllocatorKind {
        self.shared.engine.allocator()
    }

    /// The engine compatibility hash that keys compiled code.
    pub fn compatibility(&self) -> &str {
        self.shared.engine.compatibility()
    }

    /// Fuel one CPU-second of guest execution consumes on this host, measured at start.
    pub fn fuel_per_cpu_second(&self) -> u64 {
        self.shared.fuel_per_cpu_second
    }

    /// Fuel a guest runs between yield points (derived from the calibration).
    pub fn fuel_yield_interval(&self) -> u64 {
        self.shared.yield_interval
    }

    /// Where the module cache found modules so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    /// Whether compiled code for `digest` is already present. Reads no file.
    pub fn has_module(&self, digest: &Digest) -> bool {
        self.shared.cache.contains(digest)
    }

    /// The digests of the modules compiled for this engine, in order: what a launch of them
    /// finds without fetching or compiling. Reads no file.
    pub fn cached_modules(&self) -> Vec<Digest> {
        self.shared.cache.digests()
    }

    /// Admits and compiles a module ahead of launches; returns its digest.
    pub async fn add_module(&self, bytes: impl Into<Arc<[u8]>>) -> Result<Digest, ModuleError> {
        let cache = self.shared.cache.clone();
        let bytes = bytes.into();
        self.spawn(async move { cache.admit(bytes, None).await.map(|(digest, _)| digest) })
            .await
            .unwrap_or_else(|_| {
                Err(ModuleError::Io {
                    reason: "executor is shutting down".into(),
                })
            })
    }

    /// Starts a task. Never fails: every problem ends up in the task's outcome.
    pub fn launch(&self, spec: TaskSpec) -> TaskHandle {
        let run = format!(
            "{:016x}",
            self.shared.next_run.fetch_add(1, Ordering::Relaxed)
        );
        let output = SandboxPaths::new(
            &self.shared.sandboxes,
            spec.framework_id.as_str(),
            spec.task_id.as_str(),
            &run,
        )
        .map(|sandbox| RunOutput::new(sandbox, spec.max_output_bytes()));
        let kill = Arc::new(Kill::default());
        let cpu = Arc::new(CpuCounter::default());
        let (tx, rx) = oneshot::channel();
        let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
        let uses_sdk = Arc::new(AtomicBool::new(false));
        let run_task = run_task(
            self.shared.clone(),
            spec,
            output.clone(),
            kill.clone(),
            cpu.clone(),
            phase_tx.clone(),
            uses_sdk.clone(),
        );
        drop(self.spawn(async move {
            let result = run_task.await;
            phase_tx.send_replace(Phase::Finished);
            let _ = tx.send(result);
        }));
        TaskHandle {
            output,
            kill: KillSwitch(kill),
            cpu,
            phase: phase_rx,
            uses_sdk,
            result: rx,
        }
    }

    fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(future),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime blocks; shutting it down in the background is allowed anywhere,
        // including inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn run_seed() -> u64 {
    // Run ids only need to differ between runs of one task, across agent restarts too.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        << 8
}

/// Stops a task from anywhere; cheap to clone.
#[derive(Debug, Clone)]
pub struct KillSwitch(Arc<Kill>);

impl KillSwitch {
    /// Asks the task to stop; it ends as [`TaskOutcome::Killed`] at its next yield point.
    pub fn kill(&self) {
        self.0.request();
    }
}

#[cfg(test)]
impl KillSwitch {
    /// A switch attached to no task, and a probe of whether it was pulled.
    pub(crate) fn detached() -> (Self, impl Fn() -> bool) {
        let kill = Arc::new(Kill::default());
        let probe = kill.clone();
        (Self(kill), move || probe.requested())
    }
}

/// Where a launched task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Fetching its module, preparing its sandbox, instantiating.
    Starting,
    /// Instantiated: its entrypoint is running.
    Running,
    /// Ended; its result is ready.
    Finished,
}

/// A launched task.
#[derive(Debug)]
pub struct TaskHandle {
    output: Option<Arc<RunOutput>>,
    kill: KillSwitch,
    cpu: Arc<CpuCounter>,
    phase: watch::Receiver<Phase>,
    /// Set once the run is known to be built with the task SDK (before it runs).
    uses_sdk: Arc<AtomicBool>,
    result: oneshot::Receiver<TaskResult>,
}

impl TaskHandle {
    /// The run's sandbox; `None` when the spec's ids could not name one.
    pub fn sandbox(&self) -> Option<&SandboxPaths> {
        self.output.as_ref().map(|output| output.sandbox())
    }

    /// The run's stdout and stderr, readable while it runs; `None` as for the sandbox.
    pub fn output(&self) -> Option<&Arc<RunOutput>> {
        self.output.as_ref()
    }

    /// The task SDK's control directory (see [`crate::sdk`]), for a task built with the
    /// SDK; known once the task runs ([`TaskHandle::started`]).
    pub fn control_dir(&self) -> Option<PathBuf> {
        if !self.uses_sdk.load(Ordering::Acquire) {
            return None;
        }
        self.sandbox().map(SandboxPaths::control)
    }

    /// A switch that kills this task.
    pub fn kill_switch(&self) -> KillSwitch {
        self.kill.clone()
    }

    /// Kills the task.
    pub fn kill(&self) {
        self.kill.kill();
    }

    /// Where the task is now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Waits until the task is running or has ended (never started, or already finished);
    /// returns the phase it reached.
    pub async fn started(&self) -> Phase {
        let mut phase = self.phase.clone();
        match phase.wait_for(|p| *p >= Phase::Running).await {
            Ok(reached) => *reached,
            // The executor was dropped.
            Err(_) => Phase::Finished,
        }
    }

    /// CPU time the guest has used so far.
    pub fn cpu_time(&self) -> Duration {
        self.cpu.get()
    }

    /// Waits for the task to end.
    pub async fn wait(self) -> TaskResult {
        self.result.await.unwrap_or(TaskResult {
            // The executor was dropped with the task still running.
            outcome: TaskOutcome::Killed,
            usage: Usage::default(),
        })
    }
}

fn failed(error: StartError) -> TaskResult {
    TaskResult {
        outcome: TaskOutcome::FailedToStart(error),
        usage: Usage::default(),
    }
}

async fn run_task(
    shared: Arc<Shared>,
    spec: TaskSpec,
    output: Option<Arc<RunOutput>>,
    kill: Arc<Kill>,
    cpu: Arc<CpuCounter>,
    phase: watch::Sender<Phase>,
    uses_sdk: Arc<AtomicBool>,
) -> TaskResult {
    let Some(output) = output else {
        return failed(StartError::InvalidSpec {
            reason: "framework and task ids must be plain names (letters, digits, - _ . : @)"
                .into(),
        });
    };
    if spec.resources.cpus_milli() == 0 {
        return failed(StartError::InvalidSpec {
            reason: "cpus must be greater than zero".into(),
        });
    }
    let owner = Some(spec.framework_id.clone());
    let prepared = match resolve_module(&shared, &spec.module, owner).await {
        Ok(prepared) => prepared,
        Err(error) => return failed(error.into()),
    };
    let call = match invoke::call(
        &prepared,
        shared.engine.engine(),
        &spec.entrypoint,
        &spec.args,
    ) {
        Ok(call) => call,
        Err(error) => return failed(error),
    };
    let link_error = |message: String| StartError::Link { message };
    let runnable = match (&prepared.code, call) {
        (Code::Module { pre: Ok(pre), .. }, Call::Module(params)) => {
            Runnable::Module(pre.clone(), params)
        }
        (Code::Component { pre: Ok(pre) }, Call::Run) => {
            match wasmtime_wasi::p2::bindings::CommandPre::new(pre.clone()) {
                Ok(command) => Runnable::Command(command),
                Err(e) => {
                    return failed(link_error(format!(
                        "{e:#}; a component without a `wasi:cli/run` export runs a function it \
                     exports, named as a call: `--invoke 'name(args)'`"
                    )));
                }
            }
        }
        (Code::Component { pre: Ok(pre) }, Call::Component { func, params }) => {
            Runnable::ComponentFunc(pre.clone(), func, params)
        }
        (
            Code::Module {
                pre: Err(message), ..
            }
            | Code::Component { pre: Err(message) },
            _,
        ) => {
            return failed(link_error(message.clone()));
        }
        (Code::Module { .. }, _) | (Code::Component { .. }, Call::Module(_)) => {
            return failed(link_error("the entrypoint does not fit the code".into()));
        }
    };
    let mut store = match build_store(&shared, &spec, &output, &prepared) {
        Ok(store) => store,
        Err(error) => return failed(error),
    };
    // Before the guest runs, so whoever waited for it to start sees the flag.
    uses_sdk.store(prepared.uses_sdk, Ordering::Release);
    let fuel_budget = spec.limits.max_fuel.unwrap_or(u64::MAX);
    let start = Instant::now();
    let timeout_at = spec.limits.timeout.map(|limit| start + limit);
    let outcome = if store.data().disk.exceeded() {
        // The inputs alone do not fit in the task's disk.
        TaskOutcome::DiskLimit
    } else {
        let entrypoint = spec.entrypoint.as_str();
        let guest = Metered::new(
            async {
                match runnable {
                    Runnable::Module(pre, params) => {
                        let instance = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(|e| (Stage::Instantiate, e))?;
                        phase.send_replace(Phase::Running);
                        invoke::call_module_func(&mut store, &instance, entrypoint, params, &output)
                            .await
                    }
                    Runnable::ComponentFunc(pre, func, params) => {
                        let instance = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(|e| (Stage::Instantiate, e))?;
                        phase.send_replace(Phase::Running);
                        invoke::call_component_func(&mut store, &instance, func, &params, &output)
                            .await
                    }
                    Runnable::Command(pre) => {
                        let command = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(|e| (Stage::Instantiate, e))?;
                        phase.send_replace(Phase::Running);
                        match command.wasi_cli_run().call_run(&mut store).await {
                            Ok(Ok(())) => Ok(()),
                            // `run` returned its error: exit code 1, as `wasmtime run` exits.
                            Ok(Err(())) => Err((Stage::Run, I32Exit(1).into())),
                            Err(e) => Err((Stage::Run, e)),
                        }
                    }
                }
            },
            spec.resources.cpus_milli(),
            cpu.clone(),
            kill.clone(),
        )
        .with_deadline(timeout_at.map(tokio::time::Instant::from_std));
        // What happens at set times in a run: its logs move to disk (if it is still running),
        // then its timeout ends it.
        let timeout = async {
            let to_disk_at = start + KEPT_IN_MEMORY_FOR;
            if timeout_at.is_none_or(|at| to_disk_at < at) {
                tokio::time::sleep_until(to_disk_at.into()).await;
                if let Err(error) = output.move_to_disk() {
                    tracing::warn!(task_id = %spec.task_id, %error, "cannot write logs to disk");
                }
            }
            match timeout_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = guest => classify(result),
            () = kill.wait() => TaskOutcome::Killed,
            () = timeout => TaskOutcome::Timeout,
        }
    };
    let outcome = match outcome {
        // A trap after a refused growth is the memory limit's doing, whatever the trap.
        TaskOutcome::Trapped { .. } if store.data().memory.refused() => TaskOutcome::MemoryLimit,
        TaskOutcome::FailedToStart(StartError::Link { .. }) if store.data().memory.refused() => {
            TaskOutcome::MemoryLimit
        }
        other => other,
    };
    if outcome == TaskOutcome::OutputLimit
        && let Err(error) = store.data().output.mark_limit_reached()
    {
        tracing::warn!(task_id = %spec.task_id, %error, "cannot mark truncated output");
    }
    let fuel_consumed = fuel_budget.saturating_sub(store.get_fuel().unwrap_or(fuel_budget));
    shared.metrics.fuel.inc_by(fuel_consumed);
    let usage = Usage {
        fuel_consumed,
        cpu_time: cpu.get(),
        peak_memory_bytes: store.data().memory.peak(),
        wall_time: start.elapsed(),
        exit_code: match outcome {
            TaskOutcome::Exited { code } => Some(code),
            _ => None,
        },
    };
    TaskResult { outcome, usage }
}

async fn resolve_module(
    shared: &Shared,
    source: &ModuleSource,
    owner: Owner,
) -> Result<Arc<Prepared<TaskState>>, ModuleError> {
    match source {
        ModuleSource::Digest(digest) => shared.cache.get(*digest, owner).await,
        ModuleSource::Bytes(bytes) => shared
            .cache
            .admit(bytes.clone(), owner)
            .await
            .map(|(_, p)| p),
    }
}

/// What a run instantiates and calls.
enum Runnable {
    /// A module's export, with its parameters (see [`Call::Module`]).
    Module(wasmtime::InstancePre<TaskState>, Option<Vec<Val>>),
    /// A command component's `wasi:cli/run`.
    Command(wasmtime_wasi::p2::bindings::CommandPre<TaskState>),
    /// A component's exported function, with its parameters.
    ComponentFunc(
        wasmtime::component::InstancePre<TaskState>,
        wasmtime::component::ComponentExportIndex,
        Vec<wasmtime::component::Val>,
    ),
}

/// Creates the sandbox and a store holding the guest's WASI context and limits.
fn build_store(
    shared: &Shared,
    spec: &TaskSpec,
    output: &Arc<RunOutput>,
    prepared: &Prepared<TaskState>,
) -> Result<Store<TaskState>, StartError> {
    let sandbox = output.sandbox();
    let explicit = !spec.preopens.is_empty();
    let with_root = prepared.reaches_files || explicit || prepared.uses_sdk;
    let (inputs_size, has_root) = sandbox.create(&spec.inputs, with_root)?;
    if has_root {
        output.root_created();
    }
    let sandbox_error = |e: &dyn std::fmt::Display| StartError::Sandbox {
        reason: e.to_string(),
    };
    let mut wasi = WasiCtxBuilder::new();
    wasi.arg(spec.argv0.as_deref().unwrap_or(spec.task_id.as_str()))
        .args(&spec.args)
        .envs(&spec.env)
        .stdout(output.writer(Stream::Stdout))
        .stderr(output.writer(Stream::Stderr));
    if !spec.stdin.is_empty() {
        wasi.stdin(MemoryInputPipe::new(spec.stdin.clone()));
    }
    let preopens = if explicit {
        let dirs = sandbox.create_preopens(&spec.preopens)?;
        dirs.into_iter()
            .zip(spec.preopens.iter().map(|p| p.guest_path.as_str()))
            .collect()
    } else if has_root {
        vec![(sandbox.root(), "/")]
    } else {
        Vec::new()
    };
    for (dir, name) in preopens {
        wasi.preopened_dir(dir, name, FsPerms::ReadWrite)
            .map_err(|e| sandbox_error(&e))?;
    }
    if prepared.uses_sdk {
        // The task SDK's control directory: see `crate::sdk`.
        let control = sandbox.control();
        std::fs::create_dir_all(&control).map_err(|e| sandbox_error(&e))?;
        if !spec.checkpoint.is_empty() {
            std::fs::write(control.join(sdk::PREVIOUS_CHECKPOINT), &spec.checkpoint)
                .map_err(|e| sandbox_error(&e))?;
        }
        wasi.preopened_dir(&control, sdk::CONTROL_GUEST_PATH, FsPerms::ReadWrite)
            .map_err(|e| sandbox_error(&e))?
            .env(sdk::CONTROL_ENV, sdk::CONTROL_GUEST_PATH)
            .env(sdk::OUTPUTS_ENV, OUTPUTS_GUEST_PATH);
        // Its outputs folder: under its root `/`, or a preopen of its own beside the
        // directories it names (unless it names one `/outputs` itself).
        let outputs = sandbox.root().join(OUTPUTS_DIR);
        std::fs::create_dir_all(&outputs).map_err(|e| sandbox_error(&e))?;
        let named = spec
            .preopens
            .iter()
            .any(|p| p.guest_path == OUTPUTS_GUEST_PATH);
        if explicit && !named {
            wasi.preopened_dir(&outputs, OUTPUTS_GUEST_PATH, FsPerms::ReadWrite)
                .map_err(|e| sandbox_error(&e))?;
        }
    }
    let state = TaskState {
        wasi: wasi.build_p1(),
        memory: MemoryLimiter::new(
            spec.resources.mem_bytes(),
            shared.metrics.task_memory_bytes.clone(),
        ),
        disk: DiskBudget::new(spec.resources.disk_bytes(), inputs_size, output.clone()),
        output: output.clone(),
    };
    let mut store = Store::new(shared.engine.engine(), state);
    store.limiter(|state| &mut state.memory);
    let fuel = spec.limits.max_fuel.unwrap_or(u64::MAX);
    store
        .set_fuel(fuel)
        .and_then(|()| store.fuel_async_yield_interval(Some(shared.yield_interval)))
        .map_err(|e| sandbox_error(&e))?;
    Ok(store)
}

/// Where a guest error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Instantiate,
    Run,
}

/// Turns the guest's result into an outcome, by type.
fn classify(result: Result<(), (Stage, wasmtime::Error)>) -> TaskOutcome {
    let (stage, error) = match result {
        Ok(()) => return TaskOutcome::Exited { code: 0 },
        Err(failure) => failure,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return TaskOutcome::Exited { code: exit.0 };
    }
    if error.is::<DiskLimitExceeded>() {
        return TaskOutcome::DiskLimit;
    }
    if error.is::<OutputLimitExceeded>() {
        return TaskOutcome::OutputLimit;
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let kind = match trap {
            Trap::OutOfFuel => return TaskOutcome::OutOfFuel,
            Trap::StackOverflow => TrapKind::StackOverflow,
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            Trap::MemoryOutOfBounds | Trap::TableOutOfBounds | Trap::HeapMisaligned => {
                TrapKind::OutOfBounds
            }
            Trap::IntegerDivisionByZero | Trap::IntegerOverflow | Trap::BadConversionToInteger => {
                TrapKind::Arithmetic
            }
            Trap::IndirectCallToNull | Trap::BadSignature => TrapKind::BadCall,
            _ => TrapKind::Other,
        };
        return TaskOutcome::Trapped {
            kind,
            message: trap.to_string(),
        };
    }
    match stage {
        // Instantiation failed without a trap: the pool is full, or the module's initial
        // memory does not fit (the caller turns that into `MemoryLimit`), or it cannot link.
        Stage::Instantiate if error.is::<wasmtime::PoolConcurrencyLimitError>() => {
            TaskOutcome::FailedToStart(StartError::NoCapacity)
        }
        Stage::Instantiate => TaskOutcome::FailedToStart(StartError::Link {
            message: format!("{error:#}"),
        }),
        // A host function failed mid-run; the guest cannot continue.
        Stage::Run => TaskOutcome::Trapped {
            kind: TrapKind::HostError,
            message: format!("{error:#}"),
        },
    }
}
