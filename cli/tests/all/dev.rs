//! `corral dev` from a copy of the binary, in an empty directory: nothing of the build
//! machine's files is needed.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use corral_fixtures::free_port;

use crate::cluster::CORRAL;

#[tokio::test]
async fn a_copied_binary_runs_the_examples_in_an_empty_directory() {
    let bin = tempfile::tempdir().unwrap();
    let copy = bin.path().join("corral");
    std::fs::copy(CORRAL, &copy).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut dev = tokio::process::Command::new(&copy)
        .args(["dev", "--listen", &listen, "--agents", "1"])
        .current_dir(cwd.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("cluster is up");
            seen.push(line);
            if done {
                return;
            }
        }
        panic!("corral dev ended early");
    })
    .await;
    let out = seen.join("\n");
    assert!(
        up.is_ok(),
        "corral dev did not come up within 120 s:\n{out}"
    );
    for expected in [
        "hello from corral dev",
        "hello: exited 0",
        "wordcount: exited 0",
        "78498",
        "primes: exited 0",
        "mandelbrot: exited 0",
        "map: 4/4 instances succeeded",
        "reduce: 1/1 instances succeeded",
        "314 words, 166 distinct",
        "the 20",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    // The examples are written where the printed `corral run` hint points.
    let hello = cwd.path().join(".corral/dev/examples/hello.wasm");
    assert!(std::fs::read(&hello).unwrap().starts_with(b"\0asm"));
    let hint = lines.next_line().await.unwrap().unwrap();
    assert!(hint.contains(".corral/dev/examples/hello.wasm"), "{hint}");
}
