//! Placing task requests onto offers, in small stages (Nomad's `feasible/stack.go` style).
//!
//! [`place`] takes requests in order and, for each, runs the offers through:
//!
//! 1. **constraints** ([`Constraint`]): the agent's attributes must satisfy all of the
//!    request's constraints (`arch = x86_64`, `zone != eu-1`, `gpu-model exists`);
//! 2. **fit**: the request must fit in what is *left* of the offer after the requests already
//!    placed on it — an offer is never over-committed;
//! 3. **rank** ([`Strategy`]): among the feasible offers, first-fit takes the first in the
//!    order given, bin-pack the one that would be fullest afterwards (packing agents tightly
//!    frees whole agents), spread the one that would be emptiest (spreading load and
//!    failure domains);
//! 4. **commit**: the chosen offer's remainder shrinks by the request.
//!
//! A request that fits nowhere is left out of the result ([`Placement::unplaced`] lists
//! them). The result names each used offer once with the indices of the requests placed on
//! it, ready for [`Driver::launch`](crate::Driver::launch).

use std::collections::BTreeMap;

use corral_types::{OfferId, Resources, ScalarName};

use crate::offer::Offer;

/// Resources one task asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    /// Thousandths of a CPU.
    pub cpus_milli: u64,
    /// Memory in bytes.
    pub mem_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
    /// Custom scalars in milli-units, by name.
    pub scalars: BTreeMap<String, u64>,
}

impl ResourceRequest {
    /// CPUs (milli) and memory (MiB), the usual pair.
    pub fn new(cpus_milli: u64, mem_mib: u64) -> Self {
        Self {
            cpus_milli,
            mem_bytes: mem_mib << 20,
            ..Self::default()
        }
    }

    /// Adds disk, in MiB.
    #[must_use]
    pub fn disk_mib(mut self, mib: u64) -> Self {
        self.disk_bytes = mib << 20;
        self
    }

    /// Adds a custom scalar, in milli-units.
    #[must_use]
    pub fn scalar(mut self, name: impl Into<String>, milli: u64) -> Self {
        self.scalars.insert(name.into(), milli);
        self
    }

    /// As allocator resources (to put in a `TaskInfo`). Scalars with invalid names are
    /// dropped; they could not be offered either.
    pub fn to_resources(&self) -> Resources {
        let mut r = Resources::new()
            .with_cpus_milli(self.cpus_milli)
            .with_mem_bytes(self.mem_bytes)
            .with_disk_bytes(self.disk_bytes);
        for (name, &milli) in &self.scalars {
            if let Ok(name) = ScalarName::new(name) {
                r = r.with_scalar_milli(&name, milli);
            }
        }
        r
    }

    /// True when `available` holds at least this much of everything.
    fn fits(&self, available: &Resources) -> bool {
        available.cpus_milli() >= self.cpus_milli
            && available.mem_bytes() >= self.mem_bytes
            && available.disk_bytes() >= self.disk_bytes
            && self
                .scalars
                .iter()
                .all(|(name, &milli)| available.scalar_milli(name) >= milli)
    }
}

/// A condition on an agent's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// The attribute is present with this value.
    Equals {
        /// Attribute name.
        key: String,
        /// Required value.
        value: String,
    },
    /// The attribute is absent or has another value.
    NotEquals {
        /// Attribute name.
        key: String,
        /// Refused value.
        value: String,
    },
    /// The attribute is present, whatever its value.
    Exists {
        /// Attribute name.
        key: String,
    },
}

impl Constraint {
    /// `key = value`.
    pub fn equals(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Equals {
            key: key.into(),
            value: value.into(),
        }
    }

    /// `key != value`.
    pub fn not_equals(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::NotEquals {
            key: key.into(),
            value: value.into(),
        }
    }

    /// `key` is set.
    pub fn exists(key: impl Into<String>) -> Self {
        Self::Exists { key: key.into() }
    }

    /// True when the offer's agent satisfies the constraint.
    pub fn matches(&self, offer: &Offer) -> bool {
        match self {
            Self::Equals { key, value } => offer.attribute(key) == Some(value.as_str()),
            Self::NotEquals { key, value } => offer.attribute(key) != Some(value.as_str()),
            Self::Exists { key } => offer.attribute(key).is_some(),
        }
    }
}

/// One task to place: what it needs and where it may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRequest {
    /// Resources.
    pub resources: ResourceRequest,
    /// All must hold.
    pub constraints: Vec<Constraint>,
}

impl TaskRequest {
    /// A request without constraints.
    pub fn new(resources: ResourceRequest) -> Self {
        Self {
            resources,
            constraints: Vec::new(),
        }
    }

    /// Adds a constraint.
    #[must_use]
    pub fn constraint(mut self, c: Constraint) -> Self {
        self.constraints.push(c);
        self
    }
}

/// How to choose among the offers a request fits on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The first feasible offer, in the order given (cheapest; predictable).
    #[default]
    FirstFit,
    /// The offer that would be fullest after placing: fills agents before starting others.
    BinPack,
    /// The offer that would be emptiest after placing: spreads tasks across agents.
    Spread,
}

/// The result of [`place_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Each used offer with the indices of the requests placed on it, in offer order.
    pub assignments: Vec<(OfferId, Vec<usize>)>,
    /// Indices of requests that fit nowhere.
    pub unplaced: Vec<usize>,
}

/// Places `requests` onto `offers` with `strategy`; see the module docs. Requests that fit
/// nowhere are omitted (use [`place_all`] to get them).
pub fn place(
    requests: &[TaskRequest],
    offers: &[Offer],
    strategy: Strategy,
) -> Vec<(OfferId, Vec<usize>)> {
    place_all(requests, offers, strategy).assignments
}

/// Like [`place`], also reporting the requests left unplaced.
pub fn place_all(requests: &[TaskRequest], offers: &[Offer], strategy: Strategy) -> Placement {
    // What is left of each offer, and which requests it took.
    let mut remaining: Vec<Resources> = offers.iter().map(|o| o.resources.clone()).collect();
    let mut placed: Vec<Vec<usize>> = vec![Vec::new(); offers.len()];
    let mut unplaced = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let feasible = (0..offers.len())
            // Stage 1: constraints.
            .filter(|&o| request.constraints.iter().all(|c| c.matches(&offers[o])))
            // Stage 2: fit in the remainder.
            .filter(|&o| request.resources.fits(&remaining[o]));
        // Stage 3: rank. Ties go to the earlier offer: `min_by` keeps the first minimum
        // (`max_by` would keep the last maximum), so bin-pack is a reversed `min_by`.
        let chosen = match strategy {
            Strategy::FirstFit => feasible.into_iter().next(),
            Strategy::BinPack => feasible.min_by(|&a, &b| {
                let used = |o: usize| used_after(&offers[o], &remaining[o], &request.resources);
                used(b).total_cmp(&used(a))
            }),
            Strategy::Spread => feasible.min_by(|&a, &b| {
                let used = |o: usize| used_after(&offers[o], &remaining[o], &request.resources);
                used(a).total_cmp(&used(b))
            }),
        };
        // Stage 4: commit.
        match chosen {
            Some(o) => {
                remaining[o] = remaining[o].saturating_sub(&request.resources.to_resources());
                placed[o].push(i);
            }
            None => unplaced.push(i),
        }
    }
    let assignments = offers
        .iter()
        .zip(placed)
        .filter(|(_, p)| !p.is_empty())
        .map(|(o, p)| (o.id.clone(), p))
        .collect();
    Placement {
        assignments,
        unplaced,
    }
}

/// How full the offer would be after placing `request` on its remainder: the mean of the
/// used fractions of CPU and memory (the dimensions every task asks for), in `[0, 1]`.
fn used_after(offer: &Offer, remaining: &Resources, request: &ResourceRequest) -> f64 {
    let fraction = |total: u64, left: u64, asked: u64| {
        if total == 0 {
            return 0.0;
        }
        let used = total.saturating_sub(left.saturating_sub(asked));
        used as f64 / total as f64
    };
    let cpu = fraction(
        offer.resources.cpus_milli(),
        remaining.cpus_milli(),
        request.cpus_milli,
    );
    let mem = fraction(
        offer.resources.mem_bytes(),
        remaining.mem_bytes(),
        request.mem_bytes,
    );
    (cpu + mem) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::OfferBuilder;

    fn offer(id: &str, cpus: u64, mem_mib: u64) -> Offer {
        OfferBuilder::new(id)
            .agent(&format!("agent-{id}"))
            .cpus_milli(cpus)
            .mem_mib(mem_mib)
            .build()
    }

    fn tasks(n: usize, cpus: u64, mem_mib: u64) -> Vec<TaskRequest> {
        vec![TaskRequest::new(ResourceRequest::new(cpus, mem_mib)); n]
    }

    fn ids(p: &[(OfferId, Vec<usize>)]) -> Vec<(&str, Vec<usize>)> {
        p.iter().map(|(o, r)| (o.as_str(), r.clone())).collect()
    }

    #[test]
    fn first_fit_takes_offers_in_order() {
        let offers = [offer("a", 1000, 1024), offer("b", 4000, 4096)];
        let p = place(&tasks(3, 500, 256), &offers, Strategy::FirstFit);
        assert_eq!(ids(&p), [("a", vec![0, 1]), ("b", vec![2])]);
    }

    #[test]
    fn bin_pack_fills_the_fullest_offer_first() {
        // `b` is small: one task fills it more than it fills `a`.
        let offers = [offer("a", 4000, 4096), offer("b", 1000, 1024)];
        let p = place(&tasks(3, 500, 512), &offers, Strategy::BinPack);
        assert_eq!(ids(&p), [("a", vec![2]), ("b", vec![0, 1])]);
    }

    #[test]
    fn spread_balances_across_offers() {
        let offers = [offer("a", 2000, 2048), offer("b", 2000, 2048)];
        let p = place(&tasks(4, 500, 256), &offers, Strategy::Spread);
        assert_eq!(ids(&p), [("a", vec![0, 2]), ("b", vec![1, 3])]);
    }

    #[test]
    fn constraints_exclude_offers() {
        let arm = OfferBuilder::new("arm")
            .cpus_milli(8000)
            .mem_mib(8192)
            .attribute("arch", "aarch64")
            .build();
        let x86 = OfferBuilder::new("x86")
            .cpus_milli(1000)
            .mem_mib(1024)
            .attribute("arch", "x86_64")
            .attribute("zone", "eu-1")
            .build();
        let offers = [arm, x86];
        let r = ResourceRequest::new(500, 128);
        let requests = [
            TaskRequest::new(r.clone()).constraint(Constraint::equals("arch", "x86_64")),
            TaskRequest::new(r.clone()).constraint(Constraint::not_equals("arch", "x86_64")),
            TaskRequest::new(r.clone()).constraint(Constraint::exists("zone")),
            TaskRequest::new(r.clone()).constraint(Constraint::exists("gpu-model")),
        ];
        let p = place_all(&requests, &offers, Strategy::FirstFit);
        assert_eq!(ids(&p.assignments), [("arm", vec![1]), ("x86", vec![0, 2])]);
        assert_eq!(p.unplaced, [3]);
    }

    #[test]
    fn offers_are_never_over_committed() {
        let offers = [offer("a", 1000, 1024)];
        for strategy in [Strategy::FirstFit, Strategy::BinPack, Strategy::Spread] {
            let p = place_all(&tasks(5, 300, 100), &offers, strategy);
            assert_eq!(ids(&p.assignments), [("a", vec![0, 1, 2])], "{strategy:?}");
            assert_eq!(p.unplaced, [3, 4]);
        }
        // Memory binds too, and custom scalars.
        let p = place_all(&tasks(3, 1, 400), &offers, Strategy::BinPack);
        assert_eq!(p.unplaced, [2]);
        let gpu = [TaskRequest::new(
            ResourceRequest::new(1, 1).scalar("gpu", 1000),
        )];
        assert_eq!(place_all(&gpu, &offers, Strategy::FirstFit).unplaced, [0]);
    }

    #[test]
    fn requests_convert_to_task_resources() {
        let r = ResourceRequest::new(250, 64)
            .disk_mib(10)
            .scalar("gpu", 500);
        let res = r.to_resources();
        assert_eq!(res.cpus_milli(), 250);
        assert_eq!(res.mem_bytes(), 64 << 20);
        assert_eq!(res.disk_bytes(), 10 << 20);
        assert_eq!(res.scalar_milli("gpu"), 500);
    }
}
