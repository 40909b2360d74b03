//! Hostile input from a framework, through the public Scheduler API, against real processes:
//! it fails the task that carries it and nothing else.

use bytes::Bytes;
use corral_proto::v1;
use corral_types::{Reason, TaskState};

use crate::cluster::Cluster;
use crate::framework::{RawFramework, reason, state, task};

/// A 1.5 KB tar archive whose one header claims 2^62 bytes.
fn lying_archive() -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_path("huge.bin").unwrap();
    header.set_size(1 << 62);
    header.set_mode(0o644);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tar_input_claiming_2_62_bytes_fails_its_task_and_the_agent_runs_the_next() {
    let mut cluster = Cluster::start(&[]).await;
    let mut fw = RawFramework::subscribe(&cluster.master_addr).await;
    let hello = fw.upload(corral_wasm_tasks::HELLO).await;

    let mut hostile = task("hostile", &hello, &[]);
    hostile.inputs = vec![v1::InputFile {
        path: "data".into(),
        source: Some(v1::input_file::Source::TarArchive(Bytes::from(
            lying_archive(),
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
