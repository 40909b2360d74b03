//! `corral agent drain` and `reactivate` on a real cluster: a drained agent's running task
//! may finish until the deadline, then is killed with a reason; the agent's state shows in
//! `corral agents`, with the deadline while one is pending; a reactivated agent runs tasks
//! again.

use std::time::Duration;

use crate::cluster::{Cluster, text};

async fn agent(cluster: &Cluster) -> serde_json::Value {
    let out = cluster.corral(&["agents", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["agents"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_agent_kills_what_outlives_the_deadline_and_runs_again_once_reactivated() {
    let cluster = Cluster::start(&[]).await;
    let id = agent(&cluster).await["id"].as_str().unwrap().to_owned();
    let run = cluster.spawn_corral(&["run", corral_wasm_tasks::SDK_DEMO, "steps", "600", "100"]);
    let task = cluster.wait_for_running_task().await;

    let drain = cluster
        .corral(&["agent", "drain", &id, "--deadline", "1s", "--wait"])
        .await;
    let stdout = text(&drain.stdout);
    assert_eq!(
        drain.status.code(),
        Some(0),
        "{stdout}{}",
        text(&drain.stderr)
    );
    assert!(
        stdout.contains("draining; it gets no new tasks, and its running tasks may run for 1s"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("agent {id}: DRAINED")), "{stdout}");
    assert_eq!(agent(&cluster).await["state"], "DRAINED");

    // The task outlived the deadline: killed, and `corral run` says so.
    let out = tokio::time::timeout(Duration::from_secs(30), run.wait_with_output())
        .await
        .expect("corral run did not end")
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let killed = ps["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == task.as_str())
        .unwrap()
        .clone();
    assert_eq!(killed["state"], "KILLED", "{killed}");
    assert_eq!(killed["reason"], "AGENT_DRAINING", "{killed}");

    let back = cluster.corral(&["agent", "reactivate", &id]).await;
    assert_eq!(back.status.code(), Some(0), "{}", text(&back.stderr));
    assert_eq!(agent(&cluster).await["state"], "ADMITTED");
    let hello = cluster.corral(&["run", corral_wasm_tasks::HELLO]).await;
    assert_eq!(hello.status.code(), Some(0), "{}", text(&hello.stderr));

    // While a task outlives a drain with a deadline, the deadline shows: in the API's
    // document and in `corral agents`. Reactivated, it is gone.
    let (_sleeper, _) = cluster.start_sleeping_task().await;
    let asked = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let drain = cluster
        .corral(&["agent", "drain", &id, "--deadline", "10m"])
        .await;
    assert_eq!(drain.status.code(), Some(0), "{}", text(&drain.stderr));
    let draining = agent(&cluster).await;
    assert_eq!(draining["state"], "DRAINING", "{draining}");
    let deadline = draining["drain_deadline_millis"].as_u64().unwrap();
    assert!(
        (asked + 595_000..asked + 660_000).contains(&deadline),
        "{deadline} is not 10m after {asked}"
    );
    let table = text(&cluster.corral(&["agents"]).await.stdout);
    assert!(table.contains("DRAINING (kills in 9m)"), "{table}");
    let back = cluster.corral(&["agent", "reactivate", &id]).await;
    assert_eq!(back.status.code(), Some(0), "{}", text(&back.stderr));
    assert_eq!(
        agent(&cluster).await["drain_deadline_millis"],
        serde_json::Value::Null
    );

    let unknown = cluster.corral(&["agent", "drain", "no-such-agent"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
}
