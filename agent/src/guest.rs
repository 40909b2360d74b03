//! The host side a guest sees: WASI preview 1 for core modules, WASI 0.2 for components, with
//! their writes held to the task's limits.
//!
//! wasmtime-wasi provides the WASI implementation. Its write functions are the only ways a
//! guest puts bytes on the agent's disk (files, stdout and stderr alike): `fd_write` and
//! `fd_pwrite` in preview 1; the output-stream writes and `descriptor.write` in 0.2. The
//! linkers shadow them with wrappers that charge the task's disk budget *before* the write
//! and check the output cap after it, around wasmtime-wasi's own implementation. A write that
//! would pass `disk` is refused before a byte lands; the task stops with a typed error that
//! the executor turns into an outcome.

use std::sync::Arc;

use wasmtime::component::{self, Resource};
use wasmtime::{AsContextMut, Caller, Engine, Extern, Linker, StoreContextMut};
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as preview1, WasiSnapshotPreview1};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as filesystem_types, Descriptor, HostDescriptor,
};
use wasmtime_wasi::p2::bindings::io::streams::{self, HostOutputStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, StreamResult};
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::memory::MemoryLimiter;
use crate::output::RunOutput;

const WASI: &str = "wasi_snapshot_preview1";

/// A store's data: the guest's WASI context plus the agent's limit bookkeeping.
pub(crate) struct TaskState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) memory: MemoryLimiter,
    pub(crate) disk: DiskBudget,
    pub(crate) output: Arc<RunOutput>,
}

/// Bytes a task may still write into its sandbox (root and logs, in memory or not).
///
/// `charged` is an upper bound on what the sandbox holds: every write is charged in full
/// before it happens. When the bound would pass the limit, the sandbox is measured for real
/// (overwrites and deletions make the bound loose) before the write is refused.
#[derive(Debug)]
pub(crate) struct DiskBudget {
    limit: u64,
    charged: u64,
    output: Arc<RunOutput>,
    exceeded: bool,
}

impl DiskBudget {
    pub(crate) fn new(limit: u64, already_used: u64, output: Arc<RunOutput>) -> Self {
        Self {
            limit,
            charged: already_used,
            output,
            exceeded: already_used > limit,
        }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    fn charge(&mut self, bytes: u64) -> Result<(), DiskLimitExceeded> {
        if self.charged.saturating_add(bytes) > self.limit {
            self.charged = self.output.sandbox().disk_usage() + self.output.in_memory_bytes();
            if self.charged.saturating_add(bytes) > self.limit {
                self.exceeded = true;
                return Err(DiskLimitExceeded);
            }
        }
        self.charged += bytes;
        Ok(())
    }
}

/// Raised from a host call to stop a guest that would pass its `disk` limit.
#[derive(Debug, thiserror::Error)]
#[error("disk limit reached")]
pub(crate) struct DiskLimitExceeded;

/// Raised from a host call to stop a guest whose output passed `max_output`.
#[derive(Debug, thiserror::Error)]
#[error("output limit reached")]
pub(crate) struct OutputLimitExceeded;

/// WASI preview 1 with the write wrappers: what every module is linked against.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<TaskState>> {
    let mut linker = Linker::new(engine);
    p1::add_to_linker_async(&mut linker, |state: &mut TaskState| &mut state.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, TaskState>,
         (fd, iovs, iovs_len, nwritten): (i32, i32, i32, i32)| {
            Box::new(async move {
                charge_write(&mut caller, iovs, iovs_len)?;
                let errno = {
                    let (wasi, mut memory) = wasi_and_memory(&mut caller)?;
                    preview1::fd_write(wasi, &mut memory, fd, iovs, iovs_len, nwritten).await?
                };
                check_output(caller.data())?;
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "fd_pwrite",
        |mut caller: Caller<'_, TaskState>,
         (fd, iovs, iovs_len, offset, nwritten): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                charge_write(&mut caller, iovs, iovs_len)?;
                let errno = {
                    let (wasi, mut memory) = wasi_and_memory(&mut caller)?;
                    preview1::fd_pwrite(wasi, &mut memory, fd, iovs, iovs_len, offset, nwritten)
                        .await?
                };
                check_output(caller.data())?;
                Ok(errno)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// The WASI 0.2 interfaces' version this agent provides; components importing any 0.2.x
/// version link against it.
const WASI_P2_VERSION: &str = "0.2.12";

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

/// WASI 0.2 with the write wrappers: what every component is linked against.
pub(crate) fn component_linker(engine: &Engine) -> wasmtime::Result<component::Linker<TaskState>> {
    let mut linker = component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    linker.allow_shadowing(true);
    let mut streams = linker.instance(&format!("wasi:io/streams@{WASI_P2_VERSION}"))?;
    streams.func_wrap_async(
        "[method]output-stream.write",
        |mut store: StoreContextMut<'_, TaskState>,
         (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            Box::new(async move {
                store.data_mut().disk.charge(bytes.len() as u64)?;
                let table = store.data_mut().wasi.ctx().table;
                let result = HostOutputStream::write(table, stream, bytes);
                stream_result(&mut store, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: StoreContextMut<'_, TaskState>,
         (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            Box::new(async move {
                store.data_mut().disk.charge(bytes.len() as u64)?;
                let table = store.data_mut().wasi.ctx().table;
                let result = HostOutputStream::blocking_write_and_flush(table, stream, bytes).await;
                stream_result(&mut store, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.write-zeroes",
        |mut store: StoreContextMut<'_, TaskState>,
         (stream, len): (Resource<DynOutputStream>, u64)| {
            Box::new(async move {
                store.data_mut().disk.charge(len)?;
                let table = store.data_mut().wasi.ctx().table;
                let result = HostOutputStream::write_zeroes(table, stream, len);
                stream_result(&mut store, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: StoreContextMut<'_, TaskState>,
         (stream, len): (Resource<DynOutputStream>, u64)| {
            Box::new(async move {
                store.data_mut().disk.charge(len)?;
                let table = store.data_mut().wasi.ctx().table;
                let result =
                    HostOutputStream::blocking_write_zeroes_and_flush(table, stream, len).await;
                stream_result(&mut store, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.splice",
        |mut store: StoreContextMut<'_, TaskState>,
         (stream, source, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            Box::new(async move {
                store.data_mut().disk.charge(len)?;
                let table = store.data_mut().wasi.ctx().table;
                let result = HostOutputStream::splice(table, stream, source, len);
                stream_result(&mut store, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-splice",
        |mut store: StoreContextMut<'_, TaskState>,
         (stream, source, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            Box::new(async move {
                store.data_mut().disk.charge(len)?;
                let table = store.data_mut().wasi.ctx().table;
                let result = HostOutputStream::blocking_splice(table, stream, source, len).await;
                stream_result(&mut store, result)
            })
        },
    )?;
    let mut filesystem = linker.instance(&format!("wasi:filesystem/types@{WASI_P2_VERSION}"))?;
    filesystem.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, TaskState>,
         (descriptor, bytes, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                store.data_mut().disk.charge(bytes.len() as u64)?;
                let mut view = store.data_mut().filesystem();
                let result = match HostDescriptor::write(&mut view, descriptor, bytes, offset).await
                {
                    Ok(written) => Ok(written),
                    Err(error) => Err(filesystem_types::Host::convert_error_code(
                        &mut view, error,
                    )?),
                };
                check_output(store.data())?;
                Ok((result,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// A stream write's result in the guest's terms, once the output cap is checked.
fn stream_result<R>(
    store: &mut StoreContextMut<'_, TaskState>,
    result: StreamResult<R>,
) -> wasmtime::Result<(Result<R, streams::StreamError>,)> {
    let result = match result {
        Ok(value) => Ok(value),
        Err(error) => {
            let table = store.data_mut().wasi.ctx().table;
            Err(streams::Host::convert_stream_error(table, error)?)
        }
    };
    check_output(store.data())?;
    Ok((result,))
}

/// WASI functions that never name a file or reach a preopened directory: a module that
/// imports nothing else can only touch its standard streams.
const WITHOUT_FILES: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "random_get",
    "sched_yield",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_filestat_get",
    "fd_seek",
    "fd_tell",
    "fd_sync",
    "fd_datasync",
];

/// Whether `module` can reach files: it imports a WASI function beyond [`WITHOUT_FILES`] (one
/// that takes a path, lists a directory, or discovers preopens). Only such a module needs a
/// root directory; for any other the difference is not observable (fd 3 is simply closed).
pub(crate) fn reaches_files(module: &wasmtime::Module) -> bool {
    module
        .imports()
        .any(|import| import.module() != WASI || !WITHOUT_FILES.contains(&import.name()))
}

/// WASI 0.2 packages that never reach a file: a component importing only from these can
/// only touch its standard streams.
const COMPONENT_WITHOUT_FILES: &[&str] = &["wasi:io/", "wasi:cli/", "wasi:clocks/", "wasi:random/"];

/// Whether `component` can reach files: it imports an interface beyond
/// [`COMPONENT_WITHOUT_FILES`] (`wasi:filesystem/preopens`, above all). As for modules, only
/// such a component needs a root directory.
pub(crate) fn component_reaches_files(component: &component::Component, engine: &Engine) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| !COMPONENT_WITHOUT_FILES.iter().any(|p| name.starts_with(p)))
}

/// The guest's WASI context and memory, set up as wasmtime-wasi's own glue does.
fn wasi_and_memory<'a>(
    caller: &'a mut Caller<'_, TaskState>,
) -> wasmtime::Result<(&'a mut WasiP1Ctx, wiggle::GuestMemory<'a>)> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("missing required memory export");
    };
    let (data, state) = memory.data_and_store_mut(caller);
    state.wasi.set_hostcall_fuel(fuel);
    Ok((&mut state.wasi, wiggle::GuestMemory::Unshared(data)))
}

/// Charges the disk budget with what this write can put on disk at most: wasmtime-wasi
/// writes the first non-empty buffer of the vector per call.
fn charge_write(
    caller: &mut Caller<'_, TaskState>,
    iovs: i32,
    iovs_len: i32,
) -> wasmtime::Result<()> {
    let len = first_nonempty_iov_len(caller, iovs, iovs_len);
    caller.data_mut().disk.charge(len)?;
    Ok(())
}

fn check_output(state: &TaskState) -> wasmtime::Result<()> {
    if state.output.exceeded() {
        return Err(OutputLimitExceeded.into());
    }
    Ok(())
}

/// Length of the first non-empty `ciovec` in guest memory; 0 for out-of-bounds vectors, which
/// wasmtime-wasi then rejects with `EFAULT`.
fn first_nonempty_iov_len(caller: &mut Caller<'_, TaskState>, iovs: i32, iovs_len: i32) -> u64 {
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return 0;
    };
    let data = memory.data(&*caller);
    let read_u32 = |at: usize| -> Option<u32> {
        let bytes = data.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    };
    let base = iovs as u32 as usize;
    (0..iovs_len as u32 as usize)
        .map_while(|i| read_u32(base.checked_add(i.checked_mul(8)?)?.checked_add(4)?))
        .find(|&len| len > 0)
        .map_or(0, u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxPaths;

    #[test]
    fn the_budget_remeasures_before_refusing() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = SandboxPaths::from_base(dir.path().join("t.1"));
        std::fs::create_dir(sandbox.root()).unwrap();
        std::fs::write(sandbox.root().join("file"), vec![0u8; 500]).unwrap();
        std::fs::write(sandbox.stdout(), vec![0u8; 100]).unwrap();
        let mut budget = DiskBudget::new(1000, 0, RunOutput::new(sandbox, 1000));
        // Three rewrites of the same 600 bytes are charged 1800 in total, but the sandbox
        // holds 600: the third is allowed after a measurement.
        budget.charge(600).unwrap();
        budget.charge(300).unwrap();
        budget.charge(300).unwrap();
        // The root and the logs really hold 600 bytes: 500 more would pass the limit.
        assert!(budget.charge(500).is_err());
        assert!(budget.exceeded());
    }

    #[test]
    fn only_modules_that_import_path_functions_reach_files() {
        let engine = Engine::default();
        let module = |imports: &str| {
            let wasm = wat::parse_str(format!("(module {imports})")).unwrap();
            wasmtime::Module::new(&engine, wasm).unwrap()
        };
        let import = |module: &str, name: &str| {
            format!(r#"(import "{module}" "{name}" (func (param i32)))"#)
        };
        assert!(!reaches_files(&module("")));
        assert!(!reaches_files(&module(&import(WASI, "fd_write"))));
        assert!(!reaches_files(&module(&import(WASI, "proc_exit"))));
        for name in [
            "path_open",
            "fd_prestat_get",
            "fd_readdir",
            "some_future_call",
        ] {
            assert!(reaches_files(&module(&import(WASI, name))), "{name}");
        }
        assert!(reaches_files(&module(&import("env", "fd_write"))));
    }

    #[test]
    fn inputs_already_over_the_limit_are_exceeded_from_the_start() {
        let sandbox = SandboxPaths::from_base("t.1".into());
        let budget = DiskBudget::new(10, 11, RunOutput::new(sandbox, 10));
        assert!(budget.exceeded());
    }
}
