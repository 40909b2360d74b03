//! The core's invariants, checked after events by the example tests and after every event
//! by the property tests (`props`).

use std::collections::BTreeMap;

use corral_types::{AgentId, AgentState, Allocation, FrameworkId, FrameworkState, Role};

use crate::core::MasterCore;

impl MasterCore {
    /// Panics naming the first broken invariant.
    pub(super) fn check_invariants(&self) {
        if let Err(broken) = self.invariants() {
            panic!("core invariant broken: {broken}");
        }
    }

    /// The first broken invariant, if any:
    ///
    /// - the allocator's own invariants hold (no resource allocated twice, pools add up);
    /// - every live task placed on an agent is in exactly that agent's index entry;
    /// - every outstanding offer is on an admitted, connected agent the allocator has, to an
    ///   active, connected framework;
    /// - what the allocator says each framework holds in each role on each agent is exactly
    ///   the sum of its tasks that hold resources and its outstanding offers there;
    /// - a terminal task holds nothing;
    /// - every open agent stream names an agent that is on it.
    pub(super) fn invariants(&self) -> Result<(), String> {
        self.allocator
            .check_invariants()
            .map_err(|e| format!("allocator: {e}"))?;
        self.tasks.check()?;
        for (id, o) in &self.offers {
            let agent = self
                .agents
                .get(&o.agent)
                .ok_or_else(|| format!("offer {id} on unknown agent {}", o.agent))?;
            if agent.conn.is_none() || agent.state != AgentState::Admitted {
                return Err(format!(
                    "offer {id} on agent {} which is {} and {}",
                    o.agent,
                    agent.state,
                    if agent.conn.is_some() {
                        "connected"
                    } else {
                        "disconnected"
                    }
                ));
            }
            if self.allocator.agent(&o.agent).is_none() {
                return Err(format!(
                    "offer {id} on agent {} unknown to the allocator",
                    o.agent
                ));
            }
            let framework = self
                .frameworks
                .get(&o.framework)
                .ok_or_else(|| format!("offer {id} to unknown framework {}", o.framework))?;
            if framework.state != FrameworkState::Active || framework.conn.is_none() {
                return Err(format!(
                    "offer {id} to framework {} which is {}",
                    o.framework, framework.state
                ));
            }
        }
        let mut books: BTreeMap<(AgentId, FrameworkId, Role), Allocation> = BTreeMap::new();
        for ((fw, task), t) in self.tasks.iter() {
            if t.status.state.is_terminal() && t.holds {
                return Err(format!(
                    "terminal task {fw}/{task} still holds {:?}",
                    t.alloc
                ));
            }
            if !t.holds {
                continue;
            }
            let agent = t
                .agent()
                .ok_or_else(|| format!("task {fw}/{task} holds resources on no agent"))?;
            let e = books
                .entry((agent.clone(), fw.clone(), t.role.clone()))
                .or_default();
            *e = e.saturating_add(&t.alloc);
        }
        for o in self.offers.values() {
            let e = books
                .entry((o.agent.clone(), o.framework.clone(), o.role.clone()))
                .or_default();
            *e = e.saturating_add(&o.resources);
        }
        books.retain(|_, a| !a.is_empty());
        let held: BTreeMap<_, _> = self
            .allocator
            .allocations()
            .into_iter()
            .map(|(agent, fw, role, a)| ((agent, fw, role), a))
            .collect();
        if held != books {
            let differs = held
                .keys()
                .chain(books.keys())
                .find(|k| held.get(*k) != books.get(*k))
                .cloned();
            return Err(match differs {
                Some(k) => format!(
                    "{} in role {} on agent {}: allocator holds {:?}, tasks and offers {:?}",
                    k.1,
                    k.2,
                    k.0,
                    held.get(&k),
                    books.get(&k)
                ),
                None => "allocations differ".into(),
            });
        }
        for (conn, id) in &self.agent_conns {
            if self.agents.get(id).and_then(|a| a.conn) != Some(*conn) {
                return Err(format!(
                    "stream {conn} names agent {id}, which is not on it"
                ));
            }
        }
        Ok(())
    }
}
