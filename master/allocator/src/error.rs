//! Typed errors. Every variant names what failed; the master maps them to gRPC codes in its
//! one place for that (STYLE.md, "typed outcomes and errors").

use corral_types::{AgentId, FrameworkId, QuotaLimits, Resources, Role};

/// Why a quota was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A guaranteed kind is above its limit.
    #[error("guarantee {guarantee} exceeds limit {limit:?}")]
    GuaranteeExceedsLimit {
        /// The guarantee.
        guarantee: Resources,
        /// The limit.
        limit: QuotaLimits,
    },
    /// Summing guarantees overflowed: the values are absurd.
    #[error("sum of guarantees overflows")]
    Overflow,
    /// Top-level guarantees would exceed the cluster's resources (pass `force` to allow it,
    /// as in Mesos: the guarantee then simply cannot be met until the cluster grows).
    #[error("guarantees {guaranteed} exceed cluster resources {total} (use force to override)")]
    ExceedsCluster {
        /// Sum of top-level guarantees, including this one.
        guaranteed: Resources,
        /// The cluster's total resources.
        total: Resources,
    },
    /// Guarantees of the nearest subroles with quota would exceed this role's guarantee.
    #[error(
        "guarantees of subroles of {parent} sum to {children}, above its guarantee {guarantee}"
    )]
    ChildrenExceedParent {
        /// The role whose guarantee is exceeded.
        parent: Role,
        /// Sum of its nearest quota'd subroles' guarantees.
        children: Resources,
        /// Its guarantee.
        guarantee: Resources,
    },
    /// The role already consumes more than the new limit (pass `force` to allow it; nothing
    /// is taken away, new allocations just stop).
    #[error("role already consumes {consumed}, above limit {limit:?} (use force to override)")]
    LimitBelowConsumption {
        /// Current consumption (allocations plus reservations, with subroles).
        consumed: Resources,
        /// The limit.
        limit: QuotaLimits,
    },
}

/// Errors from [`crate::Allocator`] calls. A call that returns an error changed nothing.
///
/// Resource amounts are boxed to keep the error (and every `Result`) small.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocatorError {
    /// No agent with this ID.
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    /// An agent with this ID is already added.
    #[error("agent {0} already added")]
    DuplicateAgent(AgentId),
    /// No framework with this ID.
    #[error("unknown framework {0}")]
    UnknownFramework(FrameworkId),
    /// A framework with this ID is already added.
    #[error("framework {0} already added")]
    DuplicateFramework(FrameworkId),
    /// A framework must subscribe to at least one role.
    #[error("framework {0} subscribes to no role")]
    NoRoles(FrameworkId),
    /// The framework is not subscribed to the role (or holds nothing in it).
    #[error("framework {framework} is not subscribed to role {role}")]
    NotSubscribed {
        /// The framework.
        framework: FrameworkId,
        /// The role.
        role: Role,
    },
    /// The role does not exist (nothing refers to it).
    #[error("unknown role {0}")]
    UnknownRole(Role),
    /// The role has no quota to remove.
    #[error("role {0} has no quota")]
    NoQuota(Role),
    /// A quota was rejected.
    #[error("invalid quota for role {role}: {error}")]
    Quota {
        /// The role.
        role: Role,
        /// Why.
        #[source]
        error: Box<QuotaError>,
    },
    /// Adding resources overflowed (absurd agent totals).
    #[error("resources overflow: {0} plus {1}")]
    Overflow(Box<Resources>, Box<Resources>),
    /// The agent does not have these resources available for the operation.
    #[error("agent {agent}: {requested} requested but only {available} available")]
    Insufficient {
        /// The agent.
        agent: AgentId,
        /// What was available for the operation.
        available: Box<Resources>,
        /// What was requested.
        requested: Box<Resources>,
    },
    /// Recovering or converting more than the framework holds.
    #[error("framework {framework} holds {held} in role {role} on agent {agent}, not {requested}")]
    NotAllocated {
        /// The agent.
        agent: AgentId,
        /// The framework.
        framework: FrameworkId,
        /// The role.
        role: Role,
        /// What it holds there.
        held: String,
        /// What the call named.
        requested: String,
    },
    /// Only unallocated dynamic reservations can be unreserved (static ones come from the
    /// agent's configuration).
    #[error(
        "agent {agent}: cannot unreserve {requested} from role {role}; unallocated dynamic reservation is {available}"
    )]
    CannotUnreserve {
        /// The agent.
        agent: AgentId,
        /// The role.
        role: Role,
        /// Dynamic reservation that is not allocated.
        available: Box<Resources>,
        /// What was requested.
        requested: Box<Resources>,
    },
    /// A reservation or unreservation named no resources.
    #[error("nothing to {0}: no resources named")]
    NothingToReserve(&'static str),
    /// A reservation would take a role (or an ancestor) past its quota limit.
    #[error("reserving {requested} would take role {role} past its limit {limit:?}")]
    LimitExceeded {
        /// The role whose limit binds.
        role: Role,
        /// The limit.
        limit: Box<QuotaLimits>,
        /// What was requested.
        requested: Box<Resources>,
    },
}
