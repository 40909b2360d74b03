//! Duplicate detection for status updates.
//!
//! Updates are delivered at least once: the master redelivers an update until it is
//! acknowledged, so the same `(task_id, uuid)` can arrive twice (a retransmission racing an
//! ack, or a redelivery after a reconnection). The driver hands each update to the scheduler
//! once and remembers, per update, whether its acknowledgement reached the master on the
//! current stream. A duplicate is re-acknowledged only when the earlier ack was not (it
//! failed, or went out on an earlier stream): otherwise a lost ack would hold back the task's
//! later updates forever.
//!
//! Memory is bounded: the last [`PER_TASK`] uuids per task, for at most `tasks` tasks (least
//! recently updated forgotten first).

use std::num::NonZeroUsize;

use corral_proto::UpdateUuid;
use corral_types::TaskId;
use lru::LruCache;

/// Uuids remembered per task.
pub(crate) const PER_TASK: usize = 8;

/// What to do with an incoming update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// First sighting: deliver it (and acknowledge it afterwards).
    New,
    /// Seen before; acknowledge it again (the earlier ack may not have reached the master).
    DuplicateReack,
    /// Seen and acknowledged on this stream already: drop it.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    uuid: UpdateUuid,
    /// The stream generation on which its ack was sent, if one was.
    acked_on: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Dedup {
    tasks: LruCache<TaskId, Vec<Seen>>,
}

impl Dedup {
    pub(crate) fn new(tasks: NonZeroUsize) -> Self {
        Self {
            tasks: LruCache::new(tasks),
        }
    }

    /// Classifies an update arriving on stream `generation`, and records it.
    pub(crate) fn observe(&mut self, task: &TaskId, uuid: UpdateUuid, generation: u64) -> Verdict {
        let seen = self.tasks.get_or_insert_mut(task.clone(), Vec::new);
        match seen.iter().find(|s| s.uuid == uuid) {
            Some(s) if s.acked_on == Some(generation) => Verdict::Duplicate,
            Some(_) => Verdict::DuplicateReack,
            None => {
                if seen.len() == PER_TASK {
                    seen.remove(0);
                }
                seen.push(Seen {
                    uuid,
                    acked_on: None,
                });
                Verdict::New
            }
        }
    }

    /// Records that an ack for the update went out on stream `generation` (`None`: it
    /// failed, so a redelivery is acknowledged again).
    pub(crate) fn set_acked(&mut self, task: &TaskId, uuid: UpdateUuid, generation: Option<u64>) {
        if let Some(seen) = self.tasks.peek_mut(task)
            && let Some(s) = seen.iter_mut().find(|s| s.uuid == uuid)
        {
            s.acked_on = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(n: u8) -> UpdateUuid {
        UpdateUuid::from_bytes([n; 16])
    }

    fn dedup() -> Dedup {
        Dedup::new(NonZeroUsize::new(2).unwrap())
    }

    #[test]
    fn duplicates_on_the_same_stream_are_dropped_once_acked() {
        let t = TaskId::new("t1").unwrap();
        let mut d = dedup();
        assert_eq!(d.observe(&t, uuid(1), 1), Verdict::New);
        // Not acked yet (or the ack failed): acknowledge the duplicate.
        assert_eq!(d.observe(&t, uuid(1), 1), Verdict::DuplicateReack);
        d.set_acked(&t, uuid(1), Some(1));
        assert_eq!(d.observe(&t, uuid(1), 1), Verdict::Duplicate);
        // A redelivery after a reconnection is acknowledged again, not delivered.
        assert_eq!(d.observe(&t, uuid(1), 2), Verdict::DuplicateReack);
        d.set_acked(&t, uuid(1), None);
        assert_eq!(d.observe(&t, uuid(1), 1), Verdict::DuplicateReack);
    }

    #[test]
    fn memory_is_bounded_per_task_and_in_tasks() {
        let (a, b, c) = (
            TaskId::new("a").unwrap(),
            TaskId::new("b").unwrap(),
            TaskId::new("c").unwrap(),
        );
        let mut d = dedup();
        for n in 0..=PER_TASK as u8 {
            assert_eq!(d.observe(&a, uuid(n), 1), Verdict::New);
        }
        // The oldest uuid of `a` was forgotten.
        assert_eq!(d.observe(&a, uuid(0), 1), Verdict::New);
        assert_eq!(d.observe(&b, uuid(1), 1), Verdict::New);
        assert_eq!(d.observe(&c, uuid(1), 1), Verdict::New);
        // Capacity 2: `a` was the least recently updated task.
        assert_eq!(d.observe(&a, uuid(5), 1), Verdict::New);
        assert_eq!(d.observe(&c, uuid(1), 1), Verdict::DuplicateReack);
    }
}
