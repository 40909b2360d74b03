//! The web UI in a real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`; missing, the test skips loudly). Screenshots of
//! each step are kept under the tests' target tmpdir (`ui-screenshots/`).

use corral_fixtures::browser::Browser;
use serde_json::Value;

use crate::cluster::{Cluster, module_digest};

#[tokio::test]
async fn the_ui_shows_the_cluster_live_follows_output_drains_an_agent_and_submits_a_job() {
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let Some(browser) = Browser::start("ui", &shots).await.unwrap() else {
        return;
    };
    let cluster = Cluster::start(&[]).await;
    let _ticking = cluster.spawn_corral(&[
        "run",
        corral_wasm_tasks::LIMITS,
        "--timeout",
        "120s",
        "--",
        "tick",
        "600",
        "200",
    ]);
    let task = cluster.wait_for_running_task().await;
    let origin = format!("http://{}", cluster.master_addr);

    // Overview: the event stream is open and the running task is counted.
    browser.goto(&format!("{origin}/")).await.unwrap();
    browser
        .wait_for("#connection", |t| t == "live")
        .await
        .unwrap();
    browser
        .wait_for("#overview-tasks [data-state=\"RUNNING\"]", |t| {
            t.contains('1')
        })
        .await
        .unwrap();
    browser.screenshot("overview").await.unwrap();

    // The task's page: its output grows while it is open.
    browser
        .goto(&format!("{origin}/#/tasks/{task}"))
        .await
        .unwrap();
    browser
        .wait_for("#task-state", |t| t == "RUNNING")
        .await
        .unwrap();
    let early = browser
        .wait_for("#stdout", |t| t.contains("tick 2"))
        .await
        .unwrap();
    let ticks = |text: &str| text.lines().filter(|l| l.starts_with("tick ")).count();
    let later = browser
        .wait_for("#stdout", |t| ticks(t) >= ticks(&early) + 5)
        .await
        .unwrap();
    assert!(
        later.starts_with(&early),
        "output is appended, not replaced"
    );
    browser.screenshot("task-output").await.unwrap();

    // Agents: drain from the UI, with a deadline so the task goes on; the row changes state.
    let agent = cluster.corral(&["agents", "-o", "json"]).await;
    let agents: Value = serde_json::from_slice(&agent.stdout).unwrap();
    let agent = agents["agents"][0]["id"].as_str().unwrap().to_owned();
    let row = format!("tr[data-agent-id=\"{agent}\"]");
    browser.goto(&format!("{origin}/#/agents")).await.unwrap();
    browser
        .wait_for(&format!("{row} .state"), |t| t == "ADMITTED")
        .await
        .unwrap();
    browser
        .type_into(&format!("{row} .drain-deadline"), "600")
        .await
        .unwrap();
    browser.click(&format!("{row} button.drain")).await.unwrap();
    browser
        .wait_for(&format!("{row} .state"), |t| t == "DRAINING")
        .await
        .unwrap();
    browser
        .wait_for(&format!("{row} .drain-until"), |t| {
            t.starts_with("tasks killed at ")
        })
        .await
        .unwrap();
    browser.screenshot("agent-draining").await.unwrap();
    browser
        .click(&format!("{row} button.reactivate"))
        .await
        .unwrap();
    browser
        .wait_for(&format!("{row} .state"), |t| t == "ADMITTED")
        .await
        .unwrap();
    // And the master agrees.
    let after = cluster.corral(&["agents", "-o", "json"]).await;
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(after["agents"][0]["state"], "ADMITTED");

    // Modules: the one running, listed with its task.
    let limits = module_digest(corral_wasm_tasks::LIMITS);
    browser.goto(&format!("{origin}/#/modules")).await.unwrap();
    browser
        .wait_for("#module-rows", |t| t.contains(&limits))
        .await
        .unwrap();

    // Jobs: a spec submitted from the page runs, and shows in the table.
    browser.goto(&format!("{origin}/#/jobs")).await.unwrap();
    browser
        .type_into(
            "#job-spec",
            &format!(
                "version = 1\nname = \"from-ui\"\nkind = \"service\"\nmodule = \"{limits}\"\n\
                 args = [\"sleep\", \"600000\"]\ninstances = 2\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n"
            ),
        ).await.unwrap();
    browser.click("#job-submit").await.unwrap();
    browser
        .wait_for("tr[data-job=\"from-ui\"] .state", |t| t == "running")
        .await
        .unwrap();
    browser.screenshot("job-submitted").await.unwrap();
    let job = cluster
        .corral(&["job", "status", "from-ui", "-o", "json"])
        .await;
    assert!(
        job.status.success(),
        "{}",
        crate::cluster::text(&job.stderr)
    );
}
