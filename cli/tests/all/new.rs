//! `corral new task`: the crate it makes tests green with `cargo test` (the module built
//! and run under the executor by the harness), builds with `cargo wasm`, and the module
//! runs on a cluster with `corral run`; bad names and places are refused.

use std::path::Path;
use std::process::Command;

use crate::cluster::{Cluster, corral, text};

/// `cargo <args>` in `dir`, sharing this workspace's target directory so the executor's
/// dependencies are not compiled again.
fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_task_crate_tests_builds_and_runs_on_a_cluster() {
    let cluster = Cluster::start(&[]).await;
    let here = cluster.dir.path();
    let made = corral(&["new", "task", "greeter"], None, here).await;
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    assert!(
        text(&made.stdout).contains("cargo wasm"),
        "{}",
        text(&made.stdout)
    );
    let crate_dir = here.join("greeter");

    let test = cargo(&crate_dir, &["test"]);
    let stdout = text(&test.stdout);
    assert!(test.status.success(), "{stdout}\n{}", text(&test.stderr));
    assert!(
        stdout.contains("test greets_and_reports_its_result_and_output ... ok"),
        "{stdout}"
    );

    let build = cargo(&crate_dir, &["wasm"]);
    assert!(build.status.success(), "{}", text(&build.stderr));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let module = target.join("wasm32-wasip1/release/greeter.wasm");
    let run = cluster
        .corral(&["run", module.to_str().unwrap(), "cluster"])
        .await;
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello, cluster\n");
    assert!(
        text(&run.stderr).contains(r#"result: {"length": 15}"#),
        "{}",
        text(&run.stderr)
    );
}

#[tokio::test]
async fn bad_names_taken_places_and_a_missing_sdk_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["9lives", "a b", "../up", ""] {
        let out = corral(&["new", "task", name], None, dir.path()).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name:?}: {}",
            text(&out.stderr)
        );
    }
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), b"mine").unwrap();
    let out = corral(&["new", "task", "taken"], None, dir.path()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("taken/keep.txt")).unwrap(),
        b"mine"
    );
    let out = corral(
        &["new", "task", "lost", "--sdk", dir.path().to_str().unwrap()],
        None,
        dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--sdk"), "{}", text(&out.stderr));
    assert!(!dir.path().join("lost").exists());
}
