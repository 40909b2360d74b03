use corral_agent::TaskOutcome;

use crate::util::{input, run, spec};

#[tokio::test]
async fn map_counts_its_share_of_the_files_and_reduce_adds_the_shares_up() {
    let corpus = [
        ("corpus/a.txt", &b"the cat sat"[..]),
        ("corpus/b.txt", b"The dog, the end."),
        ("corpus/c.txt", b"cat cat"),
    ];
    let mut parts = Vec::new();
    for index in 0..2 {
        let mut task = spec(corral_wasm_tasks::WORDFREQ, &["map", "corpus", "2"]);
        task.env
            .push(("CORRAL_TASK_INDEX".into(), index.to_string()));
        for (path, text) in corpus {
            task.inputs.push(input(path, text));
        }
        let done = run(task).await;
        assert_eq!(
            done.result.outcome,
            TaskOutcome::Exited { code: 0 },
            "{}",
            done.stderr
        );
        parts.push(std::fs::read(done.root.join("outputs/counts.txt")).unwrap());
    }
    // Instance 0 took a.txt and c.txt, instance 1 b.txt.
    assert_eq!(String::from_utf8_lossy(&parts[0]), "cat 3\nsat 1\nthe 1\n");
    assert_eq!(String::from_utf8_lossy(&parts[1]), "dog 1\nend 1\nthe 2\n");

    let mut task = spec(corral_wasm_tasks::WORDFREQ, &["reduce", "parts"]);
    for (index, part) in parts.iter().enumerate() {
        task.inputs
            .push(input(&format!("parts/{index}/counts.txt"), part));
    }
    let done = run(task).await;
    assert_eq!(
        done.result.outcome,
        TaskOutcome::Exited { code: 0 },
        "{}",
        done.stderr
    );
    assert_eq!(
        done.stdout,
        "9 words, 5 distinct\ncat 3\nthe 3\ndog 1\nend 1\nsat 1\n"
    );
    let total = std::fs::read_to_string(done.root.join("outputs/wordcount.txt")).unwrap();
    assert_eq!(total, "cat 3\nthe 3\ndog 1\nend 1\nsat 1\n");
}

#[tokio::test]
async fn bad_arguments_and_bad_parts_exit_2() {
    let done = run(spec(corral_wasm_tasks::WORDFREQ, &["map", "corpus", "0"])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 2 });
    let mut task = spec(corral_wasm_tasks::WORDFREQ, &["reduce", "parts"]);
    task.inputs
        .push(input("parts/0/counts.txt", b"not a count line\n"));
    let done = run(task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 2 });
    assert!(
        done.stderr.contains("not a `word count` line"),
        "{}",
        done.stderr
    );
}
