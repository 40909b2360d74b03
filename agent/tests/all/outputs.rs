//! A task's outputs folder, kept when it ends: uploaded to the master before the terminal
//! status lists them, bounded by the task's disk, refused when the master's store is full;
//! and artifacts (an earlier task's outputs) given to a task as inputs.

use corral_proto::v1;
use corral_types::{Digest, Reason, TaskState};

use crate::fake_master::{Event, FakeMaster};
use crate::node::{FRAMEWORK, agent_config, reason, state, task, work_dir};

/// An agent of `master`, registered.
async fn agent(master: &mut FakeMaster) -> corral_agent::Agent {
    let agent = corral_agent::Agent::start(agent_config(master, &work_dir()))
        .await
        .unwrap();
    assert!(matches!(master.next().await, Event::Register(_)));
    agent
}

fn paths(status: &v1::TaskStatus) -> Vec<&str> {
    status.outputs.iter().map(|o| o.path.as_str()).collect()
}

#[tokio::test]
async fn outputs_are_uploaded_before_the_terminal_status_lists_them() {
    let mut master = FakeMaster::start().await;
    let agent = agent(&mut master).await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO));
    master
        .launch(FRAMEWORK, task("out-1", &digest, &["outputs", "3", "1000"]))
        .await;
    let done = master.statuses_until_terminal("out-1").await;
    let done = done.last().unwrap();
    assert_eq!(state(done), TaskState::Finished, "{}", done.message);
    assert_eq!(
        paths(done),
        [
            "data/part-0.bin",
            "data/part-1.bin",
            "data/part-2.bin",
            "summary.txt"
        ]
    );
    for (i, output) in done.outputs[..3].iter().enumerate() {
        let expected = vec![i as u8; 1000];
        assert_eq!(output.size, 1000);
        assert_eq!(output.digest, Digest::of(&expected).to_string());
        assert_eq!(master.artifact(&output.digest), Some(expected));
    }
    let summary = master.artifact(&done.outputs[3].digest).unwrap();
    assert_eq!(summary, b"3 parts of 1000 bytes\n");
    assert!(
        done.message.ends_with("outputs: kept 4 files (3022 bytes)"),
        "{}",
        done.message
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn outputs_past_the_disk_limit_end_the_task_and_what_was_kept_is_stated() {
    let mut master = FakeMaster::start().await;
    let agent = agent(&mut master).await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO));
    let mut info = task("full-1", &digest, &["outputs", "4", "1048576"]);
    info.resources.as_mut().unwrap().disk_bytes = (2 << 20) + (512 << 10);
    master.launch(FRAMEWORK, info).await;
    let done = master.statuses_until_terminal("full-1").await;
    let done = done.last().unwrap();
    assert_eq!(state(done), TaskState::Failed);
    assert_eq!(reason(done), Reason::DiskLimit);
    // Two whole parts and the third as far as the disk allowed.
    assert_eq!(
        paths(done),
        ["data/part-0.bin", "data/part-1.bin", "data/part-2.bin"]
    );
    assert_eq!(done.outputs[0].size, 1 << 20);
    assert!(done.outputs[2].size < 1 << 20);
    assert!(
        done.message
            .starts_with("disk limit reached; outputs: kept 3 files ("),
        "{}",
        done.message
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn a_full_output_store_keeps_nothing_and_says_so() {
    let mut master = FakeMaster::start().await;
    master.refuse_outputs();
    let agent = agent(&mut master).await;
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO));
    master
        .launch(FRAMEWORK, task("nofit-1", &digest, &["outputs", "1", "10"]))
        .await;
    let done = master.statuses_until_terminal("nofit-1").await;
    let done = done.last().unwrap();
    assert_eq!(state(done), TaskState::Finished);
    assert!(done.outputs.is_empty());
    let not_kept = "data/part-0.bin and every file after it (the output store is full)";
    assert_eq!(
        done.message,
        format!("exited with code 0; outputs: kept 0 files (0 bytes); not kept: {not_kept}")
    );
    assert_eq!(done.outputs_not_kept, not_kept);
    agent.shutdown().await;
}

#[tokio::test]
async fn an_artifact_input_is_fetched_by_digest_and_checked() {
    let mut master = FakeMaster::start().await;
    let agent = agent(&mut master).await;
    let module = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::SDK_DEMO));
    let data = master.add_module(b"abcdef".to_vec());
    let mut info = task("rev-1", &module, &["reverse", "/in/data.bin", "fedcba.txt"]);
    info.inputs = vec![v1::InputFile {
        path: "in/data.bin".into(),
        source: Some(v1::input_file::Source::Artifact(data)),
    }];
    master.launch(FRAMEWORK, info).await;
    let done = master.statuses_until_terminal("rev-1").await;
    let done = done.last().unwrap();
    assert_eq!(state(done), TaskState::Finished, "{}", done.message);
    assert_eq!(paths(done), ["fedcba.txt"]);
    assert_eq!(master.artifact(&done.outputs[0].digest).unwrap(), b"fedcba");

    // An artifact the master does not hold fails the launch, naming it.
    let unknown = Digest::of(b"nobody stored this").to_string();
    let mut info = task("rev-2", &module, &["reverse", "/in/x", "y"]);
    info.inputs = vec![v1::InputFile {
        path: "in/x".into(),
        source: Some(v1::input_file::Source::Artifact(unknown.clone())),
    }];
    master.launch(FRAMEWORK, info).await;
    let failed = master.statuses_until_terminal("rev-2").await;
    let failed = failed.last().unwrap();
    assert_eq!(reason(failed), Reason::InputUnavailable);
    assert!(failed.message.contains(&unknown), "{}", failed.message);
    agent.shutdown().await;
}
