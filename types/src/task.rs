//! What a task is held to beyond its resources, and what it used.

use std::time::Duration;

/// A directory of a task's sandbox handed to the guest as a preopened directory under a name
/// of its own (see `Preopen` in `common.proto`): what `wasmtime run --dir HOST::GUEST` gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Preopen {
    /// The name the guest sees (`fd_prestat_dir_name`): `data`, `/data`, `.`, `/`.
    pub guest_path: String,
    /// The directory, relative to the sandbox root (`.` for the root itself).
    pub sandbox_path: String,
}

/// Limits beyond resources; `None` takes the agent's default (see `TaskLimits` in
/// `common.proto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel budget (> 0); unset means unmetered beyond accounting.
    pub max_fuel: Option<u64>,
    /// Wall-clock limit (> 0) from the start of instantiation, at millisecond precision on
    /// the wire.
    pub timeout: Option<Duration>,
    /// Bytes of stdout and stderr together.
    pub max_output_bytes: Option<u64>,
}

/// What a task used (see `Usage` in `common.proto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Fuel consumed; deterministic for the same module and input.
    pub fuel_consumed: u64,
    /// CPU time spent executing the guest (instantiation included).
    pub cpu_time: Duration,
    /// Largest total of linear memories and tables, in bytes.
    pub peak_memory_bytes: u64,
    /// Wall time from the start of instantiation to the end.
    pub wall_time: Duration,
    /// The exit code, when the guest exited.
    pub exit_code: Option<i32>,
}
