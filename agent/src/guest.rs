//! The host side a guest sees: WASI preview 1, with its writes held to the task's limits.
//!
//! wasmtime-wasi provides the WASI implementation. Two of its functions, `fd_write` and
//! `fd_pwrite`, are the only ways a guest puts bytes on the agent's disk (files, stdout and
//! stderr alike), so the linker shadows them with wrappers that charge the task's disk budget
//! *before* the write and check the output cap after it, around wasmtime-wasi's own
//! implementation. A write that would pass `disk` is refused before a byte lands; the task
//! stops with a typed error that the executor turns into an outcome.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::{AsContextMut, Caller, Engine, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as preview1, WasiSnapshotPreview1};
use wasmtime_wasi::p1::{self, WasiP1Ctx};

use crate::memory::MemoryLimiter;
use crate::sandbox::{OutputCap, disk_usage};

const WASI: &str = "wasi_snapshot_preview1";

/// A store's data: the guest's WASI context plus the agent's limit bookkeeping.
pub(crate) struct TaskState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) memory: MemoryLimiter,
    pub(crate) disk: DiskBudget,
    pub(crate) output: Arc<OutputCap>,
}

/// Bytes a task may still write into its run directory.
///
/// `charged` is an upper bound on what the run directory holds: every write is charged in full
/// before it happens. When the bound would pass the limit, the directory is measured for real
/// (overwrites and deletions make the bound loose) before the write is refused.
#[derive(Debug)]
pub(crate) struct DiskBudget {
    limit: u64,
    charged: u64,
    run_dir: PathBuf,
    exceeded: bool,
}

impl DiskBudget {
    pub(crate) fn new(limit: u64, already_used: u64, run_dir: PathBuf) -> Self {
        Self {
            limit,
            charged: already_used,
            run_dir,
            exceeded: already_used > limit,
        }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    fn charge(&mut self, bytes: u64) -> Result<(), DiskLimitExceeded> {
        if self.charged.saturating_add(bytes) > self.limit {
            self.charged = disk_usage(&self.run_dir);
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
                check_output(&caller)?;
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
                check_output(&caller)?;
                Ok(errno)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
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

fn check_output(caller: &Caller<'_, TaskState>) -> wasmtime::Result<()> {
    if caller.data().output.exceeded() {
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

    #[test]
    fn the_budget_remeasures_before_refusing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), vec![0u8; 600]).unwrap();
        let mut budget = DiskBudget::new(1000, 0, dir.path().into());
        // Three rewrites of the same 600 bytes are charged 1800 in total, but the directory
        // holds 600: the third is allowed after a measurement.
        budget.charge(600).unwrap();
        budget.charge(300).unwrap();
        budget.charge(300).unwrap();
        // The directory really holds 600 bytes: 500 more would pass the limit.
        assert!(budget.charge(500).is_err());
        assert!(budget.exceeded());
    }

    #[test]
    fn inputs_already_over_the_limit_are_exceeded_from_the_start() {
        let budget = DiskBudget::new(10, 11, PathBuf::new());
        assert!(budget.exceeded());
    }
}
