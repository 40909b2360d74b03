//! `corral job ...`: `validate` summarises a good spec and locates every problem of a bad one;
//! `submit`, `status`, `ls` and `kill` run batch jobs on a real master and agent through the
//! built-in jobs framework.

use std::time::Duration;

use corral_proto::v1;
use serde_json::Value;

use corral_fixtures::Etcd;

use crate::cluster::{Cluster, assert_each_ran_once, corral, text};
use crate::ha::HaCluster;

#[tokio::test]
async fn validate_summarises_good_specs_and_locates_every_problem_of_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.toml"),
        "version = 1\nname = \"hello-batch\"\nkind = \"batch\"\nmodule = \"hello.wasm\"\n\
         instances = 200\n[resources]\ncpus = 0.1\nmem = \"32MiB\"\n",
    )
    .unwrap();
    let ok = corral(&["job", "validate", "hello.toml"], None, dir.path()).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(
        text(&ok.stdout),
        "hello.toml: valid, 1 job\n  hello-batch: batch, 200 instances, 3 retries\n"
    );

    std::fs::write(
        dir.path().join("bad.yaml"),
        "version: 1\nname: nightly\nkind: cron\nmodule: report.wasm\nschedule: \"0 25 * * *\"\n\
         timezone: Europe/Pariss\nresources:\n  cpus: 1\n  mem: lots\n",
    )
    .unwrap();
    let bad = corral(&["job", "validate", "bad.yaml"], None, dir.path()).await;
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    for expected in [
        "bad.yaml:5:11: schedule: \"0 25 * * *\" is not a valid cron expression",
        "bad.yaml:6:11: timezone: \"Europe/Pariss\" is not a known time zone",
        "bad.yaml:9:8: resources.mem: invalid size \"lots\"",
    ] {
        assert!(stderr.contains(expected), "{expected}\nin:\n{stderr}");
    }
    let unknown = corral(
        &["job", "validate", "bad.yaml", "--format", "ini"],
        None,
        dir.path(),
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown spec format \"ini\""));
}

/// A batch job of the `limits` fixture, written next to the cluster with the fixture.
fn write_job(cluster: &Cluster, file: &str, body: &str) {
    std::fs::copy(
        corral_wasm_tasks::LIMITS,
        cluster.dir.path().join("limits.wasm"),
    )
    .unwrap();
    std::fs::write(cluster.dir.path().join(file), body).unwrap();
}

fn job_doc(out: &std::process::Output) -> Value {
    assert!(
        out.status.code().is_some(),
        "killed by a signal: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

/// Polls `corral job status` until `done` holds (bounded: 120 s).
async fn wait_for_job(cluster: &Cluster, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for_job_at(&cluster.master_addr, cluster.dir.path(), name, done).await
}

/// [`wait_for_job`] against `masters` (comma-separated; a call during a failover may fail
/// and is asked again).
async fn wait_for_job_at(
    masters: &str,
    cwd: &std::path::Path,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let args = ["job", "status", name, "-o", "json"];
    let status = || corral(&args, Some(masters), cwd);
    for _ in 0..1200 {
        let out = status().await;
        if out.status.success()
            && let Ok(job) = serde_json::from_slice::<Value>(&out.stdout)
            && done(&job)
        {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = status().await;
    panic!(
        "job {name} did not get there within 120 s: {}",
        text(&last.stdout)
    );
}

#[tokio::test]
async fn a_batch_with_injected_failures_completes_with_exactly_the_expected_attempts() {
    let cluster = Cluster::start(&[]).await;
    write_job(
        &cluster,
        "flaky.toml",
        "version = 1\nname = \"flaky\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"flaky\", \"3,500,999\", \"2\"]\ninstances = 1000\nretries = 3\n\
         backoff = { initial = \"10ms\", factor = 2.0, max = \"1s\" }\n\
         [resources]\ncpus = 0.1\nmem = \"16MiB\"\n",
    );
    let out = cluster
        .corral(&["job", "submit", "flaky.toml", "--wait", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = &job_doc(&out)["jobs"][0];
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["succeeded"], 1000);
    assert_eq!(job["failed"], 0);
    // Every instance once, and the three flaky ones twice more: none run twice, none lost.
    assert_eq!(job["attempts"], 1006);
    let mut failures: Vec<(u64, u64)> = job["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["instance"].as_u64().unwrap(),
                f["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    failures.sort_unstable();
    assert_eq!(
        failures,
        [(3, 1), (3, 2), (500, 1), (500, 2), (999, 1), (999, 2)]
    );

    // The name of an ended job can be used again; a running one's cannot.
    let listed = job_doc(&cluster.corral(&["job", "ls", "-o", "json"]).await);
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failure_policy_stops_a_doomed_job_early_and_submit_wait_exits_1() {
    let cluster = Cluster::start(&[]).await;
    write_job(
        &cluster,
        "doomed.yaml",
        "version: 1\nname: doomed\nkind: batch\nmodule: limits.wasm\nargs: [exit, \"1\"]\n\
         instances: 200\nretries: 0\nmax_failures: 3\nresources:\n  cpus: 0.5\n  mem: 16MiB\n",
    );
    let out = cluster
        .corral(&["job", "submit", "doomed.yaml", "--wait", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let job = &job_doc(&out)["jobs"][0];
    assert_eq!(job["state"], "failed");
    let message = job["message"].as_str().unwrap();
    assert!(message.starts_with("stopped early: "), "{message}");
    // The agent runs 4 at a time: far fewer than 200 were tried.
    let attempts = job["attempts"].as_u64().unwrap();
    assert!((3..=10).contains(&attempts), "{attempts} attempts");
    assert_eq!(job["running"], 0);
}

#[tokio::test]
async fn a_job_goes_on_after_a_master_restart_with_no_instance_run_twice_or_lost() {
    let mut cluster = Cluster::start_counting_runs(&["--log-level", "info"]).await;
    write_job(
        &cluster,
        "sleepy.toml",
        "version = 1\nname = \"sleepy\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"300\"]\ninstances = 200\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n",
    );
    let out = cluster.corral(&["job", "submit", "sleepy.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for_job(&cluster, "sleepy", |j| {
        j["succeeded"].as_u64() >= Some(20) && j["running"].as_u64() > Some(0)
    })
    .await;
    // kill -9: instances running on the agent go on; their updates wait for the new master.
    cluster.restart_master();
    let job = wait_for_job(&cluster, "sleepy", |j| j["ended_unix_millis"] != 0).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["succeeded"], 200);
    // What the agent ran, not the job's attempts (launches the killed master never took
    // are launched again).
    assert_each_ran_once(&cluster.runs(), 200, &job);
    // The restarted master's framework read its state back with instances in flight, and
    // reconciled them rather than running them again.
    let log = cluster.master_log();
    let in_flight: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("jobs framework: state read back"))
        .filter_map(|l| {
            l.split("launched=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(in_flight.len(), 2, "{log}");
    assert!(in_flight[1] > 0, "{log}");
}

#[tokio::test]
async fn a_job_may_name_its_module_in_the_text_format() {
    let cluster = Cluster::start(&[]).await;
    write_job(
        &cluster,
        "quiet.wat",
        r#"(module (memory (export "memory") 1) (func (export "_start")))"#,
    );
    write_job(
        &cluster,
        "quiet.toml",
        "version = 1\nname = \"quiet\"\nkind = \"batch\"\nmodule = \"quiet.wat\"\n\
         instances = 2\n[resources]\ncpus = 0.1\n",
    );
    let out = cluster
        .corral(&["job", "submit", "quiet.toml", "--wait"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = job_doc(
        &cluster
            .corral(&["job", "status", "quiet", "-o", "json"])
            .await,
    );
    assert_eq!(job["succeeded"], 2, "{job}");
}

#[tokio::test]
async fn bad_submissions_exit_2_with_the_reason_and_submit_nothing() {
    let cluster = Cluster::start(&[]).await;
    write_job(
        &cluster,
        "bad.toml",
        "version = 1\nname = \"bad\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\nretires = 3\n\
         [resources]\ncpus = 0.1\n",
    );
    let out = cluster.corral(&["job", "submit", "bad.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.toml:5:1: retires: unknown field"),
        "{}",
        text(&out.stderr)
    );
    write_job(
        &cluster,
        "orphan.toml",
        "version = 1\nname = \"orphan\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         depends_on = [\"nobody\"]\n[resources]\ncpus = 0.1\n",
    );
    let out = cluster.corral(&["job", "submit", "orphan.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("depends_on \"nobody\""),
        "{}",
        text(&out.stderr)
    );
    write_job(
        &cluster,
        "gone.toml",
        "version = 1\nname = \"gone\"\nkind = \"batch\"\nmodule = \"missing.wasm\"\n\
         [resources]\ncpus = 0.1\n",
    );
    let out = cluster.corral(&["job", "submit", "gone.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing.wasm"),
        "{}",
        text(&out.stderr)
    );
    // A module that is not WebAssembly is refused here, not by every attempt to run it.
    write_job(&cluster, "notes.wasm", "plain text");
    write_job(
        &cluster,
        "notes.toml",
        "version = 1\nname = \"notes\"\nkind = \"batch\"\nmodule = \"notes.wasm\"\n\
         [resources]\ncpus = 0.1\n",
    );
    let out = cluster.corral(&["job", "submit", "notes.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("notes.toml: notes.wasm is neither a WebAssembly binary"),
        "{}",
        text(&out.stderr)
    );
    let listed = job_doc(&cluster.corral(&["job", "list", "-o", "json"]).await);
    assert_eq!(
        listed["jobs"],
        serde_json::json!([]),
        "nothing was submitted"
    );
    let out = cluster.corral(&["job", "status", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no job is named \"nope\""));
}

#[tokio::test]
async fn killing_a_job_kills_its_running_instances() {
    let cluster = Cluster::start(&[]).await;
    write_job(
        &cluster,
        "long.toml",
        "version = 1\nname = \"long\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"60000\"]\ninstances = 5\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n",
    );
    assert!(
        cluster
            .corral(&["job", "submit", "long.toml"])
            .await
            .status
            .success()
    );
    wait_for_job(&cluster, "long", |j| j["running"] == 5).await;
    let out = cluster.corral(&["job", "kill", "long", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = wait_for_job(&cluster, "long", |j| j["ended_unix_millis"] != 0).await;
    assert_eq!(job["state"], "killed");
    assert_eq!(job["running"], 0);
    assert_eq!(job["attempts"], 5);
}

/// What `wordfreq` makes of the corpus, worked out here: `word count` lines by count
/// descending, then word.
fn expected_word_counts() -> String {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for (_, text) in corral_wasm_tasks::mapreduce::CORPUS {
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
    }
    let mut ranked: Vec<_> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.iter().map(|(w, n)| format!("{w} {n}\n")).collect()
}

#[tokio::test]
async fn the_map_reduce_example_runs_the_maps_then_the_reduce_on_their_outputs() {
    let cluster = Cluster::start(&[]).await;
    let spec = corral_wasm_tasks::mapreduce::write_to(&cluster.dir.path().join("mr")).unwrap();
    let spec = spec.to_str().unwrap();
    let out = cluster
        .corral(&["job", "submit", spec, "--wait", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = job_doc(&out);
    let names: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["map", "reduce"]);
    // The reduce ended after every map: it could only start once they had.
    let map_ended = doc["jobs"][0]["ended_unix_millis"].as_u64().unwrap();
    let reduce_submitted = doc["jobs"][1]["submitted_unix_millis"].as_u64().unwrap();
    let reduce_ended = doc["jobs"][1]["ended_unix_millis"].as_u64().unwrap();
    assert!(reduce_submitted <= map_ended && map_ended <= reduce_ended);

    let into = cluster.dir.path().join("results");
    let out = cluster
        .corral(&[
            "task",
            "outputs",
            "reduce.0",
            "--into",
            into.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let counted = std::fs::read_to_string(into.join("wordcount.txt")).unwrap();
    assert_eq!(counted, expected_word_counts());

    // `job logs` reads an instance's output.
    let out = cluster
        .corral(&["job", "logs", "map", "--instance", "3"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("map 3: 1 files, "),
        "{}",
        text(&out.stdout)
    );
    let out = cluster
        .corral(&["job", "logs", "map", "--instance", "4"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has 4 instances (0 to 3)"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_cron_job_runs_on_its_timetable_and_can_be_suspended_resumed_run_now_and_killed() {
    let cluster = Cluster::start(&[]).await;
    // Every second from two seconds from now, at most two finished runs kept.
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let start = start.round(jiff::Unit::Second).unwrap();
    write_job(
        &cluster,
        "tick.toml",
        &format!(
            "version = 1\nname = \"tick\"\nkind = \"cron\"\nmodule = \"limits.wasm\"\n\
             args = [\"sleep\", \"10\"]\nschedule = \"R/{start}/PT1S\"\nhistory_limit = 2\n\
             concurrency = \"forbid\"\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n"
        ),
    );
    let out = cluster
        .corral(&["job", "submit", "tick.toml", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let submitted = &job_doc(&out)["jobs"][0];
    assert_eq!(submitted["kind"], "cron");
    let start_ms = u64::try_from(start.as_millisecond()).unwrap();
    assert_eq!(submitted["next_run_unix_millis"], start_ms);

    // Runs 1, 2, 3 ... each a batch job of one instance named after the cron job.
    wait_for_job(&cluster, "tick-3", |j| j["state"] == "succeeded").await;
    let first = cluster
        .corral(&["job", "status", "tick-3", "-o", "json"])
        .await;
    let run = job_doc(&first);
    assert_eq!(run["cron_job"], "tick");
    // It was started when it was due (run 3 is due two seconds after the start).
    let submitted_at = run["submitted_unix_millis"].as_u64().unwrap();
    assert!(submitted_at >= start_ms + 2000, "{run}");
    let history = job_doc(
        &cluster
            .corral(&["job", "history", "tick", "-o", "json"])
            .await,
    );
    let ended = history["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["ended_unix_millis"] != 0)
        .count();
    assert!(ended <= 2, "history_limit = 2 ended runs: {history}");

    let out = cluster
        .corral(&["job", "suspend", "tick", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let suspended = job_doc(&out);
    assert_eq!(suspended["state"], "suspended");
    assert_eq!(suspended["next_run_unix_millis"], 0);
    let out = cluster
        .corral(&["job", "resume", "tick", "-o", "json"])
        .await;
    assert_eq!(job_doc(&out)["state"], "running");

    let out = cluster.corral(&["job", "run-now", "batchy"]).await;
    assert_eq!(out.status.code(), Some(2), "unknown job");
    let out = cluster
        .corral(&["job", "run-now", "tick", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = cluster.corral(&["job", "kill", "tick", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let killed = wait_for_job(&cluster, "tick", |j| j["ended_unix_millis"] != 0).await;
    assert_eq!(killed["state"], "killed");
    let out = cluster.corral(&["job", "run-now", "tick"]).await;
    assert_eq!(out.status.code(), Some(2), "an ended cron job runs no more");
    assert!(
        text(&out.stderr).contains("has ended"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_service_replaces_killed_instances_and_those_of_a_killed_agent_and_scales() {
    let mut cluster = Cluster::start(&[]).await;
    write_job(
        &cluster,
        "web.toml",
        "version = 1\nname = \"web\"\nkind = \"service\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"600000\"]\ninstances = 3\n\
         backoff = { initial = \"50ms\", factor = 1.15, max = \"1s\" }\n\
         [resources]\ncpus = 0.1\nmem = \"16MiB\"\n",
    );
    // --wait returns once every instance runs.
    let out = cluster
        .corral(&["job", "submit", "web.toml", "--wait", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(job_doc(&out)["jobs"][0]["running"], 3);
    wait_for_job(&cluster, "web", |j| j["running"] == 3).await;

    // An instance killed is started again.
    let out = cluster.corral(&["kill", "web.1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = wait_for_job(&cluster, "web", |j| j["attempts"] == 4 && j["running"] == 3).await;
    assert_eq!(job["state"], "running");

    // kill -9 of the agent: its instances are lost and started again once it is back.
    cluster.agent.kill();
    cluster.restart_agent();
    let job = wait_for_job(&cluster, "web", |j| {
        j["attempts"].as_u64() >= Some(7) && j["running"] == 3
    })
    .await;
    assert_eq!(job["instances"], 3);

    let out = cluster
        .corral(&["job", "scale", "web", "5", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for_job(&cluster, "web", |j| j["running"] == 5).await;
    let out = cluster.corral(&["job", "scale", "web", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = wait_for_job(&cluster, "web", |j| j["running"] == 1).await;
    assert_eq!(job["instances"], 1);
    let out = cluster.corral(&["job", "scale", "nope", "1"]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = cluster.corral(&["job", "kill", "web"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = wait_for_job(&cluster, "web", |j| j["ended_unix_millis"] != 0).await;
    assert_eq!(job["state"], "killed");
}

#[tokio::test]
async fn a_job_in_a_role_runs_in_it_within_the_roles_quota() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&["quota", "set", "analytics", "--limit", "cpus=0.3"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    write_job(
        &cluster,
        "scan.toml",
        "version = 1\nname = \"scan\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         role = \"analytics\"\nargs = [\"sleep\", \"700\"]\ninstances = 6\n\
         [resources]\ncpus = 0.1\nmem = \"16MiB\"\ndisk = \"16MiB\"\n",
    );
    let out = cluster.corral(&["job", "submit", "scan.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The framework subscribes in role analytics; the role's limit holds 3 at once.
    let mut most = 0;
    let job = loop {
        let out = cluster
            .corral(&["job", "status", "scan", "-o", "json"])
            .await;
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        most = most.max(job["running"].as_u64().unwrap());
        if job["ended_unix_millis"] != 0 {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        (1..=3).contains(&most),
        "{most} instances at once past the limit"
    );
    let out = cluster.corral(&["roles", "-o", "json"]).await;
    let roles: Value = serde_json::from_slice(&out.stdout).unwrap();
    let analytics = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "analytics")
        .unwrap_or_else(|| panic!("{roles}"));
    assert_eq!(analytics["frameworks"], 1, "the jobs framework: {roles}");
}

/// The tasks of job `web` the master has RUNNING, sorted.
async fn running_web_tasks(cluster: &Cluster) -> Vec<String> {
    let channel = crate::ha::connect(&cluster.master_addr).await.unwrap();
    let mut tasks: Vec<String> = corral_proto::limits::operator_client(channel)
        .list_tasks(v1::ListTasksRequest {
            framework_id: Some(corral_frameworks::jobs::FRAMEWORK_ID.into()),
            states: vec![v1::TaskState::Running as i32],
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.id)
        .filter(|id| id.starts_with("web."))
        .collect();
    tasks.sort();
    tasks
}

/// Runs `corral job update web.toml --wait -o json`, watching the master's RUNNING tasks of
/// `web` until it exits; returns its output and the fewest and most seen.
async fn update_watching(cluster: &Cluster) -> (std::process::Output, usize, usize) {
    let mut update = cluster.spawn_corral(&["job", "update", "web.toml", "--wait", "-o", "json"]);
    let (mut fewest, mut most) = (usize::MAX, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while update.try_wait().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update did not end"
        );
        let running = running_web_tasks(cluster).await.len();
        fewest = fewest.min(running);
        most = most.max(running);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (update.wait_with_output().await.unwrap(), fewest, most)
}

#[tokio::test]
async fn a_rolling_update_keeps_its_bounds_and_one_whose_instances_crash_is_rolled_back() {
    let cluster = Cluster::start(&[]).await;
    let spec = |args: &str| {
        format!(
            "version = 1\nname = \"web\"\nkind = \"service\"\nmodule = \"limits.wasm\"\n\
             args = [{args}]\ninstances = 4\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n\
             disk = \"16MiB\"\n[update]\nmax_unavailable = 1\nmax_surge = 1\n\
             min_running = \"300ms\"\nrollback_after = 2\n"
        )
    };
    write_job(&cluster, "web.toml", &spec("\"sleep\", \"600000\""));
    let out = cluster
        .corral(&["job", "submit", "web.toml", "--wait"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Version 2: every instance replaced, never fewer than 4 - 1 running nor more than 4 + 1.
    write_job(&cluster, "web.toml", &spec("\"sleep\", \"500000\""));
    let (out, fewest, most) = update_watching(&cluster).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        fewest >= 3 && most <= 5,
        "running tasks went from {fewest} to {most}"
    );
    let job = &job_doc(&out)["jobs"][0];
    assert_eq!(job["version"], 2, "{job}");
    assert_eq!(job["message"], "updated to version 2");
    assert_eq!(
        running_web_tasks(&cluster).await,
        ["web.0.v2", "web.1.v2", "web.2.v2", "web.3.v2"]
    );

    // Version 3 crashes at once: rolled back after 2 failures, as version 4.
    write_job(&cluster, "web.toml", &spec("\"exit\", \"3\""));
    let (out, fewest, _) = update_watching(&cluster).await;
    assert_eq!(out.status.code(), Some(1), "a rollback exits 1");
    assert!(fewest >= 3, "running tasks fell to {fewest}");
    let job = &job_doc(&out)["jobs"][0];
    assert_eq!(job["version"], 4, "{job}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.starts_with("rolled back: version 3 failed 2 times"),
        "{message}"
    );
    assert_eq!(
        running_web_tasks(&cluster).await,
        ["web.0.v4", "web.1.v4", "web.2.v4", "web.3.v4"]
    );

    // Only services are updated; an unknown name is refused.
    write_job(
        &cluster,
        "nope.toml",
        &spec("\"sleep\", \"1\"").replace("name = \"web\"", "name = \"nope\""),
    );
    let out = cluster.corral(&["job", "update", "nope.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn a_production_job_takes_the_place_of_preemptible_instances_which_run_again_after() {
    let cluster = Cluster::start(&[]).await;
    // 20 × 0.1 cpu fill the agent's 2 cpus.
    write_job(
        &cluster,
        "low.toml",
        "version = 1\nname = \"low\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"60000\"]\ninstances = 20\nretries = 0\ntier = \"preemptible\"\n\
         [resources]\ncpus = 0.1\nmem = \"16MiB\"\ndisk = \"16MiB\"\n",
    );
    assert!(
        cluster
            .corral(&["job", "submit", "low.toml"])
            .await
            .status
            .success()
    );
    wait_for_job(&cluster, "low", |j| j["started"] == 20).await;
    write_job(
        &cluster,
        "high.toml",
        "version = 1\nname = \"high\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"10\"]\ninstances = 5\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n\
         disk = \"16MiB\"\n",
    );
    let out = cluster
        .corral(&["job", "submit", "high.toml", "--wait", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(job_doc(&out)["jobs"][0]["state"], "succeeded");
    // The five preempted instances were not failures: they run again.
    let low = wait_for_job(&cluster, "low", |j| {
        j["started"] == 20 && j["attempts"] == 25
    })
    .await;
    assert_eq!(low["failed"], 0);
    assert_eq!(low["state"], "running");
    let preempted = low["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["message"] == "preempted for production work")
        .count();
    assert_eq!(preempted, 5, "{low}");
}

// -- a leader failover on etcd --

#[tokio::test(flavor = "multi_thread")]
async fn leader_kill_9_mid_job_the_new_leader_finishes_it_with_no_instance_run_twice() {
    let Some(etcd) =
        Etcd::start("leader_kill_9_mid_job_the_new_leader_finishes_it_with_no_instance_run_twice")
    else {
        return;
    };
    let mut cluster = HaCluster::start(vec![etcd], "2s").await;
    let (old, _) = cluster.leader_other_than(None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(corral_wasm_tasks::LIMITS, dir.path().join("limits.wasm")).unwrap();
    std::fs::write(
        dir.path().join("sleepy.toml"),
        "version = 1\nname = \"sleepy\"\nkind = \"batch\"\nmodule = \"limits.wasm\"\n\
         args = [\"sleep\", \"500\"]\ninstances = 200\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n",
    )
    .unwrap();
    let masters = cluster.addrs.join(",");
    let out = crate::cluster::corral(
        &["job", "submit", "sleepy.toml"],
        Some(&masters),
        dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_job_at(&masters, dir.path(), "sleepy", |j| {
        j["succeeded"].as_u64() >= Some(20) && j["running"].as_u64() > Some(0)
    })
    .await;

    // The leader dies with instances running; the standby leads and runs the framework,
    // which reads the job back from etcd and reconciles what was launched.
    cluster.masters[old].kill();
    cluster.leader_other_than(Some(old)).await;
    let job = wait_for_job_at(&masters, dir.path(), "sleepy", |j| {
        j["ended_unix_millis"] != 0
    })
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["succeeded"], 200);
    assert_each_ran_once(&cluster.runs(), 200, &job);
}
