//! Every limit against the `limits` fixture: each ends with its own typed outcome, and the
//! agent carries on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_agent::{ModuleSource, StartError, TaskOutcome, TaskSpec};
use corral_types::TrapKind;

use crate::util::{executor, finish, named, run, spec, until_busy, until_running};

const MIB: u64 = 1 << 20;

fn limits(args: &[&str]) -> TaskSpec {
    spec(corral_wasm_tasks::LIMITS, args)
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
async fn growth_past_mem_fails_inside_the_guest() {
    let mut task = limits(&["try-alloc", "64"]);
    task.resources = task.resources.with_mem_bytes(16 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout.trim(), "allocation failed");
}

#[tokio::test]
async fn allocating_within_mem_succeeds_and_peak_memory_shows_it() {
    let mut task = limits(&["alloc", "8"]);
    task.resources = task.resources.with_mem_bytes(64 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout.trim(), "allocated 8 MiB");
    let peak = done.result.usage.peak_memory_bytes;
    assert!((8 * MIB..=64 * MIB).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn a_module_whose_initial_memory_exceeds_mem_is_a_memory_limit() {
    let mut task = limits(&["exit", "0"]);
    task.resources = task.resources.with_mem_bytes(64 * 1024);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::MemoryLimit);
}

#[tokio::test]
async fn spinning_past_max_fuel_is_out_of_fuel_and_uses_exactly_the_budget() {
    let mut task = limits(&["spin"]);
    task.limits.max_fuel = Some(50_000_000);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::OutOfFuel);
    assert_eq!(done.result.usage.fuel_consumed, 50_000_000);
}

#[tokio::test]
async fn a_spinning_task_times_out() {
    let mut task = limits(&["spin"]);
    task.limits.timeout = Some(Duration::from_millis(100));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Timeout);
    assert!(done.result.usage.wall_time >= Duration::from_millis(100));
    assert!(done.result.usage.fuel_consumed > 0);
}

#[tokio::test]
async fn a_sleeping_task_times_out() {
    let mut task = limits(&["sleep", "60000"]);
    task.limits.timeout = Some(Duration::from_millis(50));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Timeout);
}

#[tokio::test]
async fn a_short_sleep_finishes() {
    let done = run(limits(&["sleep", "5"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout.trim(), "slept 5");
}

#[tokio::test]
async fn writing_past_disk_is_a_disk_limit_and_nothing_past_it_lands() {
    let mut task = limits(&["write-file", "16"]);
    task.resources = task.resources.with_disk_bytes(4 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::DiskLimit);
    let written = std::fs::metadata(done.root.join("big.bin")).unwrap().len();
    assert!(written <= 4 * MIB, "{written} bytes landed");
}

#[tokio::test]
async fn writing_within_disk_succeeds() {
    let mut task = limits(&["write-file", "2"]);
    task.resources = task.resources.with_disk_bytes(4 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(
        std::fs::metadata(done.root.join("big.bin")).unwrap().len(),
        2 * MIB
    );
}

#[tokio::test]
async fn inputs_larger_than_disk_are_a_disk_limit() {
    let mut task = limits(&["exit", "0"]);
    task.resources = task.resources.with_disk_bytes(1024);
    task.inputs
        .push(crate::util::input("big.txt", &vec![b'x'; 4096]));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::DiskLimit);
}

#[tokio::test]
async fn flooding_stdout_is_an_output_limit_with_a_marker() {
    let mut task = limits(&["flood-stdout", "8"]);
    task.limits.max_output_bytes = Some(MIB);
    task.resources = task.resources.with_disk_bytes(64 * MIB);
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::OutputLimit);
    let marker = format!("[corral] output limit of {} bytes reached", MIB);
    assert!(done.stdout.contains(&marker));
    let body = done.stdout.len() - done.stdout.find("\n[corral]").unwrap();
    assert!(done.stdout.len() as u64 <= MIB + body as u64);
}

#[tokio::test]
async fn deep_recursion_in_linear_memory_traps() {
    let done = run(limits(&["recurse"])).await;
    assert!(
        matches!(done.result.outcome, TaskOutcome::Trapped { .. }),
        "{:?}",
        done.result.outcome
    );
}

#[tokio::test]
async fn a_wasm_stack_overflow_is_a_trap_not_an_abort() {
    let done = run(limits(&["recurse-wasm"])).await;
    match done.result.outcome {
        TaskOutcome::Trapped { kind, .. } => assert_eq!(kind, TrapKind::StackOverflow),
        other => panic!("unexpected outcome {other:?}"),
    }
    // The agent is unharmed.
    let done = run(limits(&["exit", "0"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
}

#[tokio::test]
async fn exit_codes_pass_through() {
    // WASI preview 1 allows exit codes below 126.
    for code in [0, 1, 3, 125] {
        let done = run(limits(&["exit", &code.to_string()])).await;
        assert_eq!(done.result.outcome, TaskOutcome::Exited { code });
        assert_eq!(done.result.usage.exit_code, Some(code));
    }
}

#[tokio::test]
async fn an_exit_code_wasi_does_not_allow_is_a_trap() {
    let done = run(limits(&["exit", "200"])).await;
    assert!(
        matches!(done.result.outcome, TaskOutcome::Trapped { .. }),
        "{:?}",
        done.result.outcome
    );
}

#[tokio::test]
async fn a_guest_panic_is_an_unreachable_trap_with_its_message_on_stderr() {
    let done = run(limits(&["panic"])).await;
    match done.result.outcome {
        TaskOutcome::Trapped { kind, message } => {
            assert_eq!(kind, TrapKind::Unreachable);
            assert!(!message.is_empty());
        }
        other => panic!("unexpected outcome {other:?}"),
    }
    assert!(done.stderr.contains("guest panicked on purpose"));
}

#[tokio::test]
async fn an_explicit_trap_is_reported() {
    let done = run(limits(&["trap"])).await;
    assert!(matches!(
        done.result.outcome,
        TaskOutcome::Trapped {
            kind: TrapKind::Unreachable,
            ..
        }
    ));
}

#[tokio::test]
async fn a_spinning_task_is_killed() {
    let handle = executor().launch(limits(&["spin"]));
    until_running(&handle).await;
    let asked = Instant::now();
    handle.kill();
    let done = finish(handle).await;
    let latency = asked.elapsed();
    assert_eq!(done.result.outcome, TaskOutcome::Killed);
    eprintln!("kill latency: {latency:?}");
}

#[tokio::test]
async fn a_sleeping_task_is_killed() {
    let handle = executor().launch(limits(&["sleep", "60000"]));
    let switch = handle.kill_switch();
    switch.kill();
    let done = finish(handle).await;
    assert_eq!(done.result.outcome, TaskOutcome::Killed);
}

/// A module whose start function never returns: limits must hold during instantiation too.
fn looping_start() -> TaskSpec {
    let wasm = wat::parse_str(
        r#"(module
             (func $forever (loop (br 0)))
             (start $forever)
             (func (export "_start")))"#,
    )
    .unwrap();
    named("looping-start", ModuleSource::Bytes(Arc::from(wasm)))
}

#[tokio::test]
async fn a_start_function_that_loops_runs_out_of_fuel() {
    let mut task = looping_start();
    task.limits.max_fuel = Some(1_000_000);
    assert_eq!(run(task).await.result.outcome, TaskOutcome::OutOfFuel);
}

#[tokio::test]
async fn a_start_function_that_loops_times_out() {
    let mut task = looping_start();
    task.limits.timeout = Some(Duration::from_millis(50));
    assert_eq!(run(task).await.result.outcome, TaskOutcome::Timeout);
}

#[tokio::test]
async fn a_start_function_that_loops_can_be_killed() {
    let handle = executor().launch(looping_start());
    // Its start function never returns, so it never reaches `Running`.
    until_busy(&handle).await;
    assert_eq!(handle.phase(), corral_agent::Phase::Starting);
    handle.kill();
    assert_eq!(finish(handle).await.result.outcome, TaskOutcome::Killed);
}

#[tokio::test]
async fn zero_cpus_is_an_invalid_spec() {
    let mut task = limits(&["exit", "0"]);
    task.resources = task.resources.with_cpus_milli(0);
    assert!(matches!(
        run(task).await.result.outcome,
        TaskOutcome::FailedToStart(StartError::InvalidSpec { .. })
    ));
}

#[test]
fn ids_that_are_not_plain_names_cannot_reach_the_executor() {
    // A task's ids name its sandbox directories; typed ids make a path an unrepresentable spec.
    for bad in ["../../etc", "..", "a/b", "/abs"] {
        assert!(corral_types::TaskId::new(bad).is_err(), "{bad}");
        assert!(corral_types::FrameworkId::new(bad).is_err(), "{bad}");
    }
}
