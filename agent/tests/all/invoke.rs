//! Entrypoints other than `_start`, called as `wasmtime run --invoke` calls them: a core
//! module's with numbers in from the task's arguments and out on stdout; a component's as a
//! call written in WAVE, its result printed in WAVE.

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

/// A run of the text-format `wat` at `entrypoint`, with `args`.
fn invoking(wat: &str, entrypoint: &str, args: &[&str]) -> TaskSpec {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let wasm = wat::parse_str(wat).unwrap();
    let mut spec = named(format!("invoke-{n}"), ModuleSource::Bytes(Arc::from(wasm)));
    spec.entrypoint = entrypoint.into();
    spec.args = args.iter().map(|s| s.to_string()).collect();
    spec
}

fn invoke(function: &str, args: &[&str]) -> TaskSpec {
    invoking(MATH, function, args)
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

/// A component with no `wasi:cli/run`: functions at its top level and in an exported
/// instance, and one that spins.
const COMPONENT: &str = r#"(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func (export "double") (param i64) (result i64) (i64.mul (local.get 0) (i64.const 2)))
    (func (export "spin") (loop br 0)))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" u32) (param "b" u32) (result u32)
    (canon lift (core func $i "add")))
  (func $double (param "x" s64) (result s64) (canon lift (core func $i "double")))
  (instance $math (export "double" (func $double)))
  (export "math" (instance $math))
  (func (export "spin") (canon lift (core func $i "spin"))))"#;

/// A run of [`COMPONENT`] calling `call`, written in WAVE.
fn invoke_component(call: &str) -> TaskSpec {
    invoking(COMPONENT, call, &[])
}

#[tokio::test]
async fn a_component_function_is_called_as_written_in_wave_and_prints_its_result() {
    let added = run(invoke_component("add(40, 2)")).await;
    assert_eq!(added.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(added.stdout, "42\n");

    // A function of an exported instance, found by its name.
    let doubled = run(invoke_component("double(-21)")).await;
    assert_eq!(doubled.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(doubled.stdout, "-42\n");

    // Metered like any run.
    let mut spin = invoke_component("spin()");
    spin.limits.max_fuel = Some(1_000_000);
    assert_eq!(run(spin).await.result.outcome, TaskOutcome::OutOfFuel);
}

#[tokio::test]
async fn a_component_call_that_does_not_fit_is_refused_before_it_runs() {
    let reason = invalid_reason(run(invoke_component("add(1,")).await.result.outcome);
    assert!(reason.contains("not a function call in WAVE"), "{reason}");
    let reason = invalid_reason(
        run(invoke_component("add(\"one\", 2)"))
            .await
            .result
            .outcome,
    );
    assert!(reason.contains("the parameters of `add`"), "{reason}");
    let reason = invalid_reason(run(invoke_component("add(1)")).await.result.outcome);
    assert!(reason.contains("the parameters of `add`"), "{reason}");
    assert_eq!(
        run(invoke_component("subtract(1, 2)")).await.result.outcome,
        TaskOutcome::FailedToStart(StartError::MissingEntrypoint {
            name: "subtract".into()
        })
    );
    // Run as a command, it says how to call it instead.
    match run(invoke_component("_start")).await.result.outcome {
        TaskOutcome::FailedToStart(StartError::Link { message }) => {
            assert!(message.contains("--invoke 'name(args)'"), "{message}");
        }
        other => panic!("expected a link error, got {other:?}"),
    }
}
