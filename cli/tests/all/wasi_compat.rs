//! `corral run --dir HOST::GUEST --env K=V module ARGS` against plain wasmtime-wasi given the
//! same: every case of `wasi_compat` ends with the same exit code, output and files.

use std::path::Path;

use corral_fixtures::reference::{self, Invocation};

use crate::cluster::{Cluster, text};

/// The task's own stderr: what `corral run` printed before its usage line and messages.
fn task_stderr(stderr: &[u8]) -> String {
    let stderr = text(stderr);
    let end = stderr
        .rfind("usage: fuel")
        .filter(|&at| at == 0 || stderr[..at].ends_with('\n'))
        .unwrap_or(stderr.len());
    stderr[..end].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn corral_run_behaves_like_wasmtime_run_for_every_wasi_family() {
    let cluster = Cluster::start(&[]).await;
    let module = corral_wasm_tasks::WASI_COMPAT;
    let wasm = corral_wasm_tasks::bytes(module);
    let argv0 = Path::new(module).file_name().unwrap().to_str().unwrap();
    let env = [("GREETING", "hello world"), ("EMPTY", "")];
    for case in corral_wasm_tasks::WASI_COMPAT_CASES {
        let dirs = tempfile::tempdir().unwrap();
        let [expected_data, data, scratch, expected_scratch] =
            ["expected", "data", "scratch", "expected-scratch"].map(|d| dirs.path().join(d));
        for dir in [&expected_data, &data, &scratch, &expected_scratch] {
            std::fs::create_dir(dir).unwrap();
        }
        reference::plant_seed(&expected_data).unwrap();
        reference::plant_seed(&data).unwrap();

        let mut argv = vec![argv0.to_owned()];
        argv.extend(case.iter().map(|a| (*a).to_owned()));
        let expected = reference::run(
            &wasm,
            &Invocation {
                argv,
                env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
                dirs: vec![
                    (expected_data.clone(), "data".into()),
                    (expected_scratch.clone(), "/scratch".into()),
                ],
                stdin: reference::STDIN.to_vec(),
            },
        )
        .unwrap();

        // wasmtime's spelling for one directory, the short one for the other.
        let data_dir = format!("{}::data", data.display());
        let scratch_dir = format!("{}:/scratch", scratch.display());
        let mut args = vec!["run", "--dir", &data_dir, "--dir", &scratch_dir];
        for pair in ["GREETING=hello world", "EMPTY="] {
            args.extend(["--env", pair]);
        }
        args.push(module);
        args.extend(case.iter());
        // `printf … | corral run …`, as `printf … | wasmtime run …`.
        let out = cluster.corral_with_stdin(&args, reference::STDIN).await;

        assert_eq!(
            out.status.code(),
            Some(expected.code),
            "{case:?}: exit code; stderr: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout),
            text(&expected.stdout),
            "{case:?}: stdout"
        );
        assert_eq!(
            task_stderr(&out.stderr),
            text(&expected.stderr),
            "{case:?}: stderr"
        );
        // The task's writes came back to the host directories as wasmtime made them in place.
        assert_eq!(
            reference::tree(&data),
            reference::tree(&expected_data),
            "{case:?}: files in `data`; stderr: {}",
            text(&out.stderr)
        );
        assert_eq!(
            reference::tree(&scratch),
            reference::tree(&expected_scratch),
            "{case:?}: files in `/scratch`"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_changes_come_back_reported_unless_no_sync() {
    let cluster = Cluster::start(&[]).await;
    let data = cluster.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    reference::plant_seed(&data).unwrap();
    let seeded = reference::tree(&data);
    let dir = format!("{}::data", data.display());
    let module = corral_wasm_tasks::WASI_COMPAT;

    let out = cluster
        .corral(&["run", "--no-sync", "--dir", &dir, module, "files"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        reference::tree(&data),
        seeded,
        "--no-sync left the host as it was"
    );

    let out = cluster
        .corral(&["run", "--dir", &dir, module, "files"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let seed = data.join("seed.txt");
    assert_eq!(
        std::fs::read_to_string(&seed).unwrap(),
        "planted before the run\nappended\n"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("corral: changed {}", seed.display())),
        "stderr: {stderr}"
    );

    // Empty directories the task never touches go with it and stay on the host: the task's
    // copy holds them, so the sync sees nothing removed.
    let empty = data.join("kept/empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = cluster
        .corral(&["run", "--dir", &dir, module, "dirs"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(empty.is_dir(), "an untouched empty directory was removed");
    assert!(
        !stderr.contains(&data.join("kept").display().to_string()),
        "stderr: {stderr}"
    );
    for line in [
        format!("corral: added {}", data.join("d/c.txt").display()),
        format!("corral: removed {}", data.join("sub/inner.txt").display()),
        format!("corral: removed {}", data.join("sub").display()),
    ] {
        assert!(stderr.contains(&line), "{line:?} not in stderr: {stderr}");
    }
    assert!(!data.join("sub").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_too_large_to_travel_with_the_task_goes_through_the_store() {
    let cluster = Cluster::start(&[]).await;
    let data = cluster.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    reference::plant_seed(&data).unwrap();
    // Past the 8 MiB a task carries with it; bytes that do not repeat, as a real file's.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let large: Vec<u8> = (0..9 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(data.join("large.bin"), &large).unwrap();
    let dir = format!("{}::data", data.display());
    let module = corral_wasm_tasks::WASI_COMPAT;

    // More than the task's disk is refused before anything is sent.
    let out = cluster
        .corral(&["run", "--disk", "4MiB", "--dir", &dir, module, "files"])
        .await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("more than the task's disk (4 MiB): give it a larger --disk"),
        "stderr: {stderr}"
    );

    let out = cluster
        .corral(&["run", "--disk", "32MiB", "--dir", &dir, module, "files"])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(data.join("seed.txt")).unwrap(),
        "planted before the run\nappended\n",
        "the task saw its files and its change came back"
    );
    assert_eq!(std::fs::read(data.join("large.bin")).unwrap(), large);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("large.bin"), "stderr: {stderr}");
}
