//! The one place that configures wasmtime.
//!
//! Everything else in the agent asks this module for an [`Engine`] and never touches
//! [`wasmtime::Config`] itself, so the set of Wasm features, the instance allocator and the
//! metering settings stay consistent between compilation, the on-disk cache and execution.

use std::hash::{DefaultHasher, Hash, Hasher};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// How the engine should allocate instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatorChoice {
    /// Try the pooling allocator with this many instance slots; fall back to on-demand
    /// allocation when the host cannot reserve the pool's address space.
    Pooling {
        /// Concurrent instances (and linear memories, tables and fiber stacks) in the pool.
        slots: u32,
    },
    /// Allocate each instance's memory with its own `mmap`.
    OnDemand,
}

/// What the engine was built with; part of the executor's public settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instance allocation strategy to try first.
    pub allocator: AllocatorChoice,
    /// Largest stack a guest may use before it traps with a stack overflow.
    pub max_wasm_stack: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            allocator: AllocatorChoice::Pooling { slots: 1_000 },
            max_wasm_stack: 512 * 1024,
        }
    }
}

/// The allocator actually in use after a possible fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pre-reserved instance slots (fast instantiation, bounded count).
    Pooling {
        /// Number of slots in the pool.
        slots: u32,
    },
    /// One `mmap` per linear memory.
    OnDemand,
}

/// A configured engine plus the facts the rest of the agent needs about it.
#[derive(Clone)]
pub(crate) struct TaskEngine {
    engine: Engine,
    allocator: AllocatorKind,
    compatibility: String,
}

impl std::fmt::Debug for TaskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEngine")
            .field("allocator", &self.allocator)
            .field("compatibility", &self.compatibility)
            .finish_non_exhaustive()
    }
}

/// The engine could not be built at all (not even with the on-demand allocator).
#[derive(Debug, thiserror::Error)]
#[error("cannot configure the wasm engine: {source}")]
pub struct EngineError {
    #[source]
    source: wasmtime::Error,
}

impl TaskEngine {
    /// Builds the engine, trying the pooling allocator first if asked to.
    pub(crate) fn new(options: &EngineOptions) -> Result<Self, EngineError> {
        let (engine, allocator) = match options.allocator {
            AllocatorChoice::Pooling { slots } => {
                let mut config = base_config(options);
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(slots)));
                match Engine::new(&config) {
                    Ok(engine) => (engine, AllocatorKind::Pooling { slots }),
                    Err(error) => {
                        tracing::warn!(
                            slots,
                            %error,
                            "cannot reserve the instance pool; using on-demand allocation"
                        );
                        (on_demand(options)?, AllocatorKind::OnDemand)
                    }
                }
            }
            AllocatorChoice::OnDemand => (on_demand(options)?, AllocatorKind::OnDemand),
        };
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compatibility = format!("{:016x}", hasher.finish());
        Ok(Self {
            engine,
            allocator,
            compatibility,
        })
    }

    /// The wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The allocator in use (after any fallback).
    pub(crate) fn allocator(&self) -> AllocatorKind {
        self.allocator
    }

    /// A short hex digest that changes whenever compiled code from this engine stops being
    /// loadable by another (wasmtime version, target, or settings). Keys the compiled cache and
    /// is advertised to the master so it can prefer agents that already compiled a module.
    pub(crate) fn compatibility(&self) -> &str {
        &self.compatibility
    }
}

fn on_demand(options: &EngineOptions) -> Result<Engine, EngineError> {
    Engine::new(&base_config(options)).map_err(|source| EngineError { source })
}

fn base_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config
        // One core per compile (wasmtime is built without parallel compilation): the module
        // cache's compile slots then bound the cores compiles take, in all and per framework.
        .cranelift_opt_level(OptLevel::Speed)
        // Fuel is the metering unit: budget, accounting and the yield points where CPU share,
        // kill and timeouts take effect.
        .consume_fuel(true)
        .max_wasm_stack(options.max_wasm_stack)
        // Host calls made from a guest run on the same fiber stack; leave them room.
        .async_stack_size(options.max_wasm_stack + 512 * 1024)
        // What WASI preview 1 modules and WASI 0.2 components are built with. Everything else
        // is off so that a module relying on an unsupported proposal fails validation with a
        // clear message.
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_simd(true)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_tail_call(false)
        .wasm_gc(false)
        .wasm_stack_switching(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_component_model(true);
    config
}

/// How much of a recycled slot's linear memory and table may stay resident, in bytes.
#[derive(Debug, Clone, Copy)]
struct KeepResident {
    memory: usize,
    table: usize,
}

/// Where the kernel can say which pages a task dirtied (`PAGEMAP_SCAN`, Linux 6.7+), those
/// pages are rewritten to their initial contents in place and only the rest is returned.
/// 1 MiB covers a Rust guest's stack (its first MiB); the price is that an idle slot may keep
/// what its last task dirtied there, at most 1 MiB a slot.
const KEEP_RESIDENT_SCANNED: KeepResident = KeepResident {
    memory: 1 << 20,
    table: 64 * 1024,
};
/// Without the scan every kept byte is rewritten whether the task touched it or not: keep
/// little.
const KEEP_RESIDENT_BLIND: KeepResident = KeepResident {
    memory: 64 * 1024,
    table: 0,
};

/// Core instances a component task may hold: a Rust `wasm32-wasip2` command has four.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Tables a component task may hold.
const TABLES_PER_COMPONENT: u32 = 4;

fn pool(slots: u32) -> PoolingAllocationConfig {
    // Returning pages with `madvise` makes the kernel flush the TLB of every core running
    // this process: an inter-processor interrupt, and a VM exit on a virtual machine. For a
    // short task that flush cost more than the task itself, so where the kernel can tell
    // which pages were dirtied, reset those in place instead.
    let dirty_page_scan = PoolingAllocationConfig::is_pagemap_scan_available();
    tracing::debug!(dirty_page_scan, "resetting recycled instance memory");
    let keep = if dirty_page_scan {
        KEEP_RESIDENT_SCANNED
    } else {
        KEEP_RESIDENT_BLIND
    };
    let mut pool = PoolingAllocationConfig::new();
    // A task is one core instance with a memory and a table, or one component: a few core
    // instances (the program, the WASI adapter, its shims) with up to two memories and a few
    // tables. Core instances and tables are cheap to reserve, so a slot covers either;
    // memories are not (each reserves its whole address range), so a component task takes
    // a memory slot per memory.
    pool.total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_component_instances(slots)
        .total_memories(slots)
        .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(slots)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(2)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        // The whole 32-bit address space: the task's `mem` is enforced by the store's
        // resource limiter, not by the slot size.
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(keep.memory)
        .table_keep_resident(keep.table);
    if dirty_page_scan {
        pool.pagemap_scan(Enabled::Yes);
    }
    pool
}
