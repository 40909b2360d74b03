//! `/metrics` on the master's and the agent's port (beside gRPC): the series a workload
//! leaves, read as Prometheus reads them, and scraped by a real Prometheus (Debian's
//! `prometheus`; without it on PATH the scrape test says loudly that it skipped).

use std::time::Duration;

use corral_fixtures::free_port;
use serde_json::Value;

use crate::cluster::{Cluster, Proc};

/// The agent's `host:port` (its `--listen`).
fn agent_addr(cluster: &Cluster) -> String {
    let at = cluster
        .agent_args
        .iter()
        .position(|a| a == "--listen")
        .unwrap();
    cluster.agent_args[at + 1].clone()
}

/// `GET http://{addr}/metrics`: its content type and text.
async fn scrape(addr: &str) -> (String, String) {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

#[tokio::test]
async fn the_master_and_the_agent_expose_what_a_workload_did() {
    let cluster = Cluster::start(&[]).await;
    for _ in 0..3 {
        cluster.run_hello().await;
    }
    // A task that holds its memory while it sleeps.
    let _sleeping = cluster.start_sleeping_task().await;

    let (content_type, master) = scrape(&cluster.master_addr).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(master.ends_with("# EOF\n"), "{master}");
    let at_least = |series: &str, n: f64| {
        let value = sample(&master, series).unwrap_or_else(|| panic!("no {series}:\n{master}"));
        assert!(value >= n, "{series} = {value}, expected at least {n}");
    };
    at_least("corral_task_launches_total", 4.0);
    at_least(
        "corral_task_updates_total{state=\"FINISHED\",reason=\"EXITED\"}",
        3.0,
    );
    at_least("corral_offers_total{event=\"sent\"}", 4.0);
    at_least("corral_allocation_cycle_seconds_count", 1.0);
    at_least("corral_registry_write_seconds_count", 1.0);
    at_least("corral_status_update_ack_seconds_count", 3.0);
    assert_eq!(
        sample(&master, "corral_agents{state=\"ADMITTED\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&master, "corral_tasks{state=\"RUNNING\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&master, "corral_master_leading"), Some(1.0));
    at_least("corral_leader_epoch", 1.0);

    let (_, agent) = scrape(&agent_addr(&cluster)).await;
    let agent_sample =
        |series: &str| sample(&agent, series).unwrap_or_else(|| panic!("no {series}:\n{agent}"));
    assert_eq!(agent_sample("corral_agent_tasks_running"), 1.0);
    assert!(
        agent_sample("corral_agent_task_memory_bytes") > 0.0,
        "{agent}"
    );
    assert!(
        agent_sample("corral_agent_fuel_consumed_total") > 0.0,
        "{agent}"
    );
    // hello compiled once, then found in memory; limits compiled once.
    assert_eq!(
        agent_sample("corral_agent_module_cache_total{result=\"miss\"}"),
        2.0
    );
    assert!(agent_sample("corral_agent_module_cache_total{result=\"memory_hit\"}") >= 2.0);
    assert_eq!(
        agent_sample("corral_agent_module_compile_seconds_count"),
        2.0
    );

    // Any other path on the agent's port is a JSON 404 that points at the metrics.
    let response = reqwest::get(format!("http://{}/nothing", agent_addr(&cluster)))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let body = response.text().await.unwrap();
    assert!(body.contains("/metrics"), "{body}");
}

/// A Prometheus server scraping `targets` every second, if `prometheus` is on PATH.
fn start_prometheus(dir: &std::path::Path, targets: &[String]) -> Option<(Proc, String)> {
    let found = std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "\n*** SKIPPED a real Prometheus scrape: `prometheus` is not on PATH (apt-get install -y prometheus) ***\n"
        );
        return None;
    }
    let list = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: corral\n    \
             static_configs:\n      - targets: [{list}]\n"
        ),
    )
    .unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let process = spawn_prometheus(&config, &dir.join("tsdb"), &address);
    Some((process, address))
}

fn spawn_prometheus(config: &std::path::Path, tsdb: &std::path::Path, address: &str) -> Proc {
    Proc(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address={address}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Asks Prometheus for `query` until it has a sample at least `n` (bounded: 60 s).
async fn query_until(prometheus: &str, query: &str, n: f64) -> Value {
    let url = format!("http://{prometheus}/api/v1/query");
    let mut last = Value::Null;
    for _ in 0..240 {
        if let Ok(response) = reqwest::Client::new()
            .get(&url)
            .query(&[("query", query)])
            .send()
            .await
            && let Ok(body) = response.text().await
            && let Ok(doc) = serde_json::from_str::<Value>(&body)
        {
            let value = doc["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if value.is_some_and(|v| v >= n) {
                return doc;
            }
            last = doc;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Prometheus never had {query} >= {n}: {last}");
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_master_and_the_agent() {
    let cluster = Cluster::start(&[]).await;
    let targets = [cluster.master_addr.clone(), agent_addr(&cluster)];
    let Some((_prometheus, address)) = start_prometheus(cluster.dir.path(), &targets) else {
        return;
    };
    for _ in 0..2 {
        cluster.run_hello().await;
    }
    query_until(&address, "corral_task_launches_total", 2.0).await;
    query_until(&address, "corral_allocation_cycle_seconds_count", 1.0).await;
    query_until(&address, "corral_agents{state=\"ADMITTED\"}", 1.0).await;
    query_until(&address, "corral_agent_fuel_consumed_total", 1.0).await;
    // Both targets are up.
    let up = query_until(&address, "sum(up)", 2.0).await;
    assert_eq!(up["status"], "success");
}
