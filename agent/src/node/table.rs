//! The task table: the tasks this agent knows, each with its description, its latest update,
//! its run's state and files; and which finished runs keep their files. Plain data, no I/O:
//! the node applies what it returns (checkpoint records to forget, files to remove).
//!
//! A task stays in the table while its run goes on or it has updates to deliver. Once its run
//! ended and its last update was acknowledged it is *settled*: it joins the completed runs (so
//! `corral logs` can still read them), of which the newest `max_completed` are kept. A run
//! that failed before it had a sandbox is kept too: its logs read empty, not unknown.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_proto::v1;
use corral_types::{FrameworkId, Reason, TaskId};

use super::checkpoint::TaskRecord;
use super::runner::RunState;
use super::status::TaskKey;
use crate::output::{RunOutput, Stream};
use crate::sandbox::SandboxPaths;

/// One task and its current run.
#[derive(Debug)]
pub(crate) struct TaskEntry {
    /// As launched, input contents elided (re-registration only needs the description).
    pub(crate) info: v1::TaskInfo,
    pub(crate) latest: Option<v1::TaskStatus>,
    /// The run's sandbox and logs, once launched.
    pub(crate) output: Option<Arc<RunOutput>>,
    pub(crate) run: RunState,
    /// Why the master asked for the run to be killed, for its KILLED update.
    pub(crate) kill_reason: Option<Reason>,
}

impl TaskEntry {
    /// A new run of `info`.
    fn launched(info: v1::TaskInfo) -> Self {
        Self {
            info,
            latest: None,
            output: None,
            run: RunState::preparing(),
            kill_reason: None,
        }
    }

    /// What the checkpoint keeps of this task: with a finished run's in-memory logs.
    pub(crate) fn record(&self, key: &TaskKey) -> TaskRecord {
        let output = self.output.as_ref();
        let inline = |stream| {
            output
                .filter(|_| self.run.is_ended())
                .and_then(|output| output.inline(stream))
        };
        TaskRecord {
            framework_id: key.framework_id.to_string(),
            task_id: key.task_id.to_string(),
            sandbox: output
                .map(|output| output.sandbox().base().display().to_string())
                .unwrap_or_default(),
            state: self.latest.as_ref().map_or(0, |s| s.state),
            stdout: inline(Stream::Stdout),
            stderr: inline(Stream::Stderr),
        }
    }

    fn sandbox_base(&self) -> Option<&Path> {
        self.output.as_ref().map(|output| output.sandbox().base())
    }
}

/// A task taken out of the table: its checkpoint record is to be forgotten and its files, if
/// any, removed.
#[derive(Debug)]
pub(crate) struct Removed {
    pub(crate) key: TaskKey,
    pub(crate) output: Option<Arc<RunOutput>>,
}

/// Why a task's files cannot be served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("no such task")]
    NotFound,
    #[error("task id {0} is used by several frameworks; name the framework")]
    Ambiguous(TaskId),
    #[error("task {0} has no sandbox yet")]
    NoSandbox(TaskId),
}

/// The tasks this agent knows.
#[derive(Debug)]
pub(crate) struct TaskTable {
    tasks: HashMap<TaskKey, TaskEntry>,
    /// Settled runs, oldest first, by the base of their sandbox (`None`: the run failed
    /// before it had one).
    completed: VecDeque<(TaskKey, Option<PathBuf>)>,
    max_completed: usize,
}

impl TaskTable {
    /// An empty table keeping the files of at most `max_completed` finished tasks.
    pub(crate) fn new(max_completed: usize) -> Self {
        Self {
            tasks: HashMap::new(),
            completed: VecDeque::new(),
            max_completed,
        }
    }

    pub(crate) fn get(&self, key: &TaskKey) -> Option<&TaskEntry> {
        self.tasks.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &TaskKey) -> Option<&mut TaskEntry> {
        self.tasks.get_mut(key)
    }

    /// Starts a new run of `key` (its entry in [`RunState::Preparing`]). Refused, returning
    /// `Err`, while an earlier run has not ended; otherwise the earlier run's entry is
    /// replaced and its files (to remove) are returned.
    pub(crate) fn launch(
        &mut self,
        key: &TaskKey,
        info: v1::TaskInfo,
    ) -> Result<Option<Arc<RunOutput>>, AlreadyRunning> {
        if self.tasks.get(key).is_some_and(|e| !e.run.is_ended()) {
            return Err(AlreadyRunning);
        }
        let earlier = self.tasks.insert(key.clone(), TaskEntry::launched(info));
        Ok(earlier.and_then(|entry| entry.output))
    }

    /// Puts back a task the checkpoint held, with the files of its run if it had any. A run
    /// that had not `ended` did not survive the agent's process: the caller reports it failed
    /// straight away, which ends it.
    pub(crate) fn restore(&mut self, key: TaskKey, output: Option<Arc<RunOutput>>, ended: bool) {
        let mut entry = TaskEntry {
            info: v1::TaskInfo {
                task_id: key.task_id.to_string(),
                ..v1::TaskInfo::default()
            },
            latest: None,
            output,
            run: RunState::preparing(),
            kill_reason: None,
        };
        if ended {
            entry.run.end();
        }
        self.tasks.insert(key, entry);
    }

    /// Recovery's last step: `settled` (finished tasks with nothing left to deliver, in
    /// order) become the completed runs.
    pub(crate) fn restore_completed(&mut self, settled: Vec<TaskKey>) -> Vec<Removed> {
        let mut removed = Vec::new();
        for key in settled {
            removed.extend(self.complete(key));
        }
        removed
    }

    /// Tasks whose run has not ended, with their entries.
    pub(crate) fn running(&self) -> impl Iterator<Item = (&TaskKey, &TaskEntry)> {
        self.tasks.iter().filter(|(_, entry)| !entry.run.is_ended())
    }

    /// Every task, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TaskKey, &TaskEntry)> {
        self.tasks.iter()
    }

    /// Every task, in no particular order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&TaskKey, &mut TaskEntry)> {
        self.tasks.iter_mut()
    }

    /// Whether every run has ended.
    pub(crate) fn all_ended(&self) -> bool {
        self.tasks.values().all(|entry| entry.run.is_ended())
    }

    /// The files of every run the table refers to.
    pub(crate) fn sandboxes(&self) -> Vec<SandboxPaths> {
        self.tasks
            .values()
            .filter_map(|entry| Some(entry.output.as_ref()?.sandbox().clone()))
            .collect()
    }

    /// `key`'s run ended and nothing of it is left to deliver: it joins the completed runs,
    /// retiring the oldest beyond the limit. Returns what was removed. Does nothing while
    /// the run goes on.
    pub(crate) fn settle(&mut self, key: &TaskKey) -> Vec<Removed> {
        if !self.tasks.get(key).is_some_and(|e| e.run.is_ended()) {
            return Vec::new();
        }
        self.complete(key.clone())
    }

    /// Adds `key`'s ended run to the completed runs, retiring the oldest beyond the limit.
    fn complete(&mut self, key: TaskKey) -> Vec<Removed> {
        let Some(entry) = self.tasks.get(&key) else {
            return Vec::new();
        };
        let base = entry.sandbox_base().map(Path::to_owned);
        self.completed.push_back((key, base));
        let mut removed = Vec::new();
        while self.completed.len() > self.max_completed {
            let Some((key, base)) = self.completed.pop_front() else {
                break;
            };
            // A relaunch since may have replaced the run this slot was for (the same base is
            // the same run, and a settled run has nothing more to say).
            let still_that_run = self
                .tasks
                .get(&key)
                .is_some_and(|e| e.run.is_ended() && e.sandbox_base() == base.as_deref());
            if still_that_run {
                removed.extend(self.remove(&key));
            }
        }
        removed
    }

    fn remove(&mut self, key: &TaskKey) -> Option<Removed> {
        let entry = self.tasks.remove(key)?;
        Some(Removed {
            key: key.clone(),
            output: entry.output,
        })
    }

    /// The run of `task_id` (of `framework_id`, or of the one framework that has such a task)
    /// and whether it has ended.
    pub(crate) fn lookup(
        &self,
        framework_id: Option<&FrameworkId>,
        task_id: &TaskId,
    ) -> Result<(Arc<RunOutput>, bool), LookupError> {
        let mut matches = self.tasks.iter().filter(|(k, _)| {
            k.task_id == *task_id && framework_id.is_none_or(|f| *f == k.framework_id)
        });
        let (_, entry) = matches.next().ok_or(LookupError::NotFound)?;
        if matches.next().is_some() {
            return Err(LookupError::Ambiguous(task_id.clone()));
        }
        let ended = entry.run.is_ended();
        match &entry.output {
            Some(output) => Ok((output.clone(), ended)),
            // It failed before it had a sandbox: it never wrote anything.
            None if ended => Ok((RunOutput::never_written(), true)),
            None => Err(LookupError::NoSandbox(task_id.clone())),
        }
    }
}

/// A launch of a task whose run has not ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AlreadyRunning;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::output::LogContents;

    fn key(framework: &str, task: &str) -> TaskKey {
        TaskKey::parse(framework, task).unwrap()
    }

    fn info(task: &str) -> v1::TaskInfo {
        v1::TaskInfo {
            task_id: task.into(),
            ..Default::default()
        }
    }

    /// A finished run of `key` with files under `/sandboxes/<framework>/<task>.<run>`.
    fn finish(table: &mut TaskTable, key: &TaskKey, run: &str) {
        let entry = table.get_mut(key).unwrap();
        let base = PathBuf::from(format!(
            "/sandboxes/{}/{}.{run}",
            key.framework_id, key.task_id
        ));
        entry.output = Some(RunOutput::finished(
            SandboxPaths::from_base(base),
            None,
            None,
        ));
        entry.run.end();
    }

    fn removed_keys(removed: &[Removed]) -> Vec<String> {
        removed.iter().map(|r| r.key.task_id.to_string()).collect()
    }

    #[test]
    fn a_task_is_launched_once_until_its_run_ends() {
        let mut table = TaskTable::new(10);
        let a = key("fw", "a");
        assert!(matches!(table.launch(&a, info("a")), Ok(None)));
        assert!(matches!(table.launch(&a, info("a")), Err(AlreadyRunning)));
        assert_eq!(table.running().count(), 1);
        assert!(!table.all_ended());
        finish(&mut table, &a, "1");
        assert!(table.all_ended());
        // A relaunch replaces the entry and hands back the earlier run's files.
        let earlier = table.launch(&a, info("a")).unwrap().unwrap();
        assert_eq!(earlier.sandbox().base(), Path::new("/sandboxes/fw/a.1"));
        assert!(table.get(&a).unwrap().output.is_none());
    }

    #[test]
    fn settled_runs_keep_their_files_up_to_the_limit_oldest_going_first() {
        let mut table = TaskTable::new(2);
        for task in ["a", "b", "c"] {
            let k = key("fw", task);
            table.launch(&k, info(task)).unwrap();
            assert!(table.settle(&k).is_empty(), "still running");
            finish(&mut table, &k, "1");
        }
        assert!(table.settle(&key("fw", "a")).is_empty());
        assert!(table.settle(&key("fw", "b")).is_empty());
        let removed = table.settle(&key("fw", "c"));
        assert_eq!(removed_keys(&removed), ["a"]);
        assert!(removed[0].output.is_some(), "its files go too");
        assert!(table.get(&key("fw", "a")).is_none());
        assert!(table.get(&key("fw", "b")).is_some());
    }

    #[test]
    fn a_run_that_failed_before_its_sandbox_reads_empty_and_is_kept_as_others() {
        let mut table = TaskTable::new(1);
        let (a, b) = (key("fw", "a"), key("fw", "b"));
        table.launch(&a, info("a")).unwrap();
        assert_eq!(
            table.lookup(None, &a.task_id).unwrap_err(),
            LookupError::NoSandbox(a.task_id.clone()),
            "still being prepared"
        );
        table.get_mut(&a).unwrap().run.end();
        assert!(table.settle(&a).is_empty(), "kept, as a run with files is");
        let (output, ended) = table.lookup(None, &a.task_id).unwrap();
        assert!(ended);
        assert!(matches!(
            output.contents(Stream::Stdout),
            LogContents::Empty
        ));
        assert!(!output.has_files(), "nothing to remove");
        // Retired as any completed run is, beyond the limit.
        table.launch(&b, info("b")).unwrap();
        table.get_mut(&b).unwrap().run.end();
        let removed = table.settle(&b);
        assert_eq!(removed_keys(&removed), ["a"]);
        assert!(removed[0].output.is_none());
        assert_eq!(
            table.lookup(None, &a.task_id).unwrap_err(),
            LookupError::NotFound
        );
    }

    #[test]
    fn a_relaunched_task_is_not_retired_for_its_earlier_run() {
        let mut table = TaskTable::new(1);
        let a = key("fw", "a");
        table.launch(&a, info("a")).unwrap();
        finish(&mut table, &a, "1");
        table.settle(&a);
        // Relaunched: the slot of run 1 stays in the queue, but names another run now.
        table.launch(&a, info("a")).unwrap();
        let b = key("fw", "b");
        table.launch(&b, info("b")).unwrap();
        finish(&mut table, &b, "1");
        assert!(table.settle(&b).is_empty(), "run 1 of a is gone already");
        assert!(table.get(&a).is_some(), "the new run of a stays");
    }

    #[test]
    fn lookup_finds_a_task_by_id_alone_when_unambiguous() {
        let mut table = TaskTable::new(10);
        let (a1, a2, b) = (key("fw1", "a"), key("fw2", "a"), key("fw1", "b"));
        for k in [&a1, &a2, &b] {
            table.launch(k, info(k.task_id.as_str())).unwrap();
        }
        finish(&mut table, &a1, "1");
        let a = TaskId::new("a").unwrap();
        assert_eq!(
            table.lookup(None, &a).unwrap_err(),
            LookupError::Ambiguous(a.clone())
        );
        let (output, ended) = table.lookup(Some(&a1.framework_id), &a).unwrap();
        assert_eq!(output.sandbox().base(), Path::new("/sandboxes/fw1/a.1"));
        assert!(ended);
        assert_eq!(
            table.lookup(None, &b.task_id).unwrap_err(),
            LookupError::NoSandbox(b.task_id.clone())
        );
        let missing = TaskId::new("missing").unwrap();
        assert_eq!(
            table.lookup(None, &missing).unwrap_err(),
            LookupError::NotFound
        );
    }

    #[test]
    fn recovery_keeps_settled_runs_with_or_without_files() {
        let mut table = TaskTable::new(10);
        let (a, b) = (key("fw", "a"), key("fw", "b"));
        let files = RunOutput::finished(SandboxPaths::from_base("/s/fw/a.1".into()), None, None);
        table.restore(a.clone(), Some(files), true);
        table.restore(b.clone(), None, true);
        table.restore(key("fw", "c"), None, false);
        assert_eq!(table.running().count(), 1, "c did not end");
        let removed = table.restore_completed(vec![a.clone(), b.clone()]);
        assert!(removed.is_empty());
        assert!(table.get(&a).is_some());
        assert!(table.lookup(None, &b.task_id).unwrap().1, "b reads, ended");
        assert_eq!(table.sandboxes().len(), 1);
    }
}
