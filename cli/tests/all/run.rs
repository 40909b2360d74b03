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
    // Corral's flag, then wasmtime's spelling of it.
    for fuel in [
        ["--max-fuel", "1000000"],
        ["-W", "fuel=1000000,timeout=60s"],
    ] {
        let out = cluster
            .corral(&["run", fuel[0], fuel[1], corral_wasm_tasks::LIMITS, "spin"])
            .await;
        assert_ne!(out.status.code(), Some(0));
        assert!(
            text(&out.stderr).contains("out of fuel"),
            "{fuel:?}: stderr: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_wasmtimes_inherit_env_gives_the_task_this_shells_environment() {
    let cluster = Cluster::start(&[]).await;
    // A module that exits with the number of its environment variables.
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count.wat");
    std::fs::write(
        &count,
        r#"(module
             (import "wasi_snapshot_preview1" "environ_sizes_get"
               (func $sizes (param i32 i32) (result i32)))
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start")
               (drop (call $sizes (i32.const 0) (i32.const 4)))
               (call $exit (i32.load (i32.const 0)))))"#,
    )
    .unwrap();
    let count = count.to_str().unwrap();
    let shell = std::env::vars_os().count() as i32;
    let out = cluster.corral(&["run", "--env", "A=1", count]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = cluster.corral(&["run", "-S", "inherit-env", count]).await;
    let inherited = out.status.code().unwrap();
    assert!(inherited >= shell, "{inherited} < {shell}");
    // A variable given again with --env is not given twice.
    let out = cluster
        .corral(&["run", "-S", "inherit-env", "--env", "PATH=/x", count])
        .await;
    assert_eq!(out.status.code(), Some(inherited));
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
async fn an_unreachable_master_has_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = corral(&["ps", "--output", "json"], Some("127.0.0.1:1"), dir.path()).await;
    assert_eq!(out.status.code(), Some(69));
    // A usage error is 2, as clap's.
    let usage = corral(&["ps", "--no-such-flag"], Some("127.0.0.1:1"), dir.path()).await;
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach a master"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_ships_a_file_into_the_sandbox() {
    let cluster = Cluster::start(&[]).await;
    let input = cluster.dir.path().join("input.txt");
    std::fs::write(&input, "the cat\nthe hat\n").unwrap();
    let out = cluster
        .corral(&[
            "run",
            "--file",
            input.to_str().unwrap(),
            corral_wasm_tasks::WORDCOUNT,
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().next(), Some("2 4 16"));

    // A file too big to travel with the task goes through the artifact store.
    let big = cluster.dir.path().join("big.txt");
    std::fs::write(&big, "word ".repeat(1 << 20)).unwrap();
    let out = cluster
        .corral(&[
            "run",
            "--mem",
            "128MiB",
            "--file",
            big.to_str().unwrap(),
            corral_wasm_tasks::WORDCOUNT,
            "big.txt",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().next(), Some("1 1048576 5242880"));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_directories_too_big_to_ship_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: Vec<String>, why: &'static str| {
        let dir = dir.path().to_owned();
        async move {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.insert(0, "run");
            args.push(corral_wasm_tasks::HELLO);
            let out = corral(&args, Some("127.0.0.1:1"), &dir).await;
            assert_eq!(out.status.code(), Some(2), "{why}");
            let stderr = text(&out.stderr);
            assert!(stderr.contains(why), "stderr: {stderr}");
        }
    };

    // Nine directories of a little under 1 MiB each travel with the task, and together pass
    // the 8 MiB it may carry.
    let mut small = Vec::new();
    for i in 0..9 {
        let data = dir.path().join(format!("small{i}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("part"), vec![b'x'; 1000 << 10]).unwrap();
        small.extend(["--dir".to_owned(), data.display().to_string()]);
    }
    refused(small, "past the 8 MiB it may").await;

    // One directory past what the artifact store takes.
    let large = dir.path().join("large");
    std::fs::create_dir(&large).unwrap();
    for i in 0..5 {
        std::fs::write(large.join(format!("part{i}")), vec![b'x'; 13 << 20]).unwrap();
    }
    let args = vec!["--dir".to_owned(), large.display().to_string()];
    refused(args, "a directory shipped with a task is at most 64 MiB").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_ships_a_directory_tree_at_its_guest_path() {
    let cluster = Cluster::start(&[]).await;
    let data = cluster.dir.path().join("data");
    std::fs::create_dir_all(data.join("nested")).unwrap();
    std::fs::write(data.join("a.txt"), "alpha").unwrap();
    std::fs::write(data.join("nested/b.txt"), "beta").unwrap();
    let dir = format!("{}:inputs", data.display());

    let ls = cluster
        .corral(&[
            "run",
            corral_wasm_tasks::LIMITS,
            "--dir",
            &dir,
            "--",
            "ls",
            "inputs",
        ])
        .await;
    assert_eq!(ls.status.code(), Some(0), "stderr: {}", text(&ls.stderr));
    assert_eq!(text(&ls.stdout), "a.txt\nnested\n");

    let read = cluster
        .corral(&[
            "run",
            corral_wasm_tasks::LIMITS,
            "--dir",
            &dir,
            "--",
            "read",
            "inputs/nested/b.txt",
        ])
        .await;
    assert_eq!(
        read.status.code(),
        Some(0),
        "stderr: {}",
        text(&read.stderr)
    );
    assert_eq!(text(&read.stdout), "beta");

    // Without GUEST_PATH the guest sees the directory under the name given, as with wasmtime
    // (`corral` runs in the cluster's directory, where `data` is).
    let plain = cluster
        .corral(&[
            "run",
            corral_wasm_tasks::LIMITS,
            "--dir",
            "data",
            "--",
            "read",
            "data/a.txt",
        ])
        .await;
    assert_eq!(
        plain.status.code(),
        Some(0),
        "stderr: {}",
        text(&plain.stderr)
    );
    assert_eq!(text(&plain.stdout), "alpha");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_a_missing_input_exits_2_before_launching() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&[
            "run",
            "--file",
            "/nonexistent/input.txt",
            corral_wasm_tasks::WORDCOUNT,
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/nonexistent/input.txt"),
        "stderr: {}",
        text(&out.stderr)
    );
    let ps = cluster.corral(&["ps", "--all", "--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(doc["tasks"].as_array().map(Vec::len), Some(0), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_streams_a_running_task_until_it_ends() {
    let cluster = Cluster::start(&[]).await;
    let run = cluster.spawn_corral(&["run", corral_wasm_tasks::LIMITS, "--", "tick", "20", "100"]);
    let task = cluster.wait_for_running_task().await;
    let logs = cluster.corral(&["logs", "-f", &task]).await;
    assert_eq!(
        logs.status.code(),
        Some(0),
        "stderr: {}",
        text(&logs.stderr)
    );
    let expected: String = (0..20).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text(&logs.stdout), expected);
    let run = run.wait_with_output().await.unwrap();
    assert_eq!(run.status.code(), Some(0), "stderr: {}", text(&run.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_detects_a_component_and_runs_it_like_a_module() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&["run", corral_wasm_tasks::components::HELLO, "component"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from corral component\n");
    assert!(
        text(&out.stderr).contains("usage: fuel"),
        "stderr: {}",
        text(&out.stderr)
    );
    // A non-zero exit is a failure (WASI 0.2 carries no code): 1, as `wasmtime run`.
    let out = cluster
        .corral(&["run", corral_wasm_tasks::components::LIMITS, "exit", "3"])
        .await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_takes_a_module_in_the_text_format() {
    let cluster = Cluster::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greet.wat");
    std::fs::write(
        &path,
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write"
               (func $write (param i32 i32 i32 i32) (result i32)))
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (data (i32.const 16) "hello from text\n")
             (func (export "_start")
               (i32.store (i32.const 0) (i32.const 16))
               (i32.store (i32.const 4) (i32.const 16))
               (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
               (call $exit (i32.const 7))))"#,
    )
    .unwrap();
    let out = cluster.corral(&["run", path.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from text\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_a_file_that_is_not_webassembly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, contents: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        let dir = dir.path().to_owned();
        async move { corral(&["run", path.to_str().unwrap()], Some("127.0.0.1:1"), &dir).await }
    };
    // Text that is not the text format: the parser's reason, at its line and column.
    let out = run("notes.wasm", b"plain text").await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("notes.wasm is neither a WebAssembly binary")
            && stderr.contains("nor the text format")
            && stderr.contains("notes.wasm:1:1"),
        "stderr: {stderr}"
    );
    let out = run("image.wasm", b"\x89PNG\r\n\x1a\n\x00").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not a WebAssembly module or component"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_stdin_over_its_limit_before_launching() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(crate::cluster::CORRAL)
        .args(["run", corral_wasm_tasks::HELLO])
        .env("CORRAL_MASTER", "127.0.0.1:1")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // More than the limit; the write fails once corral stops reading, which is fine.
    let big = vec![b'x'; corral_proto::limits::MAX_STDIN_BYTES + 4096];
    let _ = pipe.write_all(&big).await;
    drop(pipe);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stdin is over 4 MiB"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_env_reaches_the_task_in_order_and_no_listing() {
    let cluster = Cluster::start(&[]).await;
    let out = cluster
        .corral(&[
            "run",
            "--name",
            "secretive",
            "--env",
            "PLAIN=shown",
            "--secret-env",
            "API_KEY=k3y-0f-the-task",
            corral_wasm_tasks::WASI_COMPAT,
            "env",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "PLAIN=shown\nAPI_KEY=k3y-0f-the-task",
        "the guest's whole environment, in order"
    );
    assert!(!text(&out.stderr).contains("k3y-0f-the-task"));
    for listing in [
        &["ps", "--all", "--output", "json"][..],
        &["ps", "--all", "--output", "wide"],
    ] {
        let shown = cluster.corral(listing).await;
        assert!(text(&shown.stdout).contains("secretive"), "{listing:?}");
        assert!(
            !text(&shown.stdout).contains("k3y-0f-the-task"),
            "{listing:?}: {}",
            text(&shown.stdout)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_invoke_calls_a_function_with_the_arguments_and_prints_what_it_returns() {
    let cluster = Cluster::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("add.wat");
    std::fs::write(
        &path,
        r#"(module (func (export "add") (param i64 i64) (result i64)
             (i64.add (local.get 0) (local.get 1))))"#,
    )
    .unwrap();
    let module = path.to_str().unwrap();
    let out = cluster
        .corral(&["run", "--invoke", "add", module, "40", "2"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\n");

    let out = cluster
        .corral(&["run", "--invoke", "add", module, "40", "two"])
        .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("argument 2 of `add`: \"two\" is not an i64"),
        "stderr: {}",
        text(&out.stderr)
    );

    // A component's function, called in WAVE; it needs no `wasi:cli/run`.
    let path = dir.path().join("calc.wat");
    std::fs::write(
        &path,
        r#"(component
             (core module $m (func (export "add") (param i32 i32) (result i32)
               (i32.add (local.get 0) (local.get 1))))
             (core instance $i (instantiate $m))
             (func (export "add") (param "a" u32) (param "b" u32) (result u32)
               (canon lift (core func $i "add"))))"#,
    )
    .unwrap();
    let component = path.to_str().unwrap();
    let out = cluster
        .corral(&["run", "--invoke", "add(40, 2)", component])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\n");
}
