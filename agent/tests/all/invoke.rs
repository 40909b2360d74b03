//! Entrypoints other than `_start`, called as `wasmtime run --invoke` calls them: numbers in
//! from the task's arguments, numbers out on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use corral_agent::{ModuleSource, StartError, TaskOutcome, TaskSpec};

use crate::util::{named, run};

const MATH: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "split") (param i64 f32 f64) (result f64 i64 f32)
    (local.get 2) (local.get 0) (local.get 1))
  (func (export "quiet"))
  (func (export "takes_vector") (param v128))
  (func (export "divide") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (global (export "not_a_function") i32 (i32.const 0)))"#;

fn invoke(function: &str, args: &[&str]) -> TaskSpec {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let wasm = wat::parse_str(MATH).unwrap();
    let mut spec = named(
        format!("invoke-{function}-{n}"),
        ModuleSource::Bytes(Arc::from(wasm)),
    );
    spec.entrypoint = function.into();
    spec.args = args.iter().map(|s| s.to_string()).collect();
    spec
}

fn invalid_reason(outcome: TaskOutcome) -> String {
    match outcome {
        TaskOutcome::FailedToStart(StartError::InvalidSpec { reason }) => reason,
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}

#[tokio::test]
async fn a_function_of_numbers_gets_its_arguments_and_prints_its_results() {
    let added = run(invoke("add", &["40", "2"])).await;
    assert_eq!(added.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(added.stdout, "42\n");

    // Every number type, each result on its own line in order; arguments past the
    // parameters are left to the guest's argv, as under wasmtime.
    let split = run(invoke("split", &["-7", "1.5", "0.25", "extra"])).await;
    assert_eq!(split.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(split.stdout, "0.25\n-7\n1.5\n");

    let quiet = run(invoke("quiet", &[])).await;
    assert_eq!(quiet.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(quiet.stdout, "");
}

#[tokio::test]
async fn a_trap_in_an_invoked_function_fails_the_task_and_prints_nothing() {
    let divided = run(invoke("divide", &["1", "0"])).await;
    assert!(
        matches!(divided.result.outcome, TaskOutcome::Trapped { .. }),
        "{:?}",
        divided.result.outcome
    );
    assert_eq!(divided.stdout, "");
}

#[tokio::test]
async fn arguments_that_do_not_fit_the_function_are_refused_before_it_runs() {
    let reason = invalid_reason(run(invoke("add", &["1"])).await.result.outcome);
    assert_eq!(reason, "`add` takes 2 arguments (i32, i32); the task has 1");
    let reason = invalid_reason(run(invoke("add", &["1", "two"])).await.result.outcome);
    assert_eq!(reason, "argument 2 of `add`: \"two\" is not an i32");
    let reason = invalid_reason(
        run(invoke("add", &["1", "4294967296"]))
            .await
            .result
            .outcome,
    );
    assert_eq!(reason, "argument 2 of `add`: \"4294967296\" is not an i32");
    let reason = invalid_reason(run(invoke("takes_vector", &["1"])).await.result.outcome);
    assert!(reason.contains("takes or returns a v128"), "{reason}");

    for name in ["missing", "not_a_function"] {
        assert_eq!(
            run(invoke(name, &[])).await.result.outcome,
            TaskOutcome::FailedToStart(StartError::MissingEntrypoint { name: name.into() })
        );
    }
}

#[tokio::test]
async fn a_reactor_is_initialized_once_before_the_function_it_is_invoked_at() {
    let reactor = wat::parse_str(
        r#"(module
             (global $calls (mut i32) (i32.const 0))
             (func (export "_initialize") (global.set $calls (i32.add (global.get $calls) (i32.const 100))))
             (func (export "calls") (result i32) (global.get $calls)))"#,
    )
    .unwrap();
    let mut spec = named("reactor", ModuleSource::Bytes(Arc::from(reactor)));
    spec.entrypoint = "calls".into();
    let called = run(spec).await;
    assert_eq!(called.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(called.stdout, "100\n");
}
