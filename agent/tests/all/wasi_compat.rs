//! The executor against plain wasmtime-wasi: every case of `wasi_compat` with the same argv,
//! environment and preopens gives the same exit code, output and files in both.

use corral_agent::TaskOutcome;
use corral_fixtures::reference::{self, Invocation};
use corral_types::{Preopen, TrapKind};

use crate::util::{input, run, spec};

const ARGV0: &str = "wasi_compat.wasm";

fn env() -> Vec<(String, String)> {
    vec![
        ("GREETING".into(), "hello world".into()),
        ("EMPTY".into(), String::new()),
    ]
}

#[tokio::test]
async fn every_case_matches_plain_wasmtime_wasi() {
    let wasm = corral_wasm_tasks::bytes(corral_wasm_tasks::WASI_COMPAT);
    for case in corral_wasm_tasks::WASI_COMPAT_CASES {
        let data = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        reference::plant_seed(data.path()).unwrap();
        let mut argv = vec![ARGV0.to_owned()];
        argv.extend(case.iter().map(|a| (*a).to_owned()));
        let expected = reference::run(
            &wasm,
            &Invocation {
                argv: argv.clone(),
                env: env(),
                dirs: vec![
                    (data.path().into(), "data".into()),
                    (scratch.path().into(), "/scratch".into()),
                ],
                stdin: reference::STDIN.to_vec(),
            },
        )
        .unwrap();

        let mut task = spec(corral_wasm_tasks::WASI_COMPAT, case);
        task.argv0 = Some(ARGV0.into());
        task.env = env();
        task.stdin = reference::STDIN.into();
        task.inputs = reference::SEED
            .iter()
            .map(|(path, contents)| input(&format!("dirs/0/{path}"), contents))
            .collect();
        task.preopens = vec![
            Preopen {
                guest_path: "data".into(),
                sandbox_path: "dirs/0".into(),
            },
            Preopen {
                guest_path: "/scratch".into(),
                sandbox_path: "dirs/1".into(),
            },
        ];
        let done = run(task).await;
        let code = match &done.result.outcome {
            TaskOutcome::Exited { code } => *code,
            // `wasmtime run`'s exit codes: 1 for a failed host call, 134 for a trap.
            TaskOutcome::Trapped {
                kind: TrapKind::HostError,
                ..
            } => 1,
            TaskOutcome::Trapped { .. } => 134,
            other => panic!("{case:?}: unexpected outcome {other:?}"),
        };
        assert_eq!(code, expected.code, "{case:?}: exit code");
        assert_eq!(
            done.stdout,
            String::from_utf8_lossy(&expected.stdout),
            "{case:?}: stdout"
        );
        assert_eq!(
            done.stderr,
            String::from_utf8_lossy(&expected.stderr),
            "{case:?}: stderr"
        );
        assert_eq!(
            reference::tree(&done.root.join("dirs/0")),
            reference::tree(data.path()),
            "{case:?}: files left in `data`"
        );
    }
}

#[tokio::test]
async fn preopens_are_exactly_those_asked_for_in_order() {
    let mut task = spec(corral_wasm_tasks::WASI_COMPAT, &["preopens"]);
    task.preopens = vec![
        Preopen {
            guest_path: "/".into(),
            sandbox_path: ".".into(),
        },
        Preopen {
            guest_path: "b".into(),
            sandbox_path: "x/y".into(),
        },
    ];
    let done = run(task).await;
    assert_eq!(
        done.stdout,
        "fd 3: tag 0 name \"/\" errno 0\nfd 4: tag 0 name \"b\" errno 0\nfd 5: errno 8 (end)\n"
    );
    assert!(done.root.join("x/y").is_dir());
}

#[tokio::test]
async fn a_preopen_outside_the_sandbox_does_not_start() {
    for bad in ["../up", "/etc", ""] {
        let mut task = spec(corral_wasm_tasks::WASI_COMPAT, &["preopens"]);
        task.preopens = vec![Preopen {
            guest_path: "x".into(),
            sandbox_path: bad.into(),
        }];
        let done = run(task).await;
        assert!(
            matches!(
                &done.result.outcome,
                TaskOutcome::FailedToStart(corral_agent::StartError::InvalidSpec { reason })
                    if reason.contains("stay inside the sandbox")
            ),
            "{bad:?}: {:?}",
            done.result.outcome
        );
    }
}

#[tokio::test]
async fn argv0_is_the_task_id_unless_given() {
    let task = spec(corral_wasm_tasks::WASI_COMPAT, &["args"]);
    let id = task.task_id.to_string();
    let done = run(task).await;
    assert_eq!(done.stdout, format!("[\"{id}\", \"args\"]\n"));
}
