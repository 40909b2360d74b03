//! The Corral agent's execution core: runs tasks as sandboxed, fuel-metered WebAssembly.
//!
//! Every task is a WASI preview 1 module or a WASI 0.2 component run under wasmtime, cut off from the host by the Wasm
//! sandbox and by WASI capabilities (its only directory is its sandbox; it has no network and
//! sees only the args and env it was given), and held to its limits:
//!
//! | limit | enforced by | outcome |
//! |---|---|---|
//! | `mem` (all memories and tables) | a store resource limiter | [`TaskOutcome::MemoryLimit`] |
//! | `max_fuel` | wasmtime fuel | [`TaskOutcome::OutOfFuel`] |
//! | `timeout` | a timer raced against the guest | [`TaskOutcome::Timeout`] |
//! | `disk` | the WASI write functions, before each write | [`TaskOutcome::DiskLimit`] |
//! | `max_output_bytes` | capped stdout/stderr | [`TaskOutcome::OutputLimit`] |
//! | `cpus` | a token bucket at fuel yield points | throttled, never above the share |
//! | kill | dropped at the next yield point | [`TaskOutcome::Killed`] |
//!
//! Key types: [`Executor`] (launches tasks on its own runtime), [`TaskSpec`] (what to run),
//! [`TaskHandle`] (kill it, wait for its [`TaskResult`]: a [`TaskOutcome`] and its
//! `corral_types::Usage`). The vocabulary is corral-types': typed IDs, `Resources`,
//! `TaskLimits`, `TrapKind`. A `TaskSpec` is the agent's resolved view of a wire
//! `corral_proto::TaskInfo` (its module in the cache or in hand, its inputs unpacked); the one
//! conversion between them is in the node's run pipeline (`node::prepare`).
//!
//! ```text
//!   TaskSpec ─► Executor::launch ─► TaskHandle ─► wait() ─► TaskResult { outcome, usage }
//!                    │
//!                    ├── cache:   sha256 ─► compiled code on disk ─► InstancePre in memory
//!                    ├── sandbox: <work>/sandboxes/<framework>/<task>.<run>/ (the root, if needed)
//!                    ├── output:  stdout/stderr in memory, or <task>.<run>.stdout/.stderr if large
//!                    └── guest:   WASI p1 + limits, run on the task runtime
//! ```
//!
//! Modules in this crate: `engine` is the only place wasmtime is configured; `cache` admits,
//! compiles and persists modules and knows which it holds; `sandbox` lays out a run's files;
//! `output` holds its logs; `guest` is the host side the guest sees (WASI preview 1 and 0.2);
//! `memory` and `cpu` enforce their limits; `executor` drives a task's life; [`sdk`] is the
//! host side of the task SDK (which modules use it, and reading what they report).
//!
//! [`node`] is the agent as a cluster member around the executor: [`Agent`] registers with
//! the master, runs what it is sent, reports status updates until acknowledged and serves task
//! files (Operator `ListFiles`/`ReadFile`).

pub use corral_intake::admission;
mod cache;
mod calibrate;
pub mod collect;
mod compile_slots;
pub mod compile_worker;
mod cpu;
mod engine;
mod executor;
mod guest;
mod invoke;
mod memory;
mod metrics;
pub mod node;
mod output;
mod sandbox;
pub mod sdk;
mod task;

pub use cache::{CacheStats, ModuleError};
pub use compile_worker::{CompileBudget, CompileWorker};
pub use cpu::WINDOW as CPU_SHARE_WINDOW;
pub use engine::{AllocatorChoice, AllocatorKind, EngineError, EngineOptions};
pub use executor::{Executor, ExecutorConfig, ExecutorError, KillSwitch, Phase, TaskHandle};
pub use node::{Agent, AgentConfig, CHECKPOINT_FILE, CheckpointError, Recover, ResourceOverrides};
pub use output::{INLINE_LOG_BYTES, KEPT_IN_MEMORY_FOR, LogContents, RunOutput, Stream};
pub use sandbox::SandboxPaths;
pub use task::{
    DEFAULT_MAX_OUTPUT_BYTES, InputContents, InputFile, ModuleSource, StartError, TaskOutcome,
    TaskResult, TaskSpec,
};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
