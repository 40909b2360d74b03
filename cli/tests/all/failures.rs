//! Processes dying: an agent killed with SIGKILL (and restarted), a master restarted.

use std::collections::HashSet;
use std::time::Duration;

use corral_types::{Reason, TaskState};

use crate::cluster::{Cluster, text};
use crate::framework::{RawFramework, reason, state, task};

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

/// An agent killed with SIGKILL mid-task and restarted on the same work directory: it comes
/// back under its id, its running tasks are reported FAILED with reason AGENT_RESTARTED once,
/// unacknowledged updates are redelivered and acknowledged ones never are.
#[tokio::test(flavor = "multi_thread")]
async fn agent_kill_9_and_restart_reports_running_tasks_failed_without_duplicates() {
    // A timeout far beyond the restart: the agent never goes UNREACHABLE here.
    let mut cluster = Cluster::start(&["--agent-timeout", "120s"]).await;
    let mut fw = RawFramework::subscribe(&cluster.master_addr).await;
    let limits = fw.upload(corral_wasm_tasks::LIMITS).await;
    let hello = fw.upload(corral_wasm_tasks::HELLO).await;
    let mut acknowledged: HashSet<Vec<u8>> = HashSet::new();

    // spin-1 runs; its STARTING and RUNNING are acknowledged.
    let agent_id = fw.launch(task("spin-1", &limits, &["spin"])).await;
    loop {
        let status = fw.next_update().await;
        assert_eq!(status.task_id, "spin-1");
        if acknowledged.insert(status.uuid.to_vec()) {
            fw.acknowledge(&status).await;
        }
        if state(&status) == TaskState::Running {
            break;
        }
    }
    // hello-1 finishes; all its updates are acknowledged.
    fw.launch(task("hello-1", &hello, &[])).await;
    loop {
        let status = fw.next_update().await;
        if status.task_id == "hello-1" && acknowledged.insert(status.uuid.to_vec()) {
            fw.acknowledge(&status).await;
            if state(&status) == TaskState::Finished {
                break;
            }
        }
    }
    // spin-2's updates stay unacknowledged. The agent handles master messages in order and
    // sends an update only once everything queued before it is durable, so when spin-2's
    // STARTING arrives the acknowledgements above are in the agent's checkpoint.
    fw.launch(task("spin-2", &limits, &["spin"])).await;
    while fw.next_update().await.task_id != "spin-2" {}
    let before_kill = fw.updates.len();
    let acknowledged_before_kill = acknowledged.clone();

    cluster.agent.kill();
    cluster.restart_agent();

    let mut failed = Vec::new();
    while failed.len() < 2 {
        let status = fw.next_update().await;
        if state(&status) == TaskState::Failed {
            assert_eq!(reason(&status), Reason::AgentRestarted, "{status:?}");
            assert_eq!(status.agent_id, agent_id, "the same agent reports it");
            fw.acknowledge(&status).await;
            failed.push(status.task_id);
        }
    }
    failed.sort();
    assert_eq!(failed, ["spin-1", "spin-2"]);
    // A probe on the restarted agent: it is the same agent, and its whole life passes.
    let probe_agent = fw.launch(task("hello-2", &hello, &[])).await;
    assert_eq!(probe_agent, agent_id, "the restarted agent kept its id");
    loop {
        let status = fw.next_update().await;
        if status.task_id == "hello-2" && state(&status) == TaskState::Finished {
            break;
        }
    }

    let after_kill = &fw.updates[before_kill..];
    for status in after_kill {
        assert!(
            !acknowledged_before_kill.contains(status.uuid.as_ref()),
            "an update acknowledged before the kill came again: {status:?}"
        );
        assert_ne!(status.task_id, "hello-1", "{status:?}");
    }
    for task_id in ["spin-1", "spin-2"] {
        let mut seen = HashSet::new();
        let distinct: Vec<TaskState> = fw
            .updates
            .iter()
            .filter(|s| s.task_id == task_id && seen.insert(s.uuid.clone()))
            .map(state)
            .collect();
        let failures = distinct.iter().filter(|s| **s == TaskState::Failed).count();
        assert_eq!(failures, 1, "{task_id}: {distinct:?}");
        assert_eq!(
            distinct.first(),
            Some(&TaskState::Starting),
            "{task_id}: {distinct:?}"
        );
        assert_eq!(
            distinct.last(),
            Some(&TaskState::Failed),
            "{task_id}: {distinct:?}"
        );
        assert!(distinct.len() <= 3, "{task_id}: {distinct:?}");
    }

    let agents = cluster.corral(&["agents", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&agents.stdout).unwrap();
    let listed = doc["agents"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "no second agent: {doc}");
    assert_eq!(listed[0]["state"], "ADMITTED", "{doc}");
}

/// A corrupt agent checkpoint: `corral agent` refuses to start and says why and how to
/// recover; with `--recover=cleanup` it registers as a new agent and the master reports the
/// old agent's running task LOST, once.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_agent_checkpoint_stops_the_agent_unless_recover_cleanup() {
    let mut cluster = Cluster::start(&["--agent-timeout", "120s"]).await;
    let mut fw = RawFramework::subscribe(&cluster.master_addr).await;
    let limits = fw.upload(corral_wasm_tasks::LIMITS).await;
    let old_agent = fw.launch(task("spin-1", &limits, &["spin"])).await;
    while state(&fw.next_update().await) != TaskState::Running {}
    cluster.agent.kill();
    let checkpoint = cluster.dir.path().join("agent").join("checkpoint.redb");
    std::fs::write(&checkpoint, b"this checkpoint was overwritten").unwrap();

    let args: Vec<&str> = cluster.agent_args.iter().map(String::as_str).collect();
    let refused = cluster.corral(&args).await;
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "stderr: {stderr}");
    for expected in [
        checkpoint.display().to_string().as_str(),
        "corrupt",
        "--recover=cleanup",
    ] {
        assert!(stderr.contains(expected), "stderr: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");

    cluster.restart_agent_with(&["--recover", "cleanup"]);
    let lost = loop {
        let status = fw.next_update().await;
        if status.task_id == "spin-1" {
            break status;
        }
    };
    assert_eq!(state(&lost), TaskState::Lost, "{lost:?}");
    assert_eq!(reason(&lost), Reason::AgentRestarted, "{lost:?}");
    assert_eq!(lost.agent_id, old_agent);
    // The new agent runs tasks; spin-1 is not reported again meanwhile.
    let hello = fw.upload(corral_wasm_tasks::HELLO).await;
    let new_agent = fw.launch(task("hello-1", &hello, &[])).await;
    assert_ne!(new_agent, old_agent, "a new agent");
    loop {
        let status = fw.next_update().await;
        assert_ne!(status.task_id, "spin-1", "reported twice: {status:?}");
        if status.task_id == "hello-1" && state(&status) == TaskState::Finished {
            break;
        }
    }
    let agents = cluster.corral(&["agents", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&agents.stdout).unwrap();
    let mut states: Vec<String> = doc["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap().to_owned())
        .collect();
    states.sort();
    assert_eq!(states, ["ADMITTED", "GONE"], "{doc}");
}

#[tokio::test]
async fn an_agent_that_would_keep_no_finished_task_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::cluster::corral(
        &[
            "agent",
            "--master",
            "127.0.0.1:1",
            "--max-completed-tasks",
            "0",
        ],
        None,
        dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = crate::cluster::text(&out.stderr);
    assert!(stderr.contains("--max-completed-tasks"), "{stderr}");
}
