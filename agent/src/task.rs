//! What a task is asked to run with, and how it ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Digest, ModuleError};

/// Everything the executor needs to run one task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Framework that owns the task; names the sandbox's parent directory.
    pub framework_id: String,
    /// Task id chosen by the framework.
    pub task_id: String,
    /// The module to run.
    pub module: ModuleSource,
    /// Exported function to call after instantiation, `_start` for WASI commands.
    pub entrypoint: String,
    /// Arguments after `argv[0]` (which is the task id).
    pub args: Vec<String>,
    /// The guest's entire environment: nothing from the host is inherited.
    pub env: Vec<(String, String)>,
    /// Files placed in the sandbox before the task starts.
    pub inputs: Vec<InputFile>,
    /// What the task may use.
    pub resources: Resources,
    /// When the task is stopped.
    pub limits: Limits,
}

impl TaskSpec {
    /// A spec with default resources and limits, no args, env or inputs.
    pub fn new(
        framework_id: impl Into<String>,
        task_id: impl Into<String>,
        module: ModuleSource,
    ) -> Self {
        Self {
            framework_id: framework_id.into(),
            task_id: task_id.into(),
            module,
            entrypoint: "_start".into(),
            args: Vec::new(),
            env: Vec::new(),
            inputs: Vec::new(),
            resources: Resources::default(),
            limits: Limits::default(),
        }
    }
}

/// Where the module comes from.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// A module already known to the executor's cache (in memory or on disk).
    Digest(Digest),
    /// Raw module bytes; admitted (size, validation) and compiled as part of the launch.
    Bytes(Arc<[u8]>),
}

/// A file to place in the sandbox before start.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Path inside the sandbox, relative to its root; `..` and absolute paths are refused.
    pub path: String,
    /// Where its contents come from.
    pub contents: InputContents,
}

/// The contents of an input file.
#[derive(Debug, Clone)]
pub enum InputContents {
    /// Bytes carried with the task.
    Bytes(Arc<[u8]>),
    /// A file on the agent's host, copied into the sandbox (it must exist).
    HostFile(PathBuf),
}

/// Resources a task may use. All integers: no float drift in accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// CPU share in thousandths of a core; enforced as a hard cap.
    pub cpus_milli: u64,
    /// Bound on all linear memories and tables together, in bytes.
    pub mem_bytes: u64,
    /// Bound on bytes written into the sandbox (files, stdout and stderr), in bytes.
    pub disk_bytes: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpus_milli: 1000,
            mem_bytes: 256 << 20,
            disk_bytes: 256 << 20,
        }
    }
}

/// Limits beyond resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget; `None` means unmetered beyond accounting.
    pub max_fuel: Option<u64>,
    /// Wall-clock time from start of instantiation.
    pub timeout: Option<Duration>,
    /// Bytes of stdout and stderr together; past it the task stops with
    /// [`TaskOutcome::OutputLimit`] and the log ends with a marker line.
    pub max_output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_fuel: None,
            timeout: None,
            max_output: 64 << 20,
        }
    }
}

/// How a task ended. Every variant is decided by type, never by matching error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// The entrypoint returned (code 0) or the guest called `proc_exit`.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The fuel budget ran out.
    OutOfFuel,
    /// The guest trapped after a memory or table growth was refused by the `mem` limit, or its
    /// initial memory did not fit.
    MemoryLimit,
    /// The wall-clock timeout passed.
    Timeout,
    /// A write would have taken the sandbox past its `disk` bound; nothing past it was written.
    DiskLimit,
    /// stdout and stderr together passed `max_output`.
    OutputLimit,
    /// The guest trapped for its own reasons.
    Trapped {
        /// What kind of trap.
        kind: TrapKind,
        /// wasmtime's description of it.
        message: String,
    },
    /// Killed on request.
    Killed,
    /// The task never ran.
    FailedToStart(StartError),
}

impl TaskOutcome {
    /// Whether the task ran to completion with exit code 0.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Exited { code: 0 })
    }
}

/// Traps, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The guest's call stack passed the engine's `max_wasm_stack`.
    StackOverflow,
    /// An `unreachable` instruction: Rust panics and `abort()` end here.
    Unreachable,
    /// Out-of-bounds memory or table access, or a misaligned atomic.
    OutOfBounds,
    /// Integer division by zero or overflow, or a bad float-to-int conversion.
    Arithmetic,
    /// An indirect call to a null or mistyped function.
    BadCall,
    /// Any other trap.
    Other,
}

/// Why a task never ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The module was not admitted or could not be loaded.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The entrypoint is not exported as a function taking and returning nothing.
    #[error("module does not export a `() -> ()` function named `{name}`")]
    MissingEntrypoint {
        /// The entrypoint asked for.
        name: String,
    },
    /// The module imports something the agent does not provide.
    #[error("module cannot be linked: {message}")]
    Link {
        /// wasmtime's explanation.
        message: String,
    },
    /// An input file's source does not exist or cannot be read.
    #[error("input file `{path}` is unavailable: {reason}")]
    InputUnavailable {
        /// The input's path in the sandbox.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An input's sandbox path is absolute, empty or leaves the sandbox.
    #[error("input path `{path}` must be relative and stay inside the sandbox")]
    InvalidInputPath {
        /// The offending path.
        path: String,
    },
    /// The spec asks for something impossible (zero cpus, say).
    #[error("invalid task spec: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// The sandbox could not be created on the agent's disk.
    #[error("cannot prepare the sandbox: {reason}")]
    Sandbox {
        /// The I/O error.
        reason: String,
    },
    /// No instance slot is free (the pooling allocator's capacity is reached).
    #[error("the agent has no free instance slot")]
    NoCapacity,
}

/// What a finished task used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Fuel consumed; deterministic for the same module and input.
    pub fuel_consumed: u64,
    /// CPU time spent executing the guest (instantiation included).
    pub cpu_time: Duration,
    /// Largest total of linear memories and tables, in bytes.
    pub peak_memory: u64,
    /// Wall time from the start of instantiation to the end.
    pub wall_time: Duration,
    /// The exit code, when the task exited.
    pub exit_code: Option<i32>,
}

/// The outcome of a task run together with its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// How the task ended.
    pub outcome: TaskOutcome,
    /// What it used.
    pub usage: Usage,
}
