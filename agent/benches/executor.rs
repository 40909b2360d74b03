//! Executor benchmarks: launch overhead against bare wasmtime, cached against cold launches,
//! and the cost of metering. Density has its own harness (`benches/density.rs`).
//!
//! `cargo bench -p corral-agent --bench executor`; figures go to BENCHMARKS.md.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_agent::{Executor, ExecutorConfig, ModuleSource, TaskOutcome, TaskSpec};
use corral_types::{Digest, FrameworkId, TaskId};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use wasmtime::component::{self, Component};
use wasmtime::{Config, Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// The framework every bench task belongs to.
fn bench_framework() -> FrameworkId {
    FrameworkId::new("bench").unwrap()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn executor(dir: &std::path::Path) -> Executor {
    Executor::new(ExecutorConfig::new(dir)).unwrap()
}

/// wasmtime on its own: instantiate a pre-linked module in a fresh store and run `_start`.
struct Bare {
    pre: InstancePre<WasiP1Ctx>,
    fuel: Option<u64>,
}

impl Bare {
    fn new(engine: &Engine, wasm: &[u8], fuel: Option<u64>) -> Self {
        let module = Module::new(engine, wasm).unwrap();
        let mut linker = Linker::new(engine);
        p1::add_to_linker_async(&mut linker, |cx| cx).unwrap();
        let pre = linker.instantiate_pre(&module).unwrap();
        Self { pre, fuel }
    }

    async fn run(&self, args: &[&str]) {
        let ctx = wasmtime_wasi::WasiCtxBuilder::new()
            .args(args)
            .stdout(MemoryOutputPipe::new(1 << 20))
            .build_p1();
        let mut store = Store::new(self.pre.module().engine(), ctx);
        if let Some(interval) = self.fuel {
            store.set_fuel(u64::MAX).unwrap();
            store.fuel_async_yield_interval(Some(interval)).unwrap();
        }
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        if let Err(e) = start.call_async(&mut store, ()).await {
            // A guest that calls proc_exit(0) ends here too.
            assert_eq!(
                e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0),
                Some(0)
            );
        }
    }
}

/// A store's data for a bare component run: WASI 0.2's context and resource table.
struct P2State {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime_wasi::ResourceTable,
}

impl wasmtime_wasi::WasiView for P2State {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// wasmtime on its own with a component: instantiate a pre-linked command and call
/// `wasi:cli/run` in a fresh store, fuel on as in the executor.
struct BareComponent {
    pre: CommandPre<P2State>,
    engine: Engine,
    fuel: u64,
}

impl BareComponent {
    fn new(engine: &Engine, wasm: &[u8], fuel: u64) -> Self {
        let component = Component::new(engine, wasm).unwrap();
        let mut linker = component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        let pre = CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self {
            pre,
            engine: engine.clone(),
            fuel,
        }
    }

    async fn run(&self) {
        let ctx = wasmtime_wasi::WasiCtxBuilder::new()
            .args(&["hello"])
            .stdout(MemoryOutputPipe::new(1 << 20))
            .build();
        let table = wasmtime_wasi::ResourceTable::new();
        let mut store = Store::new(&self.engine, P2State { ctx, table });
        store.set_fuel(u64::MAX).unwrap();
        store.fuel_async_yield_interval(Some(self.fuel)).unwrap();
        let command = self.pre.instantiate_async(&mut store).await.unwrap();
        let ran = command.wasi_cli_run().call_run(&mut store).await.unwrap();
        assert_eq!(ran, Ok(()));
    }
}

fn spec(digest: Digest, args: &[&str]) -> TaskSpec {
    let mut spec = TaskSpec::new(
        bench_framework(),
        TaskId::new("task").unwrap(),
        ModuleSource::Digest(digest),
    );
    spec.args = args.iter().map(|s| s.to_string()).collect();
    spec
}

/// `hello` through the executor vs the same module instantiated and run by bare wasmtime on
/// the executor's own engine (same allocator, fuel on).
fn launch_overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(dir.path());
    let rt = runtime();
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO);
    let digest = rt.block_on(executor.add_module(wasm.clone())).unwrap();
    let bare = Bare::new(
        executor.engine(),
        &wasm,
        Some(executor.fuel_yield_interval()),
    );

    let mut group = c.benchmark_group("launch_hello");
    group.bench_function("bare_wasmtime", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    bare.run(&["hello"]).await;
                }
                start.elapsed()
            })
        })
    });
    // The floor under any launch through a runtime of its own: spawning an empty task on a
    // multi-threaded runtime with the task runtime's worker count and awaiting it from here.
    let other_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .build()
        .unwrap();
    group.bench_function("empty_hand_off_and_back", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    other_runtime.spawn(async {}).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    for in_flight in [1, 64] {
        let name = match in_flight {
            1 => "executor".to_owned(),
            n => format!("executor_{n}_in_flight"),
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    launch_hellos(&executor, digest, iters, in_flight).await;
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    // Each side of a pair is 200 launches, long enough for the clock and short enough for
    // the pairs to alternate often. One at a time, every launch pays two hand-offs between
    // the caller's runtime and the task runtime, each a wake-up of an idle thread; with 64 in
    // flight, as an agent under load has them, those overlap with guest work.
    for in_flight in [1, 64] {
        let name = match in_flight {
            1 => "launch_hello".to_owned(),
            n => format!("launch_hello_{n}_in_flight"),
        };
        paired(
            &name,
            100,
            || {
                rt.block_on(async {
                    for _ in 0..200 {
                        bare.run(&["hello"]).await;
                    }
                })
            },
            || rt.block_on(launch_hellos(&executor, digest, 200, in_flight)),
        );
    }
}

/// `hello` built as a component, through the executor vs bare wasmtime on the executor's own
/// engine; and the component through the executor against the module through it.
fn component_launch(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(dir.path());
    let rt = runtime();
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::components::HELLO);
    let component = rt.block_on(executor.add_module(wasm.clone())).unwrap();
    let module = rt
        .block_on(executor.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO)))
        .unwrap();
    let bare = BareComponent::new(executor.engine(), &wasm, executor.fuel_yield_interval());

    let mut group = c.benchmark_group("launch_hello_component");
    group.bench_function("bare_wasmtime", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    bare.run().await;
                }
                start.elapsed()
            })
        })
    });
    for (name, digest) in [("executor", component), ("executor_module", module)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    launch_hellos(&executor, digest, iters, 1).await;
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    paired(
        "launch_hello_component",
        100,
        || {
            rt.block_on(async {
                for _ in 0..200 {
                    bare.run().await;
                }
            })
        },
        || rt.block_on(launch_hellos(&executor, component, 200, 1)),
    );
}

/// Launches `count` hello tasks, `in_flight` at a time, and checks that each succeeded.
async fn launch_hellos(executor: &Executor, digest: Digest, count: u64, in_flight: u64) {
    let mut done = 0;
    while done < count {
        let batch = (count - done).min(in_flight);
        let handles: Vec<_> = (0..batch)
            .map(|_| executor.launch(spec(digest, &[])))
            .collect();
        for handle in handles {
            let result = handle.wait().await;
            assert_eq!(result.outcome, TaskOutcome::Exited { code: 0 });
        }
        done += batch;
    }
}

/// A ~1 MiB module: many small functions and a trivial `_start`. `salt` changes its digest
/// (through a custom section) without changing its code.
fn big_module(salt: u64) -> Vec<u8> {
    let mut wat = String::from("(module (memory 1)\n");
    for i in 0..3_000 {
        wat.push_str(&format!(
            "(func $f{i} (param i32) (result i32) local.get 0\n"
        ));
        for j in 0..40 {
            wat.push_str(&format!(
                "i32.const {} i32.add i32.const {j} i32.xor\n",
                i * 7 + j
            ));
        }
        wat.push_str(")\n");
    }
    wat.push_str("(func (export \"_start\"))\n");
    wat.push_str(&format!("(@custom \"salt\" \"{salt}\"))"));
    wat::parse_str(&wat).unwrap()
}

/// Launching a ~1 MiB module: cold (admit + validate + compile + persist), after an agent
/// restart (compiled code loaded from disk), and cached (pre-instantiated in memory).
/// What the task SDK's calls cost a guest: `sdk_demo calls 1000 <kind>` through the executor,
/// against the same loop without calls; the difference over 1,000 is one call's cost.
fn sdk_calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(dir.path());
    let rt = runtime();
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO);
    let digest = rt.block_on(executor.add_module(wasm)).unwrap();
    let mut group = c.benchmark_group("sdk_calls_1000");
    for kind in ["none", "progress", "checkpoint"] {
        group.bench_function(kind, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let handle = executor.launch(spec(digest, &["calls", "1000", kind]));
                        let result = handle.wait().await;
                        assert_eq!(result.outcome, TaskOutcome::Exited { code: 0 });
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn cached_vs_cold(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let first = executor(dir.path());
    let size = big_module(0).len();
    eprintln!("big module: {} KiB", size / 1024);

    let mut group = c.benchmark_group("launch_1mib_module");
    group.sample_size(10);
    let mut salt = 1;
    group.bench_function("cold", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let wasm = big_module(salt);
                salt += 1;
                let task = TaskSpec::new(
                    bench_framework(),
                    TaskId::new("cold").unwrap(),
                    ModuleSource::Bytes(Arc::from(wasm)),
                );
                let start = Instant::now();
                let result = rt.block_on(first.launch(task).wait());
                total += start.elapsed();
                assert!(result.outcome.is_success());
            }
            total
        })
    });
    let digest = rt.block_on(first.add_module(big_module(0))).unwrap();
    drop(first);
    group.bench_function("after_restart", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let restarted = executor(dir.path());
                let start = Instant::now();
                let result = rt.block_on(restarted.launch(spec(digest, &[])).wait());
                total += start.elapsed();
                assert!(result.outcome.is_success());
                assert_eq!(restarted.cache_stats().loaded_from_disk, 1);
            }
            total
        })
    });
    let warm = executor(dir.path());
    rt.block_on(warm.launch(spec(digest, &[])).wait());
    group.sample_size(100);
    group.bench_function("cached", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let result = warm.launch(spec(digest, &[])).wait().await;
                    assert!(result.outcome.is_success());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// `primes` through the executor (fuel, CPU accounting, yields) vs bare wasmtime with the same
/// fuel setting and yield interval vs bare wasmtime without fuel.
fn metering_cost(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(dir.path());
    let rt = runtime();
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::PRIMES);
    let digest = rt.block_on(executor.add_module(wasm.clone())).unwrap();
    let with_fuel = Bare::new(
        executor.engine(),
        &wasm,
        Some(executor.fuel_yield_interval()),
    );
    let mut config = Config::new();
    config.consume_fuel(false);
    let no_fuel_engine = Engine::new(&config).unwrap();
    let without_fuel = Bare::new(&no_fuel_engine, &wasm, None);
    let n = "5000000";

    let mut group = c.benchmark_group("primes_5m");
    group.sample_size(20);
    group.bench_function("bare_no_fuel", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    without_fuel.run(&["primes", n]).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("bare_fuel", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    with_fuel.run(&["primes", n]).await;
                }
                start.elapsed()
            })
        })
    });
    for cpus_milli in [1000, 999] {
        group.bench_function(format!("executor_cpus_{cpus_milli}m"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut task = spec(digest, &[n]);
                        task.resources = task.resources.with_cpus_milli(cpus_milli);
                        let result = executor.launch(task).wait().await;
                        assert!(result.outcome.is_success());
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    paired(
        "primes_5m",
        40,
        || rt.block_on(with_fuel.run(&["primes", n])),
        || {
            let result = rt.block_on(executor.launch(spec(digest, &[n])).wait());
            assert!(result.outcome.is_success());
        },
    );
}

/// Times `bare` and `ours` in alternating pairs (which goes first alternates too) and prints
/// the medians and the median of the per-pair ratios, of wall time and of the CPU time the
/// whole process used (the executor's worker threads included). Criterion measures each
/// variant in its own time window, and on a shared machine the speed drifts between windows by
/// more than the differences these targets are about; pairs cancel the drift.
fn paired(name: &str, pairs: usize, bare: impl Fn(), ours: impl Fn()) {
    // `cargo bench -- --test` only checks that benchmarks run.
    let pairs = if std::env::args().any(|a| a == "--test") {
        2
    } else {
        pairs
    };
    let timed = |run: &dyn Fn()| {
        let (wall, cpu) = (Instant::now(), process_cpu_time());
        run();
        Times {
            wall: wall.elapsed(),
            cpu: process_cpu_time() - cpu,
        }
    };
    let (mut bare_times, mut our_times) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (b, o) = if pair % 2 == 0 {
            let b = timed(&bare);
            (b, timed(&ours))
        } else {
            let o = timed(&ours);
            (timed(&bare), o)
        };
        bare_times.push(b);
        our_times.push(o);
    }
    for (what, of) in [
        ("wall", (|t: &Times| t.wall) as fn(&Times) -> Duration),
        ("cpu", |t: &Times| t.cpu),
    ] {
        let mut bare: Vec<Duration> = bare_times.iter().map(of).collect();
        let mut ours: Vec<Duration> = our_times.iter().map(of).collect();
        let mut ratios: Vec<f64> = bare
            .iter()
            .zip(&ours)
            .map(|(b, o)| o.as_secs_f64() / b.as_secs_f64())
            .collect();
        println!(
            "{name}/paired {what}: {pairs} alternating pairs, medians: bare {:?}, \
             executor {:?}; executor/bare per pair: median {:.3}",
            median(&mut bare),
            median(&mut ours),
            median(&mut ratios),
        );
    }
}

#[derive(Clone, Copy)]
struct Times {
    wall: Duration,
    cpu: Duration,
}

/// CPU time used by every thread of this process so far.
fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn median<T: PartialOrd + Copy>(values: &mut [T]) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// How long a kill takes to land on a spinning guest.
fn kill_latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(dir.path());
    let rt = runtime();
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::LIMITS);
    let digest = rt.block_on(executor.add_module(wasm)).unwrap();
    let mut group = c.benchmark_group("kill");
    group.sample_size(20);
    group.bench_function("spinning_task", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let handle = executor.launch(spec(digest, &["spin"]));
                    while handle.cpu_time() < Duration::from_millis(5) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let start = Instant::now();
                    handle.kill();
                    let result = handle.wait().await;
                    total += start.elapsed();
                    assert_eq!(result.outcome, TaskOutcome::Killed);
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    launch_overhead,
    component_launch,
    sdk_calls,
    cached_vs_cold,
    metering_cost,
    kill_latency
);
criterion_main!(benches);
