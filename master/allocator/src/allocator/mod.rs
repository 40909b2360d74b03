//! The allocator: state, configuration, reads, and the bookkeeping every operation shares.
//!
//! Operations live in submodules by subject: `agents` (agents and reservations),
//! `frameworks` (subscriptions, suppress/revive, decline, recover), `roles` (roles, weights,
//! quotas), and `cycle` (the allocation cycle).

mod agents;
mod cycle;
mod frameworks;
mod roles;

use std::collections::HashMap;

use crate::filters::{Bitset, FilterTable};
use crate::sorter::{Sorter, SorterFactory, SorterKind};
use crate::state::{AgentState, FrameworkState, RoleState, Slab, Subscription};
use corral_types::{AgentId, Allocation, FrameworkId, Quota, Resources, Role, Weight};

/// Allocator settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// Orders roles.
    pub role_sorter: SorterKind,
    /// Orders frameworks within a role.
    pub framework_sorter: SorterKind,
    /// An offer is made only if it contains at least one of these (Mesos's
    /// `--min_allocatable_resources`), so agents are not offered fragments nobody can use.
    /// Empty: anything non-empty is allocatable.
    pub min_allocatable: Vec<Resources>,
}

impl Default for AllocatorConfig {
    /// DRF at both levels; minimum allocatable 0.01 cpus or 32 MiB of memory (Mesos's defaults).
    fn default() -> Self {
        Self {
            role_sorter: SorterKind::Drf,
            framework_sorter: SorterKind::Drf,
            min_allocatable: vec![
                Resources::new().with_cpus_milli(10),
                Resources::new().with_mem_mib(32),
            ],
        }
    }
}

/// How an agent registers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSpec {
    /// Everything the agent has, reserved or not.
    pub total: Resources,
    /// Reservations from the agent's configuration; they cannot be unreserved.
    pub static_reservations: Vec<(Role, Resources)>,
    /// Dynamic reservations the agent checkpointed (after a master failover).
    pub dynamic_reservations: Vec<(Role, Resources)>,
}

impl AgentSpec {
    /// An agent with `total` resources and no reservations.
    pub fn new(total: Resources) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }

    /// Adds a static reservation.
    #[must_use]
    pub fn with_static_reservation(mut self, role: Role, resources: Resources) -> Self {
        self.static_reservations.push((role, resources));
        self
    }
}

/// Resources already in use on a (re-)registering agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedResources {
    /// The framework running tasks on them.
    pub framework: FrameworkId,
    /// The role they are allocated to; the framework must be subscribed to it.
    pub role: Role,
    /// What is used; `reserved` comes out of the agent's reservation for `role`.
    pub resources: Allocation,
}

/// Resources offered to one framework, in one role, on one agent. Recorded as allocated to the
/// framework until recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Where.
    pub agent: AgentId,
    /// To whom.
    pub framework: FrameworkId,
    /// In which role (the framework may subscribe to several).
    pub role: Role,
    /// What; `reserved` is reserved to `role` or to its ancestors.
    pub resources: Allocation,
}

/// A role as the operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleSummary {
    /// The role.
    pub role: Role,
    /// Its weight (1 unless set).
    pub weight: Weight,
    /// Its quota, if set.
    pub quota: Option<Quota>,
    /// Allocated to it and its subroles.
    pub allocated: Resources,
    /// Reserved to it (exactly this role), on all agents.
    pub reserved: Resources,
    /// Quota consumption of it and its subroles: unreserved allocations plus reservations.
    pub consumed: Resources,
    /// Dominant share of `allocated` in the cluster (unweighted).
    pub dominant_share: f64,
    /// Frameworks subscribed to it (exactly this role).
    pub frameworks: usize,
    /// Of those, how many want offers (active, not suppressed).
    pub demanding: usize,
}

/// An agent as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSummary {
    /// The agent.
    pub id: AgentId,
    /// Everything it has.
    pub total: Resources,
    /// Not allocated (reserved or not).
    pub free: Resources,
    /// Not allocated and not reserved.
    pub unreserved_free: Resources,
    /// Reservations by role (static plus dynamic).
    pub reservations: Vec<(Role, Resources)>,
    /// Offers may be made (not deactivated).
    pub active: bool,
    /// Being drained: no new offers.
    pub draining: bool,
}

/// The hierarchical weighted-DRF allocator. See the crate docs for the flow.
#[derive(Debug, Clone)]
pub struct Allocator {
    config: AllocatorConfig,
    agents: Slab<AgentState>,
    agent_index: HashMap<AgentId, u32>,
    frameworks: Slab<FrameworkState>,
    framework_index: HashMap<FrameworkId, u32>,
    subs: Slab<Subscription>,
    roles: Slab<RoleState>,
    role_index: HashMap<Role, u32>,
    role_sorter: Box<dyn Sorter>,
    /// Role-sorter client -> role slot.
    role_of_client: Vec<u32>,
    framework_sorters: SorterFactory,
    filters: FilterTable,
    /// Subscriptions with demand, by slot.
    demanding: Bitset,
    /// Sum of all agents' totals.
    total: Resources,
    /// Completed cycles; rotates where each cycle starts walking agents.
    cycles: u64,
    /// Per role slot: the agent visit that last considered it (see `cycle`).
    role_marks: Vec<u64>,
    visit: u64,
    /// Reused buffer for the cycle's candidate lists.
    scratch: Vec<u32>,
}

/// "No role" / "no subscription" in the dense client tables.
const NONE: u32 = u32::MAX;

impl Allocator {
    /// An empty allocator.
    pub fn new(config: AllocatorConfig) -> Self {
        let role_sorter = SorterFactory::new(config.role_sorter).make();
        let framework_sorters = SorterFactory::new(config.framework_sorter);
        Self {
            config,
            agents: Slab::default(),
            agent_index: HashMap::new(),
            frameworks: Slab::default(),
            framework_index: HashMap::new(),
            subs: Slab::default(),
            roles: Slab::default(),
            role_index: HashMap::new(),
            role_sorter,
            role_of_client: Vec::new(),
            framework_sorters,
            filters: FilterTable::default(),
            demanding: Bitset::default(),
            total: Resources::new(),
            cycles: 0,
            role_marks: Vec::new(),
            visit: 0,
            scratch: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    /// Sum of all agents' resources.
    pub fn total(&self) -> &Resources {
        &self.total
    }

    /// Number of live decline filters.
    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// Every role that exists (referenced by a framework, quota, weight, reservation or
    /// subrole), sorted by name.
    pub fn roles(&self) -> Vec<RoleSummary> {
        let mut out: Vec<RoleSummary> = self
            .roles
            .iter()
            .map(|(i, _)| self.role_summary(i))
            .collect();
        out.sort_by(|a, b| a.role.cmp(&b.role));
        out
    }

    /// One role, if it exists.
    pub fn role(&self, role: &Role) -> Option<RoleSummary> {
        self.role_index.get(role).map(|&i| self.role_summary(i))
    }

    fn role_summary(&self, i: u32) -> RoleSummary {
        let r = &self.roles[i];
        let subscribed = self
            .subs
            .iter()
            .filter(|(_, s)| s.role == i && s.subscribed)
            .count();
        RoleSummary {
            role: r.name.clone(),
            weight: r.weight.unwrap_or_default(),
            quota: r.quota.clone(),
            allocated: r.subtree_allocated.clone(),
            reserved: r.reserved.clone(),
            consumed: r.subtree_consumed.clone(),
            dominant_share: r.subtree_allocated.dominant_share(&self.total),
            frameworks: subscribed,
            demanding: r.demanding as usize,
        }
    }

    /// One agent, if it exists.
    pub fn agent(&self, id: &AgentId) -> Option<AgentSummary> {
        let a = &self.agents[*self.agent_index.get(id)?];
        Some(AgentSummary {
            id: a.id.clone(),
            total: a.total.clone(),
            free: a.free.clone(),
            unreserved_free: a.unreserved_free.clone(),
            reservations: a
                .reservations
                .iter()
                .map(|r| (self.roles[r.role].name.clone(), r.reserved()))
                .collect(),
            active: a.active,
            draining: a.draining,
        })
    }

    /// What a framework holds in a role on an agent.
    pub fn allocation(
        &self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
    ) -> Option<&Allocation> {
        let a = *self.agent_index.get(agent)?;
        let f = *self.framework_index.get(framework)?;
        let sub = self.find_sub(f, role)?;
        self.agents[a].allocations.get(&sub)
    }

    /// Everything held, as `(agent, framework, role, allocation)`, sorted: what an auditor
    /// compares with its own books (the master's property tests do).
    pub fn allocations(&self) -> Vec<(AgentId, FrameworkId, Role, Allocation)> {
        let mut all: Vec<_> = self
            .agents
            .iter()
            .flat_map(|(_, a)| {
                a.allocations.iter().map(move |(&sub, held)| {
                    let s = &self.subs[sub];
                    (
                        a.id.clone(),
                        self.frameworks[s.framework].id.clone(),
                        self.roles[s.role].name.clone(),
                        held.clone(),
                    )
                })
            })
            .collect();
        all.sort_by(|x, y| (&x.0, &x.1, &x.2).cmp(&(&y.0, &y.1, &y.2)));
        all
    }

    fn find_sub(&self, framework: u32, role: &Role) -> Option<u32> {
        let r = *self.role_index.get(role)?;
        self.frameworks[framework]
            .subs
            .iter()
            .copied()
            .find(|&s| self.subs[s].role == r)
    }

    /// Role slot and its ancestors, innermost first.
    fn role_path(&self, role: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(role), |&r| self.roles[r].parent)
    }

    fn allocatable(&self, r: &Resources) -> bool {
        if self.config.min_allocatable.is_empty() {
            !r.is_empty()
        } else {
            self.config.min_allocatable.iter().any(|m| r.contains(m))
        }
    }

    fn set_total(&mut self, total: Resources) {
        self.total = total;
        self.role_sorter.set_total(&self.total);
        for slot in 0..self.roles.slots() {
            if let Some(s) = self.roles.get_mut(slot).and_then(|r| r.fw_sorter.as_mut()) {
                s.set_total(&self.total);
            }
        }
    }

    /// Records `alloc` as held by subscription `sub` on agent `agent`, everywhere it counts.
    fn record_allocation(&mut self, agent: u32, sub: u32, alloc: &Allocation) {
        let (role, client) = (self.subs[sub].role, self.subs[sub].client);
        let total = alloc.total();
        let path: Vec<u32> = if alloc.reserved.is_empty() {
            Vec::new()
        } else {
            self.role_path(role).collect()
        };
        let a = &mut self.agents[agent];
        a.free = a.free.saturating_sub(&total);
        a.unreserved_free = a.unreserved_free.saturating_sub(&alloc.unreserved);
        if !alloc.reserved.is_empty() {
            a.take_reserved(sub, &path, &alloc.reserved);
        }
        let held = a.allocations.entry(sub).or_default();
        *held = held.saturating_add(alloc);
        self.subs[sub].agents.insert(agent);
        self.add_role_usage(role, &total, &alloc.unreserved, true);
        let r = &mut self.roles[role];
        if let Some(s) = r.fw_sorter.as_mut() {
            s.allocated(client, &total);
        }
        if let Some(rc) = r.role_client {
            self.role_sorter.allocated(rc, &total);
        }
    }

    /// Reverses [`Self::record_allocation`]; `alloc` must be held.
    fn release_allocation(&mut self, agent: u32, sub: u32, alloc: &Allocation) {
        let (role, client) = (self.subs[sub].role, self.subs[sub].client);
        let total = alloc.total();
        let a = &mut self.agents[agent];
        a.free = a.free.saturating_add(&total);
        a.unreserved_free = a.unreserved_free.saturating_add(&alloc.unreserved);
        if !alloc.reserved.is_empty() {
            a.give_back_reserved(sub, role, &alloc.reserved);
        }
        let now_empty = match a.allocations.get_mut(&sub) {
            Some(held) => {
                *held = held.saturating_sub(alloc);
                held.is_empty()
            }
            None => false,
        };
        if now_empty {
            a.allocations.remove(&sub);
            self.subs[sub].agents.remove(&agent);
        }
        self.add_role_usage(role, &total, &alloc.unreserved, false);
        let r = &mut self.roles[role];
        if let Some(s) = r.fw_sorter.as_mut() {
            s.unallocated(client, &total);
        }
        if let Some(rc) = r.role_client {
            self.role_sorter.unallocated(rc, &total);
        }
    }

    /// Adds (or removes) allocation `total`, of which `unreserved` counts as new consumption,
    /// to `role` and its ancestors.
    fn add_role_usage(&mut self, role: u32, total: &Resources, unreserved: &Resources, add: bool) {
        let op = |x: &Resources, y: &Resources| {
            if add {
                x.saturating_add(y)
            } else {
                x.saturating_sub(y)
            }
        };
        let r = &mut self.roles[role];
        r.allocated = op(&r.allocated, total);
        let mut cur = Some(role);
        while let Some(i) = cur {
            let r = &mut self.roles[i];
            r.subtree_allocated = op(&r.subtree_allocated, total);
            r.subtree_consumed = op(&r.subtree_consumed, unreserved);
            cur = r.parent;
        }
    }

    /// Adds (or removes) a reservation's worth of consumption to `role` and its ancestors.
    fn add_role_reservation(&mut self, role: u32, r: &Resources, add: bool) {
        let op = |x: &Resources| {
            if add {
                x.saturating_add(r)
            } else {
                x.saturating_sub(r)
            }
        };
        let state = &mut self.roles[role];
        state.reserved = op(&state.reserved);
        let mut cur = Some(role);
        while let Some(i) = cur {
            let s = &mut self.roles[i];
            s.subtree_consumed = op(&s.subtree_consumed);
            cur = s.parent;
        }
    }

    /// Recomputes every derived quantity from the primary records and compares. For tests
    /// and debugging; `O(size of the state)`.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut total = Resources::new();
        let mut role_alloc: HashMap<u32, Resources> = HashMap::new();
        let mut role_alloc_unres: HashMap<u32, Resources> = HashMap::new();
        let mut role_reserved: HashMap<u32, Resources> = HashMap::new();
        let mut sub_alloc: HashMap<u32, Resources> = HashMap::new();
        for (slot, a) in self.agents.iter() {
            total = total.saturating_add(&a.total);
            let mut allocated = Resources::new();
            let mut unres = Resources::new();
            let mut reserved = Resources::new();
            let mut res_alloc: HashMap<u32, Resources> = HashMap::new();
            for (&sub, held) in &a.allocations {
                let s = self
                    .subs
                    .get(sub)
                    .ok_or(format!("agent {}: dead sub {sub}", a.id))?;
                if !s.agents.contains(&slot) {
                    return Err(format!("sub {sub} does not list agent {}", a.id));
                }
                if held.is_empty() {
                    return Err(format!("agent {}: empty allocation kept", a.id));
                }
                allocated = allocated.saturating_add(&held.total());
                unres = unres.saturating_add(&held.unreserved);
                let inherited = a.inherited_total(sub);
                if !held.reserved.contains(&inherited) {
                    return Err(format!(
                        "agent {}: sub {sub} inherits {inherited:?} beyond its reserved holding",
                        a.id
                    ));
                }
                let e = res_alloc.entry(s.role).or_default();
                *e = e.saturating_add(&held.reserved.saturating_sub(&inherited));
                for (owner, part) in a.inherited.get(&sub).into_iter().flatten() {
                    if !self.role_path(s.role).skip(1).any(|r| r == *owner) {
                        return Err(format!(
                            "agent {}: sub {sub} holds a reservation of role {owner}, not an ancestor",
                            a.id
                        ));
                    }
                    let e = res_alloc.entry(*owner).or_default();
                    *e = e.saturating_add(part);
                }
                for (m, x) in [
                    (&mut role_alloc, held.total()),
                    (&mut role_alloc_unres, held.unreserved.clone()),
                ] {
                    let e = m.entry(s.role).or_default();
                    *e = e.saturating_add(&x);
                }
                let e = sub_alloc.entry(sub).or_default();
                *e = e.saturating_add(&held.total());
            }
            if let Some(sub) = a.inherited.keys().find(|s| !a.allocations.contains_key(s)) {
                return Err(format!("agent {}: inherited parts of sub {sub} kept", a.id));
            }
            for r in &a.reservations {
                if self.roles.get(r.role).is_none() {
                    return Err(format!(
                        "agent {}: reservation of a dead role {}",
                        a.id, r.role
                    ));
                }
                if r.reserved().is_empty() {
                    return Err(format!("agent {}: empty reservation kept", a.id));
                }
                reserved = reserved.saturating_add(&r.reserved());
                let want = res_alloc.remove(&r.role).unwrap_or_default();
                if r.allocated != want {
                    return Err(format!(
                        "agent {}: reservation allocated {:?} != {want:?}",
                        a.id, r.allocated
                    ));
                }
                let e = role_reserved.entry(r.role).or_default();
                *e = e.saturating_add(&r.reserved());
            }
            if res_alloc.values().any(|r| !r.is_empty()) {
                return Err(format!(
                    "agent {}: reserved allocation without reservation",
                    a.id
                ));
            }
            if !a.total.contains(&allocated) {
                return Err(format!(
                    "agent {}: allocated {allocated:?} beyond total {:?}",
                    a.id, a.total
                ));
            }
            if a.free != a.total.saturating_sub(&allocated) {
                return Err(format!(
                    "agent {}: free {:?} != total - allocated",
                    a.id, a.free
                ));
            }
            let committed = reserved.saturating_add(&unres);
            if !a.total.contains(&committed)
                || a.unreserved_free != a.total.saturating_sub(&committed)
            {
                return Err(format!(
                    "agent {}: unreserved free {:?} inconsistent",
                    a.id, a.unreserved_free
                ));
            }
        }
        if total != self.total {
            return Err(format!("cluster total {:?} != {total:?}", self.total));
        }
        let mut subtree_alloc: HashMap<u32, Resources> = HashMap::new();
        let mut subtree_consumed: HashMap<u32, Resources> = HashMap::new();
        for (i, r) in self.roles.iter() {
            let own = role_alloc.get(&i).cloned().unwrap_or_default();
            if r.allocated != own {
                return Err(format!(
                    "role {}: allocated {:?} != {own:?}",
                    r.name, r.allocated
                ));
            }
            let reserved = role_reserved.get(&i).cloned().unwrap_or_default();
            if r.reserved != reserved {
                return Err(format!(
                    "role {}: reserved {:?} != {reserved:?}",
                    r.name, r.reserved
                ));
            }
            let consumed = role_alloc_unres
                .get(&i)
                .cloned()
                .unwrap_or_default()
                .saturating_add(&reserved);
            for anc in self.role_path(i) {
                let e = subtree_alloc.entry(anc).or_default();
                *e = e.saturating_add(&own);
                let e = subtree_consumed.entry(anc).or_default();
                *e = e.saturating_add(&consumed);
            }
            if let Some(rc) = r.role_client
                && *self.role_sorter.allocation(rc) != own
            {
                return Err(format!("role {}: role sorter allocation differs", r.name));
            }
        }
        for (i, r) in self.roles.iter() {
            let a = subtree_alloc.remove(&i).unwrap_or_default();
            let c = subtree_consumed.remove(&i).unwrap_or_default();
            if r.subtree_allocated != a || r.subtree_consumed != c {
                return Err(format!("role {}: subtree sums inconsistent", r.name));
            }
        }
        for (i, s) in self.subs.iter() {
            let want = sub_alloc.get(&i).cloned().unwrap_or_default();
            let role = &self.roles[s.role];
            let got = role
                .fw_sorter
                .as_ref()
                .map(|fs| fs.allocation(s.client).clone());
            if got.as_ref() != Some(&want) {
                return Err(format!(
                    "sub {i}: framework sorter allocation {got:?} != {want:?}"
                ));
            }
            let demanding = self.frameworks[s.framework].active && s.subscribed && !s.suppressed;
            if self.demanding.get(i) != demanding {
                return Err(format!("sub {i}: demand bit wrong"));
            }
        }
        Ok(())
    }
}
