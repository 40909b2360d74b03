//! The agent's checkpoint: what must survive the agent process — its id, the highest master
//! epoch it has seen, its tasks, and the status updates not yet acknowledged.
//!
//! Writes go through one writer thread that commits in groups: it takes every op queued
//! since its last commit, applies them in one redb transaction and makes it durable with a
//! single fsync. A status update is handed to the master link only once the transaction
//! holding it is durable, so an update the master has seen is never lost by a crash, while
//! the agent pays one fsync per burst of updates rather than one per update (the agent aims
//! at 10,000 tasks/s, three updates each; an fsync costs a millisecond or more).
//!
//! ```text
//!   Node::emit ──Op::Task, Op::Update──┐
//!   Node::acknowledge ──Op::Acked──────┤ FIFO   ┌──────── writer thread ────────┐
//!   Registered ──Op::AgentId───────────┼──────► │ drain queue ─► 1 transaction │
//!   new epoch ──Op::Epoch + sync───────┘        │ ─► commit (fsync) ─► release  │
//!                                               └───────────────┬───────────────┘
//!                      updates of the batch, in order ◄─────────┘ (then sent to the master)
//! ```
//!
//! Everything is applied in the order it was queued, so a later update never becomes durable
//! before an earlier one, and an acknowledgement queued before an update is durable no later
//! than it. Acknowledgements are not waited for: one lost in a crash only means the update is
//! delivered once more (at least once; the SDK deduplicates). So a batch holding nothing
//! anyone waits for is committed without an fsync (see [`awaited`]): a short task's three
//! acknowledgements cost no disk flush of their own. A newer epoch is waited for
//! (`sync`) before the agent acts on its commands, so fencing holds across restarts.

mod store;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use corral_proto::v1;
use corral_types::AgentId;
use tokio::sync::oneshot;

pub(crate) use store::{Op, Recovered, TaskRecord};

use super::status::TaskKey;

/// The checkpoint's file name in the agent's work directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.redb";

/// Most ops in one transaction: bounds a commit's latency and memory under a flood.
pub(crate) const MAX_BATCH: usize = 8192;

/// What to do when the checkpoint cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Recover {
    /// Stop with an error: the operator decides (the default).
    #[default]
    Strict,
    /// Set the unreadable checkpoint aside, remove the old sandboxes and compiled modules,
    /// and start as a new agent; the master reports the old agent's tasks lost.
    Cleanup,
}

/// The checkpoint could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file is damaged or not a checkpoint this agent can read.
    #[error(
        "checkpoint {} is corrupt: {reason}. The agent cannot tell which tasks it ran or which \
         status updates were acknowledged, so it will not guess. To start over as a new agent \
         (the file is kept aside, old sandboxes are removed and the master reports the old \
         tasks lost), start it with --recover=cleanup",
        path.display()
    )]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another agent process has the checkpoint open.
    #[error(
        "checkpoint {} is in use by another agent process; each agent needs its own work directory",
        path.display()
    )]
    InUse {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// The file could not be read or written.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the checkpoint in `work_dir`, applying `recover` if it cannot be read. Returns the
/// open store and what it held (nothing after a cleanup). Blocking.
pub(crate) fn open(
    work_dir: &Path,
    recover: Recover,
) -> Result<(redb::Database, Recovered), CheckpointError> {
    let path = work_dir.join(CHECKPOINT_FILE);
    std::fs::create_dir_all(work_dir).map_err(|source| CheckpointError::Io {
        path: work_dir.to_owned(),
        source,
    })?;
    match open_guarded(&path) {
        Err(CheckpointError::Corrupt { reason, .. }) if recover == Recover::Cleanup => {
            tracing::warn!(path = %path.display(), %reason, "checkpoint is corrupt; starting over as a new agent");
            clean_up(work_dir, &path)?;
            open_guarded(&path)
        }
        opened => opened,
    }
}

/// [`store::open`], with a panic of the store on a damaged file reported as corruption.
fn open_guarded(path: &Path) -> Result<(redb::Database, Recovered), CheckpointError> {
    std::panic::catch_unwind(|| store::open(path)).unwrap_or_else(|_| {
        Err(CheckpointError::Corrupt {
            path: path.to_owned(),
            reason: "the store failed while reading it".into(),
        })
    })
}

/// Moves the corrupt checkpoint aside (for inspection) and removes what belonged to the old
/// agent: its sandboxes, and its compiled modules (native code is loaded without checks,
/// so none of it is trusted after the disk lost data).
fn clean_up(work_dir: &Path, checkpoint: &Path) -> Result<(), CheckpointError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = checkpoint.with_extension(format!("redb.corrupt-{stamp}"));
    std::fs::rename(checkpoint, &aside).map_err(|source| CheckpointError::Io {
        path: checkpoint.to_owned(),
        source,
    })?;
    tracing::warn!(kept = %aside.display(), "corrupt checkpoint set aside");
    for dir in ["sandboxes", "modules"] {
        let dir = work_dir.join(dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CheckpointError::Io { path: dir, source }),
        }
    }
    Ok(())
}

/// What the checkpoint held, with typed ids: what the node takes back at start.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    pub(crate) agent_id: Option<AgentId>,
    pub(crate) highest_epoch: u64,
    pub(crate) tasks: Vec<(TaskKey, TaskRecord)>,
    /// Unacknowledged updates by sequence number, in order.
    pub(crate) updates: Vec<(u64, TaskKey, v1::TaskStatus)>,
    /// The highest sequence number in the checkpoint, counting updates left out.
    pub(crate) last_seq: u64,
}

impl Recovered {
    /// Parses the ids. This agent writes only valid ones, so a record or update with invalid
    /// ids is damage confined to itself: it is left out with a warning rather than taken back
    /// under an id no message could name (its sequence number still counts, so no new update
    /// reuses it).
    pub(crate) fn restore(self) -> Restored {
        let agent_id = self.agent_id.and_then(|id| {
            AgentId::new(&id)
                .inspect_err(|error| tracing::warn!(%error, "ignoring the checkpoint's agent id"))
                .ok()
        });
        let tasks = self
            .tasks
            .into_iter()
            .filter_map(
                |record| match TaskKey::parse(&record.framework_id, &record.task_id) {
                    Ok(key) => Some((key, record)),
                    Err(error) => {
                        tracing::warn!(%error, "ignoring a checkpointed task with invalid ids");
                        None
                    }
                },
            )
            .collect();
        let last_seq = self.updates.last().map_or(0, |(seq, _)| *seq);
        let updates = self
            .updates
            .into_iter()
            .filter_map(
                |(seq, status)| match TaskKey::parse(&status.framework_id, &status.task_id) {
                    Ok(key) => Some((seq, key, status)),
                    Err(error) => {
                        tracing::warn!(seq, %error, "ignoring a checkpointed update with invalid ids");
                        None
                    }
                },
            )
            .collect();
        Restored {
            agent_id,
            highest_epoch: self.highest_epoch,
            tasks,
            updates,
            last_seq,
        }
    }
}

/// Called on the writer thread with the updates of each durable batch, in order.
pub(crate) type OnDurable = Box<dyn Fn(Vec<(u64, v1::TaskStatus)>) + Send>;

#[expect(
    clippy::large_enum_variant,
    reason = "writes are nearly every command: boxing them would allocate for each to save \
              memory on the rare sync"
)]
enum Command {
    Write(Op),
    /// Answered once everything queued before it is durable (`false` if it never will be).
    Sync(oneshot::Sender<bool>),
}

/// The handle on the writer thread. Ops queued after [`Checkpoint::close`] are dropped.
pub(crate) struct Checkpoint {
    queue: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Starts the writer thread on `db` (at `path`, reopened after a failed commit).
    pub(crate) fn start(
        db: redb::Database,
        path: PathBuf,
        on_durable: OnDurable,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("corral-checkpoint".into())
            .spawn(move || write_loop(db, &path, &rx, &on_durable))?;
        Ok(Self {
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues `op`; it becomes durable with the next commit.
    pub(crate) fn write(&self, op: Op) {
        self.send(Command::Write(op));
    }

    /// Waits until everything queued so far is durable; `false` if the checkpoint closed
    /// first.
    pub(crate) async fn sync(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Sync(tx));
        rx.await.unwrap_or(false)
    }

    fn send(&self, command: Command) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queue.as_ref() {
            let _ = queue.send(command);
        }
    }

    /// Commits what is queued, stops the writer and closes the file. Blocking (briefly).
    pub(crate) fn close(&self) {
        drop(
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("checkpoint writer panicked");
        }
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        self.close();
    }
}

/// Group commit until the queue is closed and drained.
fn write_loop(
    db: redb::Database,
    path: &Path,
    queue: &mpsc::Receiver<Command>,
    on_durable: &OnDurable,
) {
    let mut db = Some(db);
    let mut batch: Vec<Command> = Vec::new();
    let mut closed = false;
    let mut retry = Duration::from_millis(50);
    loop {
        if batch.is_empty() {
            match queue.recv() {
                Ok(command) => batch.push(command),
                Err(mpsc::RecvError) => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let ops = batch.iter().filter_map(|c| match c {
            Command::Write(op) => Some(op),
            Command::Sync(_) => None,
        });
        let durability = if awaited(&batch) {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        // A failed commit can leave the handle unusable: it is dropped and the file reopened.
        let committed = match db.take().map_or_else(|| reopen(path), Ok) {
            Ok(handle) => store::commit(&handle, ops, durability)
                .map(|()| db = Some(handle))
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        match committed {
            Ok(()) => {
                retry = Duration::from_millis(50);
                release(std::mem::take(&mut batch), on_durable);
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, pending = batch.len(), "cannot write the checkpoint; status updates wait until it can");
                if closed {
                    tracing::error!(
                        pending = batch.len(),
                        "agent stopping: checkpoint changes not recorded"
                    );
                    return;
                }
                std::thread::sleep(retry);
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Whether anything in `batch` needs it on disk before going on: an update to send, a sync,
/// the agent's id or an epoch. A batch of only acknowledgements, forgotten tasks and task
/// records is committed without an fsync; the next durable commit (or closing the file)
/// persists it too, and losing it in a crash only means an update delivered once more, a
/// finished task kept a little longer, or a run's files swept at the next start.
fn awaited(batch: &[Command]) -> bool {
    batch.iter().any(|command| match command {
        Command::Sync(_) => true,
        Command::Write(op) => match op {
            Op::Update(..) | Op::AgentId(_) | Op::Epoch(_) => true,
            Op::Task(_) | Op::Acked(_) | Op::Forget(_) => false,
        },
    })
}

fn reopen(path: &Path) -> Result<redb::Database, String> {
    open_guarded(path)
        .map(|(db, _)| db)
        .map_err(|e| e.to_string())
}

/// Hands a durable batch's updates on and answers its syncs.
fn release(batch: Vec<Command>, on_durable: &OnDurable) {
    let mut updates = Vec::new();
    let mut syncs = Vec::new();
    for command in batch {
        match command {
            Command::Write(Op::Update(seq, status)) => updates.push((seq, status)),
            Command::Write(_) => {}
            Command::Sync(done) => syncs.push(done),
        }
    }
    if !updates.is_empty() {
        on_durable(updates);
    }
    for done in syncs {
        let _ = done.send(true);
    }
}

#[cfg(test)]
mod tests;
