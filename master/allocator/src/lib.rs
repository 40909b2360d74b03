//! `corral-allocator`: Corral's resource allocator — hierarchical weighted DRF with quotas,
//! reservations and decline filters, in the lineage of Mesos's hierarchical allocator.
//!
//! It is pure and synchronous: no I/O, no clock, no async. The master owns an [`Allocator`]
//! by value, feeds it events (agents, frameworks, declines, recoveries, operator changes) and
//! calls [`Allocator::allocate`] with the current `Timestamp` to get offers.
//!
//! # Key types
//!
//! The vocabulary is corral-types': `Resources` (exact integer accounting), `Allocation` (a
//! holding split into unreserved and reserved-to-its-role parts), `Role`, `Weight`, `Quota`,
//! `AgentId`, `FrameworkId`, `Timestamp`. This crate adds the policy:
//!
//! - [`Allocator`]: agents, frameworks, roles, filters, and the allocation cycle;
//! - [`Sorter`]: the ordering policy, with [`DrfSorter`] (weighted DRF) and [`RandomSorter`];
//! - [`Offer`]: resources of one agent offered to one framework in one role;
//! - [`AllocatorError`] and [`QuotaError`]: why a call was refused (it then changed nothing).
//!
//! # Flow
//!
//! ```text
//!  master                                 Allocator
//!  ──────                                 ─────────
//!  add_agent / remove_agent ───────────►  agents: total, reservations, free pools
//!  add_framework(roles) ───────────────►  subscriptions (framework × role) ─► sorters
//!  set_quota / set_weight / reserve ───►  roles: quota, weight, consumption
//!
//!  allocate(now) ──────────────────────►  expire filters
//!                                         for each open agent (rotating start):
//!                                           1. roles with unmet guarantees (quota stage)
//!                                           2. role sorter ─► framework sorter ─► filters
//!                    ◄── Vec<Offer> ────    record allocation, update shares in place
//!
//!  DECLINE:  recover(offer) + decline(refuse) ► resources back, filter until now+refuse
//!  RESCIND / offer timeout / task end:  recover(resources)
//!  SUPPRESS / REVIVE:  suppress / revive  ► demand bits, sorter activation, filters
//! ```
//!
//! # Semantics worth knowing
//!
//! - [`Allocator::decline`] only installs a filter; the master recovers the offer with
//!   [`Allocator::recover`]. A filter covers offers *contained in* what was declined, so more
//!   resources freeing up on the agent make it offerable again (as in Mesos).
//!   [`Allocator::revive`] drops the framework's filters.
//! - Offers take everything a role may get on an agent. Reserved resources go only to their
//!   role and its subroles (what is reserved to `eng` may be offered to a framework in
//!   `eng/batch`, as in Mesos); a role's own reservation is used before its ancestors'.
//!   Offers and recoveries carry the reserved/unreserved split ([`Allocation`]); which
//!   reservation a reserved part came from is the allocator's bookkeeping, and only the
//!   role's own reservation can be unreserved from an offer.
//! - Quota consumption is unreserved allocations plus reservations, of a role and its
//!   subroles. Guarantees are held back from other roles (as headroom) whether or not their
//!   role has demand right now; limits shrink offers. Nested guarantees are carved out of
//!   their nearest quota'd ancestor's, and every guarantee on a path is held back: a subrole's
//!   unmet guarantee stays free for it even once a sibling has met the parent's, and a role
//!   may take from an ancestor's guarantee only the part no guaranteed subrole claims.
//! - Errors are typed ([`AllocatorError`]) and a failed call changes nothing.
//!
//! # Performance
//!
//! Events update sorted structures in place ([`DrfSorter`] re-keys only the changed client
//! and its ancestors). A cycle walks a dense vector of agents and skips, after a few word
//! operations, every agent where nothing is free or every framework with demand has declined
//! what is free; only the remaining agents walk the sorters, lazily. See
//! `benches/allocation_cycle.rs` for the Mesos `DeclineOffers` grid.

mod allocator;
mod error;
mod filters;
mod sorter;
mod state;

pub use allocator::{
    AgentSpec, AgentSummary, Allocator, AllocatorConfig, Offer, RoleSummary, UsedResources,
};
pub use error::{AllocatorError, QuotaError};
pub use sorter::{ClientId, DrfSorter, RandomSorter, Sorter, SorterKind};
