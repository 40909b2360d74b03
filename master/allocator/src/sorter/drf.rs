//! Weighted, hierarchical dominant resource fairness, kept sorted incrementally.
//!
//! Every inner node of the client tree keeps its *active* children in a `BTreeSet` ordered by
//! `(dominant share / weight, segment)`. An allocation changes the shares of one leaf and its
//! ancestors only, so recording it re-keys `depth` entries at `O(log fan-out)` each; nothing
//! else moves. Only a change of the total (an agent added or removed) changes every share; that
//! marks the sorter dirty and the next pass rebuilds all keys once.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use super::tree::{ROOT, Tree};
use super::{ClientId, Sorter};
use corral_types::{Resources, Weight};

/// Position of a node among its siblings.
#[derive(Debug, Clone)]
struct Key {
    share: f64,
    segment: Arc<str>,
    node: u32,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.share
            .total_cmp(&other.share)
            .then_with(|| self.segment.cmp(&other.segment))
            .then_with(|| self.node.cmp(&other.node))
    }
}

/// Weighted DRF over a client tree. See the module docs.
#[derive(Debug, Clone)]
pub struct DrfSorter {
    tree: Tree,
    /// Per node: its active children in order.
    sets: Vec<BTreeSet<Key>>,
    /// Per node: its key in its parent's set, while it is there.
    keys: Vec<Option<Key>>,
    /// Per node: the pass that finished it (leaf yielded, or subtree exhausted).
    done: Vec<u64>,
    total: Resources,
    dirty: bool,
    pass: u64,
    /// The pass cursor: per level, the node and the key of the child entered last.
    stack: Vec<(u32, Option<Key>)>,
}

impl Default for DrfSorter {
    fn default() -> Self {
        Self::new()
    }
}

impl DrfSorter {
    /// An empty sorter.
    pub fn new() -> Self {
        Self {
            tree: Tree::new(),
            sets: vec![BTreeSet::new()],
            keys: vec![None],
            done: vec![0],
            total: Resources::new(),
            dirty: false,
            pass: 0,
            stack: Vec::new(),
        }
    }

    fn ensure_len(&mut self) {
        let n = self.tree.nodes.len();
        if self.sets.len() < n {
            self.sets.resize_with(n, BTreeSet::new);
            self.keys.resize(n, None);
            self.done.resize(n, 0);
        }
    }

    fn key_of(&self, node: u32) -> Key {
        let n = &self.tree.nodes[node as usize];
        Key {
            share: n.allocation.dominant_share(&self.total) / n.weight,
            segment: n.segment.clone(),
            node,
        }
    }

    fn unlink(&mut self, node: u32) {
        if let Some(k) = self.keys[node as usize].take() {
            let parent = self.tree.nodes[node as usize].parent;
            self.sets[parent as usize].remove(&k);
        }
    }

    fn link(&mut self, node: u32) {
        let n = &self.tree.nodes[node as usize];
        if node == ROOT || !n.live || n.active_leaves == 0 {
            return;
        }
        let parent = n.parent;
        let key = self.key_of(node);
        self.sets[parent as usize].insert(key.clone());
        self.keys[node as usize] = Some(key);
    }

    fn resync(&mut self, nodes: &[u32]) {
        for &n in nodes {
            self.unlink(n);
            self.link(n);
        }
    }

    /// Keys from the root down to `leaf`: the leaf's place in the full order.
    fn position(&self, leaf: u32) -> Vec<Key> {
        let mut path: Vec<Key> = self
            .tree
            .ancestry(leaf)
            .into_iter()
            .map(|n| self.key_of(n))
            .collect();
        path.reverse();
        path
    }

    fn rebuild(&mut self) {
        for set in &mut self.sets {
            set.clear();
        }
        for k in &mut self.keys {
            *k = None;
        }
        for node in 1..self.tree.nodes.len() as u32 {
            self.link(node);
        }
        self.dirty = false;
    }
}

impl Sorter for DrfSorter {
    fn add(&mut self, path: &str) -> ClientId {
        if let Some(c) = self.tree.lookup(path) {
            return c;
        }
        let prefix = self.tree.existing_prefix(path);
        for &n in &prefix {
            self.unlink(n);
        }
        let (client, leaf) = self.tree.add(path);
        self.ensure_len();
        let mut touched = self.tree.ancestry(leaf);
        for n in touched.clone() {
            if !prefix.contains(&n) {
                // A fresh (possibly recycled) node: forget any old pass mark.
                self.done[n as usize] = 0;
            }
            if let Some(v) = self.tree.nodes[n as usize].virtual_leaf {
                touched.push(v);
            }
        }
        self.resync(&touched);
        client
    }

    fn remove(&mut self, client: ClientId) {
        let Some(leaf) = self.tree.leaf(client) else {
            return;
        };
        let path = self.tree.ancestry(leaf);
        for &n in &path {
            self.unlink(n);
        }
        let freed = self.tree.remove(client);
        let survivors: Vec<u32> = path.into_iter().filter(|n| !freed.contains(n)).collect();
        self.resync(&survivors);
    }

    fn lookup(&self, path: &str) -> Option<ClientId> {
        self.tree.lookup(path)
    }

    fn path(&self, client: ClientId) -> &str {
        self.tree.path(client)
    }

    fn activate(&mut self, client: ClientId) {
        if self.tree.set_active(client, true)
            && let Some(leaf) = self.tree.leaf(client)
        {
            self.resync(&self.tree.ancestry(leaf));
        }
    }

    fn deactivate(&mut self, client: ClientId) {
        if self.tree.set_active(client, false)
            && let Some(leaf) = self.tree.leaf(client)
        {
            self.resync(&self.tree.ancestry(leaf));
        }
    }

    fn set_weight(&mut self, path: &str, weight: Weight) {
        let changed = self.tree.set_weight(path, weight);
        self.resync(&changed);
    }

    fn set_total(&mut self, total: &Resources) {
        if *total != self.total {
            self.total = total.clone();
            self.dirty = true;
        }
    }

    fn allocated(&mut self, client: ClientId, resources: &Resources) {
        if let Some(leaf) = self.tree.allocate(client, resources) {
            self.resync(&self.tree.ancestry(leaf));
        }
    }

    fn unallocated(&mut self, client: ClientId, resources: &Resources) {
        if let Some(leaf) = self.tree.unallocate(client, resources) {
            self.resync(&self.tree.ancestry(leaf));
        }
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
        if self.dirty {
            self.rebuild();
        }
        let leaves = candidates
            .iter()
            .filter_map(|&c| Some((self.tree.leaf(c)?, c)));
        let flat = candidates.iter().all(|&c| {
            self.tree
                .leaf(c)
                .is_some_and(|l| self.tree.nodes[l as usize].parent == ROOT)
        });
        if flat {
            // Siblings: their own keys decide (the common case, framework sorters).
            leaves
                .min_by(|a, b| self.key_of(a.0).cmp(&self.key_of(b.0)))
                .map(|(_, c)| c)
        } else {
            // Compare root-to-leaf key paths: depth-first order.
            leaves
                .map(|(leaf, c)| (self.position(leaf), c))
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, c)| c)
        }
    }

    fn start_pass(&mut self) {
        if self.dirty {
            self.rebuild();
        }
        self.pass += 1;
        self.stack.clear();
        self.stack.push((ROOT, None));
    }

    fn next_in_pass(&mut self) -> Option<ClientId> {
        // Each level resumes after the key its last entered child had *when entered*. Only
        // nodes entered in this pass change keys during a pass (allocations go to yielded
        // leaves and their ancestors, and only grow), so every child not yet entered is still
        // after that cursor; entered children that moved later are skipped by their mark.
        loop {
            let (node, cursor) = self.stack.last()?;
            let set = &self.sets[*node as usize];
            let next = match cursor {
                None => set.first(),
                Some(k) => set.range((Bound::Excluded(k), Bound::Unbounded)).next(),
            }
            .cloned();
            let Some(entry) = next else {
                let (node, _) = self.stack.pop()?;
                self.done[node as usize] = self.pass;
                continue;
            };
            let child = entry.node;
            if let Some(top) = self.stack.last_mut() {
                top.1 = Some(entry);
            }
            if self.done[child as usize] == self.pass {
                continue;
            }
            let n = &self.tree.nodes[child as usize];
            if let Some(client) = n.client {
                self.done[child as usize] = self.pass;
                return Some(client);
            }
            self.stack.push((child, None));
        }
    }

    fn clone_box(&self) -> Box<dyn Sorter> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpus: u64, mem: u64) -> Resources {
        Resources::new().with_cpus_milli(cpus).with_mem_bytes(mem)
    }

    fn names(s: &mut DrfSorter) -> Vec<String> {
        s.sort().into_iter().map(|c| s.path(c).to_owned()).collect()
    }

    #[test]
    fn a_pass_yields_each_client_once_while_allocations_reorder() {
        let mut s = DrfSorter::new();
        s.set_total(&r(100, 100));
        let a = s.add("a");
        let b = s.add("b");
        let c = s.add("c");
        s.start_pass();
        assert_eq!(s.next_in_pass(), Some(a));
        // a jumps past b and c; the pass must not yield it again.
        s.allocated(a, &r(50, 0));
        assert_eq!(s.next_in_pass(), Some(b));
        s.allocated(b, &r(10, 0));
        assert_eq!(s.next_in_pass(), Some(c));
        assert_eq!(s.next_in_pass(), None);
        assert_eq!(names(&mut s), ["c", "b", "a"]);
    }

    #[test]
    fn hierarchical_pass_visits_subtrees_in_order() {
        let mut s = DrfSorter::new();
        s.set_total(&r(100, 100));
        let x = s.add("eng/x");
        let y = s.add("eng/y");
        let z = s.add("ops/z");
        s.allocated(z, &r(10, 0));
        // eng = 0 < ops = .1: eng's subtree first.
        s.start_pass();
        assert_eq!(s.next_in_pass(), Some(x));
        s.allocated(x, &r(30, 0)); // eng = .3 now, after ops.
        assert_eq!(s.next_in_pass(), Some(y), "finish eng's subtree");
        assert_eq!(s.next_in_pass(), Some(z));
        assert_eq!(s.next_in_pass(), None);
    }

    #[test]
    fn first_of_agrees_with_the_full_order() {
        let mut s = DrfSorter::new();
        s.set_total(&r(100, 100));
        let ids: Vec<ClientId> = ["a/x", "a/y", "b", "c/z", "c/w"]
            .iter()
            .map(|p| s.add(p))
            .collect();
        for (i, c) in ids.iter().enumerate() {
            s.allocated(*c, &r(10 * (5 - i as u64), 0));
        }
        let full = s.sort();
        for skip in 0..ids.len() {
            let subset: Vec<ClientId> = full[skip..].iter().rev().copied().collect();
            assert_eq!(s.first_of(&subset), Some(full[skip]));
        }
        let mut flat = DrfSorter::new();
        flat.set_total(&r(100, 100));
        let (p, q) = (flat.add("p"), flat.add("q"));
        flat.allocated(p, &r(5, 0));
        assert_eq!(flat.first_of(&[p, q]), Some(q));
        assert_eq!(flat.first_of(&[]), None);
    }

    #[test]
    fn virtual_leaf_when_a_client_gains_children() {
        let mut s = DrfSorter::new();
        s.set_total(&r(100, 100));
        let eng = s.add("eng");
        s.allocated(eng, &r(20, 0));
        let batch = s.add("eng/batch");
        assert_eq!(s.lookup("eng"), Some(eng));
        assert_eq!(s.allocation(eng), &r(20, 0));
        s.allocated(batch, &r(10, 0));
        // Within eng: batch = .1 < eng's own = .2.
        assert_eq!(names(&mut s), ["eng/batch", "eng"]);
        s.remove(batch);
        assert_eq!(names(&mut s), ["eng"]);
        s.remove(eng);
        assert_eq!(names(&mut s), Vec::<String>::new());
        assert_eq!(s.lookup("eng"), None);
        // Recycled nodes and clients behave like new ones.
        let again = s.add("eng/batch");
        assert_eq!(s.allocation(again), &Resources::new());
        assert_eq!(names(&mut s), ["eng/batch"]);
    }
}
