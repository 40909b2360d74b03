//! Weighted random order, the second sorter policy.
//!
//! At each level of the client tree, siblings are shuffled with probability proportional to
//! their weights (Efraimidis–Spirakis keys `u^(1/w)`), and the order is the depth-first walk.
//! Allocations are tracked (for shares and reads) but do not influence the order. The rng is
//! injected, so a seeded sorter is deterministic.

use rand::Rng;
use rand::rngs::StdRng;

use super::tree::{ROOT, Tree};
use super::{ClientId, Sorter};
use corral_types::{Resources, Weight};

/// Weighted random sorter. See the module docs.
#[derive(Debug, Clone)]
pub struct RandomSorter {
    tree: Tree,
    total: Resources,
    rng: StdRng,
    order: Vec<ClientId>,
    next: usize,
}

impl RandomSorter {
    /// An empty sorter drawing from `rng`.
    pub fn new(rng: StdRng) -> Self {
        Self {
            tree: Tree::new(),
            total: Resources::new(),
            rng,
            order: Vec::new(),
            next: 0,
        }
    }

    fn shuffle_into(&mut self, node: u32, out: &mut Vec<ClientId>) {
        let n = &self.tree.nodes[node as usize];
        if let Some(c) = n.client {
            if n.active {
                out.push(c);
            }
            return;
        }
        let mut children: Vec<(f64, u32)> = n
            .children
            .iter()
            .copied()
            .filter(|c| self.tree.nodes[*c as usize].active_leaves > 0)
            .map(|c| (0.0, c))
            .collect();
        for (key, c) in &mut children {
            let w = self.tree.nodes[*c as usize].weight;
            // u in (0, 1]; larger keys first. u^(1/w) favours heavier siblings.
            let u: f64 = 1.0 - self.rng.random::<f64>();
            *key = u.powf(1.0 / w);
        }
        children.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, c) in children {
            self.shuffle_into(c, out);
        }
    }
}

impl Sorter for RandomSorter {
    fn add(&mut self, path: &str) -> ClientId {
        self.tree.add(path).0
    }

    fn remove(&mut self, client: ClientId) {
        self.tree.remove(client);
    }

    fn lookup(&self, path: &str) -> Option<ClientId> {
        self.tree.lookup(path)
    }

    fn path(&self, client: ClientId) -> &str {
        self.tree.path(client)
    }

    fn activate(&mut self, client: ClientId) {
        self.tree.set_active(client, true);
    }

    fn deactivate(&mut self, client: ClientId) {
        self.tree.set_active(client, false);
    }

    fn set_weight(&mut self, path: &str, weight: Weight) {
        self.tree.set_weight(path, weight);
    }

    fn set_total(&mut self, total: &Resources) {
        self.total = total.clone();
    }

    fn allocated(&mut self, client: ClientId, resources: &Resources) {
        self.tree.allocate(client, resources);
    }

    fn unallocated(&mut self, client: ClientId, resources: &Resources) {
        self.tree.unallocate(client, resources);
    }

    fn allocation(&self, client: ClientId) -> &Resources {
        static EMPTY: Resources = Resources::new();
        self.tree
            .leaf(client)
            .map_or(&EMPTY, |n| &self.tree.nodes[n as usize].allocation)
    }

    fn share(&self, client: ClientId) -> f64 {
        self.allocation(client).dominant_share(&self.total)
    }

    fn first_of(&mut self, candidates: &[ClientId]) -> Option<ClientId> {
        let weights: Option<Vec<f64>> = candidates
            .iter()
            .map(|&c| {
                let leaf = self.tree.leaf(c)?;
                let n = &self.tree.nodes[leaf as usize];
                (n.parent == ROOT).then_some(n.weight)
            })
            .collect();
        match weights {
            // Siblings: the first of a weighted shuffle is a weighted draw.
            Some(w) if !w.is_empty() => {
                let mut x = self.rng.random::<f64>() * w.iter().sum::<f64>();
                for (c, wi) in candidates.iter().zip(&w) {
                    if x < *wi {
                        return Some(*c);
                    }
                    x -= wi;
                }
                candidates.last().copied()
            }
            Some(_) => None,
            // Deeper trees: shuffle everything and take the first candidate.
            None => {
                let mut order = Vec::new();
                self.shuffle_into(ROOT, &mut order);
                order.into_iter().find(|c| candidates.contains(c))
            }
        }
    }

    fn start_pass(&mut self) {
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        self.shuffle_into(ROOT, &mut order);
        self.order = order;
        self.next = 0;
    }

    fn next_in_pass(&mut self) -> Option<ClientId> {
        while let Some(&c) = self.order.get(self.next) {
            self.next += 1;
            // Skip clients removed or deactivated since the pass started.
            if let Some(leaf) = self.tree.leaf(c)
                && self.tree.nodes[leaf as usize].active
            {
                return Some(c);
            }
        }
        None
    }

    fn clone_box(&self) -> Box<dyn Sorter> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn same_seed_same_order_and_every_active_client_once() {
        let mut a = RandomSorter::new(StdRng::seed_from_u64(7));
        let mut b = RandomSorter::new(StdRng::seed_from_u64(7));
        for p in ["x", "y/1", "y/2", "z"] {
            a.add(p);
            b.add(p);
        }
        let z = a.lookup("z").unwrap();
        a.deactivate(z);
        b.deactivate(z);
        for _ in 0..5 {
            let (oa, ob) = (a.sort(), b.sort());
            assert_eq!(oa, ob);
            let mut sorted = oa.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
            assert!(!oa.contains(&z));
        }
    }

    #[test]
    fn heavier_siblings_come_first_more_often() {
        let mut s = RandomSorter::new(StdRng::seed_from_u64(1));
        let light = s.add("light");
        s.add("heavy");
        s.set_weight("heavy", Weight::new(9.0).unwrap());
        let light_first = (0..2000).filter(|_| s.sort()[0] == light).count();
        // Expected 1/(1+9) = 10% of the time.
        assert!((100..300).contains(&light_first), "{light_first}");
    }
}
