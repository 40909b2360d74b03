//! Density: many concurrently sleeping tasks on one executor, and the memory each one costs.
//!
//! `cargo bench -p corral-agent --bench density` runs 10,000 tasks per guest; with `-- --test`
//! (CI's smoke mode) 100. Prints resident memory per task; BENCHMARKS.md records the figures.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use corral_agent::{
    AllocatorChoice, EngineOptions, Executor, ExecutorConfig, ModuleSource, TaskOutcome, TaskSpec,
};
use corral_types::{FrameworkId, TaskId};

/// A guest with one 64 KiB page of linear memory that sleeps in `poll_oneoff` for a minute.
const TINY_SLEEPER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; One subscription at 0: a relative monotonic clock, 60 s.
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"#;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * rustix::param::page_size() as u64
}

fn measure(
    executor: &Executor,
    rt: &tokio::runtime::Runtime,
    name: &str,
    module: Vec<u8>,
    args: &[&str],
    n: usize,
) {
    let digest = rt.block_on(executor.add_module(module)).unwrap();
    let task = |i: usize| {
        let mut spec = TaskSpec::new(
            FrameworkId::new("density").unwrap(),
            TaskId::new(format!("{name}-{i}")).unwrap(),
            ModuleSource::Digest(digest),
        );
        spec.args = args.iter().map(|s| s.to_string()).collect();
        spec.resources = spec.resources.with_mem_bytes(64 << 20);
        spec
    };
    // Warm up once so one-time allocations are not charged to the tasks.
    let warm = executor.launch(task(usize::MAX));
    warm.kill();
    rt.block_on(warm.wait());

    let before = resident_bytes();
    let started = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| executor.launch(task(i))).collect();
    // Running and then asleep in its first host call: give each a moment after it started.
    rt.block_on(async {
        for handle in &handles {
            handle.started().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let launched_in = started.elapsed();
    let after = resident_bytes();
    for handle in &handles {
        handle.kill();
    }
    let mut linear = 0;
    let mut killed = 0;
    let mut outcomes = Vec::new();
    for handle in handles {
        let result = rt.block_on(handle.wait());
        linear += result.usage.peak_memory_bytes;
        killed += usize::from(result.outcome == TaskOutcome::Killed);
        outcomes.push(result.outcome);
    }
    if killed != n {
        let failures: Vec<_> = outcomes
            .iter()
            .filter(|o| **o != TaskOutcome::Killed)
            .take(3)
            .collect();
        panic!("only {killed} of {n} tasks were still asleep; others ended as {failures:?}");
    }
    let per_task = (after.saturating_sub(before)) / n as u64;
    let linear_per_task = linear / n as u64;
    println!(
        "{name}: {n} sleeping tasks in {launched_in:.2?}; resident {} KiB per task \
         (linear memory reserved per task {} KiB, of which only touched pages are resident)",
        per_task / 1024,
        linear_per_task / 1024,
    );
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let n = if smoke { 100 } else { 10_000 };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExecutorConfig::new(dir.path());
    config.engine = EngineOptions {
        allocator: AllocatorChoice::Pooling {
            slots: n as u32 + 16,
        },
        ..EngineOptions::default()
    };
    let executor = Executor::new(config).unwrap();
    println!("allocator: {:?}", executor.allocator());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    measure(
        &executor,
        &rt,
        "tiny-sleeper",
        wat::parse_str(TINY_SLEEPER).unwrap(),
        &[],
        n,
    );
    measure(
        &executor,
        &rt,
        "rust-sleeper",
        corral_wasm_tasks::bytes(corral_wasm_tasks::LIMITS),
        &["sleep", "60000"],
        n,
    );
}
