//! `corral frameworks run`: the jobs framework as a process of its own, beside a master that
//! runs none; `corral job ...` given the master finds it, and its state lives on the master.

use std::time::Duration;

use corral_fixtures::free_port;
use serde_json::Value;

use crate::cluster::{Cluster, Proc, spawn, text};

fn run_frameworks(cluster: &Cluster, port: u16) -> Proc {
    spawn(&[
        "frameworks",
        "run",
        "--master",
        &cluster.master_addr,
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
}

/// `corral job status <name> -o json` once it answers (the framework starting answers
/// UNAVAILABLE; bounded: 30 s).
async fn status_once_up(cluster: &Cluster, name: &str) -> Value {
    for _ in 0..300 {
        let out = cluster.corral(&["job", "status", name, "-o", "json"]).await;
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {name} not known within 30 s");
}

#[tokio::test]
async fn the_jobs_framework_runs_as_a_process_of_its_own_and_the_cli_finds_it() {
    let cluster = Cluster::start(&["--no-builtin-frameworks"]).await;
    std::fs::copy(
        corral_wasm_tasks::LIMITS,
        cluster.dir.path().join("limits.wasm"),
    )
    .unwrap();
    std::fs::write(
        cluster.dir.path().join("hello.toml"),
        "version = 1\nname = \"hello\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"10\"]\ninstances = 5\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n",
    )
    .unwrap();
    // The master runs no jobs framework: job commands say so.
    let out = cluster.corral(&["job", "ls"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("corral frameworks run"),
        "{}",
        text(&out.stderr)
    );

    let port = free_port();
    let mut frameworks = run_frameworks(&cluster, port);
    let mut submitted = false;
    for _ in 0..300 {
        if cluster.corral(&["job", "ls"]).await.status.success() {
            let out = cluster
                .corral(&["job", "submit", "hello.toml", "--wait"])
                .await;
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            submitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(submitted, "the jobs framework never answered");
    let out = cluster.corral(&["frameworks", "-o", "json"]).await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = listed["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "corral-jobs")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        jobs["labels"]["corral.jobs.address"],
        format!("127.0.0.1:{port}")
    );

    // Killed, the process's address answers nothing: a clear error, exit 69.
    frameworks.kill();
    let out = cluster.corral(&["job", "ls"]).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&out.stderr)
    );
    // Started again elsewhere, it reads its jobs back from the master.
    let _frameworks = run_frameworks(&cluster, free_port());
    let job = status_once_up(&cluster, "hello").await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["succeeded"], 5);
}
