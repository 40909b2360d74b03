//! The checkpoint's on-disk form: one redb file, `<work_dir>/checkpoint.redb`.
//!
//! | table     | key                   | value                                  |
//! |-----------|-----------------------|----------------------------------------|
//! | `meta`    | `format`, `agent_id`, `epoch` | format version, id, highest epoch |
//! | `tasks`   | (framework, task)     | [`TaskRecord`] (protobuf)              |
//! | `updates` | sequence number       | `v1::TaskStatus` (protobuf)            |
//!
//! Updates are keyed by the agent-wide sequence number they were produced with, so reading
//! the table in key order gives them in order per task. A task's record lives while the task
//! runs or has unacknowledged updates; then it is forgotten, which keeps the file small.

use std::path::Path;

use corral_proto::v1;
use prost::Message as _;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::CheckpointError;
use crate::node::status::TaskKey;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TASKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tasks");
const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("updates");

const FORMAT_KEY: &str = "format";
const AGENT_ID_KEY: &str = "agent_id";
const EPOCH_KEY: &str = "epoch";
/// Bumped when the layout changes incompatibly; an unknown one is refused, not guessed at.
const FORMAT: u64 = 1;

/// The redb page cache: the checkpoint holds live tasks and pending updates only.
const CACHE_BYTES: usize = 16 << 20;

/// What the checkpoint remembers of a task.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub(crate) struct TaskRecord {
    #[prost(string, tag = "1")]
    pub(crate) framework_id: String,
    #[prost(string, tag = "2")]
    pub(crate) task_id: String,
    /// The base path of the run's sandbox (`SandboxPaths::base`); empty before launch.
    #[prost(string, tag = "3")]
    pub(crate) sandbox: String,
    /// The state of the task's latest update (`v1::TaskState`).
    #[prost(int32, tag = "4")]
    pub(crate) state: i32,
    /// A finished run's stdout, when it was small enough to be kept in memory.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub(crate) stdout: Option<Vec<u8>>,
    /// Likewise its stderr.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub(crate) stderr: Option<Vec<u8>>,
}

/// One change to the checkpoint.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "status updates are most of the ops: boxing them would allocate for each"
)]
pub(crate) enum Op {
    AgentId(corral_types::AgentId),
    Epoch(u64),
    /// Inserts or replaces a task's record.
    Task(TaskRecord),
    /// A status update, to deliver after this op is durable.
    Update(u64, v1::TaskStatus),
    /// The update with this sequence number was acknowledged.
    Acked(u64),
    /// The task ended and all its updates were acknowledged.
    Forget(TaskKey),
}

/// Everything the checkpoint held when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) agent_id: Option<String>,
    pub(crate) highest_epoch: u64,
    pub(crate) tasks: Vec<TaskRecord>,
    /// Unacknowledged updates by sequence number, in order.
    pub(crate) updates: Vec<(u64, v1::TaskStatus)>,
}

/// Opens (or creates) the checkpoint at `path` and reads it whole.
///
/// redb verifies every page's checksum on open, so a damaged file is reported as
/// [`CheckpointError::Corrupt`] rather than trusted; an interrupted commit (the agent was
/// killed) is rolled back to the last durable one, which is not corruption.
pub(crate) fn open(path: &Path) -> Result<(Database, Recovered), CheckpointError> {
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|e| open_error(path, e))?;
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    initialize(&db).map_err(|e| classify(path, e))?;
    let recovered = read(&db).map_err(|e| classify(path, e))?.map_err(corrupt)?;
    Ok((db, recovered))
}

/// Creates the tables and stamps the format of a new file.
fn initialize(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        if meta.get(FORMAT_KEY)?.is_none() {
            meta.insert(FORMAT_KEY, FORMAT.to_le_bytes().as_slice())?;
        }
        txn.open_table(TASKS)?;
        txn.open_table(UPDATES)?;
    }
    txn.commit()?;
    Ok(())
}

/// Reads the whole checkpoint; the inner error says what is wrong with its contents.
fn read(db: &Database) -> Result<Result<Recovered, String>, redb::Error> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let number = |key: &str| -> Result<Result<Option<u64>, String>, redb::Error> {
        Ok(match meta.get(key)? {
            None => Ok(None),
            Some(value) => <[u8; 8]>::try_from(value.value())
                .map(|bytes| Some(u64::from_le_bytes(bytes)))
                .map_err(|_| format!("meta entry `{key}` is not a 64-bit number")),
        })
    };
    match number(FORMAT_KEY)? {
        Ok(Some(FORMAT)) => {}
        Ok(Some(other)) => {
            return Ok(Err(format!(
                "unknown format {other} (this agent reads format {FORMAT})"
            )));
        }
        Ok(None) => return Ok(Err("no format stamp".into())),
        Err(reason) => return Ok(Err(reason)),
    }
    let highest_epoch = match number(EPOCH_KEY)? {
        Ok(epoch) => epoch.unwrap_or(0),
        Err(reason) => return Ok(Err(reason)),
    };
    let agent_id = match meta.get(AGENT_ID_KEY)? {
        None => None,
        Some(value) => match std::str::from_utf8(value.value()) {
            Ok(id) if corral_types::AgentId::new(id).is_ok() => Some(id.to_owned()),
            _ => return Ok(Err("the agent id is not a valid id".into())),
        },
    };
    let mut tasks = Vec::new();
    for entry in txn.open_table(TASKS)?.iter()? {
        let (key, value) = entry?;
        let (framework_id, task_id) = key.value();
        match TaskRecord::decode(value.value()) {
            Ok(record) if record.framework_id == framework_id && record.task_id == task_id => {
                tasks.push(record)
            }
            _ => {
                return Ok(Err(format!(
                    "the record of task {task_id} of framework {framework_id} cannot be decoded"
                )));
            }
        }
    }
    let mut updates = Vec::new();
    for entry in txn.open_table(UPDATES)?.iter()? {
        let (seq, value) = entry?;
        let seq = seq.value();
        match v1::TaskStatus::decode(value.value()) {
            Ok(status) if corral_proto::TaskStatus::try_from(&status).is_ok() => {
                updates.push((seq, status))
            }
            _ => return Ok(Err(format!("status update {seq} cannot be decoded"))),
        }
    }
    Ok(Ok(Recovered {
        agent_id,
        highest_epoch,
        tasks,
        updates,
    }))
}

/// Applies `ops` in one transaction, durable when this returns.
pub(crate) fn commit<'a>(
    db: &Database,
    ops: impl IntoIterator<Item = &'a Op>,
    durability: redb::Durability,
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    {
        let mut meta = txn.open_table(META)?;
        let mut tasks = txn.open_table(TASKS)?;
        let mut updates = txn.open_table(UPDATES)?;
        for op in ops {
            match op {
                Op::AgentId(id) => {
                    meta.insert(AGENT_ID_KEY, id.as_str().as_bytes())?;
                }
                Op::Epoch(epoch) => {
                    meta.insert(EPOCH_KEY, epoch.to_le_bytes().as_slice())?;
                }
                Op::Task(record) => {
                    let key = (record.framework_id.as_str(), record.task_id.as_str());
                    tasks.insert(key, record.encode_to_vec().as_slice())?;
                }
                Op::Update(seq, status) => {
                    updates.insert(*seq, status.encode_to_vec().as_slice())?;
                }
                Op::Acked(seq) => {
                    updates.remove(*seq)?;
                }
                Op::Forget(key) => {
                    tasks.remove((key.framework_id.as_str(), key.task_id.as_str()))?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn open_error(path: &Path, error: redb::DatabaseError) -> CheckpointError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            CheckpointError::InUse {
                path: path.to_owned(),
            }
        }
        other => classify(path, other.into()),
    }
}

/// Whether a store error means the file is damaged or only that it could not be read now.
pub(super) fn classify(path: &Path, error: redb::Error) -> CheckpointError {
    use std::io::ErrorKind;
    match error {
        redb::Error::Io(source)
            if !matches!(
                source.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::InvalidData
            ) =>
        {
            CheckpointError::Io {
                path: path.to_owned(),
                source,
            }
        }
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            CheckpointError::InUse {
                path: path.to_owned(),
            }
        }
        other => CheckpointError::Corrupt {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}
