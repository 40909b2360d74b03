use corral_agent::TaskOutcome;

use crate::util::{executor, finish, input, spec};

#[tokio::test]
async fn two_hundred_concurrent_tasks_all_complete_with_correct_outputs() {
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let task = if i % 2 == 0 {
                spec(corral_wasm_tasks::HELLO, &[&i.to_string()])
            } else {
                let mut task = spec(corral_wasm_tasks::WORDCOUNT, &[]);
                let words = vec!["w"; i].join(" ");
                task.inputs.push(input("input.txt", words.as_bytes()));
                task
            };
            (i, executor().launch(task))
        })
        .collect();
    for (i, handle) in handles {
        let done = finish(handle).await;
        assert_eq!(
            done.result.outcome,
            TaskOutcome::Exited { code: 0 },
            "task {i}"
        );
        if i % 2 == 0 {
            assert_eq!(done.stdout, format!("hello from corral {i}\n"));
        } else {
            let bytes = 2 * i - 1;
            assert_eq!(done.stdout.trim(), format!("1 {i} {bytes}"), "task {i}");
        }
    }
}
