//! Agent restarts against the fake master: what the checkpoint carries over (id, epoch,
//! unacknowledged updates), how running tasks are reported, and what a corrupt checkpoint
//! does. `Agent::halt` stands in for `kill -9`: what was queued for the checkpoint is
//! committed, nothing after it.

use std::path::Path;

use corral_agent::node::{Agent, CHECKPOINT_FILE, CheckpointError, Recover};
use corral_proto::v1;
use corral_types::{Reason, TaskState};

use crate::fake_master::{Event, FakeMaster};
use crate::node::{
    FRAMEWORK, agent_config, files_client, read_stdout, reason, state, task, work_dir,
};

async fn start(master: &FakeMaster, dir: &Path) -> Agent {
    Agent::start(agent_config(master, dir)).await.unwrap()
}

/// Halts the agent and waits until the master has seen the end of its stream, so that
/// whatever the master hears next comes from the restarted agent.
async fn halt(agent: Agent, master: &mut FakeMaster) {
    agent.halt().await;
    master.disconnected().await;
}

async fn next_reregister(master: &mut FakeMaster) -> v1::agent_message::ReRegister {
    match master.next().await {
        Event::ReRegister(reregister) => reregister,
        other => panic!("expected a re-registration first, got {other:?}"),
    }
}

/// Starts a spinning task and returns its STARTING and RUNNING updates.
async fn spin(master: &mut FakeMaster, task_id: &str) -> (v1::TaskStatus, v1::TaskStatus) {
    let digest = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::LIMITS));
    master
        .launch(FRAMEWORK, task(task_id, &digest, &["spin"]))
        .await;
    let starting = master.next_status_of(task_id).await;
    assert_eq!(state(&starting), TaskState::Starting);
    // Resends may repeat STARTING while the module compiles.
    loop {
        let status = master.next_status_of(task_id).await;
        if state(&status) == TaskState::Running {
            return (starting, status);
        }
    }
}

fn of_task<'a>(updates: &'a [v1::TaskStatus], task_id: &str) -> Vec<&'a v1::TaskStatus> {
    updates.iter().filter(|s| s.task_id == task_id).collect()
}

fn assert_failed_by_restart(status: &v1::TaskStatus) {
    assert_eq!(state(status), TaskState::Failed, "{status:?}");
    assert_eq!(reason(status), Reason::AgentRestarted, "{status:?}");
    assert_eq!(status.uuid.len(), 16, "acknowledged like any agent update");
}

#[tokio::test]
async fn agent_restart_reregisters_with_the_same_id_and_fails_running_tasks() {
    let mut master = FakeMaster::start().await;
    let dir = work_dir();
    let agent = start(&master, &dir).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    let (starting, running) = spin(&mut master, "spin-1").await;
    halt(agent, &mut master).await;

    let agent = start(&master, &dir).await;
    let reregister = next_reregister(&mut master).await;
    assert_eq!(reregister.agent_id, "agent-1");
    assert!(reregister.tasks.is_empty(), "no task survives the restart");
    let updates = &reregister.unacknowledged_updates;
    assert_eq!(updates.len(), 3, "{updates:?}");
    assert_eq!(updates[0], starting);
    assert_eq!(updates[1], running);
    assert_failed_by_restart(&updates[2]);
    assert_eq!(updates[2].agent_id, "agent-1");
    assert_eq!(agent.registered().await.to_string(), "agent-1");
    // The interrupted run's files are still served.
    let listing = files_client(&agent)
        .await
        .list_files(v1::ListFilesRequest {
            task_id: "spin-1".into(),
            path: String::new(),
            framework_id: Some(FRAMEWORK.into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        listing.files.iter().any(|f| f.path == "root"),
        "{listing:?}"
    );

    // The FAILED update is kept until acknowledged, like any other.
    let failed = updates[2].clone();
    loop {
        if master.next_status_of("spin-1").await.uuid == failed.uuid {
            break;
        }
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn agent_restart_redelivers_unacked_updates_in_order_per_task() {
    let mut master = FakeMaster::start().await;
    let dir = work_dir();
    let agent = start(&master, &dir).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    let hello = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("hello-1", &hello, &[])).await;
    let finished = master.statuses_until_terminal("hello-1").await;
    master.acknowledge(&finished[0]).await;
    let (spin_starting, spin_running) = spin(&mut master, "spin-2").await;
    master.handled(FRAMEWORK).await;
    halt(agent, &mut master).await;

    let agent = start(&master, &dir).await;
    let reregister = next_reregister(&mut master).await;
    let updates = &reregister.unacknowledged_updates;
    let hello_updates: Vec<_> = of_task(updates, "hello-1").into_iter().cloned().collect();
    assert_eq!(
        hello_updates,
        finished[1..],
        "RUNNING and FINISHED again, not the acknowledged STARTING"
    );
    let spin_updates = of_task(updates, "spin-2");
    assert_eq!(spin_updates.len(), 3, "{spin_updates:?}");
    assert_eq!(*spin_updates[0], spin_starting);
    assert_eq!(*spin_updates[1], spin_running);
    assert_failed_by_restart(spin_updates[2]);
    // Across tasks, the order they were produced in: hello-1 ended before spin-2 started.
    let position = |uuid: &[u8]| updates.iter().position(|s| s.uuid == uuid).unwrap();
    assert!(position(&finished[2].uuid) < position(&spin_starting.uuid));
    agent.shutdown().await;
}

#[tokio::test]
async fn agent_restart_never_redelivers_acknowledged_updates() {
    let mut master = FakeMaster::start().await;
    let dir = work_dir();
    let agent = start(&master, &dir).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    let hello = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("hello-3", &hello, &[])).await;
    let finished = master.statuses_until_terminal("hello-3").await;
    let (starting, running) = spin(&mut master, "spin-3").await;
    let acknowledged: Vec<v1::TaskStatus> = finished
        .iter()
        .cloned()
        .chain([starting, running])
        .collect();
    for status in &acknowledged {
        master.acknowledge(status).await;
    }
    master.handled(FRAMEWORK).await;
    halt(agent, &mut master).await;

    let agent = start(&master, &dir).await;
    let reregister = next_reregister(&mut master).await;
    let updates = &reregister.unacknowledged_updates;
    assert_eq!(
        updates.len(),
        1,
        "only the restart's own update: {updates:?}"
    );
    assert_eq!(updates[0].task_id, "spin-3");
    assert_failed_by_restart(&updates[0]);
    master.acknowledge(&updates[0]).await;

    // Resends after the restart (every 300 ms) carry none of them either: until the probe
    // task's unacknowledged FINISHED has been sent three times (twice resent), nothing
    // acknowledged comes.
    master.launch(FRAMEWORK, task("probe", &hello, &[])).await;
    let mut probe_finished_sent = 0;
    while probe_finished_sent < 3 {
        let status = master.next_status().await;
        assert!(
            acknowledged
                .iter()
                .chain(std::iter::once(&updates[0]))
                .all(|a| a.uuid != status.uuid),
            "an acknowledged update came again: {status:?}"
        );
        if status.task_id == "probe" && state(&status).is_terminal() {
            probe_finished_sent += 1;
        }
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn a_finished_tasks_logs_are_readable_after_a_restart_and_unknown_runs_are_removed() {
    let mut master = FakeMaster::start().await;
    let dir = work_dir();
    let agent = start(&master, &dir).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    let hello = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("hello-5", &hello, &[])).await;
    for status in master.statuses_until_terminal("hello-5").await {
        master.acknowledge(&status).await;
    }
    master.handled(FRAMEWORK).await;
    halt(agent, &mut master).await;
    // Files of a run the checkpoint never recorded (a crash right after it was created).
    let ghost = dir
        .join("sandboxes")
        .join(FRAMEWORK)
        .join("ghost.0000000000000001");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.with_extension("0000000000000001.stdout"), b"?").unwrap();

    // The output was small enough to be held in memory only; the checkpoint kept it.
    let agent = start(&master, &dir).await;
    let left: Vec<_> = std::fs::read_dir(dir.join("sandboxes").join(FRAMEWORK))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        left.iter().all(|name| !name.starts_with("ghost.")),
        "{left:?}"
    );
    next_reregister(&mut master).await;
    let read = read_stdout(&agent, "hello-5").await;
    assert_eq!(&read.data[..], b"hello from corral\n");
    assert!(read.complete);
    agent.shutdown().await;
}

#[tokio::test]
async fn a_stale_epoch_is_refused_after_a_restart() {
    let mut master = FakeMaster::start().await;
    master.set_epoch(7);
    let dir = work_dir();
    let agent = start(&master, &dir).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    agent.registered().await;
    halt(agent, &mut master).await;

    // A deposed leader (epoch 5) talks to the restarted agent first.
    master.set_epoch(5);
    let agent = start(&master, &dir).await;
    let reregister = next_reregister(&mut master).await;
    assert_eq!(reregister.last_epoch, 7, "the epoch survived the restart");
    let hello = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("stale-1", &hello, &[])).await;

    // The current leader (epoch 8) is obeyed; its probe's update is the first of all, so
    // neither the stale Registered nor the stale launch was acted on.
    master.set_epoch(8);
    master.launch(FRAMEWORK, task("probe", &hello, &[])).await;
    let first = master.next_status().await;
    assert_eq!(first.task_id, "probe");
    assert_eq!(state(&first), TaskState::Starting);
    agent.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_checkpoint_stops_the_agent_with_a_clear_error() {
    let master = FakeMaster::start().await;
    let dir = work_dir();
    let path = dir.join(CHECKPOINT_FILE);
    let garbage = b"not a checkpoint: the disk ate it".to_vec();
    std::fs::write(&path, &garbage).unwrap();

    let error = Agent::start(agent_config(&master, &dir)).await.unwrap_err();
    let corrupt = error.downcast_ref::<CheckpointError>();
    assert!(
        matches!(corrupt, Some(CheckpointError::Corrupt { path: p, .. }) if *p == path),
        "{error:?}"
    );
    let message = error.to_string();
    for expected in [&path.display().to_string(), "corrupt", "--recover=cleanup"] {
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "nothing is lost");
}

#[tokio::test]
async fn recover_cleanup_registers_a_new_agent_and_forgets_the_old_tasks() {
    let mut master = FakeMaster::start().await;
    let dir = work_dir();
    let agent = start(&master, &dir).await;
    assert!(matches!(master.next().await, Event::Register(_)));
    spin(&mut master, "spin-4").await;
    halt(agent, &mut master).await;
    let old_runs = std::fs::read_dir(dir.join("sandboxes").join(FRAMEWORK))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("spin-4.")
        })
        .count();
    assert!(old_runs > 0, "the spinning task has a sandbox");
    std::fs::write(dir.join(CHECKPOINT_FILE), b"scrambled").unwrap();

    let mut config = agent_config(&master, &dir);
    config.recover = Recover::Cleanup;
    let agent = Agent::start(config).await.unwrap();
    let Event::Register(_) = master.next().await else {
        panic!("a cleaned-up agent registers as a new agent");
    };
    assert!(!dir.join("sandboxes").join(FRAMEWORK).exists());
    let kept: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("checkpoint.redb.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt file is kept aside");

    // It knows nothing of the old task: the first update it sends is a new task's.
    let hello = master.add_module(corral_wasm_tasks::bytes(corral_wasm_tasks::HELLO));
    master.launch(FRAMEWORK, task("hello-4", &hello, &[])).await;
    assert_eq!(master.next_status().await.task_id, "hello-4");
    agent.shutdown().await;
}
