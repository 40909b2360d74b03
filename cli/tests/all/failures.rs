//! Processes dying: an agent killed with SIGKILL, a master restarted.

use std::time::Duration;

use crate::cluster::{Cluster, text};

#[tokio::test(flavor = "multi_thread")]
async fn agent_kill_9_reports_running_task_unreachable() {
    let mut cluster = Cluster::start(&["--agent-timeout", "2s"]).await;
    let mut run = cluster.spawn_corral(&[
        "run",
        corral_wasm_tasks::LIMITS,
        "--timeout",
        "120s",
        "--",
        "spin",
    ]);
    cluster.wait_for_running_task().await;
    cluster.agent.kill();
    let status = tokio::time::timeout(Duration::from_secs(30), run.wait())
        .await
        .expect("corral run did not notice the lost agent within 30 s")
        .unwrap();
    let mut stderr = String::new();
    if let Some(mut err) = run.stderr.take() {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        stderr = text(&buf);
    }
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("unreachable") || stderr.contains("lost"),
        "stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn master_restart_agent_reregisters() {
    let mut cluster = Cluster::start(&[]).await;
    cluster.restart_master();
    cluster.wait_for_admitted_agents(1).await;
    let agents = cluster.corral(&["agents", "--output", "json"]).await;
    assert_eq!(
        agents.status.code(),
        Some(0),
        "stderr: {}",
        text(&agents.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&agents.stdout).unwrap();
    assert!(
        doc["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "ADMITTED"),
        "{doc}"
    );
}
