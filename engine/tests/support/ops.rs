//! Seeded random operation sequences for the crash tests, and how to apply one to a volume
//! and to the model.

use bytes::Bytes;
use tripod_engine::{Seal, SnapshotId, View, Volume, SEAL_LEN};

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

/// The seal the tests give block `block` holding `data`: derived from both, so a check can
/// tell a seal that came with other content or from another place.
pub fn test_seal(block: u64, data: &[u8]) -> Seal {
    let mut seal = [0u8; SEAL_LEN];
    seal[..8].copy_from_slice(&block.to_le_bytes());
    seal[8..12].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    seal[12..].copy_from_slice(&(data.len() as u32).to_le_bytes());
    seal
}

/// Applies `op` to a sealed volume as an encrypting layer above would: partial blocks read,
/// patched and rewritten whole, each data block with [`test_seal`], runs of zero blocks as
/// zeros.
pub fn apply_sealed(v: &Volume, op: &Op) -> tripod_engine::Result<()> {
    let (at, len, data) = match op {
        Op::Write(at, data) => (*at, data.len() as u64, Some(data)),
        Op::Zeroes(at, len) => (*at, *len, None),
        _ => return apply_volume(v, op),
    };
    let bs = u64::from(v.geometry().block_size);
    let first = at / bs;
    let end = (at + len).div_ceil(bs);
    let mut buf = vec![0u8; ((end - first) * bs) as usize];
    v.read_sealed_at(&View::Head, first * bs, &mut buf)?;
    let from = (at - first * bs) as usize;
    match data {
        Some(d) => buf[from..from + d.len()].copy_from_slice(d),
        None => buf[from..from + len as usize].fill(0),
    }
    let generation = v.generation() + 1;
    let blocks: Vec<&[u8]> = buf.chunks(bs as usize).collect();
    let mut i = 0;
    while i < blocks.len() {
        let zero = blocks[i].iter().all(|&b| b == 0);
        let mut j = i + 1;
        while j < blocks.len() && blocks[j].iter().all(|&b| b == 0) == zero {
            j += 1;
        }
        let offset = (first + i as u64) * bs;
        if zero {
            v.write_zeroes_generation(offset, (j - i) as u64 * bs, generation)?;
        } else {
            let seals: Vec<Seal> = (i..j)
                .map(|k| test_seal(first + k as u64, blocks[k]))
                .collect();
            let run = Bytes::copy_from_slice(&buf[i * bs as usize..j * bs as usize]);
            v.write_sealed(offset, run, generation, &seals)?;
        }
        i = j;
    }
    Ok(())
}

/// Checks that every data block of `view` carries the seal its writer gave it with that
/// content (see [`test_seal`]).
pub fn check_seals(v: &Volume, view: &View, what: &str) {
    let size = v.view_size(view).unwrap();
    let bs = u64::from(v.geometry().block_size);
    let mut buf = vec![0u8; size as usize];
    let seals = v
        .read_sealed_at(view, 0, &mut buf)
        .unwrap_or_else(|e| panic!("{what}: sealed read failed: {e}"));
    for (b, (data, seal)) in buf.chunks(bs as usize).zip(seals).enumerate() {
        if let Some(s) = seal {
            assert_eq!(
                s.seal,
                test_seal(b as u64, data),
                "{what}: block {b} carries a seal of other content"
            );
        } else {
            assert!(data.iter().all(|&x| x == 0), "{what}: block {b}");
        }
    }
}
