//! The examples of `examples/languages/` built with their own toolchains and run through
//! `corral run`, each compared with the same module under plain wasmtime-wasi. A toolchain that
//! is not installed skips its test loudly; `.ci/run` installs them all.

use std::path::{Path, PathBuf};
use std::process::Command;

use corral_fixtures::reference::{self, Invocation};

use crate::cluster::{Cluster, text};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/languages")
}

fn skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

/// Runs `wasm` through `corral run` with `--env WHO=corral`, the directory `data` preopened as
/// `data` and `args`, checks it against plain wasmtime-wasi given the same, and returns what
/// `corral run` printed.
async fn run_both(cluster: &Cluster, wasm: &Path, args: &[&str]) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let expected_data = tempfile::tempdir().unwrap();
    let dir = format!("{}::data", data.path().display());
    let mut command = vec!["run", "--dir", &dir, "--env", "WHO=corral"];
    let module = wasm.to_str().unwrap();
    command.push(module);
    command.extend(args);
    let out = cluster.corral(&command).await;
    let code = out.status.code().unwrap();

    let mut argv = vec![wasm.file_name().unwrap().to_str().unwrap().to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let expected = reference::run(
        &std::fs::read(wasm).unwrap(),
        &Invocation {
            argv,
            env: vec![("WHO".into(), "corral".into())],
            dirs: vec![(expected_data.path().into(), "data".into())],
            stdin: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(code, expected.code, "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&expected.stdout));
    assert_eq!(
        reference::tree(data.path()),
        reference::tree(expected_data.path()),
        "files the task left in `data`"
    );
    let greeting = std::fs::read_to_string(data.path().join("greeting.txt")).unwrap_or_default();
    (code, format!("{}{greeting}", text(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_c_task_built_with_clang_and_wasi_libc_runs_through_corral_run() {
    let test = "a_c_task_built_with_clang_and_wasi_libc_runs_through_corral_run";
    let build = tempfile::tempdir().unwrap();
    let wasm = build.path().join("hello.wasm");
    let compiled = Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-o"])
        .arg(&wasm)
        .arg(examples().join("c/hello.c"))
        .output();
    match compiled {
        Err(_) => {
            return skip(
                test,
                "`clang` is not on PATH (apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32)",
            );
        }
        Ok(out) if !out.status.success() => panic!("clang failed: {}", text(&out.stderr)),
        Ok(_) => {}
    }
    let cluster = Cluster::start(&[]).await;
    let (code, printed) = run_both(&cluster, &wasm, &["7"]).await;
    assert_eq!(code, 7);
    assert_eq!(
        printed,
        "hello from C, corral: argv[0]=hello.wasm argc=2\nwritten by a C task for corral\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assemblyscript_task_runs_through_corral_run() {
    let test = "an_assemblyscript_task_runs_through_corral_run";
    let project = examples().join("assemblyscript");
    let asc = project.join("node_modules/.bin/asc");
    if !asc.exists() {
        return skip(
            test,
            "the AssemblyScript compiler is not installed (npm ci --prefix examples/languages/assemblyscript)",
        );
    }
    let build = tempfile::tempdir().unwrap();
    let wasm = build.path().join("hello.wasm");
    // The command of `npm run build`, writing elsewhere than the source tree.
    let compiled = Command::new(&asc)
        .current_dir(&project)
        .args([
            "assembly/index.ts",
            "--config",
            "node_modules/@assemblyscript/wasi-shim/asconfig.json",
            "-O3",
            "-o",
        ])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(compiled.status.success(), "asc: {}", text(&compiled.stderr));
    let cluster = Cluster::start(&[]).await;
    let (code, printed) = run_both(&cluster, &wasm, &["3"]).await;
    assert_eq!(code, 3);
    assert_eq!(
        printed,
        "hello from AssemblyScript, corral, argv[0]=hello.wasm argc=2\n"
    );
}
