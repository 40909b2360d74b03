//! Roles: implicit creation and collection, weights, quotas, and the quota arithmetic the
//! cycle uses.
//!
//! Semantics follow Mesos: a role exists while anything refers to it (a framework, a weight, a
//! quota, a reservation, an allocation or a subrole), and weights and quotas may be set for any
//! valid role name, which creates it.

use std::collections::HashMap;

use super::Allocator;
use crate::error::{AllocatorError, QuotaError};
use crate::state::RoleState;
use corral_types::{Quota, Resources, Role, Weight};

impl Allocator {
    /// The role's slot, creating it (and its ancestors) if needed.
    pub(super) fn ensure_role(&mut self, name: &Role) -> u32 {
        if let Some(&i) = self.role_index.get(name) {
            return i;
        }
        let parent = name.parent().map(|p| self.ensure_role(&p));
        if let Some(p) = parent {
            self.roles[p].children += 1;
        }
        let i = self.roles.insert(RoleState::new(name.clone(), parent));
        self.role_index.insert(name.clone(), i);
        if self.role_marks.len() <= i as usize {
            self.role_marks.resize(i as usize + 1, 0);
        }
        self.role_marks[i as usize] = 0;
        i
    }

    /// Forgets the role, and then its ancestors, while nothing refers to them.
    pub(super) fn gc_role(&mut self, role: u32) {
        let mut cur = Some(role);
        while let Some(i) = cur {
            if !self.roles.get(i).is_some_and(RoleState::unused) {
                break;
            }
            let Some(r) = self.roles.remove(i) else {
                break;
            };
            self.role_index.remove(&r.name);
            if let Some(p) = r.parent {
                self.roles[p].children -= 1;
            }
            cur = r.parent;
        }
    }

    /// Sets a role's weight (creating the role if needed). Weights apply at the role's level of
    /// the hierarchy: `eng/batch`'s weight matters against its siblings under `eng`.
    pub fn set_weight(&mut self, role: &Role, weight: Weight) {
        let i = self.ensure_role(role);
        self.roles[i].weight = Some(weight);
        self.role_sorter.set_weight(role.as_str(), weight);
    }

    /// Resets a role's weight to the default (1).
    pub fn remove_weight(&mut self, role: &Role) -> Result<(), AllocatorError> {
        let i = self.role_slot(role)?;
        self.roles[i].weight = None;
        self.role_sorter.set_weight(role.as_str(), Weight::ONE);
        self.gc_role(i);
        Ok(())
    }

    pub(super) fn role_slot(&self, role: &Role) -> Result<u32, AllocatorError> {
        self.role_index
            .get(role)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownRole(role.clone()))
    }

    /// Sets a role's quota (creating the role if needed).
    ///
    /// Rejected when a guaranteed kind exceeds its limit, when the guarantees of the nearest
    /// quota'd subroles of any role would exceed that role's guarantee, when guarantees
    /// overflow, and — unless `force` — when top-level guarantees would grow beyond the
    /// cluster's resources or the limit is below what the role already consumes.
    pub fn set_quota(
        &mut self,
        role: &Role,
        quota: Quota,
        force: bool,
    ) -> Result<(), AllocatorError> {
        let err = |error| AllocatorError::Quota {
            role: role.clone(),
            error: Box::new(error),
        };
        let exceeds = quota
            .guarantee
            .kinds()
            .any(|(k, v)| quota.limit.bound(k).is_some_and(|b| v > b));
        if exceeds {
            return Err(err(QuotaError::GuaranteeExceedsLimit {
                guarantee: quota.guarantee.clone(),
                limit: quota.limit.clone(),
            }));
        }

        let mut guarantees: HashMap<Role, Resources> = self
            .roles
            .iter()
            .filter_map(|(_, r)| Some((r.name.clone(), r.quota.as_ref()?.guarantee.clone())))
            .collect();
        let old_top = top_level_sum(&guarantees).ok_or_else(|| err(QuotaError::Overflow))?;
        guarantees.insert(role.clone(), quota.guarantee.clone());
        let top = top_level_sum(&guarantees).ok_or_else(|| err(QuotaError::Overflow))?;
        for (parent, children) in
            child_sums(&guarantees).ok_or_else(|| err(QuotaError::Overflow))?
        {
            let guarantee = &guarantees[&parent];
            if !guarantee.contains(&children) {
                return Err(err(QuotaError::ChildrenExceedParent {
                    guarantee: guarantee.clone(),
                    parent,
                    children,
                }));
            }
        }
        // Lowering a guarantee is always fine even if the cluster has shrunk below the sum.
        if !force && !self.total.contains(&top) && !old_top.contains(&top) {
            return Err(err(QuotaError::ExceedsCluster {
                guaranteed: top,
                total: self.total.clone(),
            }));
        }
        let consumed = self
            .role_index
            .get(role)
            .map(|&i| self.roles[i].subtree_consumed.clone())
            .unwrap_or_default();
        if !force && !quota.limit.allows(&consumed) {
            return Err(err(QuotaError::LimitBelowConsumption {
                consumed,
                limit: quota.limit,
            }));
        }
        let i = self.ensure_role(role);
        self.roles[i].quota = Some(quota);
        Ok(())
    }

    /// Removes a role's quota.
    pub fn remove_quota(&mut self, role: &Role) -> Result<(), AllocatorError> {
        let i = self.role_slot(role)?;
        if self.roles[i].quota.take().is_none() {
            return Err(AllocatorError::NoQuota(role.clone()));
        }
        self.gc_role(i);
        Ok(())
    }

    /// Guarantee not yet consumed.
    pub(super) fn unsatisfied(&self, role: u32) -> Resources {
        let r = &self.roles[role];
        r.guarantee()
            .map_or_else(Resources::new, |g| g.saturating_sub(&r.subtree_consumed))
    }

    /// Roles on `role`'s path that have a guarantee, innermost first.
    fn guaranteed_path(&self, role: u32) -> impl Iterator<Item = u32> + '_ {
        self.role_path(role)
            .filter(|&r| self.roles[r].guarantee().is_some())
    }

    /// Builds the [`Claims`] of the current state: every guaranteed role's headroom is added
    /// to its nearest guaranteed ancestor's claims, deepest roles first.
    pub(super) fn claims(&self) -> Claims {
        let mut guaranteed: Vec<(usize, u32)> = self
            .roles
            .iter()
            .filter(|(_, r)| r.guarantee().is_some())
            .map(|(i, _)| (self.role_path(i).count(), i))
            .collect();
        guaranteed.sort_unstable_by(|a, b| b.cmp(a));
        let mut claims = Claims::default();
        for (_, g) in guaranteed {
            let headroom = self.headroom(g, &claims);
            if let Some(ancestor) = self.guaranteed_path(g).nth(1) {
                claims.add(ancestor, &headroom);
            }
        }
        claims
    }

    /// What guaranteed role `g` holds back: its unmet guarantee, or what its guaranteed
    /// subroles claim, whichever is more (per kind). A subrole's guarantee is carved out of
    /// its ancestor's, yet is owed even once the ancestor's is met by other subroles.
    pub(super) fn headroom(&self, g: u32, claims: &Claims) -> Resources {
        let unmet = self.unsatisfied(g);
        match claims.of(g) {
            Some(claimed) => unmet.max(claimed),
            None => unmet,
        }
    }

    /// What must stay unallocated for guarantees not yet met: the headroom of every outermost
    /// guarantee (which includes that of the guarantees nested in it).
    pub(super) fn required_headroom(&self, claims: &Claims) -> Resources {
        self.roles
            .iter()
            .filter(|(i, r)| r.guarantee().is_some() && self.guaranteed_path(*i).nth(1).is_none())
            .fold(Resources::new(), |acc, (i, _)| {
                acc.saturating_add(&self.headroom(i, claims))
            })
    }

    /// What `role` may take out of the headroom: for each guarantee on its path, the unmet
    /// part that its guaranteed subroles do not claim. Taking up to this much lowers the
    /// required headroom by as much; taking more would eat into another role's guarantee.
    pub(super) fn covered(&self, role: u32, claims: &Claims) -> Resources {
        self.guaranteed_path(role).fold(Resources::new(), |acc, g| {
            let unmet = self.unsatisfied(g);
            let unclaimed = match claims.of(g) {
                Some(claimed) => unmet.saturating_sub(claimed),
                None => unmet,
            };
            acc.saturating_add(&unclaimed)
        })
    }

    /// Keeps `claims` current after `role` was allocated more: walking its guaranteed path
    /// outwards, each guarantee's drop in headroom is its ancestor's drop in claims.
    /// `before` holds the headroom of [`Self::guaranteed_path`] taken before the allocation.
    pub(super) fn update_claims(&self, role: u32, before: &[Resources], claims: &mut Claims) {
        let path: Vec<u32> = self.guaranteed_path(role).collect();
        for (i, pair) in path.windows(2).enumerate() {
            let after = self.headroom(pair[0], claims);
            let drop = before[i].saturating_sub(&after);
            claims.sub(pair[1], &drop);
        }
    }

    /// The headroom along `role`'s guaranteed path, innermost first (for [`Self::update_claims`]).
    pub(super) fn path_headroom(&self, role: u32, claims: &Claims) -> Vec<Resources> {
        self.guaranteed_path(role)
            .map(|g| self.headroom(g, claims))
            .collect()
    }

    /// For a role with frameworks: what it may still take against unmet guarantees
    /// ([`Self::covered`]), and the kinds any guarantee on its path covers.
    pub(super) fn guarantee_need(&self, role: u32, claims: &Claims) -> (Resources, Resources) {
        let kinds = self
            .guaranteed_path(role)
            .filter_map(|r| self.roles[r].guarantee())
            .fold(Resources::new(), |kinds, g| kinds.max(g));
        (self.covered(role, claims), kinds)
    }

    /// `r` shrunk to fit every limit on `role`'s path.
    pub(super) fn cap_to_limits(&self, role: u32, r: Resources) -> Resources {
        self.role_path(role).fold(r, |r, i| {
            let state = &self.roles[i];
            match &state.quota {
                Some(q) => q.limit.cap(&state.subtree_consumed, &r),
                None => r,
            }
        })
    }

    /// The first limit on `role`'s path that `extra` more consumption would break.
    pub(super) fn limit_breach(&self, role: u32, extra: &Resources) -> Option<AllocatorError> {
        self.role_path(role).find_map(|i| {
            let state = &self.roles[i];
            let q = state.quota.as_ref()?;
            let after = state.subtree_consumed.saturating_add(extra);
            (!q.limit.allows(&after)).then(|| AllocatorError::LimitExceeded {
                role: state.name.clone(),
                limit: Box::new(q.limit.clone()),
                requested: Box::new(extra.clone()),
            })
        })
    }
}

/// Per guaranteed role, the headroom its nearest guaranteed subroles hold back together: the
/// part of its own unmet guarantee that is spoken for. Built per cycle and kept current as
/// offers are made, so offer decisions never walk the whole role tree.
#[derive(Debug, Default)]
pub(super) struct Claims(HashMap<u32, Resources>);

impl Claims {
    fn of(&self, role: u32) -> Option<&Resources> {
        self.0.get(&role)
    }

    fn add(&mut self, role: u32, r: &Resources) {
        let e = self.0.entry(role).or_default();
        *e = e.saturating_add(r);
    }

    fn sub(&mut self, role: u32, r: &Resources) {
        if let Some(e) = self.0.get_mut(&role) {
            *e = e.saturating_sub(r);
        }
    }
}

/// The nearest proper ancestor of `role` that has a quota.
fn nearest_quota_ancestor<'a>(
    guarantees: &'a HashMap<Role, Resources>,
    role: &Role,
) -> Option<&'a Role> {
    let mut cur = role.parent();
    while let Some(p) = cur {
        if let Some((k, _)) = guarantees.get_key_value(&p) {
            return Some(k);
        }
        cur = p.parent();
    }
    None
}

/// Sum of the outermost guarantees; `None` on overflow.
fn top_level_sum(guarantees: &HashMap<Role, Resources>) -> Option<Resources> {
    guarantees
        .iter()
        .filter(|(r, _)| nearest_quota_ancestor(guarantees, r).is_none())
        .try_fold(Resources::new(), |acc, (_, g)| acc.checked_add(g).ok())
}

/// Per role with quota, the sum of its nearest quota'd subroles' guarantees; `None` on
/// overflow.
fn child_sums(guarantees: &HashMap<Role, Resources>) -> Option<HashMap<Role, Resources>> {
    let mut sums: HashMap<Role, Resources> = HashMap::new();
    for (r, g) in guarantees {
        if let Some(p) = nearest_quota_ancestor(guarantees, r) {
            let e = sums.entry(p.clone()).or_default();
            *e = e.checked_add(g).ok()?;
        }
    }
    Some(sums)
}
