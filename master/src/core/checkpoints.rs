//! Tasks' checkpoints (from the task SDK), kept for their next attempts.
//!
//! An agent sends a task's checkpoint with its status updates whenever it changes; the core
//! keeps the latest per task here, never forwards it to the framework, and hands it in the
//! launch of the next task with the same ID. A task that finishes successfully needs none;
//! a removed framework's go with it. Bounded in bytes and in count: past either, the oldest
//! go first (their tasks' next attempts start over, as they would without the SDK).
//!
//! Kept in memory only: a failover to another master loses them in the same way.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use corral_types::FrameworkId;

use super::tasks::TaskKey;

/// Most checkpoints kept.
const MAX_CHECKPOINTS: usize = 10_000;
/// Most bytes of checkpoints kept.
const MAX_BYTES: usize = 256 << 20;

#[derive(Debug, Default)]
pub(super) struct Checkpoints {
    /// Each task's latest checkpoint and the generation it was stored at.
    by_task: HashMap<TaskKey, (u64, Bytes)>,
    /// Stores, oldest first; an entry whose generation is no longer its task's is stale
    /// (replaced or removed since) and is skipped or compacted away.
    order: VecDeque<(u64, TaskKey)>,
    bytes: usize,
    generation: u64,
}

impl Checkpoints {
    /// Keeps `checkpoint` as `key`'s latest.
    pub(super) fn put(&mut self, key: TaskKey, checkpoint: Bytes) {
        self.generation += 1;
        self.bytes += checkpoint.len();
        let stored = (self.generation, checkpoint);
        if let Some((_, old)) = self.by_task.insert(key.clone(), stored) {
            self.bytes -= old.len();
        }
        self.order.push_back((self.generation, key));
        while self.by_task.len() > MAX_CHECKPOINTS || self.bytes > MAX_BYTES {
            let Some((generation, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.is_current(generation, &oldest) {
                self.remove(&oldest);
            }
        }
        // Replacements leave stale entries behind: drop them once they outnumber the live.
        if self.order.len() > 2 * self.by_task.len() + 64 {
            let by_task = &self.by_task;
            self.order
                .retain(|(generation, key)| by_task.get(key).is_some_and(|(g, _)| g == generation));
        }
    }

    fn is_current(&self, generation: u64, key: &TaskKey) -> bool {
        self.by_task.get(key).is_some_and(|(g, _)| *g == generation)
    }

    /// `key`'s checkpoint, if one is kept.
    pub(super) fn get(&self, key: &TaskKey) -> Option<&Bytes> {
        self.by_task.get(key).map(|(_, checkpoint)| checkpoint)
    }

    /// Forgets `key`'s checkpoint.
    pub(super) fn remove(&mut self, key: &TaskKey) {
        if let Some((_, old)) = self.by_task.remove(key) {
            self.bytes -= old.len();
        }
    }

    /// Forgets every checkpoint of `framework`.
    pub(super) fn remove_framework(&mut self, framework: &FrameworkId) {
        let keys: Vec<TaskKey> = self
            .by_task
            .keys()
            .filter(|(f, _)| f == framework)
            .cloned()
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::TaskId;

    fn key(framework: &str, task: &str) -> TaskKey {
        (
            FrameworkId::new(framework).unwrap(),
            TaskId::new(task).unwrap(),
        )
    }

    #[test]
    fn the_latest_is_kept_and_removals_free_their_bytes() {
        let mut checkpoints = Checkpoints::default();
        checkpoints.put(key("f", "a"), Bytes::from_static(b"one"));
        checkpoints.put(key("f", "a"), Bytes::from_static(b"second"));
        checkpoints.put(key("g", "b"), Bytes::from_static(b"xy"));
        assert_eq!(checkpoints.get(&key("f", "a")).unwrap(), "second");
        assert_eq!(checkpoints.bytes(), 8);
        checkpoints.remove_framework(&FrameworkId::new("f").unwrap());
        assert!(checkpoints.get(&key("f", "a")).is_none());
        assert_eq!(checkpoints.bytes(), 2);
        checkpoints.remove(&key("g", "b"));
        assert_eq!(checkpoints.bytes(), 0);
    }

    #[test]
    fn past_the_byte_bound_the_oldest_go_first() {
        let mut checkpoints = Checkpoints::default();
        let big = Bytes::from(vec![0u8; MAX_BYTES / 2]);
        checkpoints.put(key("f", "old"), big.clone());
        checkpoints.put(key("f", "mid"), big.clone());
        checkpoints.put(key("f", "new"), Bytes::from_static(b"1"));
        assert!(checkpoints.get(&key("f", "old")).is_none());
        assert!(checkpoints.get(&key("f", "mid")).is_some());
        assert!(checkpoints.get(&key("f", "new")).is_some());
        assert!(checkpoints.bytes() <= MAX_BYTES);
    }

    #[test]
    fn replacing_one_task_over_and_over_keeps_the_bookkeeping_small() {
        let mut checkpoints = Checkpoints::default();
        for i in 0..10_000u32 {
            checkpoints.put(key("f", "a"), Bytes::from(i.to_le_bytes().to_vec()));
        }
        assert!(checkpoints.order.len() <= 66, "{}", checkpoints.order.len());
        assert_eq!(checkpoints.bytes(), 4);
    }
}
