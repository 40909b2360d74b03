//! A task built with the task SDK: the control directory it gets, what it writes there, the
//! SDK's limits, and the same module under plain wasmtime-wasi, where the SDK does nothing.

use corral_agent::TaskOutcome;
use corral_fixtures::reference::{self, Invocation};

use crate::util::{run, spec};

#[tokio::test]
async fn an_sdk_task_writes_its_progress_and_result_into_its_control_directory() {
    let done = run(spec(corral_wasm_tasks::SDK_DEMO, &["steps", "3", "1"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout, "done 3\n");
    let control = done.root.join(".corral");
    assert_eq!(
        std::fs::read_to_string(control.join("progress")).unwrap(),
        "1\nstep 3 of 3"
    );
    assert_eq!(
        std::fs::read_to_string(control.join("result.json")).unwrap(),
        r#"{"steps": 3}"#
    );
}

#[tokio::test]
async fn a_plain_module_gets_no_control_directory() {
    let done = run(spec(corral_wasm_tasks::LIMITS, &["env"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert!(!done.stdout.contains("CORRAL_CONTROL"), "{}", done.stdout);
    assert!(!done.root.join(".corral").exists());
}

#[tokio::test]
async fn over_its_limits_the_sdk_says_which_limit() {
    let done = run(spec(corral_wasm_tasks::SDK_DEMO, &["big-result"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 1 });
    assert_eq!(
        done.stderr,
        "the result is 65537 bytes, over the limit of 65536 bytes\n"
    );
    let done = run(spec(corral_wasm_tasks::SDK_DEMO, &["big-message"])).await;
    assert_eq!(
        done.stderr,
        "the progress message is 257 bytes, over the limit of 256 bytes\n"
    );
}

#[test]
fn under_plain_wasmtime_the_sdk_does_nothing_and_the_task_runs() {
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO);
    let ran = reference::run(
        &wasm,
        &Invocation {
            argv: ["sdk_demo.wasm", "steps", "2", "1"]
                .map(String::from)
                .to_vec(),
            ..Invocation::default()
        },
    )
    .unwrap();
    assert_eq!(ran.code, 0, "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(ran.stdout, b"done 2\n");
}

#[test]
fn under_plain_wasmtime_with_a_control_directory_the_sdk_writes_plain_files() {
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO);
    let dir = tempfile::tempdir().unwrap();
    let ran = reference::run(
        &wasm,
        &Invocation {
            argv: ["sdk_demo.wasm", "result", "[1, 2]"]
                .map(String::from)
                .to_vec(),
            env: vec![("CORRAL_CONTROL".into(), "ctl".into())],
            dirs: vec![(dir.path().into(), "ctl".into())],
            ..Invocation::default()
        },
    )
    .unwrap();
    assert_eq!(ran.code, 0, "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("result.json")).unwrap(),
        "[1, 2]"
    );
}

#[tokio::test]
async fn a_task_handed_a_checkpoint_resumes_from_it_and_ends_as_an_uninterrupted_run() {
    let whole = run(spec(corral_wasm_tasks::SDK_DEMO, &["count", "5", "1"])).await;
    assert_eq!(whole.stdout, "counted to 5\n");
    let control = whole.root.join(".corral");
    let result = std::fs::read_to_string(control.join("result.json")).unwrap();
    assert_eq!(result, r#"{"count": 5, "sum": 15}"#);

    // What an attempt interrupted after step 3 left: the step and the sum so far.
    let mut resumed = spec(corral_wasm_tasks::SDK_DEMO, &["count", "5", "1"]);
    resumed.checkpoint = [3u64.to_le_bytes(), 6u64.to_le_bytes()].concat().into();
    let resumed = run(resumed).await;
    assert_eq!(resumed.stdout, "resumed at 3\ncounted to 5\n");
    let control = resumed.root.join(".corral");
    assert_eq!(
        std::fs::read_to_string(control.join("result.json")).unwrap(),
        result
    );
    assert_eq!(
        std::fs::read(control.join("checkpoint")).unwrap(),
        [5u64.to_le_bytes(), 15u64.to_le_bytes()].concat()
    );
}
