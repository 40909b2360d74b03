//! The allocator's internal records. Everything is addressed by dense slot numbers so the
//! cycle indexes vectors and bitsets instead of hashing IDs.

use std::collections::{BTreeSet, HashMap};
use std::ops::{Index, IndexMut};

use crate::filters::Bitset;
use crate::sorter::{ClientId, Sorter};
use corral_types::{AgentId, Allocation, FrameworkId, Quota, Resources, Role, Weight};

/// A vector of optional slots with a free list.
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, item: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                (self.items.len() - 1) as u32
            }
        }
    }

    pub(crate) fn remove(&mut self, i: u32) -> Option<T> {
        let item = self.items.get_mut(i as usize)?.take();
        if item.is_some() {
            self.free.push(i);
        }
        item
    }

    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)?.as_mut()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i as u32, t.as_ref()?)))
    }

    pub(crate) fn slots(&self) -> u32 {
        self.items.len() as u32
    }
}

impl<T> Index<u32> for Slab<T> {
    type Output = T;
    fn index(&self, i: u32) -> &T {
        match self.get(i) {
            Some(t) => t,
            None => panic!("slab slot {i} is empty: allocator bookkeeping bug"),
        }
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, i: u32) -> &mut T {
        match self.get_mut(i) {
            Some(t) => t,
            None => panic!("slab slot {i} is empty: allocator bookkeeping bug"),
        }
    }
}

/// Resources of one agent reserved to one role.
#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub(crate) role: u32,
    /// From the agent's configuration; cannot be unreserved.
    pub(crate) fixed: Resources,
    /// Made through `reserve`; can be unreserved while unallocated.
    pub(crate) dynamic: Resources,
    /// Part of the reservation currently allocated.
    pub(crate) allocated: Resources,
}

impl Reservation {
    pub(crate) fn reserved(&self) -> Resources {
        self.fixed.saturating_add(&self.dynamic)
    }

    pub(crate) fn free(&self) -> Resources {
        self.reserved().saturating_sub(&self.allocated)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AgentState {
    pub(crate) id: AgentId,
    pub(crate) total: Resources,
    /// `total` minus every allocation.
    pub(crate) free: Resources,
    /// `total` minus reservations minus unreserved allocations: what any role may get.
    pub(crate) unreserved_free: Resources,
    pub(crate) reservations: Vec<Reservation>,
    /// Subscription slot -> what it holds here.
    pub(crate) allocations: HashMap<u32, Allocation>,
    /// Subscription slot -> the parts of its reserved holding that come from reservations of
    /// proper ancestors of its role (hierarchical reservations: what is reserved to `eng` may
    /// go to `eng/batch`), innermost owner first. The rest of its reserved holding comes from
    /// its own role's reservation.
    pub(crate) inherited: HashMap<u32, Vec<(u32, Resources)>>,
    pub(crate) active: bool,
    pub(crate) draining: bool,
}

impl AgentState {
    pub(crate) fn reservation(&self, role: u32) -> Option<&Reservation> {
        self.reservations.iter().find(|r| r.role == role)
    }

    pub(crate) fn reservation_mut(&mut self, role: u32) -> &mut Reservation {
        let i = match self.reservations.iter().position(|r| r.role == role) {
            Some(i) => i,
            None => {
                self.reservations.push(Reservation {
                    role,
                    fixed: Resources::new(),
                    dynamic: Resources::new(),
                    allocated: Resources::new(),
                });
                self.reservations.len() - 1
            }
        };
        &mut self.reservations[i]
    }

    pub(crate) fn reserved_free(&self, role: u32) -> Resources {
        self.reservation(role)
            .map_or_else(Resources::new, Reservation::free)
    }

    /// Unallocated reservations of the roles in `path` (a role and its ancestors): what a
    /// framework in the role may be offered of reserved resources here.
    pub(crate) fn path_reserved_free(&self, path: impl Iterator<Item = u32>) -> Resources {
        if self.reservations.is_empty() {
            return Resources::new();
        }
        path.fold(Resources::new(), |acc, r| {
            acc.saturating_add(&self.reserved_free(r))
        })
    }

    /// What subscription `sub` holds of its ancestors' reservations.
    pub(crate) fn inherited_total(&self, sub: u32) -> Resources {
        self.inherited
            .get(&sub)
            .map_or_else(Resources::new, |parts| {
                parts
                    .iter()
                    .fold(Resources::new(), |acc, (_, r)| acc.saturating_add(r))
            })
    }

    /// Marks `amount` of reserved resources as allocated to `sub`, whose role and ancestors
    /// are `path` (innermost first): from the role's own reservation first, then from each
    /// ancestor's. The caller has checked that they suffice.
    pub(crate) fn take_reserved(&mut self, sub: u32, path: &[u32], amount: &Resources) {
        let mut left = amount.clone();
        for (depth, &owner) in path.iter().enumerate() {
            if left.is_empty() {
                break;
            }
            let Some(res) = self.reservations.iter_mut().find(|r| r.role == owner) else {
                continue;
            };
            let take = left.min(&res.free());
            if take.is_empty() {
                continue;
            }
            res.allocated = res.allocated.saturating_add(&take);
            left = left.saturating_sub(&take);
            if depth > 0 {
                let parts = self.inherited.entry(sub).or_default();
                match parts.iter_mut().find(|(o, _)| *o == owner) {
                    Some((_, held)) => *held = held.saturating_add(&take),
                    None => parts.push((owner, take)),
                }
            }
        }
        debug_assert!(left.is_empty(), "reserved allocation beyond reservations");
    }

    /// Returns `amount` of `sub`'s reserved holding (in role `own`) to the reservations:
    /// ancestors' first, so borrowed resources go back to their owners for other subroles,
    /// then the role's own.
    pub(crate) fn give_back_reserved(&mut self, sub: u32, own: u32, amount: &Resources) {
        let mut left = amount.clone();
        if let Some(parts) = self.inherited.get_mut(&sub) {
            for (owner, held) in parts.iter_mut().rev() {
                let give = left.min(held);
                if give.is_empty() {
                    continue;
                }
                *held = held.saturating_sub(&give);
                left = left.saturating_sub(&give);
                if let Some(res) = self.reservations.iter_mut().find(|r| r.role == *owner) {
                    res.allocated = res.allocated.saturating_sub(&give);
                }
            }
            parts.retain(|(_, held)| !held.is_empty());
            if parts.is_empty() {
                self.inherited.remove(&sub);
            }
        }
        if !left.is_empty()
            && let Some(res) = self.reservations.iter_mut().find(|r| r.role == own)
        {
            res.allocated = res.allocated.saturating_sub(&left);
        }
    }

    /// Offers can be made here at all.
    pub(crate) fn offerable(&self) -> bool {
        self.active && !self.draining && !self.free.is_empty()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RoleState {
    pub(crate) name: Role,
    pub(crate) parent: Option<u32>,
    pub(crate) children: u32,
    pub(crate) weight: Option<Weight>,
    pub(crate) quota: Option<Quota>,
    /// Subscriptions in this exact role (including unsubscribed ones still holding resources).
    pub(crate) subs: u32,
    /// Subscriptions with demand (framework active, subscribed, not suppressed).
    pub(crate) demanding: u32,
    /// The same, as a bitset over subscription slots (to intersect with filter bitsets).
    pub(crate) demanding_bits: Bitset,
    /// Orders this role's frameworks; present while `subs > 0`.
    pub(crate) fw_sorter: Option<Box<dyn Sorter>>,
    /// Framework-sorter client -> subscription slot.
    pub(crate) sub_of_client: Vec<u32>,
    /// This role's client in the role sorter; present while `subs > 0`.
    pub(crate) role_client: Option<ClientId>,
    /// Own allocation (reserved and unreserved).
    pub(crate) allocated: Resources,
    /// Own reservations, all agents.
    pub(crate) reserved: Resources,
    /// Allocation of this role and its subroles.
    pub(crate) subtree_allocated: Resources,
    /// Quota consumption of this role and its subroles: unreserved allocations plus
    /// reservations (allocated or not), as in Mesos.
    pub(crate) subtree_consumed: Resources,
}

impl RoleState {
    pub(crate) fn new(name: Role, parent: Option<u32>) -> Self {
        Self {
            name,
            parent,
            children: 0,
            weight: None,
            quota: None,
            subs: 0,
            demanding: 0,
            demanding_bits: Bitset::default(),
            fw_sorter: None,
            sub_of_client: Vec::new(),
            role_client: None,
            allocated: Resources::new(),
            reserved: Resources::new(),
            subtree_allocated: Resources::new(),
            subtree_consumed: Resources::new(),
        }
    }

    pub(crate) fn guarantee(&self) -> Option<&Resources> {
        self.quota
            .as_ref()
            .map(|q| &q.guarantee)
            .filter(|g| !g.is_empty())
    }

    /// Nothing refers to the role any more.
    pub(crate) fn unused(&self) -> bool {
        self.subs == 0
            && self.children == 0
            && self.weight.is_none()
            && self.quota.is_none()
            && self.reserved.is_empty()
            && self.subtree_allocated.is_empty()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FrameworkState {
    pub(crate) id: FrameworkId,
    pub(crate) active: bool,
    pub(crate) subs: Vec<u32>,
}

/// A framework in a role: the unit that is sorted, offered, filtered and suppressed.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub(crate) framework: u32,
    pub(crate) role: u32,
    pub(crate) client: ClientId,
    pub(crate) suppressed: bool,
    /// False once the framework dropped the role; kept until its allocations are recovered.
    pub(crate) subscribed: bool,
    /// Agents where it holds resources.
    pub(crate) agents: BTreeSet<u32>,
}
