//! `corral run`, `ps` and friends against a real cluster.

use crate::cluster::{Cluster, corral, text};

#[tokio::test(flavor = "multi_thread")]
async fn run_hello_prints_greeting_and_exits_zero() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&["run", corral_wasm_tasks::HELLO, "--", "hi"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hello from corral hi"),
        "stdout: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("usage: fuel"),
        "stderr: {}",
        text(&out.stderr)
    );

    // The finished task shows in `ps --all --output json`; agents and frameworks list too.
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    assert_eq!(ps.status.code(), Some(0), "stderr: {}", text(&ps.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(doc["tasks"].is_array(), "{doc}");
    let agents = cluster.corral(&["agents", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&agents.stdout).unwrap();
    assert_eq!(doc["agents"].as_array().map(Vec::len), Some(1), "{doc}");
    let frameworks = cluster
        .corral(&["frameworks", "--all", "--output", "json"])
        .await;
    let doc: serde_json::Value = serde_json::from_slice(&frameworks.stdout).unwrap();
    assert!(doc["frameworks"].is_array(), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_out_of_fuel_is_reported_in_words() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&[
            "run",
            corral_wasm_tasks::LIMITS,
            "--max-fuel",
            "1000000",
            "--",
            "spin",
        ])
        .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("out of fuel"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_exits_with_the_task_exit_code() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&["run", corral_wasm_tasks::LIMITS, "--", "exit", "3"])
        .await;
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_missing_module_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = corral(&["run", "missing.wasm"], Some("127.0.0.1:1"), dir.path()).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot read module missing.wasm"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_master_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = corral(&["ps", "--output", "json"], Some("127.0.0.1:1"), dir.path()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach a master"),
        "stderr: {}",
        text(&out.stderr)
    );
}
