//! Seeded random operations for the set's crash tests, and how to apply one to a set and to
//! the model.

use tripod_engine::SnapshotId;
use tripod_replication::{ReplicaSet, ReplicationError};

use super::{Model, Rng, BS};

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

/// The next random operation on a volume modelled by `m`; `n` numbers snapshots. With
/// `flushes`, flushes are in the mix (a different sequence for the same seed).
pub fn next_op(rng: &mut Rng, m: &Model, n: &mut u32, flushes: bool) -> Op {
    let size = m.size();
    let at = rng.below(size);
    let len = 1 + rng.below((size - at).min(5 * BS));
    // Kinds: 0 write, 1 zeroes, 2 flush, 3 snapshot, 4 delete or rollback, 5 expand.
    let kind = if flushes {
        match rng.below(14) {
            7 => 1,
            8 | 9 => 2,
            10 => 3,
            11 | 12 => 4,
            13 => 5,
            _ => 0,
        }
    } else {
        match rng.below(12) {
            7 => 1,
            8 => 3,
            9 | 10 => 4,
            11 => 5,
            _ => 0,
        }
    };
    match kind {
        1 => Op::Zeroes(at, len),
        2 => Op::Flush,
        3 => {
            *n += 1;
            Op::Snapshot(format!("s{n}"))
        }
        4 if !m.snaps.is_empty() => {
            let names: Vec<_> = m.snaps.keys().cloned().collect();
            let pick = names[rng.below(names.len() as u64) as usize].clone();
            if rng.below(2) == 0 {
                Op::Delete(pick)
            } else {
                Op::Rollback(pick)
            }
        }
        5 => Op::Expand(size + (1 + rng.below(3)) * BS),
        _ => Op::Write(at, rng.bytes(len as usize)),
    }
}

/// Applies `op` to the model of acknowledged content (a flush changes no content).
pub fn apply_model(m: &mut Model, op: &Op) {
    match op {
        Op::Write(at, d) => m.head[*at as usize..*at as usize + d.len()].copy_from_slice(d),
        Op::Zeroes(at, len) => m.head[*at as usize..(*at + *len) as usize].fill(0),
        Op::Flush => {}
        Op::Snapshot(s) => {
            m.snaps.insert(s.clone(), m.head.clone());
        }
        Op::Delete(s) => {
            m.snaps.remove(s);
        }
        Op::Rollback(s) => {
            let mut c = m.snaps[s].clone();
            c.resize(m.head.len(), 0);
            m.head = c;
        }
        Op::Expand(n) => m.head.resize(*n as usize, 0),
    }
}

/// Applies `op` to `set`.
pub fn apply_set(set: &ReplicaSet, op: &Op) -> Result<(), ReplicationError> {
    let id = |s: &str| SnapshotId::new(s).unwrap();
    match op {
        Op::Write(at, d) => set.write(*at, d),
        Op::Zeroes(at, len) => set.write_zeroes(*at, *len),
        Op::Flush => set.flush(),
        Op::Snapshot(s) => set.snapshot(&id(s)),
        Op::Delete(s) => set.delete_snapshot(&id(s)),
        Op::Rollback(s) => set.rollback(&id(s)),
        Op::Expand(n) => set.expand(*n),
    }
}
