//! Sorters: the policy that decides who is offered next.
//!
//! A sorter orders *clients* — roles in the role sorter, frameworks in a role's framework
//! sorter — and knows nothing about agents, filters or quotas (policy apart from mechanism).
//! Client names are `/`-separated paths: `eng/batch` is a child of `eng`, and sorters order
//! each level of the tree separately (hierarchical sorting, as in Mesos), so siblings compete
//! with siblings and a role's allocation includes its subroles'. Framework IDs never contain
//! `/`, so framework sorters are flat trees.
//!
//! Two implementations keep the seam honest:
//! - [`DrfSorter`]: weighted dominant resource fairness, kept incrementally sorted;
//! - [`RandomSorter`]: weighted random order from an injected, seedable rng.
//!
//! Besides a full [`Sorter::sort`], sorters offer a *pass*: [`Sorter::start_pass`] then
//! [`Sorter::next_in_pass`] until `None`. A pass yields each active client at most once, always
//! the first not-yet-yielded client in the *current* order, and allocations may be recorded
//! between calls. The allocation cycle walks one pass per agent and usually stops after one or
//! two clients, so it never pays to sort everyone for every agent.

mod drf;
mod random;
mod tree;

pub use drf::DrfSorter;
pub use random::RandomSorter;

use std::fmt;

use rand::SeedableRng;
use rand::rngs::StdRng;

use corral_types::{Resources, Weight};

/// A client of one sorter. Dense and reused after removal; meaningless across sorters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub(crate) u32);

impl ClientId {
    /// Index for side tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An ordering policy over clients. See the module docs for the pass protocol.
pub trait Sorter: fmt::Debug + Send {
    /// Adds a client (active, no allocation) and returns its id; returns the existing id if the
    /// path is already a client. Intermediate path nodes are created as needed.
    fn add(&mut self, path: &str) -> ClientId;

    /// Removes a client and any intermediate nodes left without clients. Its allocation, if
    /// any, is subtracted from its ancestors.
    fn remove(&mut self, client: ClientId);

    /// The client for a path.
    fn lookup(&self, path: &str) -> Option<ClientId>;

    /// The client's path.
    fn path(&self, client: ClientId) -> &str;

    /// Includes the client in sorting again.
    fn activate(&mut self, client: ClientId);

    /// Excludes the client from sorting (it keeps its allocation).
    fn deactivate(&mut self, client: ClientId);

    /// Sets the weight of a path (a client or an inner node, existing or not yet).
    fn set_weight(&mut self, path: &str, weight: Weight);

    /// Sets the total resources that shares are relative to.
    fn set_total(&mut self, total: &Resources);

    /// Records resources allocated to a client.
    fn allocated(&mut self, client: ClientId, resources: &Resources);

    /// Records resources taken back from a client (clamped at its allocation).
    fn unallocated(&mut self, client: ClientId, resources: &Resources);

    /// The client's own allocation.
    fn allocation(&self, client: ClientId) -> &Resources;

    /// The client's dominant share of the total (unweighted).
    fn share(&self, client: ClientId) -> f64;

    /// Active clients in order.
    fn sort(&mut self) -> Vec<ClientId> {
        self.start_pass();
        std::iter::from_fn(|| self.next_in_pass()).collect()
    }

    /// Of `candidates` (active clients), the one a new pass would yield first. Lets the
    /// allocator jump straight to it when it already knows the few clients that qualify,
    /// instead of walking past everyone else.
    fn first_of(&mut self, candidates: &[ClientId]) -> Option<ClientId>;

    /// Starts a pass; see the module docs. Abandons any pass in progress.
    fn start_pass(&mut self);

    /// The next client of the current pass.
    fn next_in_pass(&mut self) -> Option<ClientId>;

    /// Clones the sorter behind a box (so allocators can be cloned, for example to snapshot
    /// a state in benchmarks).
    fn clone_box(&self) -> Box<dyn Sorter>;
}

impl Clone for Box<dyn Sorter> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Which sorter the allocator uses, at both levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SorterKind {
    /// Weighted DRF ([`DrfSorter`]).
    #[default]
    Drf,
    /// Weighted random ([`RandomSorter`]); each sorter gets an rng derived from `seed`, so
    /// runs are reproducible.
    Random {
        /// Seed of the rng that seeds every random sorter.
        seed: u64,
    },
}

/// Makes sorters of one kind; random sorters draw their seeds from one seeded rng.
#[derive(Debug, Clone)]
pub(crate) struct SorterFactory {
    kind: SorterKind,
    seeds: StdRng,
}

impl SorterFactory {
    pub(crate) fn new(kind: SorterKind) -> Self {
        let seed = match kind {
            SorterKind::Drf => 0,
            SorterKind::Random { seed } => seed,
        };
        Self {
            kind,
            seeds: StdRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn make(&mut self) -> Box<dyn Sorter> {
        match self.kind {
            SorterKind::Drf => Box::new(DrfSorter::new()),
            SorterKind::Random { .. } => {
                Box::new(RandomSorter::new(StdRng::from_rng(&mut self.seeds)))
            }
        }
    }
}
