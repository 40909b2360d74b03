//! Tasks' outputs as the master records them: which files each task left (path, size,
//! digest), kept in the registry so a listing outlives the task, its agent and this master.
//! The files' bytes are artifacts (see `crate::artifacts`), indexed with their kind so the
//! cluster-wide cap on output bytes can be held.
//!
//! One record per task (a later run of the same task ID replaces it), at most
//! [`MAX_RECORDS`]: past it the oldest record is dropped from the listing (its artifacts
//! stay in the store, fetchable by digest).

use std::collections::{BTreeSet, HashMap};

use corral_types::{AgentId, FrameworkId, Reason, TaskId, TaskOutput, TaskState};

use super::tasks::TaskKey;

/// Most tasks whose outputs are listed.
pub(crate) const MAX_RECORDS: usize = 100_000;

/// The outputs one task left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputsRecord {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub agent_id: Option<AgentId>,
    pub state: TaskState,
    pub reason: Reason,
    pub finished_unix_millis: u64,
    /// Sorted by path.
    pub outputs: Vec<TaskOutput>,
    /// What was not kept, and why.
    pub not_kept: Option<String>,
    /// The principal the task ran for (see `Core::task_principal`).
    pub owner: Option<String>,
}

impl OutputsRecord {
    pub(crate) fn key(&self) -> TaskKey {
        (self.framework_id.clone(), self.task_id.clone())
    }
}

/// The records, with their age for eviction.
#[derive(Debug, Default)]
pub(super) struct TaskOutputs {
    by_task: HashMap<TaskKey, OutputsRecord>,
    oldest_first: BTreeSet<(u64, TaskKey)>,
}

impl TaskOutputs {
    /// Records `record` unless the same is recorded already; returns whether it is new and
    /// the tasks whose records were dropped to make room.
    pub(super) fn insert(&mut self, record: OutputsRecord) -> (bool, Vec<TaskKey>) {
        let key = record.key();
        if self.by_task.get(&key) == Some(&record) {
            return (false, Vec::new());
        }
        if let Some(old) = self.by_task.remove(&key) {
            self.oldest_first
                .remove(&(old.finished_unix_millis, key.clone()));
        }
        self.oldest_first
            .insert((record.finished_unix_millis, key.clone()));
        self.by_task.insert(key, record);
        let mut dropped = Vec::new();
        while self.by_task.len() > MAX_RECORDS {
            let Some((_, oldest)) = self.oldest_first.pop_first() else {
                break;
            };
            self.by_task.remove(&oldest);
            dropped.push(oldest);
        }
        (true, dropped)
    }

    /// The records of task `task` (of `framework` when named).
    pub(super) fn find<'a>(
        &'a self,
        task: &'a TaskId,
        framework: Option<&'a FrameworkId>,
    ) -> impl Iterator<Item = &'a OutputsRecord> + 'a {
        let exact = framework.and_then(|fw| self.by_task.get(&(fw.clone(), task.clone())));
        let scan = framework
            .is_none()
            .then(|| self.by_task.values().filter(move |r| &r.task_id == task));
        exact.into_iter().chain(scan.into_iter().flatten())
    }

    pub(super) fn len(&self) -> usize {
        self.by_task.len()
    }
}

#[cfg(test)]
mod tests {
    use corral_types::Digest;

    use super::*;

    fn record(fw: &str, task: &str, at: u64) -> OutputsRecord {
        OutputsRecord {
            framework_id: FrameworkId::new(fw).unwrap(),
            task_id: TaskId::new(task).unwrap(),
            agent_id: None,
            state: TaskState::Finished,
            reason: Reason::Exited,
            finished_unix_millis: at,
            outputs: vec![TaskOutput {
                path: "out".into(),
                size: 1,
                digest: Digest::of(b"x"),
            }],
            not_kept: None,
            owner: None,
        }
    }

    #[test]
    fn the_same_record_twice_is_not_new_and_a_rerun_replaces_it() {
        let mut outputs = TaskOutputs::default();
        assert_eq!(outputs.insert(record("f", "a", 1)), (true, vec![]));
        assert_eq!(outputs.insert(record("f", "a", 1)), (false, vec![]));
        assert_eq!(outputs.insert(record("f", "a", 5)), (true, vec![]));
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs.oldest_first.len(), 1);
        let task = TaskId::new("a").unwrap();
        let found: Vec<_> = outputs.find(&task, None).collect();
        assert_eq!(found[0].finished_unix_millis, 5);
        let other = FrameworkId::new("g").unwrap();
        assert_eq!(outputs.find(&task, Some(&other)).count(), 0);
    }

    #[test]
    fn the_oldest_records_go_past_the_bound() {
        let mut outputs = TaskOutputs::default();
        for i in 0..MAX_RECORDS as u64 {
            outputs.insert(record("f", &format!("t{i}"), i + 10));
        }
        let (new, dropped) = outputs.insert(record("f", "late", 1_000_000));
        assert!(new);
        assert_eq!(
            dropped,
            vec![(FrameworkId::new("f").unwrap(), TaskId::new("t0").unwrap())]
        );
        assert_eq!(outputs.len(), MAX_RECORDS);
    }
}
