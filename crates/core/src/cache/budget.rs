//! One budget of entries and bytes for everything the engine caches (values, descriptions,
//! listings) and for the versions the mount's inodes hold: whoever goes over it, the least
//! recently used entry of any of them goes first.
//!
//! Recency is one clock for all members, so that their entries compare. Eviction scans each
//! member for its oldest entry: O(n), but only after a fetch (or a version held), whose cost
//! dwarfs it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::flight::Limits;

/// Something whose entries the budget may release.
pub trait Member: Send + Sync {
    /// The stamp of this member's least recently used entry that may be released, other than
    /// the one stamped `keep`.
    fn oldest(&self, keep: u64) -> Option<u64>;
    /// The same among entries that hold no value (a name found missing, a failure): these go
    /// before any value, so that asking for names that do not exist cannot push out values.
    fn oldest_valueless(&self, _keep: u64) -> Option<u64> {
        None
    }
    /// Releases the entry stamped `stamp`; false when it is gone or busy meanwhile.
    fn release(&self, stamp: u64) -> bool;
}

pub struct Budget {
    limits: Limits,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    clock: AtomicU64,
    members: Mutex<Vec<Weak<dyn Member>>>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limits", &self.limits)
            .field("entries", &self.entries())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Budget {
    pub fn new(limits: Limits) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            clock: AtomicU64::new(1),
            members: Mutex::new(Vec::new()),
        })
    }

    pub fn join(&self, member: Weak<dyn Member>) {
        self.members.lock().push(member);
    }

    /// A new recency stamp, later than every one before.
    pub fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, Relaxed)
    }

    pub fn add_entry(&self) {
        self.entries.fetch_add(1, Relaxed);
    }

    pub fn remove_entry(&self) {
        self.entries.fetch_sub(1, Relaxed);
    }

    /// An entry's charge went from `before` to `after` bytes.
    pub fn recharge(&self, before: usize, after: usize) {
        self.bytes.fetch_add(after, Relaxed);
        self.bytes.fetch_sub(before, Relaxed);
    }

    pub fn entries(&self) -> usize {
        self.entries.load(Relaxed)
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    fn over(&self) -> bool {
        self.entries() > self.limits.max_entries || self.bytes() > self.limits.max_bytes
    }

    /// Releases the least recently used entries of any member until both bounds hold; the
    /// entry stamped `keep` (the one just fetched) stays.
    pub fn enforce(&self, keep: u64) {
        // A member racing with us can make a release fail; a bounded number of retries keeps
        // this from spinning on an entry that stays busy.
        let mut misses = 0;
        while self.over() && misses < 8 {
            let members: Vec<Arc<dyn Member>> = self
                .members
                .lock()
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
            let oldest_of = |pick: &dyn Fn(&Arc<dyn Member>) -> Option<u64>| {
                members
                    .iter()
                    .filter_map(|m| pick(m).map(|stamp| (stamp, m)))
                    .min_by_key(|(stamp, _)| *stamp)
            };
            let victim =
                oldest_of(&|m| m.oldest_valueless(keep)).or_else(|| oldest_of(&|m| m.oldest(keep)));
            match victim {
                Some((stamp, member)) if member.release(stamp) => {}
                Some(_) => misses += 1,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member of `n` entries of one byte each, stamped as they were added.
    struct Entries {
        budget: Arc<Budget>,
        stamps: Mutex<Vec<u64>>,
    }

    impl Entries {
        fn add(&self) -> u64 {
            let stamp = self.budget.stamp();
            self.stamps.lock().push(stamp);
            self.budget.add_entry();
            self.budget.recharge(0, 1);
            stamp
        }
    }

    impl Member for Entries {
        fn oldest(&self, keep: u64) -> Option<u64> {
            self.stamps
                .lock()
                .iter()
                .copied()
                .filter(|s| *s != keep)
                .min()
        }

        fn release(&self, stamp: u64) -> bool {
            let mut stamps = self.stamps.lock();
            let Some(at) = stamps.iter().position(|s| *s == stamp) else {
                return false;
            };
            stamps.remove(at);
            self.budget.remove_entry();
            self.budget.recharge(1, 0);
            true
        }
    }

    #[test]
    fn the_oldest_entry_of_any_member_goes_first_and_the_kept_one_stays() {
        let budget = Budget::new(Limits {
            max_entries: 3,
            max_bytes: 1 << 20,
        });
        let member = |budget: &Arc<Budget>| {
            let m = Arc::new(Entries {
                budget: budget.clone(),
                stamps: Mutex::new(Vec::new()),
            });
            budget.join(Arc::downgrade(&m) as Weak<dyn Member>);
            m
        };
        let (a, b) = (member(&budget), member(&budget));
        let a1 = a.add();
        let _b1 = b.add();
        let _a2 = a.add();
        let b2 = b.add();
        budget.enforce(b2);
        assert_eq!(budget.entries(), 3);
        assert!(
            !a.stamps.lock().contains(&a1),
            "a's first was the oldest of all"
        );
        assert_eq!(b.stamps.lock().len(), 2);
        let only = Budget::new(Limits {
            max_entries: 0,
            max_bytes: 0,
        });
        let c = member(&only);
        let kept = c.add();
        only.enforce(kept);
        assert_eq!(c.stamps.lock().as_slice(), [kept], "the kept entry stays");
    }
}
