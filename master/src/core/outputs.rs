//! Tasks' outputs as the master records them: which files each task left (path, size,
//! digest), kept in the registry so a listing outlives the task, its agent and this master.
//! The files' bytes are artifacts (see `crate::artifacts`), indexed with their kind so the
//! cluster-wide cap on output bytes can be held.
//!
//! One record per task (a later run of the same task ID replaces it), at most
//! [`MAX_RECORDS`]: past it, or when the cap on output bytes needs room, the oldest record
//! is dropped. The table counts the records that list each digest, so it can say which
//! artifacts a drop leaves listed by no one (the core then unindexes them, and every master
//! deletes their bytes).

use std::collections::{BTreeSet, HashMap, VecDeque};

use corral_types::{
    AgentId, Digest, FrameworkId, Reason, TaskId, TaskOutput, TaskState, Timestamp,
};

use super::registry::OUTPUT_IN_FLIGHT;
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
    /// How many of the records list each digest (a path listing it twice counts twice).
    listings: HashMap<Digest, u32>,
}

/// What recording a task's outputs changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Recorded {
    /// The record differs from the one held for the task (if any).
    pub new: bool,
    /// The tasks whose records were dropped to stay within [`MAX_RECORDS`].
    pub dropped: Vec<TaskKey>,
    /// Digests no record lists any more.
    pub unlisted: Vec<Digest>,
}

impl TaskOutputs {
    /// Records `record` unless the same is recorded already.
    pub(super) fn insert(&mut self, record: OutputsRecord) -> Recorded {
        let key = record.key();
        if self.by_task.get(&key) == Some(&record) {
            return Recorded::default();
        }
        // Counted before the record it replaces is uncounted: a rerun that left the same
        // bytes keeps them listed throughout.
        for output in &record.outputs {
            *self.listings.entry(output.digest).or_default() += 1;
        }
        self.oldest_first
            .insert((record.finished_unix_millis, key.clone()));
        let mut recorded = Recorded {
            new: true,
            ..Recorded::default()
        };
        if let Some(old) = self.by_task.insert(key.clone(), record) {
            self.oldest_first
                .remove(&(old.finished_unix_millis, key.clone()));
            self.uncount(&old, &mut recorded.unlisted);
        }
        while self.by_task.len() > MAX_RECORDS {
            let Some((oldest, unlisted)) = self.pop_oldest() else {
                break;
            };
            recorded.dropped.push(oldest);
            recorded.unlisted.extend(unlisted);
        }
        recorded
    }

    /// Drops the oldest record; returns its task and the digests no record lists any more.
    pub(super) fn pop_oldest(&mut self) -> Option<(TaskKey, Vec<Digest>)> {
        let (_, oldest) = self.oldest_first.pop_first()?;
        let mut unlisted = Vec::new();
        if let Some(record) = self.by_task.remove(&oldest) {
            self.uncount(&record, &mut unlisted);
        }
        Some((oldest, unlisted))
    }

    fn uncount(&mut self, record: &OutputsRecord, unlisted: &mut Vec<Digest>) {
        for output in &record.outputs {
            let Some(count) = self.listings.get_mut(&output.digest) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.listings.remove(&output.digest);
                unlisted.push(output.digest);
            }
        }
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

    /// Whether a record lists `digest`.
    pub(super) fn lists(&self, digest: &Digest) -> bool {
        self.listings.contains_key(digest)
    }

    pub(super) fn len(&self) -> usize {
        self.by_task.len()
    }
}

/// Outputs admitted in the last [`OUTPUT_IN_FLIGHT`] and not reported since: their agents
/// may be storing them for a status still to come.
#[derive(Debug, Default)]
pub(super) struct Admissions {
    latest: HashMap<Digest, Timestamp>,
    /// Every admission, oldest first, so the old are forgotten without a search.
    in_order: VecDeque<(Timestamp, Digest)>,
}

impl Admissions {
    /// Remembers that `digest` was admitted `now`, and forgets admissions older than
    /// [`OUTPUT_IN_FLIGHT`].
    pub(super) fn note(&mut self, digest: Digest, now: Timestamp) {
        while let Some(&(at, oldest)) = self.in_order.front() {
            if now.saturating_duration_since(at) < OUTPUT_IN_FLIGHT {
                break;
            }
            self.in_order.pop_front();
            // A later admission of the same bytes keeps its own time.
            if self.latest.get(&oldest) == Some(&at) {
                self.latest.remove(&oldest);
            }
        }
        self.latest.insert(digest, now);
        self.in_order.push_back((now, digest));
    }

    /// When `digest` was last admitted, if since its last report and lately.
    pub(super) fn admitted(&self, digest: &Digest) -> Option<Timestamp> {
        self.latest.get(digest).copied()
    }

    /// A status listed `digest`: it has arrived.
    pub(super) fn reported(&mut self, digest: &Digest) {
        self.latest.remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use corral_types::Digest;

    use super::*;

    fn record(fw: &str, task: &str, at: u64) -> OutputsRecord {
        record_of(fw, task, at, b"x")
    }

    fn record_of(fw: &str, task: &str, at: u64, bytes: &[u8]) -> OutputsRecord {
        OutputsRecord {
            framework_id: FrameworkId::new(fw).unwrap(),
            task_id: TaskId::new(task).unwrap(),
            agent_id: None,
            state: TaskState::Finished,
            reason: Reason::Exited,
            finished_unix_millis: at,
            outputs: vec![TaskOutput {
                path: "out".into(),
                size: bytes.len() as u64,
                digest: Digest::of(bytes),
            }],
            not_kept: None,
            owner: None,
        }
    }

    #[test]
    fn the_same_record_twice_is_not_new_and_a_rerun_replaces_it() {
        let mut outputs = TaskOutputs::default();
        let new = Recorded {
            new: true,
            ..Recorded::default()
        };
        assert_eq!(outputs.insert(record("f", "a", 1)), new);
        assert_eq!(outputs.insert(record("f", "a", 1)), Recorded::default());
        // The rerun left the same bytes: they stay listed.
        assert_eq!(outputs.insert(record("f", "a", 5)), new);
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
        let recorded = outputs.insert(record("f", "late", 1_000_000));
        assert!(recorded.new);
        assert_eq!(
            recorded.dropped,
            vec![(FrameworkId::new("f").unwrap(), TaskId::new("t0").unwrap())]
        );
        // The other records list the same bytes still.
        assert_eq!(recorded.unlisted, vec![]);
        assert_eq!(outputs.len(), MAX_RECORDS);
    }

    #[test]
    fn admissions_are_forgotten_once_reported_or_old() {
        let mut admissions = Admissions::default();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let at = |s: u64| Timestamp::from_millis(s * 1000);
        admissions.note(a, at(0));
        admissions.note(b, at(1));
        admissions.note(a, at(2));
        admissions.reported(&b);
        assert_eq!(admissions.admitted(&a), Some(at(2)));
        assert_eq!(admissions.admitted(&b), None);
        // Past the first admission of `a`: its later one stands.
        let later = at(1).saturating_add(OUTPUT_IN_FLIGHT);
        admissions.note(b, later);
        assert_eq!(admissions.admitted(&a), Some(at(2)));
        admissions.note(b, at(2).saturating_add(OUTPUT_IN_FLIGHT));
        assert_eq!(admissions.admitted(&a), None);
        assert_eq!(admissions.in_order.len(), 2, "{admissions:?}");
    }

    #[test]
    fn bytes_are_unlisted_when_the_last_record_listing_them_goes() {
        let mut outputs = TaskOutputs::default();
        outputs.insert(record_of("f", "a", 1, b"shared"));
        outputs.insert(record_of("f", "b", 2, b"shared"));
        outputs.insert(record_of("f", "c", 3, b"own"));
        // A rerun of c that left other bytes unlists its earlier ones.
        let rerun = outputs.insert(record_of("f", "c", 4, b"rerun"));
        assert_eq!(rerun.unlisted, vec![Digest::of(b"own")]);

        let (oldest, unlisted) = outputs.pop_oldest().unwrap();
        assert_eq!(oldest.1, TaskId::new("a").unwrap());
        assert_eq!(unlisted, vec![], "b lists the same bytes");
        let (_, unlisted) = outputs.pop_oldest().unwrap();
        assert_eq!(unlisted, vec![Digest::of(b"shared")]);
        let (_, unlisted) = outputs.pop_oldest().unwrap();
        assert_eq!(unlisted, vec![Digest::of(b"rerun")]);
        assert!(outputs.pop_oldest().is_none());
        assert!(outputs.listings.is_empty());
    }
}
