//! The master's task table: live tasks, the per-agent index over them, and the recently
//! completed ones.
//!
//! Invariant, enforced here rather than checked after the fact: every live task placed on an
//! agent is in exactly that agent's index entry, and the index holds nothing else. A task's
//! agent is private to this module; only [`TaskTable::insert`] and [`TaskTable::place`]
//! set it, and they move the index entry with it.

use std::collections::{BTreeSet, HashMap, VecDeque};

use corral_proto::TaskStatus;
use corral_types::{AgentId, Allocation, FrameworkId, Role, TaskId, Timestamp};

use super::events::TaskMeta;

/// A task is named by its framework and its framework's ID for it.
pub(crate) type TaskKey = (FrameworkId, TaskId);

/// How many finished tasks the master remembers for listings and reconciliation.
const COMPLETED_TASKS: usize = 1000;

/// The most notes whose room is kept from one event for the next.
const KEPT_NOTES: usize = 1024;

/// What the master knows of one task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// Where it runs; `None` until placed. Set only by the table (see the module docs).
    agent: Option<AgentId>,
    pub(super) role: Role,
    pub(super) meta: TaskMeta,
    pub(super) alloc: Allocation,
    /// The allocator counts `alloc` as held by the task's framework.
    pub(super) holds: bool,
    pub(super) status: TaskStatus,
    /// The latest update that carries a uuid and is not yet acknowledged; redelivered when
    /// the framework re-subscribes (the agent holds later updates back until it is acked).
    pub(super) unacked: Option<TaskStatus>,
    pub(super) updated: Timestamp,
    /// Counts the changes operators see (status, placement); set only here.
    revision: u64,
    /// Its place among the tasks noted during the event being handled, with that event's
    /// round (see [`TaskNotes`]); set only here.
    noted: Option<(u64, usize)>,
}

impl Task {
    /// A task on `agent` (if placed) that does not hold resources yet.
    pub(super) fn new(
        agent: Option<AgentId>,
        role: Role,
        meta: TaskMeta,
        alloc: Allocation,
        status: TaskStatus,
        now: Timestamp,
    ) -> Self {
        Task {
            agent,
            role,
            meta,
            alloc,
            holds: false,
            status,
            unacked: None,
            updated: now,
            revision: 0,
            noted: None,
        }
    }

    /// Records a new status, received or made `now`.
    pub(super) fn set_status(&mut self, status: TaskStatus, now: Timestamp) {
        // The same update again, at the same time, changes nothing listings show.
        let (old, new) = (&self.status, &status);
        let same = self.updated == now
            && old.state == new.state
            && old.reason == new.reason
            && old.message == new.message
            && old.usage == new.usage
            && old.progress == new.progress
            && old.result_json == new.result_json
            && old.outputs == new.outputs;
        if !same {
            self.revision += 1;
        }
        self.status = status;
        self.updated = now;
    }

    /// How many times its status or placement changed.
    pub(super) fn revision(&self) -> u64 {
        self.revision
    }

    /// The agent it is placed on.
    pub(super) fn agent(&self) -> Option<&AgentId> {
        self.agent.as_ref()
    }
}

/// Live tasks by key, indexed by agent, and the last [`COMPLETED_TASKS`] completed ones.
#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    live: HashMap<TaskKey, Task>,
    by_agent: HashMap<AgentId, BTreeSet<TaskKey>>,
    completed: VecDeque<(TaskKey, Task)>,
    /// How many tasks have completed: the number the next one to complete gets.
    completions: u64,
    /// The tasks touched while the event stream is watched (see `changes`).
    touched: TaskNotes,
}

/// One task touched.
#[derive(Debug)]
pub(super) struct NotedTask {
    pub(super) key: TaskKey,
    /// It was new during the event.
    pub(super) added: bool,
    /// Its [`Task::revision`] when first touched, to leave out what was touched but not
    /// changed.
    pub(super) before: u64,
    /// Its number among completed tasks, if it completed during the event.
    pub(super) completed: Option<u64>,
}

/// The tasks touched during one event, each once, in the order first touched. Each task
/// keeps its place in the list, marked with the event's round, so noting one again needs
/// no search or hash of its key, whatever the number of tasks an event touches.
#[derive(Debug, Default)]
struct TaskNotes {
    /// Someone watches: tasks are noted.
    on: bool,
    order: Vec<NotedTask>,
    /// Counts the lists started; a task's place of an older round is stale.
    round: u64,
}

impl TaskNotes {
    fn note(&mut self, key: &TaskKey, task: &mut Task, added: bool) {
        if !self.on {
            return;
        }
        match task.noted {
            Some((round, i)) if round == self.round => self.order[i].added |= added,
            _ => {
                task.noted = Some((self.round, self.order.len()));
                self.order.push(NotedTask {
                    key: key.clone(),
                    added,
                    before: task.revision,
                    completed: None,
                });
            }
        }
    }

    /// Where `task` is noted this round, if it is.
    fn of(&mut self, task: &Task) -> Option<&mut NotedTask> {
        match task.noted {
            Some((round, i)) if round == self.round => self.order.get_mut(i),
            _ => None,
        }
    }

    fn take(&mut self) -> Vec<NotedTask> {
        self.round += 1;
        std::mem::take(&mut self.order)
    }
}

impl TaskTable {
    pub(super) fn get(&self, key: &TaskKey) -> Option<&Task> {
        self.live.get(key)
    }

    /// A live task to change; its agent can only change through [`TaskTable::place`].
    pub(super) fn get_mut(&mut self, key: &TaskKey) -> Option<&mut Task> {
        let task = self.live.get_mut(key)?;
        self.touched.note(key, task, false);
        Some(task)
    }

    /// A live or remembered completed task.
    pub(super) fn find(&self, key: &TaskKey) -> Option<&Task> {
        self.live.get(key).or_else(|| {
            self.completed
                .iter()
                .rev()
                .find_map(|(k, t)| (k == key).then_some(t))
        })
    }

    /// Starts or stops noting the tasks touched.
    pub(super) fn watch(&mut self, on: bool) {
        if self.touched.on != on {
            // What was noted is dropped, and the places tasks hold go stale with it.
            self.touched.take();
            self.touched.on = on;
        }
    }

    /// The tasks touched since the last call, and whether each was added.
    pub(super) fn take_touched(&mut self) -> Vec<NotedTask> {
        self.touched.take()
    }

    /// Gives back what [`TaskTable::take_touched`] took, emptied, so the next event's notes
    /// need not allocate.
    pub(super) fn give_back_touched(&mut self, mut taken: Vec<NotedTask>) {
        taken.clear();
        if self.touched.order.is_empty() && taken.capacity() <= KEPT_NOTES {
            self.touched.order = taken;
        }
    }

    pub(super) fn get_key_value(&self, key: &TaskKey) -> Option<(&TaskKey, &Task)> {
        self.live.get_key_value(key)
    }

    pub(super) fn contains(&self, key: &TaskKey) -> bool {
        self.live.contains_key(key)
    }

    /// Live tasks, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&TaskKey, &Task)> {
        self.live.iter()
    }

    /// Live tasks, then completed ones oldest first.
    pub(super) fn iter_all(&self) -> impl Iterator<Item = (&TaskKey, &Task)> {
        self.live
            .iter()
            .chain(self.completed.iter().map(|(k, t)| (k, t)))
    }

    /// Completed tasks, oldest first.
    pub(super) fn completed(&self) -> impl DoubleEndedIterator<Item = (&TaskKey, &Task)> {
        self.completed.iter().map(|(k, t)| (k, t))
    }

    /// The keys of a framework's live tasks, sorted.
    pub(super) fn of_framework(&self, framework: &FrameworkId) -> Vec<TaskKey> {
        let mut keys: Vec<TaskKey> = self
            .live
            .keys()
            .filter(|(fw, _)| fw == framework)
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// The live tasks placed on an agent, in key order.
    pub(super) fn on_agent(&self, agent: &AgentId) -> Vec<TaskKey> {
        self.by_agent
            .get(agent)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many tasks placed on `agent` are not terminal (without copying their keys).
    pub(super) fn count_live_on(&self, agent: &AgentId) -> usize {
        self.by_agent.get(agent).map_or(0, |keys| {
            keys.iter()
                .filter(|k| {
                    self.live
                        .get(*k)
                        .is_some_and(|t| !t.status.state.is_terminal())
                })
                .count()
        })
    }

    /// Adds (or replaces) a live task, indexing it under its agent.
    pub(super) fn insert(&mut self, key: TaskKey, mut task: Task) {
        let new = task.agent.clone();
        if self.touched.on {
            // A replaced task is a new document too: watchers get all of it, not an update.
            task.noted = self.live.get(&key).and_then(|old| old.noted);
            self.touched.note(&key, &mut task, true);
        }
        let replaced = self.live.insert(key.clone(), task);
        if let Some(old) = replaced {
            self.unindex(&key, old.agent.as_ref());
        }
        if let Some(agent) = new {
            self.by_agent.entry(agent).or_default().insert(key);
        }
    }

    /// Places a live task on `agent`, moving its index entry.
    pub(super) fn place(&mut self, key: &TaskKey, agent: &AgentId) {
        let Some(task) = self.live.get_mut(key) else {
            return;
        };
        if task.agent.as_ref() == Some(agent) {
            return;
        }
        self.touched.note(key, task, false);
        task.revision += 1;
        let old = task.agent.replace(agent.clone());
        self.unindex(key, old.as_ref());
        self.by_agent
            .entry(agent.clone())
            .or_default()
            .insert(key.clone());
    }

    /// Moves a live task to the completed list (dropping the oldest beyond the bound).
    pub(super) fn complete(&mut self, key: &TaskKey) {
        let Some(task) = self.live.remove(key) else {
            return;
        };
        self.unindex(key, task.agent.as_ref());
        if self.completed.len() >= COMPLETED_TASKS {
            self.completed.pop_front();
        }
        if let Some(noted) = self.touched.of(&task) {
            noted.completed = Some(self.completions);
        }
        self.completions += 1;
        self.completed.push_back((key.clone(), task));
    }

    /// The task that completed `n`th (counted from 0), while it is remembered: found without
    /// a search of the completed list.
    pub(super) fn completed_nth(&self, n: u64) -> Option<&Task> {
        let remembered = u64::try_from(self.completed.len()).ok()?;
        let i = n.checked_sub(self.completions - remembered)?;
        self.completed
            .get(usize::try_from(i).ok()?)
            .map(|(_, task)| task)
    }

    /// Whether a completed task with this key is remembered.
    pub(super) fn is_completed(&self, key: &TaskKey) -> bool {
        self.completed.iter().any(|(k, _)| k == key)
    }

    fn unindex(&mut self, key: &TaskKey, agent: Option<&AgentId>) {
        if let Some(agent) = agent
            && let Some(set) = self.by_agent.get_mut(agent)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_agent.remove(agent);
            }
        }
    }

    /// The index invariant (see the module docs), for tests that drive the core at random.
    #[cfg(test)]
    pub(super) fn check(&self) -> Result<(), String> {
        let indexed: usize = self.by_agent.values().map(BTreeSet::len).sum();
        let placed = self.live.values().filter(|t| t.agent.is_some()).count();
        if indexed != placed {
            return Err(format!("{indexed} tasks indexed by agent, {placed} placed"));
        }
        for (agent, keys) in &self.by_agent {
            for key in keys {
                let on = self.live.get(key).and_then(|t| t.agent.as_ref());
                if on != Some(agent) {
                    return Err(format!(
                        "{key:?} indexed under {agent} but placed on {on:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::UpdateUuid;
    use corral_types::{Reason, StatusSource, TaskState};

    fn key(t: &str) -> TaskKey {
        (FrameworkId::new("f").unwrap(), TaskId::new(t).unwrap())
    }

    fn task(agent: Option<&str>) -> Task {
        let status = TaskStatus {
            task_id: TaskId::new("t").unwrap(),
            framework_id: FrameworkId::new("f").unwrap(),
            agent_id: None,
            state: TaskState::Staging,
            reason: Reason::Launched,
            message: String::new(),
            usage: None,
            timestamp_millis: 0,
            uuid: Some(UpdateUuid::from_bytes([0; 16])),
            source: StatusSource::Master,
            trap_kind: None,
            healthy: None,
            progress: None,
            result_json: None,
            checkpoint: Default::default(),
            outputs: Vec::new(),
            outputs_not_kept: None,
        };
        Task::new(
            agent.map(|a| AgentId::new(a).unwrap()),
            Role::default_role(),
            TaskMeta::default(),
            Allocation::default(),
            status,
            Timestamp::ZERO,
        )
    }

    #[test]
    fn the_agent_index_follows_inserts_moves_and_completion() {
        let (a1, a2) = (AgentId::new("a1").unwrap(), AgentId::new("a2").unwrap());
        let mut table = TaskTable::default();
        table.insert(key("x"), task(Some("a1")));
        table.insert(key("y"), task(None));
        assert_eq!(table.on_agent(&a1), [key("x")]);
        table.place(&key("y"), &a2);
        table.place(&key("x"), &a2);
        assert_eq!(table.on_agent(&a1), []);
        assert_eq!(table.on_agent(&a2), [key("x"), key("y")]);
        // Replacing a task re-indexes it under the new task's agent.
        table.insert(key("x"), task(Some("a1")));
        assert_eq!(table.on_agent(&a1), [key("x")]);
        table.complete(&key("x"));
        assert_eq!(table.on_agent(&a1), []);
        assert!(table.is_completed(&key("x")) && !table.contains(&key("x")));
        table.check().unwrap();
    }

    #[test]
    fn completed_tasks_are_bounded() {
        let mut table = TaskTable::default();
        for i in 0..COMPLETED_TASKS + 5 {
            let k = key(&format!("t{i}"));
            table.insert(k.clone(), task(Some("a")));
            table.complete(&k);
        }
        assert_eq!(table.completed().count(), COMPLETED_TASKS);
        assert!(!table.is_completed(&key("t0")));
        assert!(table.is_completed(&key(&format!("t{}", COMPLETED_TASKS + 4))));
        table.check().unwrap();
    }

    #[test]
    fn each_task_is_noted_once_per_event_in_first_touched_order() {
        let mut table = TaskTable::default();
        table.insert(key("old"), task(Some("a")));
        table.watch(true);
        let noted = |table: &mut TaskTable| {
            let notes = table.take_touched();
            let seen = notes
                .iter()
                .map(|n| (n.key.1.to_string(), n.added, n.before, n.completed))
                .collect::<Vec<_>>();
            table.give_back_touched(notes);
            seen
        };
        let (a, b, c) = (key("a"), key("b"), key("c"));
        table.insert(a.clone(), task(None));
        table.get_mut(&key("old")).unwrap().revision += 1;
        table.place(&a, &AgentId::new("a").unwrap());
        // Many at once (an agent's batch of updates): each still once.
        for _ in 0..3 {
            table.insert(b.clone(), task(Some("a")));
            table.get_mut(&key("old")).unwrap();
        }
        table.complete(&b);
        // An ID reused in the same event: the completed task and the new one apart.
        table.insert(b.clone(), task(Some("a")));
        let s = |id: &str| id.to_string();
        assert_eq!(
            noted(&mut table),
            [
                (s("a"), true, 0, None),
                (s("old"), false, 0, None),
                (s("b"), true, 0, Some(0)),
                (s("b"), true, 0, None),
            ]
        );
        // The next event starts afresh; places from the last are stale.
        table.get_mut(&key("old")).unwrap();
        table.get_mut(&a).unwrap();
        assert_eq!(
            noted(&mut table),
            [(s("old"), false, 1, None), (s("a"), false, 1, None)]
        );
        // Paused and resumed: nothing noted meanwhile, and old places do not count.
        table.get_mut(&a).unwrap();
        table.watch(false);
        table.insert(c.clone(), task(None));
        table.watch(true);
        table.get_mut(&a).unwrap();
        table.get_mut(&c).unwrap();
        assert_eq!(
            noted(&mut table),
            [(s("a"), false, 1, None), (s("c"), false, 0, None)]
        );
    }

    #[test]
    fn a_completed_task_is_found_by_its_number_while_remembered() {
        let mut table = TaskTable::default();
        let n = COMPLETED_TASKS as u64 + 5;
        for i in 0..n {
            let k = key(&format!("t{i}"));
            table.insert(k.clone(), task(Some("a")));
            table.complete(&k);
        }
        let same = |nth: u64, id: &str| {
            let by_number = table.completed_nth(nth).unwrap();
            std::ptr::eq(by_number, table.find(&key(id)).unwrap())
        };
        assert!(table.completed_nth(4).is_none(), "evicted");
        assert!(same(5, "t5"));
        assert!(same(n - 1, &format!("t{}", n - 1)));
        assert!(table.completed_nth(n).is_none(), "not completed yet");
    }
}
