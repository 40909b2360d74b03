//! CPU share is enforced, not just accounted.

use std::time::{Duration, Instant};

use corral_agent::TaskOutcome;

use crate::util::{executor, finish, spec};

/// Samples a spinning task's CPU time and checks the share over every window of `window`.
async fn assert_share_holds(cpus_milli: u64, ceiling: f64) {
    let window = Duration::from_secs(3);
    let mut task = spec(corral_wasm_tasks::LIMITS, &["spin"]);
    task.resources = task.resources.with_cpus_milli(cpus_milli);
    let handle = executor().launch(task);
    let step = Duration::from_millis(100);
    let start = Instant::now();
    let mut samples = vec![(Duration::ZERO, Duration::ZERO)];
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    while start.elapsed() < window + Duration::from_secs(1) {
        ticker.tick().await;
        samples.push((start.elapsed(), handle.cpu_time()));
    }
    handle.kill();
    let done = finish(handle).await;
    assert_eq!(done.result.outcome, TaskOutcome::Killed);
    let mut worst: f64 = 0.0;
    for (i, &(t0, cpu0)) in samples.iter().enumerate() {
        for &(t1, cpu1) in &samples[i..] {
            if t1 - t0 >= window {
                let share = (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64();
                worst = worst.max(share);
                break;
            }
        }
    }
    eprintln!("cpus={cpus_milli}m: worst 3 s window used {worst:.3} cores");
    assert!(worst > 0.0, "the task never ran");
    assert!(worst <= ceiling, "used {worst:.3} cores over a 3 s window");
}

#[tokio::test]
async fn a_spinning_task_with_half_a_cpu_never_uses_more_than_0_6_core() {
    assert_share_holds(500, 0.6).await;
}

#[tokio::test]
async fn a_spinning_task_with_a_fifth_of_a_cpu_stays_near_it() {
    assert_share_holds(200, 0.25).await;
}
