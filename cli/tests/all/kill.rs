//! `corral kill`: an operator stops a task it did not launch.

use std::time::Duration;

use crate::cluster::{Cluster, text};

#[tokio::test(flavor = "multi_thread")]
async fn kill_stops_a_running_task_and_its_run_reports_killed() {
    let cluster = Cluster::start(&[]).await;
    let run = cluster.spawn_corral(&[
        "run",
        corral_wasm_tasks::LIMITS,
        "--timeout",
        "120s",
        "--",
        "spin",
    ]);
    let task = cluster.wait_for_running_task().await;

    let kill = cluster.corral(&["kill", &task]).await;
    assert_eq!(
        kill.status.code(),
        Some(0),
        "stderr: {}",
        text(&kill.stderr)
    );
    assert_eq!(
        text(&kill.stdout).trim(),
        format!("task {task}: KILLED (TASK_KILLED_BY_REQUEST)")
    );

    let run = tokio::time::timeout(Duration::from_secs(30), run.wait_with_output())
        .await
        .expect("corral run did not end within 30 s of the kill")
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(137),
        "stderr: {}",
        text(&run.stderr)
    );
    assert!(
        text(&run.stderr).contains("task was killed"),
        "stderr: {}",
        text(&run.stderr)
    );

    let again = cluster.corral(&["kill", &task]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already KILLED"),
        "stderr: {}",
        text(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_of_an_unknown_task_exits_2_with_a_clear_message() {
    let cluster = Cluster::start(&[]).await;
    let kill = cluster.corral(&["kill", "no-such-task"]).await;
    assert_eq!(kill.status.code(), Some(2));
    let stderr = text(&kill.stderr);
    assert!(
        stderr.contains("cannot kill task no-such-task: unknown task no-such-task"),
        "stderr: {stderr}"
    );
}
