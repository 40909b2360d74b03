//! The outbox: the status updates the master has not acknowledged yet, as a plain state
//! machine. It does no I/O: each operation says what the caller must write to the
//! checkpoint or send to the master, and the caller does it.
//!
//! ```text
//!   push ──► queued (seq n) ──checkpoint commits──► durable ──► sent, resent, in ReRegister
//!                                                      │
//!                                 acknowledge(uuid) ◄──┘ forgotten (the checkpoint too)
//! ```
//!
//! Every update gets the next agent-wide sequence number. The checkpoint makes updates durable
//! in that order, so "durable" is a watermark (`durable_seq`): an update is sent only once it
//! is at or below it, so the master never sees an update a crash could take back. Each task's
//! updates stay queued in order until acknowledged one by one (by uuid), which is what makes
//! delivery at least once and in order per task: a relaunched task's new updates queue behind
//! its earlier run's undelivered ones.

use std::collections::{BTreeMap, HashMap, VecDeque};

use corral_proto::v1;

use super::status::TaskKey;

/// An update the caller must queue for the checkpoint, in the order `push` returned them;
/// once it is durable, [`Outbox::durable`] says to send it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) status: v1::TaskStatus,
}

/// Unacknowledged status updates, by sequence number and by task.
#[derive(Debug)]
pub(crate) struct Outbox {
    next_seq: u64,
    /// Updates up to this sequence number are durable and may be sent.
    durable_seq: u64,
    /// Every unacknowledged update, in sequence order.
    pending: BTreeMap<u64, v1::TaskStatus>,
    /// Each task's unacknowledged sequence numbers, in order.
    by_task: HashMap<TaskKey, VecDeque<u64>>,
    /// Where the last resend stopped: the next one goes on after it.
    resent_to: u64,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox; the first update gets sequence number 1.
    pub(crate) fn new() -> Self {
        Self {
            next_seq: 1,
            durable_seq: 0,
            pending: BTreeMap::new(),
            by_task: HashMap::new(),
            resent_to: 0,
        }
    }

    /// The outbox as the checkpoint kept it: `updates` (with their tasks) are durable. The
    /// sequence continues after `last_seq`, the highest number in the checkpoint, counting
    /// updates the caller could not take back (so no new update reuses their number).
    pub(crate) fn recovered(
        last_seq: u64,
        updates: impl IntoIterator<Item = (u64, TaskKey, v1::TaskStatus)>,
    ) -> Self {
        let mut outbox = Self::new();
        let mut last = last_seq;
        for (seq, key, status) in updates {
            last = last.max(seq);
            outbox.insert(seq, key, status);
        }
        outbox.next_seq = last + 1;
        outbox.durable_seq = last;
        outbox
    }

    /// Queues a new update of `key`; the caller writes what this returns to the checkpoint,
    /// in the order of the calls.
    pub(crate) fn push(&mut self, key: &TaskKey, status: v1::TaskStatus) -> Queued {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(seq, key.clone(), status.clone());
        Queued { seq, status }
    }

    fn insert(&mut self, seq: u64, key: TaskKey, status: v1::TaskStatus) {
        self.by_task.entry(key).or_default().push_back(seq);
        self.pending.insert(seq, status);
    }

    /// The checkpoint made `batch` durable (and everything queued before it): returns the
    /// updates to send now, in order, leaving out any acknowledged meanwhile.
    pub(crate) fn durable(&mut self, batch: Vec<(u64, v1::TaskStatus)>) -> Vec<v1::TaskStatus> {
        if let Some((last, _)) = batch.last() {
            self.durable_seq = self.durable_seq.max(*last);
        }
        batch
            .into_iter()
            .filter(|(seq, _)| self.pending.contains_key(seq))
            .map(|(_, status)| status)
            .collect()
    }

    /// Forgets the update of `key` with this uuid; returns its sequence number for the
    /// caller to mark acknowledged in the checkpoint, or `None` if no such update is waiting
    /// (acknowledged before, or never sent by this agent).
    pub(crate) fn acknowledge(&mut self, key: &TaskKey, uuid: &[u8]) -> Option<u64> {
        let queue = self.by_task.get_mut(key)?;
        let at = queue.iter().position(|seq| {
            self.pending
                .get(seq)
                .is_some_and(|status| status.uuid == uuid)
        })?;
        let seq = queue.remove(at)?;
        if queue.is_empty() {
            self.by_task.remove(key);
        }
        self.pending.remove(&seq);
        Some(seq)
    }

    /// Whether `key` has updates waiting for an acknowledgement.
    pub(crate) fn has_pending(&self, key: &TaskKey) -> bool {
        self.by_task.contains_key(key)
    }

    /// Every durable unacknowledged update in order, for a ReRegister; the rest follows on
    /// the new session as it becomes durable. Resends start over from the oldest.
    pub(crate) fn reregister(&mut self) -> Vec<v1::TaskStatus> {
        self.resent_to = 0;
        self.sendable(0).map(|(_, status)| status.clone()).collect()
    }

    /// Up to `limit` durable unacknowledged updates to send again, in order, going on after
    /// where the previous resend stopped (and round to the oldest again), so that a backlog
    /// longer than the limit is resent in turns rather than only its head.
    pub(crate) fn resend(&mut self, limit: usize) -> Vec<v1::TaskStatus> {
        if limit == 0 {
            // No room this time: the turn stays where it is.
            return Vec::new();
        }
        let mut chosen: Vec<(u64, &v1::TaskStatus)> =
            self.sendable(self.resent_to).take(limit).collect();
        if chosen.is_empty() && self.resent_to > 0 {
            chosen = self.sendable(0).take(limit).collect();
        }
        let last = chosen.last().map(|(seq, _)| *seq);
        let statuses = chosen
            .into_iter()
            .map(|(_, status)| status.clone())
            .collect();
        // Past the newest sendable update, the next resend starts from the oldest again.
        self.resent_to = match last {
            Some(last) if self.sendable(last).next().is_some() => last,
            _ => 0,
        };
        statuses
    }

    /// Durable unacknowledged updates after sequence number `after`, in order.
    fn sendable(&self, after: u64) -> impl Iterator<Item = (u64, &v1::TaskStatus)> {
        let durable = self.durable_seq;
        self.pending
            .range(after.saturating_add(1)..)
            .take_while(move |(seq, _)| **seq <= durable)
            .map(|(seq, status)| (*seq, status))
    }

    /// How many updates wait for an acknowledgement.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use corral_proto::ProtoEnum;
    use corral_types::{FrameworkId, TaskId, TaskState};

    fn key(task: &str) -> TaskKey {
        TaskKey {
            framework_id: FrameworkId::new("fw").unwrap(),
            task_id: TaskId::new(task).unwrap(),
        }
    }

    /// An update of `task` whose uuid is `n` sixteen times, so tests can name updates.
    fn status(task: &str, n: u8, state: TaskState) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task.into(),
            framework_id: "fw".into(),
            state: state.to_i32(),
            uuid: vec![n; 16].into(),
            ..Default::default()
        }
    }

    /// The uuid tags of `statuses`, in order.
    fn tags(statuses: &[v1::TaskStatus]) -> Vec<u8> {
        statuses.iter().map(|s| s.uuid[0]).collect()
    }

    /// Pushes an update and returns what the caller would hand the checkpoint.
    fn push(outbox: &mut Outbox, task: &str, n: u8) -> (u64, v1::TaskStatus) {
        let queued = outbox.push(&key(task), status(task, n, TaskState::Running));
        (queued.seq, queued.status)
    }

    #[test]
    fn updates_get_increasing_sequence_numbers_and_are_handed_to_the_checkpoint() {
        let mut outbox = Outbox::new();
        let first = outbox.push(&key("a"), status("a", 1, TaskState::Starting));
        let second = outbox.push(&key("b"), status("b", 2, TaskState::Starting));
        assert_eq!((first.seq, second.seq), (1, 2), "one sequence across tasks");
        assert_eq!(first.status, status("a", 1, TaskState::Starting));
        assert_eq!(outbox.len(), 2);
        assert!(outbox.has_pending(&key("a")) && outbox.has_pending(&key("b")));
    }

    #[test]
    fn nothing_is_sent_or_resent_before_it_is_durable() {
        let mut outbox = Outbox::new();
        let a1 = push(&mut outbox, "a", 1);
        let a2 = push(&mut outbox, "a", 2);
        assert!(outbox.reregister().is_empty());
        assert!(outbox.resend(100).is_empty());

        // The checkpoint committed the first: only it goes out, then and on resends.
        assert_eq!(tags(&outbox.durable(vec![a1])), [1]);
        assert_eq!(tags(&outbox.resend(100)), [1]);
        assert_eq!(tags(&outbox.reregister()), [1]);

        assert_eq!(tags(&outbox.durable(vec![a2])), [2]);
        assert_eq!(tags(&outbox.resend(100)), [1, 2]);
    }

    #[test]
    fn each_tasks_updates_go_out_in_order_and_tasks_in_the_order_they_spoke() {
        let mut outbox = Outbox::new();
        let batch = vec![
            push(&mut outbox, "a", 1),
            push(&mut outbox, "b", 2),
            push(&mut outbox, "a", 3),
            push(&mut outbox, "b", 4),
        ];
        assert_eq!(tags(&outbox.durable(batch)), [1, 2, 3, 4]);
        assert_eq!(tags(&outbox.reregister()), [1, 2, 3, 4]);
        // Acknowledging out of order leaves the rest in order.
        assert_eq!(outbox.acknowledge(&key("a"), &[3; 16]), Some(3));
        assert_eq!(tags(&outbox.resend(100)), [1, 2, 4]);
    }

    #[test]
    fn an_acknowledgement_forgets_exactly_its_update() {
        let mut outbox = Outbox::new();
        let batch = vec![push(&mut outbox, "a", 1), push(&mut outbox, "a", 2)];
        outbox.durable(batch);
        assert_eq!(outbox.acknowledge(&key("a"), &[1; 16]), Some(1));
        assert!(outbox.has_pending(&key("a")));
        assert_eq!(tags(&outbox.reregister()), [2]);
        assert_eq!(outbox.acknowledge(&key("a"), &[2; 16]), Some(2));
        assert!(!outbox.has_pending(&key("a")));
        assert_eq!(outbox.len(), 0);
        assert!(outbox.resend(100).is_empty());
    }

    #[test]
    fn an_acknowledgement_of_an_unknown_update_does_nothing() {
        let mut outbox = Outbox::new();
        let batch = vec![push(&mut outbox, "a", 1)];
        outbox.durable(batch);
        assert_eq!(
            outbox.acknowledge(&key("a"), &[9; 16]),
            None,
            "unknown uuid"
        );
        assert_eq!(
            outbox.acknowledge(&key("b"), &[1; 16]),
            None,
            "another task's"
        );
        assert_eq!(outbox.acknowledge(&key("a"), &[]), None, "no uuid");
        assert_eq!(outbox.acknowledge(&key("a"), &[1; 16]), Some(1));
        assert_eq!(outbox.acknowledge(&key("a"), &[1; 16]), None, "twice");
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn an_update_acknowledged_before_it_was_durable_is_not_sent() {
        let mut outbox = Outbox::new();
        let a1 = push(&mut outbox, "a", 1);
        let a2 = push(&mut outbox, "a", 2);
        outbox.acknowledge(&key("a"), &[1; 16]);
        assert_eq!(tags(&outbox.durable(vec![a1, a2])), [2]);
    }

    #[test]
    fn a_relaunch_keeps_the_earlier_runs_undelivered_updates_ahead() {
        let mut outbox = Outbox::new();
        // The first run ended; its STARTING was acknowledged, its FAILED was not.
        let mut batch = vec![push(&mut outbox, "a", 1), push(&mut outbox, "a", 2)];
        outbox.acknowledge(&key("a"), &[1; 16]);
        // The framework relaunched the task under the same id.
        batch.push(push(&mut outbox, "a", 3));
        batch.push(push(&mut outbox, "a", 4));
        assert_eq!(tags(&outbox.durable(batch)), [2, 3, 4]);
        assert_eq!(tags(&outbox.reregister()), [2, 3, 4]);
        assert_eq!(outbox.acknowledge(&key("a"), &[2; 16]), Some(2));
        assert!(outbox.has_pending(&key("a")), "the new run's updates wait");
    }

    #[test]
    fn resends_take_turns_through_a_long_backlog() {
        let mut outbox = Outbox::new();
        let batch = (1..=5).map(|n| push(&mut outbox, "a", n)).collect();
        outbox.durable(batch);
        assert_eq!(tags(&outbox.resend(2)), [1, 2]);
        assert!(outbox.resend(0).is_empty(), "no room: the turn waits");
        assert_eq!(tags(&outbox.resend(2)), [3, 4]);
        assert_eq!(tags(&outbox.resend(2)), [5]);
        assert_eq!(tags(&outbox.resend(2)), [1, 2], "round again");
        // Acknowledged updates drop out of the turn.
        outbox.acknowledge(&key("a"), &[3; 16]);
        assert_eq!(tags(&outbox.resend(2)), [4, 5]);
        assert_eq!(tags(&outbox.resend(10)), [1, 2, 4, 5]);
        assert!(outbox.resend(0).is_empty());
        // A re-registration carries everything and starts the turn over.
        outbox.resend(1);
        assert_eq!(tags(&outbox.reregister()), [1, 2, 4, 5]);
        assert_eq!(tags(&outbox.resend(1)), [1]);
    }

    #[test]
    fn resends_stop_at_what_is_durable() {
        let mut outbox = Outbox::new();
        let durable = vec![push(&mut outbox, "a", 1), push(&mut outbox, "a", 2)];
        push(&mut outbox, "a", 3);
        outbox.durable(durable);
        assert_eq!(tags(&outbox.resend(1)), [1]);
        assert_eq!(tags(&outbox.resend(5)), [2]);
        assert_eq!(tags(&outbox.resend(5)), [1, 2]);
    }

    #[test]
    fn recovery_takes_back_what_the_checkpoint_held() {
        // Sequence numbers 1, 2 and 4 were acknowledged before the restart; 7 could not be
        // taken back (its task's ids were unreadable) but still holds its number.
        let updates = [
            (3, key("a"), status("a", 3, TaskState::Starting)),
            (5, key("b"), status("b", 5, TaskState::Starting)),
            (6, key("a"), status("a", 6, TaskState::Running)),
        ];
        let mut outbox = Outbox::recovered(7, updates);
        assert_eq!(
            tags(&outbox.reregister()),
            [3, 5, 6],
            "all durable, in order"
        );
        assert!(outbox.has_pending(&key("a")) && outbox.has_pending(&key("b")));
        let next = outbox.push(&key("a"), status("a", 8, TaskState::Failed));
        assert_eq!(next.seq, 8, "numbers go on after the checkpoint's");
        assert_eq!(
            tags(&outbox.reregister()),
            [3, 5, 6],
            "the new one is not durable"
        );
        assert_eq!(outbox.acknowledge(&key("a"), &[3; 16]), Some(3));
        assert_eq!(tags(&outbox.durable(vec![(next.seq, next.status)])), [8]);
        assert_eq!(tags(&outbox.reregister()), [5, 6, 8]);
    }

    #[test]
    fn an_empty_checkpoint_starts_at_one() {
        let mut outbox = Outbox::recovered(0, []);
        assert_eq!(
            outbox
                .push(&key("a"), status("a", 1, TaskState::Starting))
                .seq,
            1
        );
    }
}
