//! The sandbox holds: no way out of the file system, no host environment, no memory left
//! behind by an earlier task.

use corral_agent::{AllocatorChoice, EngineOptions, Executor, ExecutorConfig, TaskOutcome};

use crate::util::{run, run_on, spec};

#[tokio::test]
async fn every_escape_attempt_is_denied_and_the_canary_is_unchanged() {
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary.txt");
    std::fs::write(&canary, "original").unwrap();
    let canary_arg = canary.to_str().unwrap();

    let done = run(spec(corral_wasm_tasks::LIMITS, &["escape", canary_arg])).await;

    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert!(
        done.stdout.contains("escape attempts done"),
        "{}",
        done.stdout
    );
    let escaped: Vec<&str> = done
        .stdout
        .lines()
        .filter(|l| l.starts_with("ESCAPED"))
        .collect();
    assert!(escaped.is_empty(), "escaped: {escaped:#?}");
    let denied = done
        .stdout
        .lines()
        .filter(|l| l.starts_with("DENIED"))
        .count();
    assert!(denied >= 15, "only {denied} attempts ran:\n{}", done.stdout);
    // Among them: trailing slashes and dots, long detours, a huge name.
    for attempt in [
        "DENIED list ../ (trailing slash)",
        "DENIED list link-up/. (trailing dot)",
        "DENIED read ../canary.txt/ (trailing slash)",
        "DENIED read ./ x 20000 then ../canary.txt",
        "DENIED read link-up/../ x 5000 then ../canary.txt",
        "DENIED create a 64 KiB name",
    ] {
        assert!(done.stdout.contains(attempt), "{attempt}:\n{}", done.stdout);
    }
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "original");
    // Nothing appeared next to the sandbox root either.
    let run_dir = done.root.parent().unwrap();
    assert!(!run_dir.join("canary.txt").exists());
    assert!(!run_dir.join("stolen-canary").exists());
}

#[tokio::test]
async fn the_guest_sees_only_the_env_and_args_it_was_given() {
    let mut task = spec(corral_wasm_tasks::LIMITS, &["env", "--flag"]);
    task.env = vec![("ONLY".into(), "this".into())];
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", done.stdout);
    assert_eq!(lines[0], "ONLY=this");
    assert!(lines[1].starts_with("args: [\""));
    assert!(lines[1].ends_with("\"env\", \"--flag\"]"), "{}", lines[1]);
    assert!(std::env::var("PATH").is_ok(), "the host has a PATH to leak");
}

#[tokio::test]
async fn the_guest_cannot_read_its_own_logs() {
    let done = run(spec(corral_wasm_tasks::LIMITS, &["read", "../stdout"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 1 });
}

async fn no_secret_survives_into_the_next_task(executor: &Executor) {
    for _ in 0..3 {
        let written = run_on(executor, spec(corral_wasm_tasks::LIMITS, &["secret-write"])).await;
        assert_eq!(written.result.outcome, TaskOutcome::Exited { code: 0 });
        assert_eq!(written.stdout.trim(), "secret written");
        let scanned = run_on(executor, spec(corral_wasm_tasks::LIMITS, &["secret-scan"])).await;
        assert_eq!(scanned.stdout.trim(), "clean");
        assert_eq!(scanned.result.outcome, TaskOutcome::Exited { code: 0 });
    }
}

fn executor_with(allocator: AllocatorChoice) -> (tempfile::TempDir, Executor) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExecutorConfig::new(dir.path());
    config.engine = EngineOptions {
        allocator,
        ..EngineOptions::default()
    };
    let executor = Executor::new(config).unwrap();
    (dir, executor)
}

#[tokio::test]
async fn no_memory_residue_between_tasks_with_the_pooling_allocator() {
    // A small pool makes the second task land in the slot the first one used.
    let (_dir, executor) = executor_with(AllocatorChoice::Pooling { slots: 2 });
    assert_eq!(
        executor.allocator(),
        corral_agent::AllocatorKind::Pooling { slots: 2 }
    );
    no_secret_survives_into_the_next_task(&executor).await;
}

#[tokio::test]
async fn no_memory_residue_between_tasks_with_on_demand_allocation() {
    let (_dir, executor) = executor_with(AllocatorChoice::OnDemand);
    no_secret_survives_into_the_next_task(&executor).await;
}
