//! The client tree shared by both sorters: paths, weights, allocations, activity.
//!
//! A client whose path is also a prefix of another client (`eng` next to `eng/batch`) is kept
//! as a *virtual leaf* `.` under the inner node `eng`, as Mesos's hierarchical sorter does, so
//! every client is a leaf and every inner node's allocation is the sum of its children's.

use std::collections::HashMap;
use std::sync::Arc;

use super::ClientId;
use corral_types::{Resources, Weight};

pub(super) const ROOT: u32 = 0;
const VIRTUAL: &str = ".";

#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Last path segment (`.` for a virtual leaf); sibling tie-breaker.
    pub(super) segment: Arc<str>,
    /// Full path (a virtual leaf has its role's path).
    pub(super) path: Arc<str>,
    pub(super) parent: u32,
    pub(super) children: Vec<u32>,
    /// Set on leaves.
    pub(super) client: Option<ClientId>,
    /// Set on inner nodes that are also clients.
    pub(super) virtual_leaf: Option<u32>,
    /// Leaves only: included in sorting.
    pub(super) active: bool,
    /// Active leaves in this subtree; a node takes part in sorting iff this is non-zero.
    pub(super) active_leaves: u32,
    /// This subtree's allocation.
    pub(super) allocation: Resources,
    pub(super) weight: f64,
    pub(super) live: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Tree {
    pub(super) nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    /// Path -> node, for real (non-virtual) nodes.
    by_path: HashMap<Arc<str>, u32>,
    /// Client -> leaf node.
    clients: Vec<Option<u32>>,
    free_clients: Vec<u32>,
    weights: HashMap<Arc<str>, Weight>,
}

impl Tree {
    pub(super) fn new() -> Self {
        let root = Node {
            segment: "".into(),
            path: "".into(),
            parent: ROOT,
            children: Vec::new(),
            client: None,
            virtual_leaf: None,
            active: false,
            active_leaves: 0,
            allocation: Resources::new(),
            weight: 1.0,
            live: true,
        };
        Self {
            nodes: vec![root],
            free_nodes: Vec::new(),
            by_path: HashMap::new(),
            clients: Vec::new(),
            free_clients: Vec::new(),
            weights: HashMap::new(),
        }
    }

    pub(super) fn leaf(&self, client: ClientId) -> Option<u32> {
        self.clients.get(client.index()).copied().flatten()
    }

    pub(super) fn lookup(&self, path: &str) -> Option<ClientId> {
        let node = &self.nodes[*self.by_path.get(path)? as usize];
        match node.virtual_leaf {
            Some(v) => self.nodes[v as usize].client,
            None => node.client,
        }
    }

    pub(super) fn path(&self, client: ClientId) -> &str {
        self.leaf(client)
            .map_or("", |n| &self.nodes[n as usize].path)
    }

    /// Nodes from `node` up to (excluding) the root.
    pub(super) fn ancestry(&self, mut node: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while node != ROOT {
            out.push(node);
            node = self.nodes[node as usize].parent;
        }
        out
    }

    /// Existing real nodes on `path`, root-most first (the nodes an `add` may touch).
    pub(super) fn existing_prefix(&self, path: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, _) in path.match_indices('/').chain([(path.len(), "")]) {
            match self.by_path.get(&path[..i]) {
                Some(&n) => out.push(n),
                None => break,
            }
        }
        out
    }

    fn weight_of(&self, path: &str) -> f64 {
        self.weights.get(path).map_or(1.0, |w| w.get())
    }

    fn new_node(&mut self, segment: &str, path: Arc<str>, parent: u32) -> u32 {
        let node = Node {
            segment: segment.into(),
            weight: self.weight_of(&path),
            path,
            parent,
            children: Vec::new(),
            client: None,
            virtual_leaf: None,
            active: false,
            active_leaves: 0,
            allocation: Resources::new(),
            live: true,
        };
        let idx = match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.nodes[parent as usize].children.push(idx);
        idx
    }

    /// Moves the client of leaf `node` to a new virtual leaf child, making `node` inner.
    fn push_down_client(&mut self, node: u32) {
        let path = self.nodes[node as usize].path.clone();
        let v = self.new_node(VIRTUAL, path, node);
        let n = &mut self.nodes[node as usize];
        let client = n.client.take();
        let (active, allocation, weight) = (n.active, n.allocation.clone(), n.weight);
        n.active = false;
        n.virtual_leaf = Some(v);
        let leaf = &mut self.nodes[v as usize];
        leaf.client = client;
        leaf.active = active;
        leaf.active_leaves = u32::from(active);
        leaf.allocation = allocation;
        leaf.weight = weight;
        if let Some(c) = client {
            self.clients[c.index()] = Some(v);
        }
    }

    /// Adds an active client; returns it and its leaf.
    pub(super) fn add(&mut self, path: &str) -> (ClientId, u32) {
        if let Some(c) = self.lookup(path) {
            let leaf = self.leaf(c).unwrap_or(ROOT);
            return (c, leaf);
        }
        let mut cur = ROOT;
        for (i, _) in path.match_indices('/').chain([(path.len(), "")]) {
            let prefix = &path[..i];
            cur = match self.by_path.get(prefix) {
                Some(&n) => n,
                None => {
                    if self.nodes[cur as usize].client.is_some() {
                        self.push_down_client(cur);
                    }
                    let segment = prefix.rsplit('/').next().unwrap_or(prefix);
                    let p: Arc<str> = prefix.into();
                    let n = self.new_node(segment, p.clone(), cur);
                    self.by_path.insert(p, n);
                    n
                }
            };
        }
        // `cur` is the node for `path`. If it already has children it becomes inner with a
        // virtual leaf; otherwise it is the leaf.
        let leaf = if self.nodes[cur as usize].children.is_empty() {
            cur
        } else {
            let p = self.nodes[cur as usize].path.clone();
            let v = self.new_node(VIRTUAL, p, cur);
            self.nodes[v as usize].weight = self.nodes[cur as usize].weight;
            self.nodes[cur as usize].virtual_leaf = Some(v);
            v
        };
        let client = match self.free_clients.pop() {
            Some(c) => {
                self.clients[c as usize] = Some(leaf);
                ClientId(c)
            }
            None => {
                self.clients.push(Some(leaf));
                ClientId((self.clients.len() - 1) as u32)
            }
        };
        self.nodes[leaf as usize].client = Some(client);
        self.set_active(client, true);
        (client, leaf)
    }

    /// Removes a client and prunes inner nodes left with no children. Returns the freed nodes
    /// (callers drop side-table entries for them).
    pub(super) fn remove(&mut self, client: ClientId) -> Vec<u32> {
        let Some(leaf) = self.leaf(client) else {
            return Vec::new();
        };
        self.set_active(client, false);
        let allocation = self.nodes[leaf as usize].allocation.clone();
        self.unallocate(client, &allocation);
        self.clients[client.index()] = None;
        self.free_clients.push(client.0);
        self.nodes[leaf as usize].client = None;

        let mut freed = Vec::new();
        let mut node = leaf;
        while node != ROOT {
            let n = &self.nodes[node as usize];
            if !n.children.is_empty() || n.client.is_some() || n.virtual_leaf.is_some() {
                break;
            }
            let parent = n.parent;
            let is_virtual = &*n.segment == VIRTUAL;
            if is_virtual {
                self.nodes[parent as usize].virtual_leaf = None;
            } else {
                let path = n.path.clone();
                self.by_path.remove(&path);
            }
            self.nodes[parent as usize].children.retain(|c| *c != node);
            self.nodes[node as usize].live = false;
            self.free_nodes.push(node);
            freed.push(node);
            node = parent;
        }
        freed
    }

    /// Flips a client's activity, updating `active_leaves` up the path; false if unchanged.
    pub(super) fn set_active(&mut self, client: ClientId, active: bool) -> bool {
        let Some(leaf) = self.leaf(client) else {
            return false;
        };
        if self.nodes[leaf as usize].active == active {
            return false;
        }
        self.nodes[leaf as usize].active = active;
        let mut node = leaf;
        loop {
            let n = &mut self.nodes[node as usize];
            if active {
                n.active_leaves += 1;
            } else {
                n.active_leaves = n.active_leaves.saturating_sub(1);
            }
            if node == ROOT {
                break;
            }
            node = n.parent;
        }
        true
    }

    pub(super) fn allocate(&mut self, client: ClientId, r: &Resources) -> Option<u32> {
        let leaf = self.leaf(client)?;
        let mut node = leaf;
        loop {
            let n = &mut self.nodes[node as usize];
            n.allocation = n.allocation.saturating_add(r);
            if node == ROOT {
                break;
            }
            node = n.parent;
        }
        Some(leaf)
    }

    pub(super) fn unallocate(&mut self, client: ClientId, r: &Resources) -> Option<u32> {
        let leaf = self.leaf(client)?;
        // Clamp to what the client holds so ancestors stay consistent.
        let r = r.min(&self.nodes[leaf as usize].allocation);
        let mut node = leaf;
        loop {
            let n = &mut self.nodes[node as usize];
            n.allocation = n.allocation.saturating_sub(&r);
            if node == ROOT {
                break;
            }
            node = n.parent;
        }
        Some(leaf)
    }

    /// Records a weight; returns the nodes whose weight changed.
    pub(super) fn set_weight(&mut self, path: &str, weight: Weight) -> Vec<u32> {
        self.weights.insert(path.into(), weight);
        let Some(&node) = self.by_path.get(path) else {
            return Vec::new();
        };
        let mut changed = vec![node];
        self.nodes[node as usize].weight = weight.get();
        if let Some(v) = self.nodes[node as usize].virtual_leaf {
            self.nodes[v as usize].weight = weight.get();
            changed.push(v);
        }
        changed
    }
}
