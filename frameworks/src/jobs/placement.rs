//! Marathon's placement constraints over offers: which agent an instance may go to, given
//! where the job's other live instances are.

use std::collections::HashMap;

use corral_scheduler::Offer;

use crate::spec::{Constraint, Operator};

/// The value an offer has for a constraint's field: its hostname, or an agent attribute.
pub(crate) fn value_of<'a>(offer: &'a Offer, field: &str) -> Option<&'a str> {
    if field == "hostname" {
        Some(offer.hostname.as_str())
    } else {
        offer.attribute(field)
    }
}

/// How many live instances of one job are on each value of each constrained field (in the
/// order of the job's constraints).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    per_constraint: Vec<HashMap<String, u64>>,
}

impl Tally {
    pub(crate) fn new(constraints: &[Constraint]) -> Self {
        Self {
            per_constraint: vec![HashMap::new(); constraints.len()],
        }
    }

    /// Whether one more instance may go on `offer`.
    pub(crate) fn admits(&self, constraints: &[Constraint], offer: &Offer) -> bool {
        constraints
            .iter()
            .zip(&self.per_constraint)
            .all(|(c, counts)| admits(c, value_of(offer, &c.field), counts))
    }

    /// The values of `offer` an instance placed on it counts under.
    pub(crate) fn values(constraints: &[Constraint], offer: &Offer) -> Box<[Option<String>]> {
        constraints
            .iter()
            .map(|c| value_of(offer, &c.field).map(str::to_owned))
            .collect()
    }

    /// Makes the values `offers` have known (with no instance yet), so that GROUP_BY spreads
    /// over them too.
    pub(crate) fn see(&mut self, constraints: &[Constraint], offers: &[Offer]) {
        for (c, counts) in constraints.iter().zip(&mut self.per_constraint) {
            if matches!(c.operator, Operator::GroupBy(_)) {
                for offer in offers {
                    if let Some(v) = value_of(offer, &c.field) {
                        counts.entry(v.to_owned()).or_default();
                    }
                }
            }
        }
    }

    /// An instance placed on `values` (from [`Tally::values`]).
    pub(crate) fn add(&mut self, values: &[Option<String>]) {
        for (counts, value) in self.per_constraint.iter_mut().zip(values) {
            if let Some(v) = value {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
    }

    /// An instance placed on `values` ended.
    pub(crate) fn remove(&mut self, values: &[Option<String>]) {
        for (counts, value) in self.per_constraint.iter_mut().zip(values) {
            if let Some(v) = value
                && let Some(n) = counts.get_mut(v)
            {
                *n = n.saturating_sub(1);
            }
        }
    }
}

fn admits(c: &Constraint, value: Option<&str>, counts: &HashMap<String, u64>) -> bool {
    let count = |v: &str| counts.get(v).copied().unwrap_or(0);
    match (&c.operator, value) {
        // An agent without the attribute is not like anything.
        (Operator::Unlike(_), None) => true,
        (_, None) => false,
        (Operator::Unique, Some(v)) => count(v) == 0,
        (Operator::Cluster(want), Some(v)) => v == want,
        (Operator::Like(re), Some(v)) => re.is_match(v),
        (Operator::Unlike(re), Some(v)) => !re.is_match(v),
        (Operator::MaxPer(n), Some(v)) => count(v) < *n,
        // Evenly: only on a value with no more instances than the least used one (a value not
        // used yet counts zero).
        (Operator::GroupBy(_), Some(v)) => count(v) <= counts.values().copied().min().unwrap_or(0),
    }
}

/// Why no offer of a round took an instance, for the job's status.
pub(crate) fn refusal(constraints: &[Constraint], offers: &[Offer], tally: &Tally) -> String {
    let blocking: Vec<String> = constraints
        .iter()
        .zip(&tally.per_constraint)
        .filter(|(c, counts)| {
            offers
                .iter()
                .all(|o| !admits(c, value_of(o, &c.field), counts))
        })
        .map(|(c, _)| format!("{} {}", c.field, c.operator))
        .collect();
    let agents = offers.len();
    let offered = if agents == 1 {
        "the 1 agent offered".to_owned()
    } else {
        format!("any of the {agents} agents offered")
    };
    if blocking.is_empty() {
        format!("waiting for resources: no instance fits {offered}")
    } else {
        format!(
            "waiting for placement: constraint {} not met by {offered}",
            blocking.join(", ")
        )
    }
}
