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
