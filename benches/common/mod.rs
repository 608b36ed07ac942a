//! Helpers shared by the criterion benches: where to put files, which blocks to hit, and
//! running writes from many threads.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

/// Volume size every bench uses.
pub const VOLUME: u64 = 1 << 30;
/// The 4 KiB unit of random I/O.
pub const BLOCK: u64 = 4096;

/// A fresh directory under `TRIPOD_BENCH_DIR` (or the system temp dir): keep it on the disk
/// being measured, not tmpfs, or the sync cost vanishes.
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A cheap deterministic stream of block numbers inside the volume.
pub fn block_at(i: u64, salt: u64) -> u64 {
    let mut z = i.wrapping_add(salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z ^= z >> 29;
    z % (VOLUME / BLOCK)
}

/// Runs `iters` writes spread over `threads` threads; `write(i)` does write number `i`.
pub fn spread(threads: u64, iters: u64, write: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut i = t;
                while i < iters {
                    write(i);
                    i += threads;
                }
            });
        }
    });
    start.elapsed()
}
