//! The task's `mem` as one budget for all its linear memories and tables together.
//!
//! wasmtime's `StoreLimits` bounds each memory separately; a task's memory limit is a bound on
//! their sum, so the store gets this limiter, which sees every growth request (including the
//! initial allocations made during instantiation).

use prometheus_client::metrics::gauge::Gauge;
use wasmtime::ResourceLimiter;

/// Bytes wasmtime spends per table element (one pointer).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// Tracks and bounds a task's memory; remembers whether it ever refused a request. What it
/// holds counts in `in_use` (every running task's, for the agent's metrics) until it is
/// dropped with its store.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: u64,
    memories: u64,
    tables: u64,
    peak: u64,
    refused: bool,
    in_use: Gauge,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64, in_use: Gauge) -> Self {
        Self {
            limit,
            memories: 0,
            tables: 0,
            peak: 0,
            refused: false,
            in_use,
        }
    }

    /// Largest total of memories and tables the task held at any time.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// Whether a growth request was refused: a trap that follows is the memory limit's doing.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }

    fn grow(&mut self, which: Which, current: u64, desired: u64) -> bool {
        let delta = desired.saturating_sub(current);
        let total = self.memories + self.tables;
        if total.saturating_add(delta) > self.limit {
            self.refused = true;
            return false;
        }
        match which {
            Which::Memory => self.memories += delta,
            Which::Table => self.tables += delta,
        }
        self.in_use.inc_by(i64::try_from(delta).unwrap_or(i64::MAX));
        self.peak = self.peak.max(self.memories + self.tables);
        true
    }
}

enum Which {
    Memory,
    Table,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        let held = self.memories.saturating_add(self.tables);
        self.in_use.dec_by(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(Which::Memory, current as u64, desired as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| (elements as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(Which::Table, bytes(current), bytes(desired)))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The growth was allowed by us but failed below (the module's own maximum or the
        // pool's slot size); memory.grow returns -1 to the guest, which is its business.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let in_use = Gauge::default();
        let mut limiter = MemoryLimiter::new(100 * 1024, in_use.clone());
        assert!(limiter.memory_growing(0, 64 * 1024, None).unwrap());
        // 4096 elements * 8 bytes = 32 KiB: fits in the remaining 36 KiB.
        assert!(limiter.table_growing(0, 4096, None).unwrap());
        assert!(!limiter.refused());
        // Another 64 KiB page does not.
        assert!(!limiter.memory_growing(64 * 1024, 128 * 1024, None).unwrap());
        assert!(limiter.refused());
        assert_eq!(limiter.peak(), 64 * 1024 + 4096 * TABLE_ELEMENT_BYTES);
        let held = i64::try_from(limiter.peak()).unwrap();
        assert_eq!(in_use.get(), held, "what it holds counts while it lives");
        drop(limiter);
        assert_eq!(in_use.get(), 0, "and no longer once dropped");
    }

    #[test]
    fn absurd_requests_saturate_instead_of_overflowing() {
        let mut limiter = MemoryLimiter::new(u64::MAX - 1, Gauge::default());
        assert!(limiter.memory_growing(0, 1024, None).unwrap());
        assert!(!limiter.table_growing(0, usize::MAX, None).unwrap());
    }
}
