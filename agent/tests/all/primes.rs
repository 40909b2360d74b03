use corral_agent::TaskOutcome;

use crate::util::{run, spec};

#[tokio::test]
async fn primes_counts_primes_up_to_n() {
    let done = run(spec(corral_wasm_tasks::PRIMES, &["100000"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout.trim(), "9592");
}

#[tokio::test]
async fn more_work_costs_more_fuel() {
    let small = run(spec(corral_wasm_tasks::PRIMES, &["1000"])).await;
    let large = run(spec(corral_wasm_tasks::PRIMES, &["1000000"])).await;
    assert_eq!(large.stdout.trim(), "78498");
    assert!(large.result.usage.fuel_consumed > 100 * small.result.usage.fuel_consumed);
}

#[tokio::test]
async fn a_bad_argument_is_the_guest_s_own_error() {
    let done = run(spec(corral_wasm_tasks::PRIMES, &["many"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 2 });
}
