//! Whether a volume's file system has room to spare, checked at most every
//! [`RECHECK`]: claiming space for every new block (`fallocate`) costs a system call per
//! write, and is only needed when the disk could run out before the blocks go in place.
//!
//! The data waiting to go in place is bounded (per volume by `write_back_limit`, per process
//! by 1 GiB). With several times that free, a settle cannot meet a full disk unless something
//! else fills it faster than [`RECHECK`] allows; below that, every new block is claimed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::storage::Storage;

/// How often free space is looked at.
pub(crate) const RECHECK: Duration = Duration::from_millis(100);

/// Free space above which claiming is skipped: four times the most data a process can have
/// waiting to go in place.
pub(crate) const ROOMY: u64 = 4 << 30;

/// The cached answer.
#[derive(Debug, Default)]
pub(crate) struct Room {
    roomy: AtomicBool,
    checked: Mutex<Option<Instant>>,
}

impl Room {
    /// Whether `storage` has more than [`ROOMY`] free, as of at most [`RECHECK`] ago. A
    /// backend that cannot say, or an error, counts as not roomy (claim everything).
    pub(crate) fn plenty(&self, storage: &dyn Storage) -> bool {
        let now = Instant::now();
        if let Some(mut checked) = self.checked.try_lock() {
            if checked.is_none_or(|at| now.duration_since(at) >= RECHECK) {
                let free = storage.free_space().ok().flatten().unwrap_or(0);
                self.roomy.store(free > ROOMY, Ordering::Relaxed);
                *checked = Some(now);
            }
        }
        self.roomy.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn storage_that_cannot_say_is_never_roomy() {
        let room = Room::default();
        assert!(!room.plenty(&MemStorage::new()));
    }
}
