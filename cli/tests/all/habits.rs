//! Operators' habits: `logs --tail`, shell completions, the log level and format of
//! long-running commands, `--master` before the command, `-o json|yaml` on the commands
//! that change things, and `ps` filtered as `kubectl get -l` filters.

use crate::cluster::{Cluster, corral, text};

#[tokio::test(flavor = "multi_thread")]
async fn logs_tail_prints_the_last_lines_and_json_logs_are_json() {
    let cluster = Cluster::start(&["--log-format", "json", "--log-level", "info"]).await;
    let run = cluster
        .corral(&["run", corral_wasm_tasks::LIMITS, "tick", "10", "0"])
        .await;
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let id = ps["tasks"][0]["id"].as_str().unwrap().to_owned();

    let tail = |n: &'static str| {
        let id = id.clone();
        let cluster = &cluster;
        async move { text(&cluster.corral(&["logs", "--tail", n, &id]).await.stdout) }
    };
    assert_eq!(tail("3").await, "tick 7\ntick 8\ntick 9\n");
    assert_eq!(tail("0").await, "");
    let all: String = (0..10).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(tail("100").await, all);

    // Every listing also prints as YAML (the JSON document) and wide (more columns).
    let yaml = cluster.corral(&["ps", "--all", "-o", "yaml"]).await;
    let yaml = text(&yaml.stdout);
    let parsed = marked_yaml::parse_yaml(0, &yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    let tasks = parsed.as_mapping().unwrap().get_sequence("tasks").unwrap();
    let first = tasks.get_mapping(0).unwrap();
    assert_eq!(first.get_scalar("id").unwrap().as_str(), id);
    let agents = text(&cluster.corral(&["agents", "-o", "yaml"]).await.stdout);
    assert!(
        agents.starts_with("agents:\n  - active_tasks: "),
        "{agents}"
    );
    let wide = text(&cluster.corral(&["ps", "--all", "-o", "wide"]).await.stdout);
    assert!(
        wide.contains("MODULE") && wide.contains("sha256:"),
        "{wide}"
    );
    let wide = text(&cluster.corral(&["agents", "-o", "wide"]).await.stdout);
    assert!(
        wide.contains("HOSTNAME") && wide.contains("components=wasi-0.2"),
        "{wide}"
    );

    // `--master` before the command, as kubectl and nomad users write it (the environment
    // names no master here).
    let before = corral(
        &["--master", &cluster.master_addr, "job", "ls", "-o", "json"],
        None,
        cluster.dir.path(),
    )
    .await;
    assert_eq!(before.status.code(), Some(0), "{}", text(&before.stderr));
    let before = corral(
        &[&format!("--master={}", cluster.master_addr), "ps", "--all"],
        None,
        cluster.dir.path(),
    )
    .await;
    assert!(
        text(&before.stdout).contains(&id),
        "{}",
        text(&before.stderr)
    );

    // The master logged JSON objects, one per line.
    let log = cluster.master_log();
    let first = log
        .lines()
        .find(|l| !l.trim().is_empty())
        .expect("the master logged");
    let line: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(
        line["level"].is_string() && line["fields"].is_object(),
        "{line}"
    );
}

#[tokio::test]
async fn completions_and_bad_log_levels() {
    let dir = tempfile::tempdir().unwrap();
    let bash = corral(&["completions", "bash"], None, dir.path()).await;
    assert_eq!(bash.status.code(), Some(0));
    let script = text(&bash.stdout);
    assert!(
        script.contains("_corral") && script.contains("drain"),
        "{script}"
    );
    for shell in ["zsh", "fish"] {
        let out = corral(&["completions", shell], None, dir.path()).await;
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(!out.stdout.is_empty(), "{shell}");
    }
    let bad = corral(
        &["master", "--log-level", "corral=loud", "--work-dir", "m"],
        None,
        dir.path(),
    )
    .await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("--log-level"),
        "{}",
        text(&bad.stderr)
    );
}

#[tokio::test]
async fn run_kill_and_quota_set_print_documents_with_o_json() {
    let cluster = Cluster::start(&[]).await;
    let json_of = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
    };

    // run: the ended task only (not its output), and the task's exit code.
    let out = cluster
        .corral(&["run", "-o", "json", corral_wasm_tasks::LIMITS, "exit", "3"])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let task = json_of(&out);
    assert_eq!(task["state"], "FAILED", "{task}");
    assert_eq!(task["usage"]["exit_code"], 3, "{task}");
    let out = cluster
        .corral(&["run", "-o", "yaml", corral_wasm_tasks::HELLO, "yaml"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("state: \"FINISHED\""),
        "{}",
        text(&out.stdout)
    );

    // kill: the killed task.
    let (_run, running) = cluster.start_sleeping_task().await;
    let out = cluster.corral(&["kill", &running, "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let killed = json_of(&out);
    assert_eq!(
        (&killed["id"], &killed["state"]),
        (&serde_json::json!(running), &serde_json::json!("KILLED"))
    );

    // quota set: the role's quota.
    let out = cluster
        .corral(&[
            "quota", "set", "eng", "--limit", "cpus=1", "--force", "-o", "json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let quota = json_of(&out);
    assert_eq!(quota["role"], "eng", "{quota}");
    assert_eq!(quota["limit"]["cpus_milli"], 1000, "{quota}");
}

/// The IDs of the tasks `corral ps <args> -o json` lists.
async fn listed(cluster: &Cluster, args: &[&str]) -> Vec<String> {
    let out = cluster.corral(&[args, &["-o", "json"]].concat()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_filters_by_state_framework_agent_label_and_job_and_watches_what_matches() {
    use tokio::io::AsyncBufReadExt;
    let cluster = Cluster::start(&[]).await;
    cluster.run_hello().await;
    let [hello] = &listed(&cluster, &["ps", "--all"]).await[..] else {
        panic!("one task so far");
    };
    let hello = hello.clone();
    let module = crate::cluster::module_digest(corral_wasm_tasks::HELLO);
    let spec = cluster.dir.path().join("greet.toml");
    std::fs::write(
        &spec,
        format!(
            "version = 1\nname = \"greet\"\nkind = \"batch\"\nmodule = \"{module}\"\n\
             instances = 2\n[resources]\ncpus = 0.1\nmem = \"16MiB\"\n"
        ),
    )
    .unwrap();
    let submit = cluster
        .corral(&["job", "submit", spec.to_str().unwrap(), "--wait"])
        .await;
    assert_eq!(submit.status.code(), Some(0), "{}", text(&submit.stderr));
    let (_sleeper, sleeping) = cluster.start_sleeping_task().await;

    let instances = vec!["greet.0".to_owned(), "greet.1".to_owned()];
    let mut finished = [instances.clone(), vec![hello.clone()]].concat();
    finished.sort();
    assert_eq!(
        listed(&cluster, &["ps", "--state", "finished"]).await,
        finished
    );
    assert_eq!(
        listed(&cluster, &["ps", "--state", "RUNNING"]).await,
        [sleeping]
    );
    let both = listed(&cluster, &["ps", "--state", "running,finished"]).await;
    assert_eq!(both.len(), 4, "{both:?}");
    assert_eq!(
        listed(&cluster, &["ps", "--all", "--job", "greet"]).await,
        instances
    );
    let one = [
        "ps",
        "--all",
        "-l",
        "corral.job=greet",
        "-l",
        "corral.instance=1",
    ];
    assert_eq!(listed(&cluster, &one).await, ["greet.1"]);
    let jobs = listed(&cluster, &["ps", "--all", "--framework", "corral-jobs"]).await;
    assert_eq!(jobs, instances);
    assert!(
        listed(&cluster, &["ps", "--all", "--agent", "no-such-agent"])
            .await
            .is_empty()
    );

    let bad = cluster.corral(&["ps", "--state", "bogus"]).await;
    assert_eq!(bad.status.code(), Some(2));
    let message = text(&bad.stderr);
    assert!(
        message.contains("\"bogus\" is not a task state (STAGING"),
        "{message}"
    );

    // Watching FINISHED tasks: a new run's STAGING, STARTING and RUNNING are left out, its
    // FINISHED printed whole (the task was held from its TASK_ADDED).
    let mut watch = cluster.spawn_corral(&["ps", "--watch", "--state", "finished", "-o", "json"]);
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    // The listing's first line comes once the watch has subscribed.
    let listing = lines.next_line().await.unwrap().unwrap();
    assert_eq!(listing, "{");
    cluster.run_hello().await;
    let line = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("a change within 30 s")
            .unwrap()
            .expect("ps --watch goes on");
        // The rest of the listing is indented or a lone brace; a change is one line.
        if line.starts_with('{') && line != "{" {
            break line;
        }
    };
    let task: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(task["state"], "FINISHED", "{task}");
    assert_ne!(task["id"], hello.as_str(), "{task}");
    assert!(
        task["module"].as_str().is_some_and(|m| !m.is_empty()),
        "{task}"
    );
}
