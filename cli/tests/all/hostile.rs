//! Hostile input from a framework, through the public Scheduler API, against real processes:
//! it fails the task that carries it and nothing else.

use bytes::Bytes;
use corral_proto::v1;
use corral_types::{Reason, TaskState};

use crate::cluster::Cluster;
use crate::framework::{RawFramework, reason, state, task};

#[tokio::test(flavor = "multi_thread")]
async fn a_tar_input_claiming_2_62_bytes_fails_its_task_and_the_agent_runs_the_next() {
    let mut cluster = Cluster::start(&[]).await;
    let mut fw = RawFramework::subscribe(&cluster.master_addr).await;
    let hello = fw.upload(corral_wasm_tasks::HELLO).await;

    let mut hostile = task("hostile", &hello, &[]);
    hostile.inputs = vec![v1::InputFile {
        path: "data".into(),
        // 1.5 KiB whose one header claims 2^62 bytes.
        source: Some(v1::input_file::Source::TarArchive(Bytes::from(
            corral_fixtures::hostile::tar_claiming(1 << 62),
        ))),
    }];
    fw.launch(hostile).await;
    let failed = loop {
        let update = fw.next_update().await;
        fw.acknowledge(&update).await;
        if state(&update).is_terminal() {
            break update;
        }
    };
    assert_eq!(failed.task_id, "hostile");
    assert_eq!(state(&failed), TaskState::Failed, "{failed:?}");
    assert_eq!(reason(&failed), Reason::InputUnavailable, "{failed:?}");
    assert!(
        failed.message.contains("claims 4611686018427387904 bytes"),
        "{}",
        failed.message
    );
    // It failed before it had a sandbox: its logs read empty, not unknown.
    for stream in [&["logs", "hostile"][..], &["logs", "hostile", "--stderr"]] {
        let logs = cluster.corral(stream).await;
        assert_eq!(logs.status.code(), Some(0), "{logs:?}");
        assert!(logs.stdout.is_empty(), "{logs:?}");
    }

    // The agent is still up and runs the next task.
    assert!(
        cluster.agent.0.try_wait().unwrap().is_none(),
        "the agent died"
    );
    fw.launch(task("after", &hello, &["still", "here"])).await;
    let finished = loop {
        let update = fw.next_update().await;
        fw.acknowledge(&update).await;
        if state(&update).is_terminal() {
            break update;
        }
    };
    assert_eq!(finished.task_id, "after");
    assert_eq!(state(&finished), TaskState::Finished, "{finished:?}");
}

/// Launches `module` (bytes) as task `id` on `cluster`'s agent and waits for its end.
async fn run_module(
    cluster: &Cluster,
    fw: &mut RawFramework,
    id: &str,
    module: &[u8],
) -> v1::TaskStatus {
    let path = cluster.dir.path().join(format!("{id}.wasm"));
    std::fs::write(&path, module).unwrap();
    let digest = fw.upload(path.to_str().unwrap()).await;
    fw.launch(task(id, &digest, &[])).await;
    loop {
        let update = fw.next_update().await;
        fw.acknowledge(&update).await;
        if update.task_id == id && state(&update).is_terminal() {
            return update;
        }
    }
}

/// `status` is a task's failure for an invalid module, saying `why`.
fn assert_refused(status: &v1::TaskStatus, why: &str) {
    assert_eq!(
        (state(status), reason(status)),
        (TaskState::Failed, Reason::InvalidModule),
        "{status:?}"
    );
    assert!(status.message.contains(why), "{}", status.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_over_the_compile_budget_fails_its_task_and_the_next_module_compiles() {
    use corral_fixtures::hostile::many_functions;

    // Time: 60,000 functions take several seconds of a compiler; the budget is two.
    let cluster = Cluster::start_with(&[], &["--compile-timeout", "2s"]).await;
    let mut fw = RawFramework::subscribe(&cluster.master_addr).await;
    let slow = run_module(&cluster, &mut fw, "slow", &many_functions(60_000)).await;
    assert_refused(
        &slow,
        "compiling takes longer than the agent's budget of 2 s",
    );
    let small = run_module(&cluster, &mut fw, "small", &many_functions(10)).await;
    assert_eq!(state(&small), TaskState::Finished, "{small:?}");
    drop(cluster);

    // Memory: 99,999 functions need hundreds of MiB to compile; the budget is 64.
    let mut cluster = Cluster::start_with(&[], &["--compile-memory", "64MiB"]).await;
    let mut fw = RawFramework::subscribe(&cluster.master_addr).await;
    let big = run_module(&cluster, &mut fw, "big", &many_functions(99_999)).await;
    assert_refused(
        &big,
        "compiling needs more memory than the agent's budget of 64 MiB",
    );
    let small = run_module(&cluster, &mut fw, "small", &many_functions(10)).await;
    assert_eq!(state(&small), TaskState::Finished, "{small:?}");
    assert!(
        cluster.agent.0.try_wait().unwrap().is_none(),
        "the agent died"
    );
}
