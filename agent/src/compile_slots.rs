//! How many compiles run at once: at most one per core in all, and at most half of those for
//! any one framework. A tenant launching module after module cannot hold every slot while
//! another tenant's new module waits; loads of compiled code take no slot. A compile waits
//! for its slot on the blocking thread that will run it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};

use corral_types::FrameworkId;

/// Who asked for a compile: a framework, or `None` for the agent itself (modules added ahead
/// of launches).
pub(crate) type Owner = Option<FrameworkId>;

pub(crate) struct CompileSlots {
    total: usize,
    per_owner: usize,
    held: Mutex<Held>,
    freed: Condvar,
}

#[derive(Default)]
struct Held {
    all: usize,
    by_owner: HashMap<Owner, usize>,
}

/// A compile slot, given back when dropped.
pub(crate) struct Slot<'a> {
    slots: &'a CompileSlots,
    owner: Owner,
}

impl CompileSlots {
    /// `total` slots (at least one); each owner may hold half of them (at least one).
    pub(crate) fn new(total: usize) -> Self {
        let total = total.max(1);
        Self {
            total,
            per_owner: (total / 2).max(1),
            held: Mutex::new(Held::default()),
            freed: Condvar::new(),
        }
    }

    /// Waits for a slot `owner` may take.
    pub(crate) fn acquire(&self, owner: &Owner) -> Slot<'_> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.fits(&held, owner) {
            held = self
                .freed
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.take(&mut held, owner)
    }

    /// A slot if `owner` may take one now.
    #[cfg(test)]
    fn try_acquire(&self, owner: &Owner) -> Option<Slot<'_>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.fits(&held, owner).then(|| self.take(&mut held, owner))
    }

    fn fits(&self, held: &Held, owner: &Owner) -> bool {
        held.all < self.total && held.by_owner.get(owner).copied().unwrap_or(0) < self.per_owner
    }

    fn take(&self, held: &mut Held, owner: &Owner) -> Slot<'_> {
        held.all += 1;
        *held.by_owner.entry(owner.clone()).or_default() += 1;
        Slot {
            slots: self,
            owner: owner.clone(),
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.all -= 1;
        if let Some(n) = held.by_owner.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                held.by_owner.remove(&self.owner);
            }
        }
        self.slots.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> Owner {
        Some(FrameworkId::new(name).unwrap())
    }

    #[test]
    fn one_framework_holds_at_most_half_the_slots_and_others_get_the_rest() {
        let slots = CompileSlots::new(4);
        let (a, b) = (owner("a"), owner("b"));
        let a1 = slots.try_acquire(&a).unwrap();
        let _a2 = slots.try_acquire(&a).unwrap();
        assert!(slots.try_acquire(&a).is_none(), "a holds its half");
        let _b1 = slots.try_acquire(&b).unwrap();
        let _agent = slots.try_acquire(&None).unwrap();
        assert!(slots.try_acquire(&b).is_none(), "all four are held");
        drop(a1);
        assert!(
            slots.try_acquire(&a).is_some(),
            "a slot given back is free again"
        );
    }

    #[test]
    fn a_waiting_compile_starts_when_a_slot_is_given_back() {
        let slots = std::sync::Arc::new(CompileSlots::new(2));
        let a = owner("a");
        let held = slots.try_acquire(&a).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let waiter = slots.clone();
            let a = a.clone();
            s.spawn(move || {
                let _slot = waiter.acquire(&a);
                tx.send(()).unwrap();
            });
            // One slot of two is free, but it is not a's to take.
            assert!(rx.try_recv().is_err());
            drop(held);
            rx.recv().unwrap();
        });
    }

    #[test]
    fn one_core_still_compiles() {
        let slots = CompileSlots::new(0);
        let _one = slots.try_acquire(&owner("a")).unwrap();
        assert!(slots.try_acquire(&owner("b")).is_none());
    }
}
