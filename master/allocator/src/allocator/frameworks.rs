//! Frameworks and their subscriptions: subscribe, suppress/revive, decline, recover.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Allocator, NONE};
use crate::error::AllocatorError;
use crate::state::{FrameworkState, Subscription};
use corral_types::{AgentId, Allocation, FrameworkId, Resources, Role, Timestamp};

impl Allocator {
    pub(super) fn framework_slot(&self, id: &FrameworkId) -> Result<u32, AllocatorError> {
        self.framework_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownFramework(id.clone()))
    }

    pub(super) fn agent_slot(&self, id: &AgentId) -> Result<u32, AllocatorError> {
        self.agent_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))
    }

    /// The subscription of `framework` to `role`; `subscribed_only` rejects one the framework
    /// dropped that still holds resources.
    fn sub_slot(
        &self,
        framework: u32,
        role: &Role,
        subscribed_only: bool,
    ) -> Result<u32, AllocatorError> {
        self.find_sub(framework, role)
            .filter(|&s| !subscribed_only || self.subs[s].subscribed)
            .ok_or_else(|| AllocatorError::NotSubscribed {
                framework: self.frameworks[framework].id.clone(),
                role: role.clone(),
            })
    }

    /// Adds a framework subscribed to `roles` (at least one), with `suppressed` (a subset of
    /// `roles`) not wanting offers yet.
    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        roles: &[Role],
        suppressed: &[Role],
    ) -> Result<(), AllocatorError> {
        if self.framework_index.contains_key(&id) {
            return Err(AllocatorError::DuplicateFramework(id));
        }
        check_roles(&id, roles, suppressed)?;
        let f = self.frameworks.insert(FrameworkState {
            id: id.clone(),
            active: true,
            subs: Vec::new(),
        });
        self.framework_index.insert(id, f);
        for role in dedup(roles) {
            self.subscribe(f, role, suppressed.contains(role));
        }
        Ok(())
    }

    /// Changes a framework's roles and suppressed set (Mesos's UPDATE_FRAMEWORK). Dropped roles
    /// stop receiving offers at once; what the framework holds in them stays allocated until
    /// recovered.
    pub fn update_framework_roles(
        &mut self,
        id: &FrameworkId,
        roles: &[Role],
        suppressed: &[Role],
    ) -> Result<(), AllocatorError> {
        let f = self.framework_slot(id)?;
        check_roles(id, roles, suppressed)?;
        for sub in self.frameworks[f].subs.clone() {
            let name = self.roles[self.subs[sub].role].name.clone();
            if !roles.contains(&name) {
                self.unsubscribe(sub);
            }
        }
        for role in dedup(roles) {
            let want_suppressed = suppressed.contains(role);
            match self.find_sub(f, role) {
                Some(sub) => {
                    let s = &mut self.subs[sub];
                    s.subscribed = true;
                    s.suppressed = want_suppressed;
                    self.refresh_demand(sub);
                }
                None => self.subscribe(f, role, want_suppressed),
            }
        }
        Ok(())
    }

    /// Removes a framework. Whatever it still holds is released (the master removes a
    /// framework after its tasks are gone).
    pub fn remove_framework(&mut self, id: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.framework_slot(id)?;
        for sub in self.frameworks[f].subs.clone() {
            self.subs[sub].subscribed = false;
            let agents: Vec<u32> = self.subs[sub].agents.iter().copied().collect();
            for a in agents {
                if let Some(held) = self.agents[a].allocations.get(&sub).cloned() {
                    self.release_allocation(a, sub, &held);
                }
            }
            self.drop_sub(sub);
        }
        self.frameworks.remove(f);
        self.framework_index.remove(id);
        Ok(())
    }

    /// Activates or deactivates a framework (a disconnected framework gets no offers but keeps
    /// its allocations and filters).
    pub fn set_framework_active(
        &mut self,
        id: &FrameworkId,
        active: bool,
    ) -> Result<(), AllocatorError> {
        let f = self.framework_slot(id)?;
        self.frameworks[f].active = active;
        for sub in self.frameworks[f].subs.clone() {
            self.refresh_demand(sub);
        }
        Ok(())
    }

    /// Stops offers to the framework in `roles` (all its roles when empty).
    pub fn suppress(&mut self, id: &FrameworkId, roles: &[Role]) -> Result<(), AllocatorError> {
        for sub in self.subs_for(id, roles)? {
            self.subs[sub].suppressed = true;
            self.refresh_demand(sub);
        }
        Ok(())
    }

    /// Resumes offers to the framework in `roles` (all its roles when empty) and, as in Mesos,
    /// drops its decline filters there so it sees everything again.
    pub fn revive(&mut self, id: &FrameworkId, roles: &[Role]) -> Result<(), AllocatorError> {
        for sub in self.subs_for(id, roles)? {
            self.subs[sub].suppressed = false;
            self.filters.remove_sub(sub);
            self.refresh_demand(sub);
        }
        Ok(())
    }

    fn subs_for(&self, id: &FrameworkId, roles: &[Role]) -> Result<Vec<u32>, AllocatorError> {
        let f = self.framework_slot(id)?;
        if roles.is_empty() {
            return Ok(self.frameworks[f]
                .subs
                .iter()
                .copied()
                .filter(|&s| self.subs[s].subscribed)
                .collect());
        }
        dedup(roles)
            .into_iter()
            .map(|r| self.sub_slot(f, r, true))
            .collect()
    }

    /// Installs a decline filter: until `now + refuse`, `agent` is not offered to the framework
    /// in `role` when the offer would fit in `declined` (more resources freeing up on the agent
    /// makes it offerable again, as in Mesos). A new decline replaces the previous filter for
    /// the same framework, role and agent. `refuse == 0` installs nothing.
    ///
    /// This does not recover the declined resources: on DECLINE the master calls
    /// [`Allocator::recover`] for the offer and then this.
    pub fn decline(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        declined: &Resources,
        refuse: Duration,
        now: Timestamp,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_slot(agent)?;
        let f = self.framework_slot(framework)?;
        let sub = self.sub_slot(f, role, true)?;
        if !refuse.is_zero() {
            self.filters
                .decline(a, sub, declined, now.saturating_add(refuse));
        }
        Ok(())
    }

    /// Returns resources held by a framework in a role on an agent to the pool: an offer was
    /// declined, rescinded or timed out, or a task finished. Each part goes back where it came
    /// from (`reserved` to the role's reservation). Fails, changing nothing, if the framework
    /// does not hold that much.
    pub fn recover(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &Allocation,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_slot(agent)?;
        let f = self.framework_slot(framework)?;
        let sub = self.sub_slot(f, role, false)?;
        let held = self.agents[a].allocations.get(&sub);
        if !held.is_some_and(|h| h.contains(resources)) {
            return Err(AllocatorError::NotAllocated {
                agent: agent.clone(),
                framework: framework.clone(),
                role: role.clone(),
                held: format!("{:?}", held.cloned().unwrap_or_default()),
                requested: format!("{resources:?}"),
            });
        }
        self.release_allocation(a, sub, resources);
        if !self.subs[sub].subscribed && self.subs[sub].agents.is_empty() {
            self.drop_sub(sub);
        }
        Ok(())
    }

    fn subscribe(&mut self, framework: u32, role_name: &Role, suppressed: bool) {
        let role = self.ensure_role(role_name);
        let fw_id = self.frameworks[framework].id.clone();
        if self.roles[role].fw_sorter.is_none() {
            let mut s = self.framework_sorters.make();
            s.set_total(&self.total);
            self.roles[role].fw_sorter = Some(s);
        }
        if self.roles[role].role_client.is_none() {
            let rc = self.role_sorter.add(role_name.as_str());
            self.role_sorter.deactivate(rc);
            let i = rc.index();
            if self.role_of_client.len() <= i {
                self.role_of_client.resize(i + 1, NONE);
            }
            self.role_of_client[i] = role;
            self.roles[role].role_client = Some(rc);
        }
        let r = &mut self.roles[role];
        let client = match r.fw_sorter.as_mut() {
            Some(s) => {
                let c = s.add(fw_id.as_str());
                s.deactivate(c);
                c
            }
            None => return,
        };
        r.subs += 1;
        let sub = self.subs.insert(Subscription {
            framework,
            role,
            client,
            suppressed,
            subscribed: true,
            agents: BTreeSet::new(),
        });
        let r = &mut self.roles[role];
        if r.sub_of_client.len() <= client.index() {
            r.sub_of_client.resize(client.index() + 1, NONE);
        }
        r.sub_of_client[client.index()] = sub;
        self.frameworks[framework].subs.push(sub);
        self.refresh_demand(sub);
    }

    /// The framework dropped the role: no more offers or filters; the subscription goes away
    /// once it holds nothing.
    fn unsubscribe(&mut self, sub: u32) {
        self.subs[sub].subscribed = false;
        self.filters.remove_sub(sub);
        self.refresh_demand(sub);
        if self.subs[sub].agents.is_empty() {
            self.drop_sub(sub);
        }
    }

    /// Forgets a subscription that holds nothing.
    pub(super) fn drop_sub(&mut self, sub: u32) {
        self.subs[sub].subscribed = false;
        self.refresh_demand(sub);
        self.filters.remove_sub(sub);
        let Some(s) = self.subs.remove(sub) else {
            return;
        };
        self.frameworks[s.framework].subs.retain(|&x| x != sub);
        let r = &mut self.roles[s.role];
        if let Some(fs) = r.fw_sorter.as_mut() {
            fs.remove(s.client);
        }
        r.sub_of_client[s.client.index()] = NONE;
        r.subs -= 1;
        if r.subs == 0 {
            r.fw_sorter = None;
            r.sub_of_client.clear();
            if let Some(rc) = r.role_client.take() {
                self.role_sorter.remove(rc);
                self.role_of_client[rc.index()] = NONE;
            }
        }
        self.gc_role(s.role);
    }

    /// Re-derives whether a subscription wants offers and updates the demand bit, the
    /// role's demand count, and which sorter clients are active.
    pub(super) fn refresh_demand(&mut self, sub: u32) {
        let s = &self.subs[sub];
        let want = self.frameworks[s.framework].active && s.subscribed && !s.suppressed;
        if self.demanding.get(sub) == want {
            return;
        }
        let (role, client) = (s.role, s.client);
        if want {
            self.demanding.set(sub);
        } else {
            self.demanding.clear(sub);
        }
        let r = &mut self.roles[role];
        if want {
            r.demanding_bits.set(sub);
        } else {
            r.demanding_bits.clear(sub);
        }
        if let Some(fs) = r.fw_sorter.as_mut() {
            if want {
                fs.activate(client);
            } else {
                fs.deactivate(client);
            }
        }
        let before = r.demanding;
        r.demanding = if want { before + 1 } else { before - 1 };
        if let Some(rc) = r.role_client {
            match (before, r.demanding) {
                (0, 1) => self.role_sorter.activate(rc),
                (1, 0) => self.role_sorter.deactivate(rc),
                _ => {}
            }
        }
    }
}

fn check_roles(
    id: &FrameworkId,
    roles: &[Role],
    suppressed: &[Role],
) -> Result<(), AllocatorError> {
    if roles.is_empty() {
        return Err(AllocatorError::NoRoles(id.clone()));
    }
    match suppressed.iter().find(|r| !roles.contains(r)) {
        Some(role) => Err(AllocatorError::NotSubscribed {
            framework: id.clone(),
            role: role.clone(),
        }),
        None => Ok(()),
    }
}

fn dedup(roles: &[Role]) -> Vec<&Role> {
    let mut out: Vec<&Role> = Vec::with_capacity(roles.len());
    for r in roles {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}
