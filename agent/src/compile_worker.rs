//! Compiling in a child process held to a time and a memory budget.
//!
//! wasmtime cannot stop a compile partway, and a module within the admission limits can
//! still hold a core for a long time or need a lot of memory. A child process can be killed:
//! the agent starts one per compile (`corral compile-worker`, which calls [`serve`]), kills it
//! when its time is up, and the child caps its own heap before it reads a byte of the module.
//! The compiled code comes back on the child's stdout and is loaded like code from the
//! on-disk cache. A refused module fails its launch with the budget it passed; a compile
//! slot is held meanwhile, as for a compile in the agent, so other tenants' compiles and
//! launches are not delayed.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use corral_types::WasmBinary;
use wasmtime::Module;
use wasmtime::component::Component;

use crate::engine::{AllocatorChoice, EngineOptions, TaskEngine};

/// What one compile may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBudget {
    /// Wall-clock time, from the child's start to its answer.
    pub time: Duration,
    /// Heap of the compiling process (`RLIMIT_DATA`), in bytes.
    pub memory_bytes: u64,
}

impl Default for CompileBudget {
    /// A minute and 2 GiB: a module at the admission limits compiles in far less.
    fn default() -> Self {
        Self {
            time: Duration::from_secs(60),
            memory_bytes: 2 << 30,
        }
    }
}

/// The program that compiles (running [`serve`]) and the budget it is held to.
#[derive(Debug, Clone)]
pub struct CompileWorker {
    /// The program, e.g. the `corral` binary.
    pub program: PathBuf,
    /// The arguments that make it [`serve`], e.g. `compile-worker`; the settings [`serve`]
    /// takes are added after them.
    pub args: Vec<OsString>,
    /// What each compile may take.
    pub budget: CompileBudget,
}

/// The worker's exit code for a module the compiler refuses (stderr says why).
const INVALID: i32 = 2;
/// The worker's exit code when its engine's code would not load in the agent's.
const OTHER_ENGINE: i32 = 3;
/// How often the agent looks whether the worker is done.
const POLL: Duration = Duration::from_millis(2);
/// Most of the worker's stderr kept for a reason.
const MAX_REASON_BYTES: u64 = 16 << 10;

/// Why the worker gave no code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerError {
    /// The module is refused: invalid, or over a budget. The reason.
    Refused(String),
    /// The worker cannot compile for this agent (it does not start, or its engine differs):
    /// the agent compiles the module itself.
    Unavailable(String),
}

impl CompileWorker {
    /// Compiles `bytes` in a worker whose engine must have `compatibility` and the agent's
    /// `max_wasm_stack`; answers the serialized code.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        compatibility: &str,
        max_wasm_stack: usize,
    ) -> Result<Vec<u8>, WorkerError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(compatibility)
            .arg(max_wasm_stack.to_string())
            .arg(self.budget.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                WorkerError::Unavailable(format!("cannot start {}: {e}", self.program.display()))
            })?;
        let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Unavailable(
                "the worker's pipes are missing".into(),
            ));
        };
        let deadline = Instant::now() + self.budget.time;
        std::thread::scope(|scope| {
            // Pipes hold little: feed and drain them while waiting. A killed worker breaks
            // them, which ends these threads.
            scope.spawn(move || {
                let _ = stdin.write_all(bytes);
            });
            let code = scope.spawn(move || {
                let mut code = Vec::new();
                let _ = stdout.read_to_end(&mut code);
                code
            });
            let said = scope.spawn(move || {
                let mut said = Vec::new();
                let _ = stderr.take(MAX_REASON_BYTES).read_to_end(&mut said);
                String::from_utf8_lossy(&said).trim().to_owned()
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                    Ok(None) | Err(_) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            let code = code.join().unwrap_or_default();
            let said = said.join().unwrap_or_default();
            match status {
                None => Err(WorkerError::Refused(format!(
                    "compiling takes longer than the agent's budget of {}",
                    seconds(self.budget.time)
                ))),
                Some(status) => self.outcome(status, code, said),
            }
        })
    }

    fn outcome(
        &self,
        status: ExitStatus,
        code: Vec<u8>,
        said: String,
    ) -> Result<Vec<u8>, WorkerError> {
        match status.code() {
            Some(0) if !code.is_empty() => Ok(code),
            Some(INVALID) => Err(WorkerError::Refused(said)),
            Some(OTHER_ENGINE) => Err(WorkerError::Unavailable(said)),
            // Rust aborts when an allocation fails: the heap budget was reached.
            _ if said.contains("memory allocation of") => Err(WorkerError::Refused(format!(
                "compiling needs more memory than the agent's budget of {} MiB",
                self.budget.memory_bytes >> 20
            ))),
            _ => Err(WorkerError::Refused(format!(
                "the compiler stopped ({status}){}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ))),
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The worker: caps its heap at `memory_bytes`, reads a module or component on stdin,
/// compiles it with an engine like the agent's (`compatibility`, `max_wasm_stack`) and writes
/// the serialized code on stdout. Answers the process's exit code: 0, [`INVALID`] with the
/// compiler's reason on stderr, [`OTHER_ENGINE`], or 1 for anything else.
#[must_use]
pub fn serve(compatibility: &str, max_wasm_stack: usize, memory_bytes: u64) -> i32 {
    // An agent that dies mid-compile takes its worker with it.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let limit = rustix::process::Rlimit {
        current: Some(memory_bytes),
        maximum: Some(memory_bytes),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Data, limit) {
        eprintln!("cannot cap the compile's memory: {e}");
        return 1;
    }
    // The pool is for running tasks; compiled code does not depend on it.
    let options = EngineOptions {
        allocator: AllocatorChoice::OnDemand,
        max_wasm_stack,
    };
    let engine = match TaskEngine::new(&options) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if engine.compatibility() != compatibility {
        eprintln!(
            "the worker's engine ({}) compiles code the agent's ({compatibility}) cannot load",
            engine.compatibility()
        );
        return OTHER_ENGINE;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the module: {e}");
        return 1;
    }
    let engine = engine.engine();
    let code = match WasmBinary::detect(&bytes) {
        Some(WasmBinary::Module) => Module::from_binary(engine, &bytes).and_then(|m| m.serialize()),
        Some(WasmBinary::Component) => {
            Component::from_binary(engine, &bytes).and_then(|c| c.serialize())
        }
        None => {
            eprintln!("not a WebAssembly module or component (no `\\0asm` header)");
            return INVALID;
        }
    };
    match code {
        Ok(code) => match std::io::stdout().lock().write_all(&code) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the compiled code: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            INVALID
        }
    }
}
