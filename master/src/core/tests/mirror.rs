//! A watcher's copy of the cluster, kept from the state it subscribed to and the changes after
//! it, as a client of the event stream keeps one. The property tests check after every event
//! that the copy agrees with what `GetState` says then: the stream misses nothing, and says
//! nothing twice.

use std::collections::{BTreeMap, HashMap};

use super::*;

#[derive(Debug, Default)]
pub(super) struct Mirror {
    tasks: HashMap<TaskKey, TaskSummary>,
    agents: BTreeMap<AgentId, AgentState>,
    frameworks: BTreeMap<FrameworkId, FrameworkState>,
    /// The number of the last changes applied.
    seq: u64,
}

fn state(core: &mut MasterCore, request: OperatorRequest) -> StateSnapshot {
    let fx = core.handle(Event::Operator(request), Timestamp::ZERO);
    match fx.as_slice() {
        [Effect::Reply(Reply::Operator(Ok(OperatorResponse::State(s))))] => (**s).clone(),
        other => panic!("not a state: {other:?}"),
    }
}

impl Mirror {
    /// Subscribes to `core`'s changes, starting from its state now.
    pub(super) fn subscribe(core: &mut MasterCore) -> Self {
        let snapshot = state(core, OperatorRequest::Subscribe { max_tasks: 100_000 });
        let mut mirror = Mirror {
            seq: core.changes_emitted(),
            ..Mirror::default()
        };
        for t in snapshot.tasks {
            mirror
                .tasks
                .insert((t.now.framework.clone(), t.now.id.clone()), t);
        }
        for a in snapshot
            .agents
            .into_iter()
            .filter(|a| a.state != AgentState::Gone)
        {
            mirror.agents.insert(a.id, a.state);
        }
        for f in snapshot.frameworks {
            if f.state != FrameworkState::Completed {
                mirror.frameworks.insert(f.id, f.state);
            }
        }
        mirror
    }

    /// Applies one `Effect::Changes`; they come numbered one after another.
    pub(super) fn apply(&mut self, seq: u64, changes: &[Change]) -> Result<(), String> {
        if seq != self.seq + 1 {
            return Err(format!("changes {seq} came after {}", self.seq));
        }
        self.seq = seq;
        for change in changes {
            match change {
                Change::TaskAdded(t) => {
                    let key = (t.now.framework.clone(), t.now.id.clone());
                    self.tasks.insert(key, t.clone());
                }
                Change::TaskUpdated(u) => {
                    let key = (u.framework.clone(), u.id.clone());
                    let Some(t) = self.tasks.get_mut(&key) else {
                        return Err(format!("TASK_UPDATED of {key:?}, never added"));
                    };
                    // Every update changes something a watcher sees: none comes twice.
                    if t.now == *u {
                        return Err(format!("TASK_UPDATED of {key:?} changed nothing"));
                    }
                    t.now = u.clone();
                }
                Change::AgentAdded(a) | Change::AgentUpdated(a) => {
                    self.agents.insert(a.id.clone(), a.state);
                }
                Change::AgentRemoved(id) => {
                    self.agents.remove(id);
                }
                Change::FrameworkAdded(f) | Change::FrameworkUpdated(f) => {
                    self.frameworks.insert(f.id.clone(), f.state);
                }
                Change::FrameworkRemoved(id) => {
                    self.frameworks.remove(id);
                }
            }
        }
        Ok(())
    }

    /// Whether the copy agrees with the core: every task the core lists is the same in the
    /// copy (which may also keep finished tasks the core has since forgotten), and the same
    /// agents and frameworks are there in the same states.
    pub(super) fn check(&self, core: &mut MasterCore) -> Result<(), String> {
        let now = state(core, OperatorRequest::GetState { max_tasks: 100_000 });
        for t in &now.tasks {
            let key = (t.now.framework.clone(), t.now.id.clone());
            match self.tasks.get(&key) {
                Some(copy) if copy == t => {}
                copy => return Err(format!("task {key:?}: core {t:?}, watcher {copy:?}")),
            }
        }
        if let Some((key, t)) = self.tasks.iter().find(|(k, t)| {
            !t.now.state.is_terminal()
                && !now
                    .tasks
                    .iter()
                    .any(|n| (&n.now.framework, &n.now.id) == (&k.0, &k.1))
        }) {
            return Err(format!(
                "the watcher has live task {key:?} ({t:?}) the core does not"
            ));
        }
        let agents: BTreeMap<AgentId, AgentState> = now
            .agents
            .into_iter()
            .filter(|a| a.state != AgentState::Gone)
            .map(|a| (a.id, a.state))
            .collect();
        if agents != self.agents {
            return Err(format!(
                "agents: core {agents:?}, watcher {:?}",
                self.agents
            ));
        }
        let frameworks: BTreeMap<FrameworkId, FrameworkState> = now
            .frameworks
            .into_iter()
            .filter(|f| f.state != FrameworkState::Completed)
            .map(|f| (f.id, f.state))
            .collect();
        if frameworks != self.frameworks {
            return Err(format!(
                "frameworks: core {frameworks:?}, watcher {:?}",
                self.frameworks
            ));
        }
        Ok(())
    }
}
