//! `corral bench` end to end: an ephemeral cluster of real child processes, simulated agents,
//! and the JSON it prints.

use serde_json::Value;

use crate::cluster::{corral, text};

/// Runs `corral bench <args> --output json` and parses what it prints.
async fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let out = corral(&all, None, dir.path()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn assert_latencies(report: &Value) {
    for name in ["submit_to_running_ms", "submit_to_finished_ms"] {
        let p = &report[name];
        let (p50, p99, max) = (p["p50"].as_f64(), p["p99"].as_f64(), p["max"].as_f64());
        assert!(
            matches!((p50, p99, max), (Some(a), Some(b), Some(c)) if 0.0 < a && a <= b && b <= c),
            "{name}: {p}"
        );
    }
}

#[tokio::test]
async fn bench_runs_hello_tasks_on_an_ephemeral_cluster_and_reports_every_process() {
    let report = bench(&["--tasks", "40", "--concurrency", "4"]).await;
    assert_eq!(report["tasks"], 40, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["tasks_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert_latencies(&report);
    for cores in ["master_cores", "agent_cores", "framework_cores"] {
        assert!(
            report[cores].as_f64().is_some_and(|c| c > 0.0),
            "{cores}: {report}"
        );
    }
    assert!(
        report["master_memory"]["rss_bytes"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["subscriber_cores"].is_null(), "{report}");
}

#[tokio::test]
async fn bench_with_simulated_agents_loads_the_master_alone_while_two_subscribers_watch() {
    let report = bench(&[
        "--simulated-agents",
        "20",
        "--tasks",
        "200",
        "--concurrency",
        "8",
        "--subscribers",
        "2",
    ])
    .await;
    assert_eq!(report["failed"], 0, "{report}");
    assert_latencies(&report);
    // Each subscriber saw every task added, RUNNING and FINISHED.
    assert!(
        report["subscriber_events"].as_u64() >= Some(2 * 200 * 3),
        "{report}"
    );
    // Counted apart from this process's framework, which keeps the rest.
    for cores in ["subscriber_cores", "framework_cores"] {
        assert!(
            report[cores].as_f64().is_some_and(|c| c > 0.0),
            "{cores}: {report}"
        );
    }
    let simulated = &report["simulated_agents"];
    assert_eq!(simulated["agents"], 20, "{report}");
    assert!(
        simulated["master_memory_per_agent_bytes"]
            .as_u64()
            .is_some(),
        "{report}"
    );
    // No real agent runs: the cluster is the master alone.
    assert!(report["agent_cores"].is_null(), "{report}");
}

#[tokio::test]
async fn bench_refuses_bad_arguments_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["bench", "--tasks", "0"][..],
        &["bench", "--rate", "-1"],
        &["bench", "--simulated-agents", "0"],
        &["bench", "--agents", "0"],
    ] {
        let out = corral(args, None, dir.path()).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
}
