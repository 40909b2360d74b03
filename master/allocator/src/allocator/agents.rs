//! Agents and reservations.

use std::collections::HashMap;

use super::{AgentSpec, Allocator, UsedResources};
use crate::error::AllocatorError;
use crate::state::{AgentState, Reservation};
use corral_types::{AgentId, Allocation, FrameworkId, Resources, Role};

impl Allocator {
    /// Adds an agent. `used` lists what frameworks already run there (an agent re-registering
    /// after a master failover); those frameworks must already be added and subscribed to the
    /// roles named. Validates everything before changing anything.
    pub fn add_agent(
        &mut self,
        id: AgentId,
        spec: AgentSpec,
        used: &[UsedResources],
    ) -> Result<(), AllocatorError> {
        if self.agent_index.contains_key(&id) {
            return Err(AllocatorError::DuplicateAgent(id));
        }
        let overflow = |a: &Resources, b: &Resources| {
            AllocatorError::Overflow(Box::new(a.clone()), Box::new(b.clone()))
        };
        let new_total = self
            .total
            .checked_add(&spec.total)
            .map_err(|_| overflow(&self.total, &spec.total))?;

        // Reservations, merged per role.
        let mut reservations: Vec<(Role, Resources, Resources)> = Vec::new();
        let mut reserved = Resources::new();
        for (fixed, (role, r)) in spec
            .static_reservations
            .iter()
            .map(|x| (true, x))
            .chain(spec.dynamic_reservations.iter().map(|x| (false, x)))
        {
            reserved = reserved
                .checked_add(r)
                .map_err(|_| overflow(&reserved, r))?;
            let i = match reservations.iter().position(|(n, _, _)| n == role) {
                Some(i) => i,
                None => {
                    reservations.push((role.clone(), Resources::new(), Resources::new()));
                    reservations.len() - 1
                }
            };
            let slot = if fixed {
                &mut reservations[i].1
            } else {
                &mut reservations[i].2
            };
            *slot = slot.saturating_add(r);
        }
        let insufficient =
            |available: &Resources, requested: &Resources| AllocatorError::Insufficient {
                agent: id.clone(),
                available: Box::new(available.clone()),
                requested: Box::new(requested.clone()),
            };
        if !spec.total.contains(&reserved) {
            return Err(insufficient(&spec.total, &reserved));
        }

        // Used resources: each part must fit in its pool. Reserved parts come from the role's
        // own reservation, then its ancestors' (in the order `record_allocation` takes them).
        let mut subs = Vec::with_capacity(used.len());
        let mut unreserved_used = Resources::new();
        let mut reservation_left: HashMap<&Role, Resources> = reservations
            .iter()
            .map(|(role, fixed, dynamic)| (role, fixed.saturating_add(dynamic)))
            .collect();
        for u in used {
            let f = self.framework_slot(&u.framework)?;
            let sub = self
                .find_sub(f, &u.role)
                .ok_or_else(|| AllocatorError::NotSubscribed {
                    framework: u.framework.clone(),
                    role: u.role.clone(),
                })?;
            subs.push(sub);
            unreserved_used = unreserved_used
                .checked_add(&u.resources.unreserved)
                .map_err(|_| overflow(&unreserved_used, &u.resources.unreserved))?;
            let mut left = u.resources.reserved.clone();
            let mut path_left = Resources::new();
            let mut owner = Some(u.role.clone());
            while let Some(role) = owner {
                if let Some(have) = reservation_left.get_mut(&role) {
                    path_left = path_left.saturating_add(have);
                    let take = left.min(have);
                    *have = have.saturating_sub(&take);
                    left = left.saturating_sub(&take);
                }
                owner = role.parent();
            }
            if !left.is_empty() {
                return Err(insufficient(&path_left, &u.resources.reserved));
            }
        }
        let unreserved = spec.total.saturating_sub(&reserved);
        if !unreserved.contains(&unreserved_used) {
            return Err(insufficient(&unreserved, &unreserved_used));
        }

        // Commit.
        let slot = self.agents.insert(AgentState {
            id: id.clone(),
            total: spec.total.clone(),
            free: spec.total.clone(),
            unreserved_free: unreserved,
            reservations: Vec::new(),
            allocations: HashMap::new(),
            inherited: HashMap::new(),
            active: true,
            draining: false,
        });
        self.agent_index.insert(id, slot);
        self.filters.add_agent(slot);
        for (role, fixed, dynamic) in reservations {
            let r = self.ensure_role(&role);
            let both = fixed.saturating_add(&dynamic);
            let res = self.agents[slot].reservation_mut(r);
            res.fixed = fixed;
            res.dynamic = dynamic;
            self.add_role_reservation(r, &both, true);
        }
        self.set_total(new_total);
        for (u, sub) in used.iter().zip(subs) {
            if !u.resources.is_empty() {
                self.record_allocation(slot, sub, &u.resources);
            }
        }
        Ok(())
    }

    /// Removes an agent: its allocations, reservations and filters go with it.
    pub fn remove_agent(&mut self, id: &AgentId) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(id)?;
        let held: Vec<(u32, Allocation)> = self.agents[slot]
            .allocations
            .iter()
            .map(|(s, a)| (*s, a.clone()))
            .collect();
        for (sub, alloc) in held {
            self.release_allocation(slot, sub, &alloc);
            if !self.subs[sub].subscribed && self.subs[sub].agents.is_empty() {
                self.drop_sub(sub);
            }
        }
        let reservations = std::mem::take(&mut self.agents[slot].reservations);
        for r in &reservations {
            self.add_role_reservation(r.role, &r.reserved(), false);
        }
        let total = self.total.saturating_sub(&self.agents[slot].total);
        self.filters.remove_agent(slot);
        self.agents.remove(slot);
        self.agent_index.remove(id);
        for r in reservations {
            self.gc_role(r.role);
        }
        self.set_total(total);
        Ok(())
    }

    /// Changes an agent's total (resized host, oversubscription). The new total must still
    /// hold its reservations and unreserved allocations.
    pub fn update_agent(&mut self, id: &AgentId, total: Resources) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(id)?;
        let a = &self.agents[slot];
        let committed = a.total.saturating_sub(&a.unreserved_free);
        if !total.contains(&committed) {
            return Err(AllocatorError::Insufficient {
                agent: id.clone(),
                available: Box::new(total),
                requested: Box::new(committed),
            });
        }
        let allocated = a.total.saturating_sub(&a.free);
        let rest = self.total.saturating_sub(&a.total);
        let cluster = rest.checked_add(&total).map_err(|_| {
            AllocatorError::Overflow(Box::new(rest.clone()), Box::new(total.clone()))
        })?;
        let a = &mut self.agents[slot];
        a.unreserved_free = total.saturating_sub(&committed);
        a.free = total.saturating_sub(&allocated);
        a.total = total;
        self.set_total(cluster);
        Ok(())
    }

    /// Activates or deactivates an agent; inactive agents get no offers.
    pub fn set_agent_active(&mut self, id: &AgentId, active: bool) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(id)?;
        self.agents[slot].active = active;
        Ok(())
    }

    /// Marks an agent as draining (no new offers; running work continues) or not.
    pub fn set_agent_draining(
        &mut self,
        id: &AgentId,
        draining: bool,
    ) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(id)?;
        self.agents[slot].draining = draining;
        Ok(())
    }

    /// Dynamically reserves unallocated, unreserved resources of an agent to a role (creating
    /// the role if needed). Fails if the agent lacks them or a limit on the role's path would
    /// be exceeded (reservations count as consumption).
    pub fn reserve(
        &mut self,
        agent: &AgentId,
        role: &Role,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(agent)?;
        // An empty reservation would be an entry holding nothing for a role nothing keeps.
        if resources.is_empty() {
            return Err(AllocatorError::NothingToReserve("reserve"));
        }
        let a = &self.agents[slot];
        if !a.unreserved_free.contains(resources) {
            return Err(AllocatorError::Insufficient {
                agent: agent.clone(),
                available: Box::new(a.unreserved_free.clone()),
                requested: Box::new(resources.clone()),
            });
        }
        if let Some(&r) = self.role_index.get(role)
            && let Some(e) = self.limit_breach(r, resources)
        {
            return Err(e);
        }
        let r = self.ensure_role(role);
        let a = &mut self.agents[slot];
        a.unreserved_free = a.unreserved_free.saturating_sub(resources);
        let res = a.reservation_mut(r);
        res.dynamic = res.dynamic.saturating_add(resources);
        self.add_role_reservation(r, resources, true);
        Ok(())
    }

    /// Releases part of a dynamic reservation that is not allocated back to the unreserved
    /// pool.
    pub fn unreserve(
        &mut self,
        agent: &AgentId,
        role: &Role,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(agent)?;
        if resources.is_empty() {
            return Err(AllocatorError::NothingToReserve("unreserve"));
        }
        let r = self.role_slot(role)?;
        let a = &self.agents[slot];
        let available = a
            .reservation(r)
            .map_or_else(Resources::new, |res| res.dynamic.min(&res.free()));
        if !available.contains(resources) {
            return Err(AllocatorError::CannotUnreserve {
                agent: agent.clone(),
                role: role.clone(),
                available: Box::new(available),
                requested: Box::new(resources.clone()),
            });
        }
        let a = &mut self.agents[slot];
        a.unreserved_free = a.unreserved_free.saturating_add(resources);
        let res = a.reservation_mut(r);
        res.dynamic = res.dynamic.saturating_sub(resources);
        prune_reservations(&mut a.reservations);
        self.add_role_reservation(r, resources, false);
        self.gc_role(r);
        Ok(())
    }

    /// RESERVE on an offer: turns unreserved resources the framework holds in `role` on the
    /// agent into a dynamic reservation for `role`, still held by the framework. Nothing else
    /// changes: the framework keeps them and consumption is the same.
    pub fn reserve_allocated(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        self.convert_allocated(agent, framework, role, resources, true)
    }

    /// UNRESERVE on an offer: the reverse of [`Allocator::reserve_allocated`]. Only dynamic
    /// reservations can be converted.
    pub fn unreserve_allocated(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        self.convert_allocated(agent, framework, role, resources, false)
    }

    fn convert_allocated(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &Resources,
        reserve: bool,
    ) -> Result<(), AllocatorError> {
        let slot = self.agent_slot(agent)?;
        let f = self.framework_slot(framework)?;
        if resources.is_empty() {
            return Err(AllocatorError::NothingToReserve(if reserve {
                "reserve"
            } else {
                "unreserve"
            }));
        }
        let sub = self
            .find_sub(f, role)
            .ok_or_else(|| AllocatorError::NotSubscribed {
                framework: framework.clone(),
                role: role.clone(),
            })?;
        let r = self.subs[sub].role;
        let a = &self.agents[slot];
        let held = a.allocations.get(&sub).cloned().unwrap_or_default();
        // Only the role's own reservation can be unreserved, not what it holds of its
        // ancestors' (as in Mesos, a framework unreserves only for its own role).
        let own_reserved = held.reserved.saturating_sub(&a.inherited_total(sub));
        let (from, dynamic) = if reserve {
            (&held.unreserved, resources.clone())
        } else {
            (
                &own_reserved,
                a.reservation(r)
                    .map_or_else(Resources::new, |x| x.dynamic.clone()),
            )
        };
        if !from.contains(resources) || !dynamic.contains(resources) {
            return Err(AllocatorError::NotAllocated {
                agent: agent.clone(),
                framework: framework.clone(),
                role: role.clone(),
                held: format!("{held:?}"),
                requested: format!("{resources:?}"),
            });
        }
        let moved = if reserve {
            Allocation::unreserved(resources.clone())
        } else {
            Allocation::reserved(resources.clone())
        };
        let into = if reserve {
            Allocation::reserved(resources.clone())
        } else {
            Allocation::unreserved(resources.clone())
        };
        let a = &mut self.agents[slot];
        if let Some(h) = a.allocations.get_mut(&sub) {
            *h = h.saturating_sub(&moved).saturating_add(&into);
        }
        let res = a.reservation_mut(r);
        if reserve {
            res.dynamic = res.dynamic.saturating_add(resources);
            res.allocated = res.allocated.saturating_add(resources);
        } else {
            res.dynamic = res.dynamic.saturating_sub(resources);
            res.allocated = res.allocated.saturating_sub(resources);
        }
        prune_reservations(&mut a.reservations);
        // Consumption is unchanged (an unreserved allocation became a reservation or back);
        // only the role's reserved total and its own consumption split move.
        let state = &mut self.roles[r];
        if reserve {
            state.reserved = state.reserved.saturating_add(resources);
        } else {
            state.reserved = state.reserved.saturating_sub(resources);
        }
        Ok(())
    }
}

fn prune_reservations(reservations: &mut Vec<Reservation>) {
    reservations.retain(|r| !r.reserved().is_empty() || !r.allocated.is_empty());
}
