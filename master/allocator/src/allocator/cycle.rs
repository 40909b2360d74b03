//! The allocation cycle.
//!
//! Two stages, as in Mesos's hierarchical allocator:
//!
//! 1. **Guarantees.** Roles with frameworks that want offers and an unmet guarantee on their
//!    path are offered first, up to the unmet amount of the guaranteed kinds (plus kinds no
//!    guarantee covers, plus their own reservations), ordered among themselves by the role
//!    sorter. This stage ends as soon as every guarantee with demand is met.
//! 2. **Fair share.** For each agent, roles in role-sorter order, and within a role its
//!    frameworks in framework-sorter order; the first framework that has not filtered the
//!    agent gets everything its role may take there.
//!
//! In both stages unreserved resources are held back as *headroom* for guarantees not yet
//! met (whether or not their roles have demand right now, as in Mesos), and offers are shrunk
//! to the limits on the role's path. Headroom counts every guarantee on a path: a guaranteed
//! role holds back its unmet guarantee or what its guaranteed subroles still need, whichever is
//! more, and a role may dip into the headroom only for the unclaimed part of the guarantees on
//! its path (see `roles.rs`, [`Claims`]).
//!
//! Cost. Agents are walked once per stage in a dense vector. Before any sorting, an agent is
//! dropped if it has nothing free, or if every subscription with demand has a decline filter
//! on it covering everything it has free ([`crate::filters`]) — a few word operations. For the
//! rest, the role and framework sorters are walked lazily (a pass) and usually stop at the
//! first framework, which takes the agent. When most of a role's frameworks have filtered an
//! agent, the few that have not are found by bitset arithmetic and the sorter picks the first
//! of them directly, so nobody walks past a thousand filtered frameworks.

use std::collections::HashMap;

use super::roles::Claims;
use super::{Allocator, NONE, Offer};
use crate::sorter::ClientId;
use corral_types::{Allocation, Resources, Timestamp};

/// Up to this many unfiltered frameworks, pick the first directly (see `try_offer`).
const DIRECT_PICK_LIMIT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Guarantees,
    Fair,
}

/// State of one cycle.
#[derive(Debug)]
struct Cycle {
    /// Any quota exists; when not, headroom and limits are skipped entirely.
    quotas: bool,
    /// Unreserved, unallocated resources on agents that can take offers.
    free: Resources,
    /// Part of `free` that must stay unallocated for unmet guarantees.
    required: Resources,
    /// What nested guarantees claim of their ancestors' (kept current with every offer).
    claims: Claims,
    offers: Vec<Offer>,
    /// A decline filter turned an offer down since this was last cleared.
    filtered: bool,
    /// `(agent, sub)` -> index in `offers` of a guarantee-stage offer, so the fair stage
    /// extends it instead of making a second offer for the same agent.
    merged: HashMap<(u32, u32), usize>,
    /// Role -> its subroles with subscribers, built the first time a reservation is left
    /// after the role walk (hierarchical reservations go to subroles too).
    subroles: Option<HashMap<u32, Vec<u32>>>,
}

impl Allocator {
    /// Runs one allocation cycle at time `now` (which expires decline filters) and returns the
    /// offers made. Offered resources are recorded as allocated to their framework until
    /// [`Allocator::recover`]ed.
    pub fn allocate(&mut self, now: Timestamp) -> Vec<Offer> {
        self.filters.expire(now);
        self.cycles += 1;
        if self.demanding.is_empty() {
            return Vec::new();
        }
        let order = self.agent_order();
        let quotas = self.roles.iter().any(|(_, r)| r.quota.is_some());
        let mut cx = Cycle {
            quotas,
            free: Resources::new(),
            required: Resources::new(),
            claims: Claims::default(),
            offers: Vec::new(),
            filtered: false,
            merged: HashMap::new(),
            subroles: None,
        };
        if quotas {
            cx.free = order.iter().fold(Resources::new(), |acc, &a| {
                acc.saturating_add(&self.agents[a].unreserved_free)
            });
            cx.claims = self.claims();
            cx.required = self.required_headroom(&cx.claims);
            self.guarantee_stage(&order, &mut cx);
        }
        self.fair_stage(&order, &mut cx);
        cx.offers
    }

    /// Agents that can take offers, starting at a point that rotates every cycle so no agent
    /// is always first in line.
    fn agent_order(&self) -> Vec<u32> {
        let n = self.agents.slots();
        if n == 0 {
            return Vec::new();
        }
        let start = (self.cycles % u64::from(n)) as u32;
        (start..n)
            .chain(0..start)
            .filter(|&i| self.agents.get(i).is_some_and(|a| a.offerable()))
            .collect()
    }

    /// Drops agents where nothing can be offered: nothing free, or everyone with demand has
    /// filtered everything the agent has free.
    fn agent_closed(&mut self, agent: u32) -> bool {
        let a = &self.agents[agent];
        !a.offerable() || self.filters.all_filtered(agent, &self.demanding, &a.free)
    }

    fn guarantee_stage(&mut self, order: &[u32], cx: &mut Cycle) {
        // Roles with frameworks that want offers and an unmet guarantee on their path. The
        // flags are refreshed only after as many offers as there are needy roles, so keeping
        // them costs O(1) per offer rather than O(roles) per agent.
        let needy: Vec<u32> = self
            .roles
            .iter()
            .filter(|(i, r)| {
                r.role_client.is_some()
                    && r.demanding > 0
                    && !self.guarantee_need(*i, &cx.claims).0.is_empty()
            })
            .map(|(i, _)| i)
            .collect();
        if needy.is_empty() {
            return;
        }
        let mut is_needy = vec![false; self.roles.slots() as usize];
        let mut kinds = Resources::new();
        for &r in &needy {
            is_needy[r as usize] = true;
            kinds = kinds.max(&self.guarantee_need(r, &cx.claims).1);
        }
        let (mut remaining, mut offers_since_check) = (needy.len(), 0);
        for &agent in order {
            if remaining == 0 {
                break;
            }
            if self.agent_closed(agent)
                || self.agents[agent]
                    .unreserved_free
                    .restrict_to(&kinds)
                    .is_empty()
            {
                continue;
            }
            // Walk roles lazily in sorter order: the least served needy role is usually
            // among the first, and it takes the agent's guaranteed kinds.
            self.role_sorter.start_pass();
            while let Some(rc) = self.role_sorter.next_in_pass() {
                let role = self.role_of_client[rc.index()];
                if role == NONE || !is_needy[role as usize] {
                    continue;
                }
                if self.try_offer(agent, role, Stage::Guarantees, cx) {
                    offers_since_check += 1;
                }
                if self.agents[agent]
                    .unreserved_free
                    .restrict_to(&kinds)
                    .is_empty()
                {
                    break;
                }
            }
            if offers_since_check >= remaining {
                offers_since_check = 0;
                remaining = 0;
                for &r in &needy {
                    let still = !self.guarantee_need(r, &cx.claims).0.is_empty();
                    is_needy[r as usize] = still;
                    remaining += usize::from(still);
                }
            }
        }
    }

    fn fair_stage(&mut self, order: &[u32], cx: &mut Cycle) {
        // Unreserved resources that a complete pass over every role could not place, with no
        // framework turning them down by a filter. Within a cycle limits and headroom only
        // tighten and a smaller bag is never more allocatable, so no role can take anything
        // that fits in this on any later agent either: the role walk stops there. This
        // keeps clusters whose leftovers nobody may take (roles at their limits) from costing
        // O(roles) per agent.
        let mut unplaceable: Option<Resources> = None;
        for &agent in order {
            if self.agent_closed(agent) {
                continue;
            }
            self.visit += 1;
            let unreserved = &self.agents[agent].unreserved_free;
            let walk = self.allocatable(unreserved)
                && !unplaceable.as_ref().is_some_and(|u| u.contains(unreserved));
            if walk {
                cx.filtered = false;
                let mut complete = true;
                self.role_sorter.start_pass();
                while let Some(rc) = self.role_sorter.next_in_pass() {
                    let role = self.role_of_client[rc.index()];
                    if role == NONE {
                        continue;
                    }
                    self.role_marks[role as usize] = self.visit;
                    self.try_offer(agent, role, Stage::Fair, cx);
                    let left = &self.agents[agent].unreserved_free;
                    if !self.allocatable(left)
                        || unplaceable.as_ref().is_some_and(|u| u.contains(left))
                    {
                        complete = false;
                        break;
                    }
                }
                if complete && !cx.filtered {
                    unplaceable = Some(self.agents[agent].unreserved_free.clone());
                }
            }
            // Reserved resources can only go to their role and its subroles, so there is no
            // contest with other roles here: offer each remaining reservation to those of its
            // roles that were not visited above, in sorter order, rather than walking every
            // role.
            let a = &self.agents[agent];
            if a.free != a.unreserved_free {
                let owners: Vec<u32> = a
                    .reservations
                    .iter()
                    .filter(|r| !r.free().is_empty())
                    .map(|r| r.role)
                    .collect();
                for owner in owners {
                    self.offer_reservation(agent, owner, cx);
                }
            }
        }
    }

    /// Offers what is left of `owner`'s reservation on `agent` to `owner` and its subroles
    /// with demand that have not been offered this agent yet, in role-sorter order.
    fn offer_reservation(&mut self, agent: u32, owner: u32, cx: &mut Cycle) {
        let subroles = cx
            .subroles
            .get_or_insert_with(|| self.subscribed_subroles());
        let mut candidates: Vec<ClientId> = std::iter::once(owner)
            .chain(subroles.get(&owner).into_iter().flatten().copied())
            .filter(|&r| self.role_marks[r as usize] != self.visit && self.roles[r].demanding > 0)
            .filter_map(|r| self.roles[r].role_client)
            .collect();
        while !candidates.is_empty() && !self.agents[agent].reserved_free(owner).is_empty() {
            let Some(rc) = self.role_sorter.first_of(&candidates) else {
                return;
            };
            candidates.retain(|&c| c != rc);
            let role = self.role_of_client[rc.index()];
            if role == NONE {
                continue;
            }
            self.role_marks[role as usize] = self.visit;
            self.try_offer(agent, role, Stage::Fair, cx);
        }
    }

    /// Every role with subscribers, listed under each of its proper ancestors.
    fn subscribed_subroles(&self) -> HashMap<u32, Vec<u32>> {
        let mut subroles: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, r) in self.roles.iter() {
            if r.role_client.is_some() {
                for ancestor in self.role_path(i).skip(1) {
                    subroles.entry(ancestor).or_default().push(i);
                }
            }
        }
        subroles
    }

    /// What `role` may be offered on `agent` now, and how much of its unreserved part counts
    /// against an unmet guarantee (and so may come out of the held-back headroom).
    fn offerable(
        &self,
        agent: u32,
        role: u32,
        stage: Stage,
        cx: &Cycle,
    ) -> (Allocation, Resources) {
        let a = &self.agents[agent];
        let reserved = a.path_reserved_free(self.role_path(role));
        let mut unreserved = a.unreserved_free.clone();
        let mut covered = Resources::new();
        if cx.quotas && !unreserved.is_empty() {
            covered = self.covered(role, &cx.claims);
            // Others' unmet guarantees stay free, except what this role's own covers.
            let spare = cx
                .free
                .saturating_sub(&cx.required)
                .saturating_add(&covered);
            unreserved = unreserved.min(&spare);
            if stage == Stage::Guarantees {
                let (need, kinds) = self.guarantee_need(role, &cx.claims);
                let guaranteed = unreserved.restrict_to(&kinds).min(&need);
                unreserved = if guaranteed.is_empty() {
                    Resources::new()
                } else {
                    guaranteed.saturating_add(&unreserved.without_kinds_of(&kinds))
                };
            }
            unreserved = self.cap_to_limits(role, unreserved);
        }
        let offer = Allocation {
            unreserved,
            reserved,
        };
        (offer, covered)
    }

    /// Offers `role`'s share of `agent` to its first framework (in sorter order) that wants
    /// offers and has not filtered them. True if an offer was made.
    fn try_offer(&mut self, agent: u32, role: u32, stage: Stage, cx: &mut Cycle) -> bool {
        let (offer, covered) = self.offerable(agent, role, stage, cx);
        let total = offer.total();
        if !self.allocatable(&total) {
            return false;
        }
        // When the role's offer fits in what the agent's filters cover, the subscriptions that
        // may take it are exactly the role's demanding ones without a filter here. If there
        // are few, ask the sorter which comes first instead of walking past the filtered ones
        // (with 999 of 1,000 frameworks declined, the walk would be ~1,000 steps per agent).
        let mut open = std::mem::take(&mut self.scratch);
        let known = self.filters.unfiltered(
            agent,
            &self.roles[role].demanding_bits,
            &total,
            DIRECT_PICK_LIMIT,
            &mut open,
        );
        if known.is_some() {
            if open.len() < self.roles[role].demanding as usize {
                // Some were passed over because of their filters.
                cx.filtered = true;
            }
            let clients: Vec<ClientId> = open.iter().map(|&s| self.subs[s].client).collect();
            self.scratch = open;
            let first = self.roles[role]
                .fw_sorter
                .as_mut()
                .and_then(|s| s.first_of(&clients));
            let Some(client) = first else {
                cx.filtered = true;
                return false;
            };
            let sub = self.roles[role].sub_of_client[client.index()];
            self.commit_offer(agent, sub, offer, covered, stage, cx);
            return true;
        }
        self.scratch = open;
        let Some(sorter) = self.roles[role].fw_sorter.as_mut() else {
            return false;
        };
        sorter.start_pass();
        loop {
            let next = self.roles[role]
                .fw_sorter
                .as_mut()
                .and_then(|s| s.next_in_pass());
            let Some(client) = next else {
                return false;
            };
            let sub = self.roles[role]
                .sub_of_client
                .get(client.index())
                .copied()
                .unwrap_or(NONE);
            if sub == NONE || !self.demanding.get(sub) {
                continue;
            }
            if self.filters.is_filtered(agent, sub, &total) {
                cx.filtered = true;
                continue;
            }
            self.commit_offer(agent, sub, offer, covered, stage, cx);
            return true;
        }
    }

    fn commit_offer(
        &mut self,
        agent: u32,
        sub: u32,
        offer: Allocation,
        covered: Resources,
        stage: Stage,
        cx: &mut Cycle,
    ) {
        if cx.quotas {
            let role = self.subs[sub].role;
            let before = self.path_headroom(role, &cx.claims);
            self.record_allocation(agent, sub, &offer);
            self.update_claims(role, &before, &mut cx.claims);
            cx.free = cx.free.saturating_sub(&offer.unreserved);
            cx.required = cx.required.saturating_sub(&offer.unreserved.min(&covered));
        } else {
            self.record_allocation(agent, sub, &offer);
        }
        self.push_offer(agent, sub, offer, stage, cx);
    }

    fn push_offer(
        &mut self,
        agent: u32,
        sub: u32,
        resources: Allocation,
        stage: Stage,
        cx: &mut Cycle,
    ) {
        if stage == Stage::Fair
            && let Some(&i) = cx.merged.get(&(agent, sub))
        {
            let o = &mut cx.offers[i].resources;
            *o = o.saturating_add(&resources);
            return;
        }
        let s = &self.subs[sub];
        cx.offers.push(Offer {
            agent: self.agents[agent].id.clone(),
            framework: self.frameworks[s.framework].id.clone(),
            role: self.roles[s.role].name.clone(),
            resources,
        });
        if stage == Stage::Guarantees {
            cx.merged.insert((agent, sub), cx.offers.len() - 1);
        }
    }
}
