//! Roles: implicit creation and collection, weights, quotas, and the quota arithmetic the
//! cycle uses.
//!
//! Semantics follow Mesos: a role exists while anything refers to it (a framework, a weight, a
//! quota, a reservation, an allocation or a subrole), and weights and quotas may be set for any
//! valid role name, which creates it.

use std::collections::HashMap;

use super::Allocator;
use crate::error::{AllocatorError, QuotaError};
use crate::resources::Resources;
use crate::role::{Quota, Role, Weight};
use crate::state::RoleState;

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

    /// The outermost role on `role`'s path that has a guarantee.
    pub(super) fn top_guaranteed(&self, role: u32) -> Option<u32> {
        self.role_path(role)
            .filter(|&r| self.roles[r].guarantee().is_some())
            .last()
    }

    /// What must stay unallocated for guarantees not yet met: the unsatisfied part of every
    /// outermost guarantee. (Nested guarantees are carved out of their ancestors', so the
    /// outermost ones cover them.)
    pub(super) fn required_headroom(&self) -> Resources {
        self.roles
            .iter()
            .filter(|(i, r)| r.guarantee().is_some() && self.top_guaranteed(*i) == Some(*i))
            .fold(Resources::new(), |acc, (i, _)| {
                acc.saturating_add(&self.unsatisfied(i))
            })
    }

    /// For a role with frameworks: the largest unmet guarantee on its path, and the kinds
    /// any guarantee on its path covers.
    pub(super) fn guarantee_need(&self, role: u32) -> (Resources, Resources) {
        self.role_path(role)
            .filter_map(|r| Some((r, self.roles[r].guarantee()?)))
            .fold(
                (Resources::new(), Resources::new()),
                |(need, kinds), (r, g)| (need.max(&self.unsatisfied(r)), kinds.max(g)),
            )
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
