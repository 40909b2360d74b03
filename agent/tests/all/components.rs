//! WASI 0.2 components (`wasm32-wasip2` builds of the guest programs) under every limit a core
//! module is held to, with the same typed outcomes and usage.

use std::sync::Arc;
use std::time::Duration;

use corral_agent::{ModuleError, ModuleSource, StartError, TaskOutcome, TaskSpec};
use corral_types::TrapKind;

use crate::util::{executor, executor_in, finish, named, run, run_on, spec, until_busy};

const MIB: u64 = 1 << 20;

fn limits(args: &[&str]) -> TaskSpec {
    spec(corral_wasm_tasks::components::LIMITS, args)
}

#[tokio::test]
async fn a_hello_component_prints_its_greeting_and_reports_usage() {
    let done = run(spec(corral_wasm_tasks::components::HELLO, &["component"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout, "hello from corral component\n");
    let usage = &done.result.usage;
    assert_eq!(usage.exit_code, Some(0));
    assert!(usage.fuel_consumed > 0, "{usage:?}");
    assert!(usage.peak_memory_bytes > 0, "{usage:?}");
    // It imports nothing of the file system: no root was made for it.
    assert!(!done.root.exists());
}

#[tokio::test]
async fn a_component_computes_what_the_module_does() {
    let module = run(spec(corral_wasm_tasks::PRIMES, &["100000"])).await;
    let component = run(spec(corral_wasm_tasks::components::PRIMES, &["100000"])).await;
    assert_eq!(component.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(component.stdout, module.stdout);
}

#[tokio::test]
async fn exit_codes_and_traps_are_typed() {
    // WASI 0.2's `wasi:cli/exit` says only success or failure: any other code is 1, as under
    // `wasmtime run`.
    let done = run(limits(&["exit", "3"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 1 });
    let done = run(limits(&["exit", "0"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    let done = run(limits(&["trap"])).await;
    assert!(
        matches!(
            done.result.outcome,
            TaskOutcome::Trapped {
                kind: TrapKind::Unreachable,
                ..
            }
        ),
        "{:?}",
        done.result.outcome
    );
}

#[tokio::test]
async fn spinning_past_max_fuel_is_out_of_fuel() {
    let mut task = limits(&["spin"]);
    task.limits.max_fuel = Some(50_000_000);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::OutOfFuel);
    assert_eq!(done.result.usage.fuel_consumed, 50_000_000);
}

#[tokio::test]
async fn allocating_past_mem_is_a_memory_limit() {
    let mut task = limits(&["alloc", "64"]);
    task.resources = task.resources.with_mem_bytes(16 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::MemoryLimit);
    assert!(done.result.usage.peak_memory_bytes <= 16 * MIB);
}

#[tokio::test]
async fn flooding_stdout_past_max_output_is_an_output_limit() {
    let mut task = limits(&["flood-stdout", "8"]);
    task.limits.max_output_bytes = Some(MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::OutputLimit);
}

#[tokio::test]
async fn writing_past_disk_is_a_disk_limit_and_nothing_past_it_lands() {
    let mut task = limits(&["write-file", "16"]);
    task.resources = task.resources.with_disk_bytes(4 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::DiskLimit);
    // A component importing the file system gets the sandbox root as `/`.
    assert!(done.root.is_dir());
    let written = std::fs::metadata(done.root.join("big.bin")).map_or(0, |m| m.len());
    assert!(written <= 4 * MIB, "{written} bytes landed");
}

#[tokio::test]
async fn a_component_past_its_timeout_is_stopped() {
    let mut task = limits(&["spin"]);
    task.limits.timeout = Some(Duration::from_millis(100));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Timeout);
}

#[tokio::test]
async fn a_running_component_is_killed() {
    let handle = executor().launch(limits(&["spin"]));
    until_busy(&handle).await;
    handle.kill();
    let done = finish(handle).await;
    assert_eq!(done.result.outcome, TaskOutcome::Killed);
    assert!(done.result.usage.cpu_time > Duration::ZERO);
}

#[tokio::test]
async fn a_component_importing_what_the_agent_lacks_does_not_start_and_says_what() {
    let wasm = wat::parse_str(
        r#"(component (import "corral:missing/api@1.0.0" (instance (export "f" (func)))))"#,
    )
    .unwrap();
    let done = run(named(
        "missing-import",
        ModuleSource::Bytes(Arc::from(wasm)),
    ))
    .await;
    match &done.result.outcome {
        TaskOutcome::FailedToStart(StartError::Link { message }) => {
            assert!(message.contains("corral:missing/api"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_component_is_invalid() {
    let mut wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::components::HELLO);
    wasm.truncate(wasm.len() / 2);
    let done = run(named("malformed", ModuleSource::Bytes(Arc::from(wasm)))).await;
    assert!(
        matches!(
            &done.result.outcome,
            TaskOutcome::FailedToStart(StartError::Module(ModuleError::Invalid { .. }))
        ),
        "{:?}",
        done.result.outcome
    );
}

#[tokio::test]
async fn another_entrypoint_of_a_component_is_a_function_it_exports() {
    // A bare name is a call without arguments (see the `invoke` tests for calls).
    let mut task = spec(corral_wasm_tasks::components::HELLO, &[]);
    task.entrypoint = "main".into();
    let done = run(task).await;
    assert_eq!(
        done.result.outcome,
        TaskOutcome::FailedToStart(StartError::MissingEntrypoint {
            name: "main".into()
        })
    );
}

#[tokio::test]
async fn a_compiled_component_is_kept_on_disk_and_loaded_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = corral_wasm_tasks::bytes(corral_wasm_tasks::components::HELLO);
    let digest = {
        let first = executor_in(dir.path());
        let digest = first.add_module(bytes).await.unwrap();
        assert_eq!(first.cache_stats().compiled, 1);
        digest
    };
    let second = executor_in(dir.path());
    assert!(second.has_module(&digest));
    let done = run_on(
        &second,
        named("after-restart", ModuleSource::Digest(digest)),
    )
    .await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(second.cache_stats().loaded_from_disk, 1);
    assert_eq!(second.cache_stats().compiled, 0);
}
