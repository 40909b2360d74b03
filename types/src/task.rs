//! What a task is held to beyond its resources, and what it used.

use std::time::Duration;

/// How far a running task says it is (`corral_task::progress`): a fraction in thousandths and
/// a short message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Thousandths done, 0 to 1000.
    pub thousandths: u16,
    /// What the task is doing; at most [`Progress::MAX_MESSAGE_BYTES`].
    pub message: String,
}

impl Progress {
    /// Longest progress message, in bytes.
    pub const MAX_MESSAGE_BYTES: usize = 256;

    /// `fraction` (clamped to 0..=1; NaN is 0) and `message` (cut at
    /// [`Progress::MAX_MESSAGE_BYTES`] on a character boundary).
    #[must_use]
    pub fn new(fraction: f32, message: &str) -> Self {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let mut end = message.len().min(Self::MAX_MESSAGE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            thousandths: (fraction * 1000.0).round() as u16,
            message: message[..end].to_owned(),
        }
    }

    /// The fraction done, 0.0 to 1.0.
    #[must_use]
    pub fn fraction(&self) -> f32 {
        f32::from(self.thousandths.min(1000)) / 1000.0
    }
}

/// A directory of a task's sandbox handed to the guest as a preopened directory under a name
/// of its own (see `Preopen` in `common.proto`): what `wasmtime run --dir HOST::GUEST` gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Preopen {
    /// The name the guest sees (`fd_prestat_dir_name`): `data`, `/data`, `.`, `/`.
    pub guest_path: String,
    /// The directory, relative to the sandbox root (`.` for the root itself).
    pub sandbox_path: String,
}

/// A file a task left in its outputs folder, kept in the master's artifact store (see
/// `TaskOutput` in `common.proto`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskOutput {
    /// Its path under the outputs folder, `/`-separated (`plots/a.png`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content.
    pub digest: crate::Digest,
}

/// The outputs folder: the directory of a task's sandbox whose files are kept when the task
/// ends, and the name the guest sees it under.
pub const OUTPUTS_DIR: &str = "outputs";
/// The outputs folder as the guest sees it.
pub const OUTPUTS_GUEST_PATH: &str = "/outputs";

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
