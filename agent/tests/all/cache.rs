//! The module cache: admission errors, one compile per module, compiled code reused across
//! executor restarts.

use std::sync::Arc;

use corral_agent::{
    Executor, ExecutorConfig, ModuleError, ModuleSource, StartError, TaskOutcome, TaskSpec,
};

use corral_types::Digest;

use crate::util::{executor, executor_in, named, run, run_on, spec};

fn module_error(outcome: TaskOutcome) -> ModuleError {
    match outcome {
        TaskOutcome::FailedToStart(StartError::Module(error)) => error,
        other => panic!("expected a module error, got {other:?}"),
    }
}

fn bytes_spec(bytes: Vec<u8>) -> TaskSpec {
    named("bad-module", ModuleSource::Bytes(Arc::from(bytes)))
}

#[tokio::test]
async fn garbage_is_an_invalid_module() {
    let error = module_error(
        run(bytes_spec(b"definitely not wasm".to_vec()))
            .await
            .result
            .outcome,
    );
    assert!(matches!(error, ModuleError::Invalid { .. }), "{error}");
}

#[tokio::test]
async fn a_truncated_module_is_invalid() {
    let hello = corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO);
    let error = module_error(
        run(bytes_spec(hello[..hello.len() / 2].to_vec()))
            .await
            .result
            .outcome,
    );
    match error {
        ModuleError::Invalid { digest, reason } => {
            assert_eq!(digest, Digest::of(&hello[..hello.len() / 2]));
            assert!(!reason.is_empty());
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_compile_bomb_is_refused_by_admission_and_the_next_module_runs() {
    use corral_agent::admission::MAX_NESTING;
    let depth = MAX_NESTING + 1;
    let bomb = wat::parse_str(format!(
        "(module (func (export \"_start\") {}{}))",
        "(block ".repeat(depth),
        ")".repeat(depth)
    ))
    .unwrap();
    let error = module_error(run(bytes_spec(bomb)).await.result.outcome);
    match error {
        ModuleError::Invalid { reason, .. } => assert_eq!(
            reason,
            "over the agent's admission limits: function 0 nests blocks more than 10000 deep"
        ),
        other => panic!("{other}"),
    }
    let done = run(spec(corral_wasm_tasks::HELLO, &[])).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
}

#[tokio::test]
async fn an_oversized_module_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExecutorConfig::new(dir.path());
    config.max_module_size = 1024;
    let small = Executor::new(config).unwrap();
    let done = run_on(&small, spec(corral_wasm_tasks::HELLO, &[])).await;
    let error = module_error(done.result.outcome);
    assert!(
        matches!(error, ModuleError::TooLarge { limit: 1024, .. }),
        "{error}"
    );
    assert_eq!(small.cache_stats().compiled, 0);
    // add_module says the same.
    let bytes = corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO);
    assert!(matches!(
        small.add_module(bytes).await,
        Err(ModuleError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn the_default_size_cap_is_64_mib() {
    let mut huge = vec![0u8; (64 << 20) + 1];
    huge[..8].copy_from_slice(b"\0asm\x01\0\0\0");
    let error = module_error(run(bytes_spec(huge)).await.result.outcome);
    assert!(matches!(error, ModuleError::TooLarge { .. }), "{error}");
}

#[tokio::test]
async fn a_missing_entrypoint_is_a_clear_failure() {
    let mut task = spec(corral_wasm_tasks::HELLO, &[]);
    task.entrypoint = "main".into();
    assert_eq!(
        run(task).await.result.outcome,
        TaskOutcome::FailedToStart(StartError::MissingEntrypoint {
            name: "main".into()
        })
    );
}

#[tokio::test]
async fn an_unknown_import_is_a_link_failure() {
    let wasm = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    let outcome = run(bytes_spec(wasm)).await.result.outcome;
    match outcome {
        TaskOutcome::FailedToStart(StartError::Link { message }) => {
            assert!(message.contains("launch_missiles"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_digest_is_not_found() {
    let digest = Digest::of(b"never uploaded");
    let task = named("unknown", ModuleSource::Digest(digest));
    assert_eq!(
        module_error(run(task).await.result.outcome),
        ModuleError::NotFound { digest }
    );
}

#[tokio::test]
async fn compiled_code_is_reused_after_an_executor_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hello = corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO);
    let digest = {
        let first = executor_in(dir.path());
        let digest = first.add_module(hello.clone()).await.unwrap();
        assert_eq!(digest, Digest::of(&hello));
        assert_eq!(first.cache_stats().compiled, 1);
        digest
    };
    let second = executor_in(dir.path());
    assert!(second.has_module(&digest));
    let task = named("after-restart", ModuleSource::Digest(digest));
    let done = run_on(&second, task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(done.stdout, "hello from corral\n");
    let stats = second.cache_stats();
    assert_eq!(stats.compiled, 0, "{stats:?}");
    assert_eq!(stats.loaded_from_disk, 1, "{stats:?}");
    // Later launches come from memory.
    let task = named("again", ModuleSource::Digest(digest));
    run_on(&second, task).await;
    assert_eq!(second.cache_stats().memory_hits, 1);
}

#[tokio::test]
async fn the_cache_lists_what_it_compiled_across_executor_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let hello = corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO);
    let primes = corral_wasm_tasks::bytes(corral_wasm_tasks::PRIMES);
    let (digests, compatibility) = {
        let first = executor_in(dir.path());
        assert!(first.cached_modules().is_empty());
        let mut digests = vec![
            first.add_module(hello).await.unwrap(),
            first.add_module(primes).await.unwrap(),
        ];
        digests.sort();
        assert_eq!(first.cached_modules(), digests);
        (digests, first.compatibility().to_string())
    };
    // An interrupted write leaves a temporary file: it names no compiled module.
    let compiled = dir.path().join("modules").join(compatibility);
    std::fs::write(
        compiled.join(format!("{}.tmp-1-1", "ab".repeat(32))),
        b"partial",
    )
    .unwrap();
    let second = executor_in(dir.path());
    assert_eq!(
        second.cached_modules(),
        digests,
        "read back, nothing loaded"
    );
    assert_eq!(second.cache_stats(), Default::default());
}

#[tokio::test]
async fn corrupt_compiled_code_is_discarded_and_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let hello = corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO);
    let (digest, compatibility) = {
        let first = executor_in(dir.path());
        let digest = first.add_module(hello).await.unwrap();
        (digest, first.compatibility().to_string())
    };
    let compiled = dir
        .path()
        .join("modules")
        .join(compatibility)
        .join(format!("{}.cwasm", digest.hex()));
    std::fs::write(&compiled, b"corrupted").unwrap();
    let second = executor_in(dir.path());
    let task = named("recompiled", ModuleSource::Digest(digest));
    let done = run_on(&second, task).await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    assert_eq!(second.cache_stats().compiled, 1);
}

#[tokio::test]
async fn concurrent_launches_of_a_new_module_compile_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = executor_in(dir.path());
    let handles: Vec<_> = (0..16)
        .map(|_| fresh.launch(spec(corral_wasm_tasks::PRIMES, &["1000"])))
        .collect();
    for handle in handles {
        let done = crate::util::finish(handle).await;
        assert_eq!(done.stdout.trim(), "168");
    }
    assert_eq!(fresh.cache_stats().compiled, 1);
}

#[tokio::test]
async fn the_shared_executor_knows_modules_it_ran() {
    let done = run(spec(corral_wasm_tasks::HELLO, &[])).await;
    assert!(done.result.outcome.is_success());
    let digest = Digest::of(&corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    assert!(executor().has_module(&digest));
}
