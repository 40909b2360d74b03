#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use corral_proto::{ProtoEnum, v1};
use corral_types::{AgentId, Reason, StatusSource, TaskState};

use super::*;
use crate::node::status::TaskKey;

fn status(task: &str, seq: u8, state: TaskState) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task.into(),
        framework_id: "fw".into(),
        agent_id: "S1".into(),
        state: state.to_i32(),
        reason: Reason::Launched.to_i32(),
        message: String::new(),
        uuid: vec![seq; 16].into(),
        source: StatusSource::Agent.to_i32(),
        ..Default::default()
    }
}

fn record(task: &str, state: TaskState) -> TaskRecord {
    TaskRecord {
        framework_id: "fw".into(),
        task_id: task.into(),
        sandbox: format!("/sandboxes/fw/{task}.1"),
        state: state.to_i32(),
        stdout: state.is_terminal().then(|| b"out".to_vec()),
        stderr: None,
    }
}

type Released = Arc<Mutex<Vec<(u64, v1::TaskStatus)>>>;

fn start(dir: &Path) -> (Checkpoint, Recovered, Released) {
    let (db, recovered) = open(dir, Recover::Strict).unwrap();
    let released: Released = Arc::default();
    let sink = released.clone();
    let checkpoint = Checkpoint::start(
        db,
        dir.join(CHECKPOINT_FILE),
        Box::new(move |batch| sink.lock().unwrap().extend(batch)),
    )
    .unwrap();
    (checkpoint, recovered, released)
}

fn corrupt_message(error: &CheckpointError) -> String {
    assert!(
        matches!(error, CheckpointError::Corrupt { .. }),
        "{error:?}"
    );
    error.to_string()
}

#[tokio::test]
async fn what_was_written_is_recovered_and_acknowledged_updates_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, recovered, released) = start(dir.path());
    assert!(recovered.agent_id.is_none());
    assert_eq!(recovered.highest_epoch, 0);
    assert!(recovered.tasks.is_empty() && recovered.updates.is_empty());

    checkpoint.write(Op::AgentId(AgentId::new("S1").unwrap()));
    checkpoint.write(Op::Epoch(7));
    checkpoint.write(Op::Task(record("a", TaskState::Starting)));
    checkpoint.write(Op::Update(1, status("a", 1, TaskState::Starting)));
    checkpoint.write(Op::Task(record("b", TaskState::Running)));
    checkpoint.write(Op::Update(2, status("b", 2, TaskState::Starting)));
    checkpoint.write(Op::Update(3, status("b", 3, TaskState::Running)));
    checkpoint.write(Op::Update(4, status("a", 4, TaskState::Running)));
    checkpoint.write(Op::Task(record("a", TaskState::Finished)));
    checkpoint.write(Op::Update(5, status("a", 5, TaskState::Finished)));
    checkpoint.write(Op::Acked(2));
    assert!(checkpoint.sync().await);
    let seqs: Vec<u64> = released.lock().unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "every update released, in order");
    for seq in [1, 4, 5] {
        checkpoint.write(Op::Acked(seq));
    }
    checkpoint.write(Op::Forget(TaskKey::parse("fw", "a").unwrap()));
    checkpoint.close();
    assert!(
        !checkpoint.sync().await,
        "a closed checkpoint syncs nothing"
    );

    let (checkpoint, recovered, _) = start(dir.path());
    assert_eq!(recovered.agent_id.as_deref(), Some("S1"));
    assert_eq!(recovered.highest_epoch, 7);
    assert_eq!(recovered.tasks, [record("b", TaskState::Running)]);
    assert_eq!(
        recovered.updates,
        [(3, status("b", 3, TaskState::Running))],
        "acknowledged updates are gone"
    );
    checkpoint.close();
}

#[tokio::test]
async fn a_second_agent_on_the_same_work_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _, _) = start(dir.path());
    let error = open(dir.path(), Recover::Cleanup).unwrap_err();
    assert!(matches!(error, CheckpointError::InUse { .. }), "{error:?}");
    assert!(error.to_string().contains("in use by another agent"));
    checkpoint.close();
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_corrupt_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CHECKPOINT_FILE);
    std::fs::write(
        &path,
        b"this is not a redb file, just some text that got here",
    )
    .unwrap();
    let message = corrupt_message(&open(dir.path(), Recover::Strict).unwrap_err());
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("--recover=cleanup"), "{message}");
    assert!(path.exists(), "a strict open keeps the file");
}

#[tokio::test]
async fn damaged_pages_are_reported_as_corrupt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _, _) = start(dir.path());
    for seq in 0..200 {
        checkpoint.write(Op::Update(seq, status("a", 1, TaskState::Running)));
    }
    checkpoint.close();
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip bytes past the header, where the tables' pages are.
    for byte in bytes.iter_mut().skip(4096).step_by(7) {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    corrupt_message(&open(dir.path(), Recover::Strict).unwrap_err());
}

#[test]
fn an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CHECKPOINT_FILE);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap()
            .insert("format", 99u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let message = corrupt_message(&open(dir.path(), Recover::Strict).unwrap_err());
    assert!(message.contains("unknown format 99"), "{message}");
}

#[test]
fn cleanup_sets_a_corrupt_checkpoint_aside_and_removes_the_old_agent_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CHECKPOINT_FILE);
    std::fs::write(&path, b"garbage garbage garbage garbage garbage garbage").unwrap();
    let stdout = dir.path().join("sandboxes/fw/t/1/stdout");
    std::fs::create_dir_all(stdout.parent().unwrap()).unwrap();
    std::fs::write(&stdout, b"old output").unwrap();
    std::fs::create_dir_all(dir.path().join("modules/x")).unwrap();

    let (db, recovered) = open(dir.path(), Recover::Cleanup).unwrap();
    drop(db);
    assert!(recovered.agent_id.is_none(), "a new agent");
    assert!(recovered.tasks.is_empty() && recovered.updates.is_empty());
    assert!(!dir.path().join("sandboxes").exists());
    assert!(!dir.path().join("modules").exists());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("checkpoint.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file is kept for inspection");
    // The fresh checkpoint opens strictly.
    open(dir.path(), Recover::Strict).unwrap();
}

#[test]
fn only_batches_someone_waits_for_are_flushed_to_disk() {
    let (tx, _rx) = oneshot::channel();
    let lazy = [
        Command::Write(Op::Acked(1)),
        Command::Write(Op::Task(record("t1", TaskState::Finished))),
        Command::Write(Op::Forget(TaskKey::parse("fw", "t1").unwrap())),
    ];
    assert!(!awaited(&lazy));
    let mut with_update: Vec<Command> = lazy.into_iter().collect();
    with_update.push(Command::Write(Op::Update(
        2,
        status("t2", 2, TaskState::Running),
    )));
    assert!(awaited(&with_update));
    assert!(awaited(&[Command::Sync(tx)]));
    assert!(awaited(&[Command::Write(Op::Epoch(3))]));
    assert!(awaited(&[Command::Write(Op::AgentId(
        AgentId::new("a").unwrap()
    ))]));
}

#[test]
fn records_and_updates_with_invalid_ids_are_left_out_of_what_is_restored() {
    let mut bad_record = record("a", TaskState::Running);
    bad_record.framework_id = "fw/1".into();
    let mut bad_update = status("b", 9, TaskState::Running);
    bad_update.task_id = "..".into();
    let recovered = Recovered {
        agent_id: Some("S1".into()),
        highest_epoch: 3,
        tasks: vec![bad_record, record("b", TaskState::Running)],
        updates: vec![(4, status("b", 4, TaskState::Starting)), (9, bad_update)],
    };
    let restored = recovered.restore();
    assert_eq!(restored.agent_id, Some(AgentId::new("S1").unwrap()));
    assert_eq!(restored.highest_epoch, 3);
    let b = TaskKey::parse("fw", "b").unwrap();
    assert_eq!(
        restored.tasks,
        [(b.clone(), record("b", TaskState::Running))]
    );
    assert_eq!(
        restored.updates,
        [(4, b, status("b", 4, TaskState::Starting))]
    );
    assert_eq!(restored.last_seq, 9, "the update left out keeps its number");
    let unreadable_id = Recovered {
        agent_id: Some("a/b".into()),
        ..Recovered::default()
    };
    assert_eq!(unreadable_id.restore().agent_id, None);
}
