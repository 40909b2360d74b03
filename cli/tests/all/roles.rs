//! `corral roles`, `corral weight` and `corral quota` against a real cluster (one agent with
//! `cpus=2,mem=1GiB,disk=1GiB`).

use serde_json::Value;
use std::process::Output;

use crate::cluster::{Cluster, text};

/// Runs `corral <args>`, asserts it exits 0 and returns its stdout.
async fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.corral(args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "corral {args:?}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `corral <args> --output json` and parses its one JSON document.
async fn json(cluster: &Cluster, args: &[&str]) -> Value {
    let args = [args, &["--output", "json"]].concat();
    let stdout = ok(cluster, &args).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("corral {args:?}: {e}: {stdout}"))
}

/// Asserts `corral <args>` fails with exit 2, says why on stderr, and prints nothing on stdout.
fn assert_refused(args: &[&str], out: &Output, why: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "corral {args:?} should exit 2\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(why),
        "corral {args:?}: stderr should say {why:?}: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "corral {args:?} panicked: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "corral {args:?}: {}",
        text(&out.stdout)
    );
}

fn role<'a>(doc: &'a Value, list: &str, key: &str, name: &str) -> Option<&'a Value> {
    doc[list].as_array()?.iter().find(|r| r[key] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn weight_set_show_and_list() {
    let cluster = Cluster::start(&[]).await;
    assert_eq!(
        ok(&cluster, &["weight", "eng", "3"]).await.trim(),
        "role eng: weight 3"
    );
    ok(&cluster, &["weight", "eng/batch", "0.5"]).await;

    let one = json(&cluster, &["weight", "eng"]).await;
    assert_eq!(
        one,
        serde_json::json!({ "weights": [{ "role": "eng", "weight": 3.0 }] })
    );
    let all = json(&cluster, &["weight"]).await;
    assert_eq!(
        role(&all, "weights", "role", "eng/batch").map(|r| &r["weight"]),
        Some(&Value::from(0.5)),
        "{all}"
    );
    let table = ok(&cluster, &["weight", "eng"]).await;
    assert!(
        table.contains("ROLE") && table.contains("eng") && table.contains('3'),
        "{table}"
    );

    // Setting it again replaces it; `roles` shows the same weight.
    ok(&cluster, &["weight", "eng", "2"]).await;
    let roles = json(&cluster, &["roles"]).await;
    assert_eq!(
        role(&roles, "roles", "name", "eng").map(|r| &r["weight"]),
        Some(&Value::from(2.0)),
        "{roles}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_set_list_and_remove() {
    let cluster = Cluster::start(&[]).await;
    let empty = json(&cluster, &["quota"]).await;
    assert_eq!(empty, serde_json::json!({ "quotas": [] }));
    // An empty table says so on stderr, as kubectl does, with nothing on stdout.
    for (args, none) in [
        (&["quota"][..], "no quotas"),
        (&["ps"], "no tasks"),
        (&["job", "ls"], "no jobs"),
        (&["modules"], "no modules"),
    ] {
        let out = cluster.corral(args).await;
        assert_eq!(out.status.code(), Some(0), "corral {args:?}");
        assert_eq!(text(&out.stdout), "", "corral {args:?}");
        assert_eq!(text(&out.stderr), format!("{none}\n"), "corral {args:?}");
    }

    let said = ok(
        &cluster,
        &[
            "quota",
            "set",
            "eng",
            "--guarantee",
            "cpus=1.5,mem=256MiB",
            "--limit",
            "cpus=2,mem=512MiB,disk=0",
        ],
    )
    .await;
    assert!(said.contains("role eng: quota set"), "{said}");

    let listed = json(&cluster, &["quota", "list"]).await;
    let eng = role(&listed, "quotas", "role", "eng").unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(eng["guarantee"]["cpus_milli"], 1500, "{listed}");
    assert_eq!(eng["guarantee"]["mem_bytes"], 256 << 20, "{listed}");
    assert_eq!(eng["guarantee"]["disk_bytes"], 0, "{listed}");
    assert_eq!(eng["limit"]["cpus_milli"], 2000, "{listed}");
    assert_eq!(eng["limit"]["mem_bytes"], 512 << 20, "{listed}");
    // `disk=0` allows no disk; an unnamed kind would be unlimited (null).
    assert_eq!(eng["limit"]["disk_bytes"], 0, "{listed}");

    // `corral quota` alone lists the same; `roles` shows the quota with the weight.
    assert_eq!(json(&cluster, &["quota"]).await, listed);
    let roles = json(&cluster, &["roles"]).await;
    let eng = role(&roles, "roles", "name", "eng").unwrap_or_else(|| panic!("{roles}"));
    assert_eq!(eng["weight"], 1.0, "{roles}");
    assert_eq!(eng["quota"]["guarantee"]["cpus_milli"], 1500, "{roles}");
    let table = ok(&cluster, &["quota"]).await;
    assert!(table.contains("1.5 cpu, 256 MiB mem"), "{table}");
    assert!(table.contains("2 cpu, 512 MiB mem, 0 B disk"), "{table}");

    // Setting it again replaces the whole quota: the guarantee is gone, the limit unbounded
    // where not named.
    ok(&cluster, &["quota", "set", "eng", "--limit", "cpus=1"]).await;
    let listed = json(&cluster, &["quota", "list"]).await;
    let eng = role(&listed, "quotas", "role", "eng").unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(eng["guarantee"]["cpus_milli"], 0, "{listed}");
    assert_eq!(eng["limit"]["cpus_milli"], 1000, "{listed}");
    assert_eq!(eng["limit"]["mem_bytes"], Value::Null, "{listed}");

    assert_eq!(
        ok(&cluster, &["quota", "remove", "eng"]).await.trim(),
        "role eng: quota removed"
    );
    assert_eq!(
        json(&cluster, &["quota"]).await,
        serde_json::json!({ "quotas": [] })
    );

    // The short forms people type: `ls`, `rm`.
    ok(&cluster, &["quota", "set", "ops", "--limit", "mem=1GiB"]).await;
    let listed = json(&cluster, &["quota", "ls"]).await;
    assert!(role(&listed, "quotas", "role", "ops").is_some(), "{listed}");
    ok(&cluster, &["quota", "rm", "ops"]).await;
    assert_eq!(
        json(&cluster, &["quota", "ls"]).await["quotas"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_show_a_running_tasks_allocation_and_dominant_share() {
    let cluster = Cluster::start(&[]).await;
    // A task of 0.5 cpu and 64 MiB on an agent of 2 cpus and 1 GiB: cpus dominate (25%).
    let _run = cluster.spawn_corral(&[
        "run",
        corral_wasm_tasks::LIMITS,
        "--cpus",
        "0.5",
        "--mem",
        "64MiB",
        "--timeout",
        "120s",
        "--",
        "spin",
    ]);
    cluster.wait_for_running_task().await;

    let roles = json(&cluster, &["roles"]).await;
    let star = role(&roles, "roles", "name", "*").unwrap_or_else(|| panic!("{roles}"));
    // `corral run`'s framework, and the built-in jobs framework every master runs.
    assert_eq!(star["frameworks"], 2, "{roles}");
    // The running task at least; offers outstanding to the same framework count too.
    let cpus = star["allocated"]["cpus_milli"].as_u64().unwrap();
    assert!((500..=2000).contains(&cpus), "{roles}");
    let share = star["dominant_share"].as_f64().unwrap();
    #[expect(clippy::cast_precision_loss, reason = "small numbers")]
    let expected = cpus as f64 / 2000.0;
    assert!((share - expected).abs() < 1e-9, "{roles}");
    let table = ok(&cluster, &["roles"]).await;
    assert!(table.contains("SHARE") && table.contains('%'), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_with_a_reason_and_changes_nothing() {
    let cluster = Cluster::start(&[]).await;
    ok(&cluster, &["weight", "eng", "3"]).await;
    ok(
        &cluster,
        &[
            "quota",
            "set",
            "eng",
            "--guarantee",
            "cpus=1",
            "--limit",
            "cpus=2",
        ],
    )
    .await;
    let before = json(&cluster, &["roles"]).await;

    let cases: &[(&[&str], &str)] = &[
        // Weights: negative, zero, absurd, not a number; role names.
        (&["weight", "eng", "-1"], "out of range"),
        (&["weight", "eng", "0"], "out of range"),
        (&["weight", "eng", "1e300"], "out of range"),
        (&["weight", "eng", "heavy"], "invalid weight"),
        (&["weight", "/eng", "2"], "starts with '/'"),
        (&["weight", "a b", "2"], "invalid character"),
        // Showing the weight of a role nothing names.
        (&["weight", "nosuch"], "unknown role nosuch"),
        // Malformed resources.
        (
            &["quota", "set", "eng", "--guarantee", "cpu=1"],
            "unknown resource \"cpu\"",
        ),
        (
            &["quota", "set", "eng", "--guarantee", "cpus=two"],
            "invalid CPU count",
        ),
        (
            &["quota", "set", "eng", "--guarantee", "cpus=-1"],
            "invalid CPU count",
        ),
        (
            &["quota", "set", "eng", "--limit", "mem=12XB"],
            "invalid size unit",
        ),
        (
            &["quota", "set", "eng", "--limit", "cpus=1,cpus=2"],
            "given twice",
        ),
        (
            &["quota", "set", "eng", "--limit", ""],
            "--limit names no resources",
        ),
        (
            &["quota", "set", "eng"],
            "give --guarantee, --limit or both",
        ),
        // Policy the master refuses: beyond the cluster, guarantee above limit, below use.
        (
            &["quota", "set", "eng", "--guarantee", "cpus=3"],
            "exceed cluster resources",
        ),
        (
            &["quota", "set", "eng", "--guarantee", "mem=1TiB"],
            "exceed cluster resources",
        ),
        (
            &[
                "quota",
                "set",
                "eng",
                "--guarantee",
                "cpus=2",
                "--limit",
                "cpus=1",
            ],
            "exceeds limit",
        ),
        (
            &["quota", "set", "eng/batch", "--guarantee", "cpus=1.5"],
            "above its guarantee",
        ),
        // Removing what is not there.
        (&["quota", "remove", "nosuch"], "unknown role nosuch"),
        (
            &["quota", "remove", "eng/batch"],
            "cannot remove the quota of role eng/batch",
        ),
    ];
    for (args, why) in cases {
        let out = cluster.corral(args).await;
        assert_refused(args, &out, why);
    }

    // Nothing changed.
    assert_eq!(json(&cluster, &["roles"]).await, before);

    // `--force` sets a guarantee beyond the cluster (it is simply not met yet).
    ok(
        &cluster,
        &["quota", "set", "big", "--guarantee", "cpus=64", "--force"],
    )
    .await;
    let listed = json(&cluster, &["quota"]).await;
    assert_eq!(
        role(&listed, "quotas", "role", "big").map(|q| &q["guarantee"]["cpus_milli"]),
        Some(&Value::from(64_000)),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_master_exits_69_from_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let port = corral_fixtures::free_port();
    let master = format!("127.0.0.1:{port}");
    for args in [
        &["roles"][..],
        &["weight", "eng", "2"],
        &["quota", "remove", "eng"],
        &["agents"],
        &["agent", "drain", "a-1"],
        &["task", "outputs", "t-1"],
        &["kill", "t-1"],
    ] {
        let out = crate::cluster::corral(args, Some(&master), dir.path()).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "corral {args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach a master"),
            "corral {args:?}: {stderr}"
        );
    }
}

/// The one agent's ID.
async fn agent_id(cluster: &Cluster) -> String {
    let doc = json(cluster, &["agents"]).await;
    doc["agents"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no agent id in {doc}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn reserve_and_unreserve_move_an_agents_free_resources_between_roles() {
    let cluster = Cluster::start(&[]).await;
    let agent = agent_id(&cluster).await;

    let out = ok(&cluster, &["reserve", &agent, "eng", "cpus=1.5,mem=256MiB"]).await;
    assert!(out.contains("reserved to role eng"), "{out}");
    // Only 0.5 cpu is left unreserved, so another role cannot take a whole one.
    let args = ["reserve", &agent, "ops", "cpus=1"];
    assert_refused(&args, &cluster.corral(&args).await, "only");
    // eng cannot give back more than it holds.
    let args = ["unreserve", &agent, "eng", "cpus=2"];
    assert_refused(&args, &cluster.corral(&args).await, "cannot unreserve");

    ok(
        &cluster,
        &["unreserve", &agent, "eng", "cpus=1.5,mem=256MiB"],
    )
    .await;
    ok(&cluster, &["reserve", &agent, "ops", "cpus=1"]).await;

    for (args, why) in [
        (vec!["reserve", &agent, "*", "cpus=1"], "default role"),
        (
            vec!["reserve", "no-such-agent", "eng", "cpus=1"],
            "no-such-agent",
        ),
        (vec!["reserve", &agent, "eng", "cpus=-1"], "cpus"),
    ] {
        assert_refused(&args, &cluster.corral(&args).await, why);
    }
}
