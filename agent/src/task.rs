//! What a task is asked to run with, and how it ended.

use std::path::PathBuf;
use std::sync::Arc;

use corral_types::{Digest, FrameworkId, Preopen, Resources, TaskId, TaskLimits, TrapKind, Usage};

use crate::cache::ModuleError;

/// Bytes of stdout and stderr together a task may write when its limits name no bound.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 << 20;

/// Everything the executor needs to run one task: the agent's resolved view of a task
/// description (its module already in the cache or in hand, its inputs already unpacked).
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Framework that owns the task; names the sandbox's parent directory.
    pub framework_id: FrameworkId,
    /// Task id chosen by the framework.
    pub task_id: TaskId,
    /// The module to run.
    pub module: ModuleSource,
    /// Exported function to call after instantiation, `_start` for WASI commands.
    pub entrypoint: String,
    /// `argv[0]`; `None` means the task id.
    pub argv0: Option<String>,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// The guest's entire environment: nothing from the host is inherited.
    pub env: Vec<(String, String)>,
    /// Files placed in the sandbox before the task starts.
    pub inputs: Vec<InputFile>,
    /// The directories the guest sees, in order, each under its own name. Empty means the
    /// sandbox root as `/`, made only for a module that can reach files or has inputs.
    pub preopens: Vec<Preopen>,
    /// The guest's whole standard input; empty means an empty stdin.
    pub stdin: bytes::Bytes,
    /// The previous attempt's checkpoint, handed to a task built with the SDK; empty when
    /// there is none.
    pub checkpoint: bytes::Bytes,
    /// What the task may use: `cpus` is a hard cap on its CPU share, `mem` bounds all its
    /// linear memories and tables together, `disk` bounds the bytes written into its sandbox
    /// (files, stdout and stderr).
    pub resources: Resources,
    /// When the task is stopped; no `max_output_bytes` means [`DEFAULT_MAX_OUTPUT_BYTES`].
    pub limits: TaskLimits,
}

impl TaskSpec {
    /// A spec with default resources (1 cpu, 256 MiB of memory and of disk), no limits
    /// beyond them, and no args, env or inputs.
    pub fn new(framework_id: FrameworkId, task_id: TaskId, module: ModuleSource) -> Self {
        Self {
            framework_id,
            task_id,
            module,
            entrypoint: "_start".into(),
            argv0: None,
            args: Vec::new(),
            env: Vec::new(),
            inputs: Vec::new(),
            preopens: Vec::new(),
            stdin: bytes::Bytes::new(),
            checkpoint: bytes::Bytes::new(),
            resources: Resources::new()
                .with_cpus_milli(1000)
                .with_mem_mib(256)
                .with_disk_mib(256),
            limits: TaskLimits::default(),
        }
    }

    /// The bound on stdout and stderr together.
    pub fn max_output_bytes(&self) -> u64 {
        self.limits
            .max_output_bytes
            .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES)
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

/// A file (or an empty directory) to place in the sandbox before start.
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
    /// A directory, made even if no input lands in it: an empty directory of a shipped tree.
    Directory,
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
    /// stdout and stderr together passed `max_output_bytes`.
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

/// Why a task never ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The module was not admitted or could not be loaded.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The module exports no function named as the entrypoint.
    #[error("module exports no function named `{name}`")]
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

/// The outcome of a task run together with its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// How the task ended.
    pub outcome: TaskOutcome,
    /// What it used.
    pub usage: Usage,
}
