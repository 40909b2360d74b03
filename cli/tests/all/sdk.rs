//! Tasks built with the task SDK on a real cluster: progress seen through the API while they
//! run, and their result in the terminal status.

use std::time::Duration;

use crate::cluster::{Cluster, text};

/// The task named `id` in `corral ps --all --output json`.
async fn task_json(cluster: &Cluster, id: &str) -> serde_json::Value {
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no task {id} in {doc}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_shows_while_an_sdk_task_runs_and_its_result_when_it_ends() {
    let cluster = Cluster::start(&[]).await;
    let run = cluster.spawn_corral(&["run", corral_wasm_tasks::SDK_DEMO, "steps", "10", "400"]);
    let id = cluster.wait_for_running_task().await;

    // Partway: the API and the table show a fraction strictly between 0 and 1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let midway = loop {
        let task = task_json(&cluster, &id).await;
        let fraction = task["progress"]["fraction"].as_f64().unwrap_or(0.0);
        if fraction > 0.0 && fraction < 1.0 && task["state"] == "RUNNING" {
            break task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress within 20 s: {task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = midway["progress"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("step ") && message.ends_with(" of 10"),
        "{midway}"
    );
    let table = text(&cluster.corral(&["ps"]).await.stdout);
    assert!(
        table.contains("PROGRESS") && table.contains("% step "),
        "{table}"
    );
    // `corral logs -f` follows the output to the end and tells the progress on stderr.
    let logs = cluster.corral(&["logs", "-f", &id]).await;
    assert_eq!(
        text(&logs.stdout),
        "done 10\n",
        "stderr: {}",
        text(&logs.stderr)
    );
    let stderr = text(&logs.stderr);
    assert!(
        stderr.contains("corral: progress ") && stderr.contains("% step "),
        "{stderr}"
    );

    let out = tokio::time::timeout(Duration::from_secs(30), run.wait_with_output())
        .await
        .expect("corral run did not end within 30 s")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(r#"result: {"steps": 10}"#),
        "stderr: {}",
        text(&out.stderr)
    );
    let ended = task_json(&cluster, &id).await;
    assert_eq!(ended["state"], "FINISHED", "{ended}");
    assert_eq!(ended["result"], serde_json::json!({"steps": 10}), "{ended}");
    assert_eq!(ended["progress"]["fraction"], 1.0, "{ended}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_that_is_not_json_is_not_handed_on_and_the_status_says_why() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&["run", corral_wasm_tasks::SDK_DEMO, "result", "{not json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("result: "), "{stderr}");
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let task = &doc["tasks"][0];
    assert!(task["result"].is_null(), "{task}");
    assert!(
        task["message"]
            .as_str()
            .unwrap()
            .contains("result not handed on: the result is not JSON"),
        "{task}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_killed_midway_and_launched_again_resumes_from_its_checkpoint() {
    use crate::framework::{RawFramework, reason, state, task};
    use corral_types::TaskState;

    let cluster = Cluster::start(&[]).await;
    let mut framework = RawFramework::subscribe(&cluster.master_addr).await;
    let module = framework.upload(corral_wasm_tasks::SDK_DEMO).await;
    let args = ["count", "20", "200"];

    // The first attempt: killed once it has counted past a quarter.
    framework.launch(task("counter", &module, &args)).await;
    loop {
        let update = framework.next_update().await;
        framework.acknowledge(&update).await;
        let fraction = update.progress.as_ref().map_or(0.0, |p| p.fraction);
        assert!(
            update.checkpoint.is_empty(),
            "the master forwarded a checkpoint"
        );
        if state(&update) == TaskState::Running && fraction >= 0.25 {
            break;
        }
        assert!(!state(&update).is_terminal(), "{update:?}");
    }
    let kill = cluster.corral(&["kill", "counter"]).await;
    assert_eq!(
        kill.status.code(),
        Some(0),
        "stderr: {}",
        text(&kill.stderr)
    );
    let killed = loop {
        let update = framework.next_update().await;
        framework.acknowledge(&update).await;
        if state(&update).is_terminal() {
            break update;
        }
    };
    assert_eq!(state(&killed), TaskState::Killed, "{killed:?}");

    // The second attempt, same task ID: it resumes, and ends as an uninterrupted run would.
    framework.launch(task("counter", &module, &args)).await;
    let finished = loop {
        let update = framework.next_update().await;
        framework.acknowledge(&update).await;
        if state(&update).is_terminal() {
            break update;
        }
    };
    assert_eq!(
        state(&finished),
        TaskState::Finished,
        "{:?} {finished:?}",
        reason(&finished)
    );
    assert_eq!(finished.result_json, r#"{"count": 20, "sum": 210}"#);
    let logs = cluster.corral(&["logs", "counter"]).await;
    let stdout = text(&logs.stdout);
    let resumed_at: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("resumed at "))
        .unwrap_or_else(|| panic!("the second attempt started over: {stdout:?}"))
        .parse()
        .unwrap();
    assert!((5..20).contains(&resumed_at), "{stdout}");
    assert!(stdout.ends_with("counted to 20\n"), "{stdout}");
}
