//! One tenant's compile bomb against another tenant's stream of small tasks: the victim's
//! launch-to-exit latency, quiet and while the attacker launches module after new module
//! that the agent must compile (each just within the admission limits).
//!
//! Run twice: compiling in the agent's process, and in budgeted compile workers as `corral
//! agent` does (this binary is its own worker, as `corral` is).
//!
//! `cargo bench -p corral-agent --bench compile_bomb`; with `-- --test` (CI's smoke mode) a
//! few of each. Prints p50 and p99 of both and their ratio; BENCHMARKS.md records them.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_agent::{
    CompileBudget, CompileWorker, Executor, ExecutorConfig, ModuleSource, TaskOutcome, TaskSpec,
};
use corral_types::{FrameworkId, TaskId};

/// A module that must be compiled anew: `functions` small functions, made distinct by `seed`.
fn heavy(functions: usize, seed: usize) -> Vec<u8> {
    let mut text = String::from("(module (func (export \"_start\"))");
    for i in 0..functions {
        text += &format!(
            "(func (param i32) (result i32) local.get 0 i32.const {} i32.mul i32.const {seed} i32.add)",
            i + 1
        );
    }
    text.push(')');
    wat::parse_str(text).unwrap()
}

fn spec(framework: &str, id: String, module: ModuleSource) -> TaskSpec {
    let mut spec = TaskSpec::new(
        FrameworkId::new(framework).unwrap(),
        TaskId::new(id).unwrap(),
        module,
    );
    spec.resources = spec.resources.with_cpus_milli(100).with_mem_bytes(16 << 20);
    spec
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Launches one victim task every `PACE` until `until` resolves (and at least `min` tasks),
/// each waited for; returns their launch-to-exit latencies, sorted.
async fn victim_latencies(
    executor: &Executor,
    module: &ModuleSource,
    min: usize,
    until: impl std::future::Future<Output = ()>,
    tag: &str,
) -> Vec<Duration> {
    const PACE: Duration = Duration::from_millis(5);
    tokio::pin!(until);
    let mut done = false;
    let mut latencies = Vec::new();
    while !done || latencies.len() < min {
        let started = Instant::now();
        let id = format!("{tag}-{}", latencies.len());
        let result = executor
            .launch(spec("victim", id, module.clone()))
            .wait()
            .await;
        assert_eq!(result.outcome, TaskOutcome::Exited { code: 0 });
        latencies.push(started.elapsed());
        tokio::select! {
            () = &mut until, if !done => done = true,
            () = tokio::time::sleep(PACE) => {}
        }
    }
    latencies.sort();
    latencies
}

/// The argument that makes this binary a compile worker.
const WORKER: &str = "compile-worker";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, worker, compatibility, stack, memory] = &args[..]
        && worker == WORKER
    {
        let code = corral_agent::compile_worker::serve(
            compatibility,
            stack.parse().unwrap(),
            memory.parse().unwrap(),
        );
        std::process::exit(code);
    }
    let smoke = args.iter().any(|a| a == "--test");
    bomb("compiling in the agent's process", None, smoke);
    let worker = CompileWorker {
        program: std::env::current_exe().unwrap(),
        args: vec![WORKER.into()],
        budget: CompileBudget::default(),
    };
    bomb("compiling in compile workers", Some(worker), smoke);
}

/// The attack, with modules compiled by `worker` (or in process), and the victim's latencies.
fn bomb(how: &str, worker: Option<CompileWorker>, smoke: bool) {
    let (tasks, bombs, functions) = if smoke {
        (20, 2, 2_000)
    } else {
        (500, 16, 50_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExecutorConfig::new(dir.path());
    config.compile_worker = worker;
    let executor = Executor::new(config).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let small = wat::parse_str("(module (func (export \"_start\")))").unwrap();
    let victim = ModuleSource::Digest(rt.block_on(executor.add_module(small)).unwrap());

    let quiet_for = if smoke {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let quiet = rt.block_on(async {
        let over = tokio::time::sleep(quiet_for);
        victim_latencies(&executor, &victim, tasks, over, "quiet").await
    });

    let modules: Vec<Vec<u8>> = (0..bombs).map(|seed| heavy(functions, seed)).collect();
    let attack_started = Instant::now();
    let attack: Vec<_> = modules
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            executor.launch(spec(
                "attacker",
                format!("bomb-{i}"),
                ModuleSource::Bytes(Arc::from(bytes)),
            ))
        })
        .collect();
    let attack_over = async {
        for handle in attack {
            let done = handle.wait().await;
            assert_eq!(done.outcome, TaskOutcome::Exited { code: 0 });
        }
    };
    // The victim's stream runs for as long as the attack does.
    let under = rt.block_on(victim_latencies(
        &executor,
        &victim,
        tasks,
        attack_over,
        "attacked",
    ));
    let attack_done = attack_started.elapsed();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "compile bomb, {how}: {bombs} modules of {functions} functions from one framework; \
         victim tasks from another, one every 5 ms"
    );
    println!(
        "  quiet:    p50 {:.2} ms, p99 {:.2} ms, {} tasks",
        ms(percentile(&quiet, 0.5)),
        ms(percentile(&quiet, 0.99)),
        quiet.len()
    );
    println!(
        "  attacked: p50 {:.2} ms, p99 {:.2} ms, {} tasks while the attack compiled ({:.1} s)",
        ms(percentile(&under, 0.5)),
        ms(percentile(&under, 0.99)),
        under.len(),
        attack_done.as_secs_f64()
    );
    println!(
        "  p99 attacked / quiet: {:.2}",
        ms(percentile(&under, 0.99)) / ms(percentile(&quiet, 0.99))
    );
}
