//! Striped per-block locks: writers of a block (including the read-modify-write of a partial
//! block) exclude each other and readers of that block, so a reader never sees a block whose
//! checksum and data disagree and two partial writers never lose each other's bytes. The
//! replica set uses the same structure to order overlapping writes across its replicas.

use std::sync::Arc;

use parking_lot::{ArcRwLockWriteGuard, RawRwLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of stripes: enough that random 4 KiB I/O from dozens of threads rarely collides,
/// small enough (a few KiB) to lock all of them for a very large request.
const STRIPES: u64 = 1024;

/// A fixed set of reader-writer locks, locked in ascending order; block `b` is guarded by stripe `b % STRIPES`.
pub struct BlockLocks {
    stripes: Vec<Arc<RwLock<()>>>,
}

/// Exclusive locks on a range that own their stripes: they may outlive the borrow of the
/// [`BlockLocks`] and be released on another thread (a write waited for asynchronously).
pub struct OwnedRangeGuard {
    _held: Vec<ArcRwLockWriteGuard<RawRwLock, ()>>,
}

/// Guards held for a range of blocks; dropping it unlocks them.
pub struct RangeGuard<'a> {
    _held: Held<'a>,
}

enum Held<'a> {
    Read(#[expect(dead_code, reason = "held for its Drop")] Vec<RwLockReadGuard<'a, ()>>),
    Write(#[expect(dead_code, reason = "held for its Drop")] Vec<RwLockWriteGuard<'a, ()>>),
}

impl BlockLocks {
    /// A fresh set of unlocked stripes.
    pub fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Arc::new(RwLock::new(()))).collect(),
        }
    }

    /// Stripe numbers covering blocks `first..end`, ascending (the global lock order).
    fn stripes_for(first: u64, end: u64) -> Vec<usize> {
        if end.saturating_sub(first) >= STRIPES {
            return (0..STRIPES as usize).collect();
        }
        let mut v: Vec<usize> = (first..end).map(|b| (b % STRIPES) as usize).collect();
        v.sort_unstable();
        v
    }

    /// Shared locks on blocks `first..end`.
    pub fn read(&self, first: u64, end: u64) -> RangeGuard<'_> {
        let held = Self::stripes_for(first, end)
            .into_iter()
            .map(|s| self.stripes[s].read())
            .collect();
        RangeGuard {
            _held: Held::Read(held),
        }
    }

    /// Exclusive locks on every block of every range (each stripe once, in the global order,
    /// so ranges that share a stripe do not deadlock).
    pub fn write_many(&self, ranges: &[(u64, u64)]) -> RangeGuard<'_> {
        let mut stripes: Vec<usize> = ranges
            .iter()
            .flat_map(|&(first, end)| Self::stripes_for(first, end))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let held = stripes
            .into_iter()
            .map(|s| self.stripes[s].write())
            .collect();
        RangeGuard {
            _held: Held::Write(held),
        }
    }

    /// [`BlockLocks::write`] as an [`OwnedRangeGuard`].
    pub fn write_owned(&self, first: u64, end: u64) -> OwnedRangeGuard {
        let held = Self::stripes_for(first, end)
            .into_iter()
            .map(|s| self.stripes[s].write_arc())
            .collect();
        OwnedRangeGuard { _held: held }
    }

    /// [`BlockLocks::write_owned`] without waiting: `None` if any block is locked now.
    pub fn try_write_owned(&self, first: u64, end: u64) -> Option<OwnedRangeGuard> {
        let mut held = Vec::new();
        for s in Self::stripes_for(first, end) {
            held.push(self.stripes[s].try_write_arc()?);
        }
        Some(OwnedRangeGuard { _held: held })
    }

    /// Exclusive locks on blocks `first..end`.
    pub fn write(&self, first: u64, end: u64) -> RangeGuard<'_> {
        let held = Self::stripes_for(first, end)
            .into_iter()
            .map(|s| self.stripes[s].write())
            .collect();
        RangeGuard {
            _held: Held::Write(held),
        }
    }
}

impl Default for BlockLocks {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_sorted_and_distinct() {
        let s = BlockLocks::stripes_for(1020, 1030);
        assert_eq!(s, vec![0, 1, 2, 3, 4, 5, 1020, 1021, 1022, 1023]);
        assert_eq!(BlockLocks::stripes_for(0, 5000).len(), 1024);
    }
}
