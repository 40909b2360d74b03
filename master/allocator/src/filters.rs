//! Decline filters, organised so that the allocation cycle can check them for free.
//!
//! A filter says: do not offer `agent` to subscription `sub` (a framework in a role) resources
//! contained in `declined` until `expires`. The Mesos DeclineOffers benchmark installs one for
//! every (framework, agent) pair — 40 million at 20,000 agents × 2,000 frameworks — so both the
//! memory per filter and the cost of "is everyone filtered here?" matter:
//!
//! - `(declined, expires)` pairs are interned into *classes* (a bulk of declines made at one
//!   instant share one), so a filter is 8 bytes: `(sub, class)` in a per-agent vector sorted
//!   by `sub`;
//! - each agent keeps a bitset of the subscriptions that filtered it and the component-wise
//!   minimum (`floor`) of everything they declined. If the bitset covers every subscription
//!   with demand and the agent's free resources fit in the floor, every possible offer on the
//!   agent is filtered and the cycle skips it after a few word operations, instead of walking
//!   a thousand frameworks;
//! - expiry is driven by an ordered index of classes; agents record a lower bound of their
//!   filters' expiry so that expiring a class only revisits agents that may hold it.

use std::collections::{BTreeSet, HashMap};

use corral_types::{Resources, Timestamp};

/// A growable bitset over dense indices.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub(crate) fn set(&mut self, i: u32) {
        let w = (i / 64) as usize;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    pub(crate) fn clear(&mut self, i: u32) {
        if let Some(w) = self.words.get_mut((i / 64) as usize) {
            *w &= !(1 << (i % 64));
        }
    }

    pub(crate) fn get(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// True when every bit of `other` is set in `self`.
    pub(crate) fn covers(&self, other: &Bitset) -> bool {
        other.words.iter().enumerate().all(|(i, w)| {
            let mine = self.words.get(i).copied().unwrap_or(0);
            w & !mine == 0
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

#[derive(Debug, Clone)]
struct Class {
    declined: Resources,
    expires: Timestamp,
    refs: u32,
    live: bool,
}

#[derive(Debug, Clone)]
struct AgentFilters {
    bits: Bitset,
    /// `(sub, class)`, sorted by `sub`.
    entries: Vec<(u32, u32)>,
    /// Component-wise minimum of the declined resources of `entries`.
    floor: Resources,
    floor_dirty: bool,
    /// No entry expires before this.
    min_expiry: Timestamp,
}

impl Default for AgentFilters {
    fn default() -> Self {
        Self {
            bits: Bitset::default(),
            entries: Vec::new(),
            floor: Resources::new(),
            floor_dirty: false,
            min_expiry: Timestamp::MAX,
        }
    }
}

/// All decline filters, by agent slot and subscription slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterTable {
    agents: Vec<AgentFilters>,
    classes: Vec<Class>,
    free_classes: Vec<u32>,
    index: HashMap<(Resources, Timestamp), u32>,
    expiry: BTreeSet<(Timestamp, u32)>,
    /// The class interned last: consecutive declines usually repeat it, and comparing is
    /// cheaper than hashing.
    last: Option<u32>,
    len: usize,
}

impl FilterTable {
    /// Number of filters.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn intern(&mut self, declined: &Resources, expires: Timestamp) -> u32 {
        if let Some(c) = self.last {
            let class = &mut self.classes[c as usize];
            if class.live && class.expires == expires && class.declined == *declined {
                class.refs += 1;
                return c;
            }
        }
        let c = match self.index.get(&(declined.clone(), expires)) {
            Some(&c) => c,
            None => {
                let class = Class {
                    declined: declined.clone(),
                    expires,
                    refs: 0,
                    live: true,
                };
                let c = match self.free_classes.pop() {
                    Some(c) => {
                        self.classes[c as usize] = class;
                        c
                    }
                    None => {
                        self.classes.push(class);
                        (self.classes.len() - 1) as u32
                    }
                };
                self.index.insert((declined.clone(), expires), c);
                self.expiry.insert((expires, c));
                c
            }
        };
        self.classes[c as usize].refs += 1;
        self.last = Some(c);
        c
    }

    fn release(&mut self, c: u32) {
        let class = &mut self.classes[c as usize];
        class.refs -= 1;
        if class.refs == 0 {
            class.live = false;
            let key = (std::mem::take(&mut class.declined), class.expires);
            self.expiry.remove(&(key.1, c));
            self.index.remove(&key);
            self.free_classes.push(c);
            if self.last == Some(c) {
                self.last = None;
            }
        }
    }

    /// Makes room for agent slot `agent` with no filters.
    pub(crate) fn add_agent(&mut self, agent: u32) {
        let i = agent as usize;
        if self.agents.len() <= i {
            self.agents.resize_with(i + 1, AgentFilters::default);
        }
        self.remove_agent(agent);
    }

    /// Drops every filter on `agent`.
    pub(crate) fn remove_agent(&mut self, agent: u32) {
        let Some(f) = self.agents.get_mut(agent as usize) else {
            return;
        };
        let entries = std::mem::take(&mut f.entries);
        *f = AgentFilters::default();
        self.len -= entries.len();
        for (_, c) in entries {
            self.release(c);
        }
    }

    /// Installs (or replaces) the filter of `sub` on `agent`.
    pub(crate) fn decline(
        &mut self,
        agent: u32,
        sub: u32,
        declined: &Resources,
        expires: Timestamp,
    ) {
        if agent as usize >= self.agents.len() {
            return;
        }
        let class = self.intern(declined, expires);
        let f = &mut self.agents[agent as usize];
        let pos = match f.entries.last() {
            // Bulk declines arrive in subscription order: append without searching.
            Some(&(last, _)) if last < sub => Err(f.entries.len()),
            None => Err(0),
            _ => f.entries.binary_search_by_key(&sub, |e| e.0),
        };
        let replaced = match pos {
            Ok(i) => Some(std::mem::replace(&mut f.entries[i].1, class)),
            Err(i) => {
                f.entries.insert(i, (sub, class));
                None
            }
        };
        f.bits.set(sub);
        f.min_expiry = f.min_expiry.min(expires);
        if f.entries.len() == 1 {
            f.floor = declined.clone();
            f.floor_dirty = false;
        } else if replaced.is_some() {
            f.floor_dirty = true;
        } else if !f.floor_dirty {
            f.floor = f.floor.min(declined);
        }
        match replaced {
            Some(old) => self.release(old),
            None => self.len += 1,
        }
    }

    /// Drops every filter of `sub` (revive, unsubscribe, framework removal).
    pub(crate) fn remove_sub(&mut self, sub: u32) {
        let mut released = Vec::new();
        for f in &mut self.agents {
            if !f.bits.get(sub) {
                continue;
            }
            f.bits.clear(sub);
            if let Ok(i) = f.entries.binary_search_by_key(&sub, |e| e.0) {
                released.push(f.entries.remove(i).1);
                f.floor_dirty = true;
            }
        }
        self.len -= released.len();
        for c in released {
            self.release(c);
        }
    }

    /// Drops every filter that expires at or before `now`.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        let mut dead = Vec::new();
        while let Some(&(t, c)) = self.expiry.first() {
            if t > now {
                break;
            }
            self.expiry.pop_first();
            self.classes[c as usize].live = false;
            dead.push(c);
        }
        if dead.is_empty() {
            return;
        }
        let mut released = Vec::new();
        for f in &mut self.agents {
            if f.min_expiry > now {
                continue;
            }
            let classes = &self.classes;
            let bits = &mut f.bits;
            f.entries.retain(|&(sub, c)| {
                let keep = classes[c as usize].live;
                if !keep {
                    bits.clear(sub);
                    released.push(c);
                }
                keep
            });
            f.min_expiry = f
                .entries
                .iter()
                .map(|&(_, c)| classes[c as usize].expires)
                .min()
                .unwrap_or(Timestamp::MAX);
            f.floor_dirty = true;
        }
        self.len -= released.len();
        for c in released {
            // Expired classes are no longer in `expiry`; `release` tolerates that.
            self.release(c);
        }
    }

    /// True when `sub` has a live filter on `agent` that covers `offer`.
    pub(crate) fn is_filtered(&self, agent: u32, sub: u32, offer: &Resources) -> bool {
        let Some(f) = self.agents.get(agent as usize) else {
            return false;
        };
        if !f.bits.get(sub) {
            return false;
        }
        f.entries
            .binary_search_by_key(&sub, |e| e.0)
            .is_ok_and(|i| {
                let class = &self.classes[f.entries[i].1 as usize];
                class.declined.contains(offer)
            })
    }

    /// True when every subscription in `demanding` has filtered `agent` for anything that
    /// fits in `free`: then no offer can be made on the agent and the cycle skips it.
    pub(crate) fn all_filtered(
        &mut self,
        agent: u32,
        demanding: &Bitset,
        free: &Resources,
    ) -> bool {
        match self.agents.get(agent as usize) {
            Some(f) if !f.entries.is_empty() && f.bits.covers(demanding) => {
                self.floor(agent).contains(free)
            }
            _ => false,
        }
    }

    /// The subscriptions in `wanting` that may be offered `offer` on `agent`, if that is
    /// cheap to know exactly and there are at most `limit` of them: when `offer` fits in the
    /// agent's floor, every filtered subscription is out and the rest are the bits of
    /// `wanting` not set on the agent. `None` means "walk and check each one".
    pub(crate) fn unfiltered(
        &mut self,
        agent: u32,
        wanting: &Bitset,
        offer: &Resources,
        limit: usize,
        out: &mut Vec<u32>,
    ) -> Option<()> {
        out.clear();
        if self.agents.get(agent as usize)?.entries.is_empty() || !self.floor(agent).contains(offer)
        {
            return None;
        }
        let bits = self.agents.get(agent as usize)?.bits.words();
        for (i, w) in wanting.words().iter().enumerate() {
            let mut open = w & !bits.get(i).copied().unwrap_or(0);
            while open != 0 {
                if out.len() == limit {
                    return None;
                }
                out.push(i as u32 * 64 + open.trailing_zeros());
                open &= open - 1;
            }
        }
        Some(())
    }

    /// The agent's floor, recomputed from its distinct classes if stale.
    fn floor(&mut self, agent: u32) -> &Resources {
        let classes = &self.classes;
        let f = &mut self.agents[agent as usize];
        if f.floor_dirty {
            let mut floor: Option<Resources> = None;
            let mut prev = u32::MAX;
            for &(_, c) in &f.entries {
                if c == prev {
                    continue;
                }
                prev = c;
                let d = &classes[c as usize].declined;
                floor = Some(match floor {
                    None => d.clone(),
                    Some(fl) => fl.min(d),
                });
            }
            f.floor = floor.unwrap_or_default();
            f.floor_dirty = false;
        }
        &f.floor
    }

    /// Filters on `agent` (for tests and reads).
    #[cfg(test)]
    pub(crate) fn count_on(&self, agent: u32) -> usize {
        self.agents
            .get(agent as usize)
            .map_or(0, |f| f.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(m: u64) -> Resources {
        Resources::new().with_cpus_milli(m)
    }

    #[test]
    fn bitset_covers() {
        let mut a = Bitset::default();
        let mut b = Bitset::default();
        a.set(3);
        a.set(130);
        b.set(130);
        assert!(a.covers(&b));
        b.set(200);
        assert!(!a.covers(&b));
        b.clear(200);
        b.clear(130);
        assert!(b.is_empty() && a.covers(&b));
    }

    #[test]
    fn filter_applies_to_subsets_of_what_was_declined() {
        let mut t = FilterTable::default();
        t.add_agent(0);
        t.decline(0, 5, &cpus(2000), Timestamp::from_millis(10));
        assert!(t.is_filtered(0, 5, &cpus(2000)));
        assert!(t.is_filtered(0, 5, &cpus(1000)));
        assert!(
            !t.is_filtered(0, 5, &cpus(3000)),
            "more than declined: offer again"
        );
        assert!(!t.is_filtered(0, 6, &cpus(1)));
        t.expire(Timestamp::from_millis(9));
        assert!(t.is_filtered(0, 5, &cpus(1000)));
        t.expire(Timestamp::from_millis(10));
        assert!(!t.is_filtered(0, 5, &cpus(1000)));
        assert_eq!(t.len(), 0);
        assert!(t.index.is_empty() && t.expiry.is_empty());
    }

    #[test]
    fn all_filtered_needs_every_demanding_sub_and_a_fitting_floor() {
        let mut t = FilterTable::default();
        t.add_agent(0);
        let mut demanding = Bitset::default();
        demanding.set(1);
        demanding.set(2);
        let t0 = Timestamp::MAX;
        t.decline(0, 1, &cpus(4000), t0);
        assert!(!t.all_filtered(0, &demanding, &cpus(1000)));
        t.decline(0, 2, &cpus(2000), t0);
        assert!(t.all_filtered(0, &demanding, &cpus(2000)));
        assert!(
            !t.all_filtered(0, &demanding, &cpus(3000)),
            "floor is the minimum"
        );
        // Replacing 2's filter with a bigger one raises the floor.
        t.decline(0, 2, &cpus(8000), t0);
        assert_eq!(t.len(), 2);
        assert!(t.all_filtered(0, &demanding, &cpus(3000)));
        t.remove_sub(1);
        assert!(!t.all_filtered(0, &demanding, &cpus(1)));
        assert_eq!(t.count_on(0), 1);
        t.remove_agent(0);
        assert_eq!(t.len(), 0);
        assert!(t.index.is_empty());
    }

    #[test]
    fn unfiltered_lists_open_subscriptions_when_the_floor_covers_the_offer() {
        let mut t = FilterTable::default();
        t.add_agent(0);
        let mut wanting = Bitset::default();
        for s in [1, 2, 70, 71] {
            wanting.set(s);
        }
        let mut out = Vec::new();
        assert_eq!(
            t.unfiltered(0, &wanting, &cpus(1000), 8, &mut out),
            None,
            "no filters"
        );
        t.decline(0, 1, &cpus(4000), Timestamp::MAX);
        t.decline(0, 70, &cpus(2000), Timestamp::MAX);
        assert_eq!(
            t.unfiltered(0, &wanting, &cpus(2000), 8, &mut out),
            Some(())
        );
        assert_eq!(out, [2, 71]);
        assert_eq!(
            t.unfiltered(0, &wanting, &cpus(2000), 1, &mut out),
            None,
            "over limit"
        );
        assert_eq!(
            t.unfiltered(0, &wanting, &cpus(3000), 8, &mut out),
            None,
            "above floor"
        );
    }

    #[test]
    fn classes_are_shared_and_recycled() {
        let mut t = FilterTable::default();
        for a in 0..3 {
            t.add_agent(a);
            for s in 0..4 {
                t.decline(a, s, &cpus(1000), Timestamp::from_millis(50));
            }
        }
        assert_eq!(t.len(), 12);
        assert_eq!(
            t.index.len(),
            1,
            "one class for a bulk of identical declines"
        );
        t.decline(1, 2, &cpus(1000), Timestamp::from_millis(99));
        assert_eq!(t.index.len(), 2);
        t.expire(Timestamp::from_millis(60));
        assert_eq!(t.len(), 1);
        assert!(t.is_filtered(1, 2, &cpus(1)));
        assert_eq!(t.index.len(), 1);
    }
}
