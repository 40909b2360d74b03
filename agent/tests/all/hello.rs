use corral_agent::TaskOutcome;

use crate::util::{run, spec};

#[tokio::test]
async fn hello_prints_its_greeting_and_exits_zero() {
    let done = run(spec(corral_wasm_tasks::HELLO, &[])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout, "hello from corral\n");
    assert_eq!(done.result.usage.exit_code, Some(0));
    assert!(done.result.usage.fuel_consumed > 0);
    assert!(done.result.usage.peak_memory_bytes > 0);
}

#[tokio::test]
async fn hello_echoes_its_args() {
    let done = run(spec(corral_wasm_tasks::HELLO, &["big", "world"])).await;
    assert_eq!(done.stdout, "hello from corral big world\n");
}

#[tokio::test]
async fn fuel_consumed_is_deterministic_for_the_same_module_and_input() {
    let first = run(spec(corral_wasm_tasks::HELLO, &["x"])).await;
    let second = run(spec(corral_wasm_tasks::HELLO, &["x"])).await;
    assert_eq!(
        first.result.usage.fuel_consumed,
        second.result.usage.fuel_consumed
    );
}
