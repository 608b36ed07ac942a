//! Seeded random operation sequences for the crash tests, and how to apply one to a volume
//! and to the model.

use tripod_engine::{SnapshotId, Volume};

use super::{Model, Rng};

/// One operation of a crash-test sequence.
#[derive(Debug, Clone)]
pub enum Op {
    Write(u64, Vec<u8>),
    Zeroes(u64, u64),
    Flush,
    Snapshot(String),
    Delete(String),
    Rollback(String),
    Expand(u64),
}

enum Kind {
    Write,
    Zeroes,
    Flush,
    Snapshot,
    DeleteOrRollback,
    Expand,
}

/// A reproducible sequence of `n` operations on a volume of `blocks` blocks of `bs` bytes;
/// snapshot names refer to snapshots that exist at that point. With `flushes`, flushes are
/// in the mix (a different sequence for the same seed).
pub fn ops_for(seed: u64, blocks: u64, bs: u64, n: usize, flushes: bool) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut model = Model::new(blocks * bs);
    let mut out = Vec::new();
    let mut next_snap = 0;
    for _ in 0..n {
        let size = model.size();
        let at = rng.below(size);
        let len = rng.below((size - at).min(6 * bs)) + 1;
        let kind = if flushes {
            match rng.below(16) {
                8 => Kind::Zeroes,
                9 | 10 => Kind::Flush,
                11 => Kind::Snapshot,
                12 | 13 => Kind::DeleteOrRollback,
                14 => Kind::Expand,
                _ => Kind::Write,
            }
        } else {
            match rng.below(12) {
                6 => Kind::Zeroes,
                7 => Kind::Snapshot,
                8 | 9 => Kind::DeleteOrRollback,
                10 => Kind::Expand,
                _ => Kind::Write,
            }
        };
        let op = match kind {
            Kind::Zeroes => Op::Zeroes(at, len),
            Kind::Flush => Op::Flush,
            Kind::Snapshot => {
                next_snap += 1;
                Op::Snapshot(format!("s{next_snap}"))
            }
            Kind::DeleteOrRollback if !model.snaps.is_empty() => {
                let names: Vec<_> = model.snaps.keys().cloned().collect();
                let name = names[rng.below(names.len() as u64) as usize].clone();
                if rng.below(2) == 0 {
                    Op::Delete(name)
                } else {
                    Op::Rollback(name)
                }
            }
            Kind::Expand => Op::Expand(size + (rng.below(4) + 1) * bs),
            Kind::Write | Kind::DeleteOrRollback => Op::Write(at, rng.bytes(len as usize)),
        };
        apply_model(&mut model, &op);
        out.push(op);
    }
    out
}

/// Applies `op` to the model of acknowledged content (a flush changes no content).
pub fn apply_model(m: &mut Model, op: &Op) {
    match op {
        Op::Write(at, data) => m.write(*at, data),
        Op::Zeroes(at, len) => m.zero(*at, *len),
        Op::Flush => {}
        Op::Snapshot(s) => m.snapshot(s),
        Op::Delete(s) => {
            m.snaps.remove(s);
        }
        Op::Rollback(s) => m.rollback(s),
        Op::Expand(n) => m.expand(*n),
    }
}

/// Applies `op` to `v`.
pub fn apply_volume(v: &Volume, op: &Op) -> tripod_engine::Result<()> {
    let id = |s: &str| SnapshotId::new(s).unwrap();
    match op {
        Op::Write(at, data) => v.write(*at, data),
        Op::Zeroes(at, len) => v.write_zeroes(*at, *len),
        Op::Flush => v.flush(),
        Op::Snapshot(s) => v.snapshot(&id(s)),
        Op::Delete(s) => v.delete_snapshot(&id(s)),
        Op::Rollback(s) => v.rollback(&id(s)),
        Op::Expand(n) => v.expand(*n),
    }
}
