use corral_agent::{InputContents, InputFile, StartError, TaskOutcome};

use crate::util::{input, run, spec};

#[tokio::test]
async fn wordcount_reads_its_input_and_writes_a_result_file() {
    let mut task = spec(corral_wasm_tasks::WORDCOUNT, &["input.txt", "result.txt"]);
    task.inputs
        .push(input("input.txt", b"the cat\nthe dog\nthe end\n"));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout.trim(), "3 6 24");
    let result = std::fs::read_to_string(done.root.join("result.txt")).unwrap();
    assert!(result.starts_with("3 6 24\n"), "{result}");
    assert!(result.contains("the 3"), "{result}");
}

#[tokio::test]
async fn inputs_can_live_in_subdirectories() {
    let mut task = spec(
        corral_wasm_tasks::WORDCOUNT,
        &["data/in.txt", "out/result.txt"],
    );
    task.inputs.push(input("data/in.txt", b"a b c"));
    let done = run(task).await;
    // The guest cannot create `out/`, so it reports the failure itself.
    assert_ne!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    let mut task = spec(corral_wasm_tasks::WORDCOUNT, &["data/in.txt", "result.txt"]);
    task.inputs.push(input("data/in.txt", b"a b c"));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout.trim(), "1 3 5");
}

#[tokio::test]
async fn a_missing_input_file_fails_the_task_before_it_starts() {
    let mut task = spec(corral_wasm_tasks::WORDCOUNT, &[]);
    task.inputs.push(InputFile {
        path: "input.txt".into(),
        contents: InputContents::HostFile("/nonexistent/corral/input.txt".into()),
    });
    let done = run(task).await;
    match done.result.outcome {
        TaskOutcome::FailedToStart(StartError::InputUnavailable { path, .. }) => {
            assert_eq!(path, "input.txt")
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[tokio::test]
async fn an_input_the_guest_looks_for_but_was_not_given_is_its_own_error() {
    let done = run(spec(corral_wasm_tasks::WORDCOUNT, &["absent.txt"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 2 });
    assert!(done.stderr.contains("absent.txt"), "{}", done.stderr);
}

#[tokio::test]
async fn input_paths_that_leave_the_sandbox_are_refused() {
    for path in ["../escape.txt", "/etc/passwd", ""] {
        let mut task = spec(corral_wasm_tasks::WORDCOUNT, &[]);
        task.inputs.push(input(path, b"x"));
        let done = run(task).await;
        assert!(
            matches!(
                done.result.outcome,
                TaskOutcome::FailedToStart(StartError::InvalidInputPath { .. })
            ),
            "{path}: {:?}",
            done.result.outcome
        );
    }
}
