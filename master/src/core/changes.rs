//! What changed, for the operators' event stream: while someone watches, the core notes the
//! tasks, agents and frameworks each event touches, and at the end of the event turns them
//! into [`Change`]s carrying their latest state ([`Effect::Changes`](super::Effect::Changes)).
//! Nothing is noted while nobody watches, so the stream costs nothing until it is used.

use std::collections::HashMap;
use std::hash::Hash;

use corral_types::{AgentId, AgentState, FrameworkId, FrameworkState};

use super::MasterCore;
use super::tasks::NotedTask;
use super::views::{AgentSummary, FrameworkSummary, TaskSummary, TaskUpdate};

/// One change, with the state after it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    TaskAdded(TaskSummary),
    /// Only what can change: the watcher holds the rest from the task's TaskAdded.
    TaskUpdated(TaskUpdate),
    AgentAdded(AgentSummary),
    AgentUpdated(AgentSummary),
    AgentRemoved(AgentId),
    FrameworkAdded(FrameworkSummary),
    FrameworkUpdated(FrameworkSummary),
    FrameworkRemoved(FrameworkId),
}

/// Agents or frameworks touched during one event, each once, in the order first touched
/// (the task table notes its tasks its own way: there are many more of them).
#[derive(Debug)]
pub(super) struct Touched<K> {
    order: Vec<Noted<K>>,
    /// Positions in `order` of its first `index.len()` keys, kept only past [`SCAN`] keys.
    /// It holds what one event touched, for that event only: a fast hasher serves (seeded
    /// per process, so keys chosen to collide are no concern).
    index: HashMap<K, usize, foldhash::fast::RandomState>,
}

/// Most events touch a key or two: scanning that few beats hashing them. Events that touch
/// many (a cycle offering to thousands of agents) index them.
const SCAN: usize = 8;

/// One agent or framework touched.
#[derive(Debug)]
pub(super) struct Noted<K> {
    pub(super) key: K,
    /// It was new during the event.
    pub(super) added: bool,
}

impl<K> Default for Touched<K> {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            index: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> Touched<K> {
    pub(super) fn note(&mut self, key: &K, added: bool) {
        match self.position(key) {
            Some(i) => self.order[i].added |= added,
            None => self.order.push(Noted {
                key: key.clone(),
                added,
            }),
        }
    }

    fn position(&mut self, key: &K) -> Option<usize> {
        if self.order.len() <= SCAN {
            return self.order.iter().position(|n| n.key == *key);
        }
        for (i, n) in self.order.iter().enumerate().skip(self.index.len()) {
            self.index.insert(n.key.clone(), i);
        }
        self.index.get(key).copied()
    }

    pub(super) fn take(&mut self) -> Vec<Noted<K>> {
        self.index.clear();
        std::mem::take(&mut self.order)
    }
}

/// The agents and frameworks touched (the task table notes its own tasks).
#[derive(Debug, Default)]
pub(super) struct Watch {
    agents: Touched<AgentId>,
    frameworks: Touched<FrameworkId>,
}

impl MasterCore {
    /// Starts noting changes (a subscriber is about to get the state).
    pub(super) fn watch(&mut self) {
        if self.watch.is_none() {
            self.watch = Some(Watch::default());
            self.tasks.watch(true);
        }
    }

    /// Stops noting changes: nobody watches any more.
    pub(crate) fn unwatch(&mut self) {
        self.watch = None;
        self.tasks.watch(false);
    }

    /// How many [`Effect::Changes`](super::Effect::Changes) the core has emitted; each
    /// carries its number, counted from 1.
    pub(crate) fn changes_emitted(&self) -> u64 {
        self.changes_emitted
    }

    pub(super) fn note_agent(&mut self, id: &AgentId, added: bool) {
        if let Some(w) = &mut self.watch {
            w.agents.note(id, added);
        }
    }

    pub(super) fn note_framework(&mut self, id: &FrameworkId, added: bool) {
        if let Some(w) = &mut self.watch {
            w.frameworks.note(id, added);
        }
    }

    /// What the event just handled changed, with the latest state of each.
    pub(super) fn take_changes(&mut self) -> Vec<Change> {
        let Some(w) = &mut self.watch else {
            return Vec::new();
        };
        let agents = w.agents.take();
        let frameworks = w.frameworks.take();
        let mut tasks = self.tasks.take_touched();
        let mut changes = Vec::with_capacity(agents.len() + frameworks.len() + tasks.len());
        for Noted { key: id, added } in agents {
            let Some(a) = self.agents.get(&id) else {
                changes.push(Change::AgentRemoved(id));
                continue;
            };
            changes.push(match (a.state, added) {
                (AgentState::Gone, _) => Change::AgentRemoved(id),
                (_, true) => Change::AgentAdded(self.agent_summary(a)),
                (_, false) => Change::AgentUpdated(self.agent_summary(a)),
            });
        }
        for Noted { key: id, added } in frameworks {
            let Some(f) = self.frameworks.get(&id) else {
                changes.push(Change::FrameworkRemoved(id));
                continue;
            };
            changes.push(match (f.state, added) {
                (FrameworkState::Completed, _) => Change::FrameworkRemoved(id),
                (_, true) => Change::FrameworkAdded(self.framework_summary(f)),
                (_, false) => Change::FrameworkUpdated(self.framework_summary(f)),
            });
        }
        for NotedTask {
            key,
            added,
            before,
            completed,
        } in tasks.drain(..)
        {
            // Touched tasks were live; one that completed is found by its number (a search
            // per task would cost as many comparisons as tasks completed with it). One evicted
            // from the completed list in the same event has nothing to show.
            let found = match completed {
                Some(n) => self.tasks.completed_nth(n),
                None => self.tasks.get(&key),
            };
            let Some(t) = found else {
                continue;
            };
            if added {
                changes.push(Change::TaskAdded(self.task_summary(&key, t)));
            } else if t.revision() != before {
                changes.push(Change::TaskUpdated(self.task_update(&key, t)));
            }
        }
        self.tasks.give_back_touched(tasks);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_noted_once_in_first_touched_order_past_the_scanned_few() {
        let mut touched = Touched::default();
        // Past SCAN keys, the index takes over; every key must still be found again.
        for round in 0..2 {
            for k in 0..3 * SCAN as u64 {
                touched.note(&k, round == 1 && k % 2 == 0);
            }
        }
        let noted = touched.take();
        assert_eq!(noted.len(), 3 * SCAN);
        for (i, n) in noted.iter().enumerate() {
            assert_eq!(n.key, i as u64);
            assert_eq!(n.added, n.key % 2 == 0, "added if added at any touch");
        }
        // Taken: the next event starts empty, index and all.
        touched.note(&5, false);
        assert_eq!(touched.take().len(), 1);
    }
}
