//! Model-based property test: random sequences of every volume operation, compared after
//! each one with a plain `Vec<u8>`-plus-snapshots model, including reopen and power loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use support::{Model, Rng};
use tripod_engine::{
    CrashMode, EngineError, Geometry, MemStorage, SnapshotId, Volume, VolumeOptions,
};

#[derive(Debug, Clone)]
enum Op {
    Write { at: u64, len: u64, seed: u64 },
    Zeroes { at: u64, len: u64 },
    Trim { at: u64, len: u64 },
    Read { at: u64, len: u64 },
    Snapshot(u8),
    Delete(u8),
    Rollback(u8),
    Expand(u64),
    ReadSnapshot { snap: u8, at: u64, len: u64 },
    OutOfRangeWrite(u64),
    Reopen,
    PowerLoss(u64),
    Verify,
}

fn op() -> impl Strategy<Value = Op> {
    let span = (any::<u64>(), 0u64..20_000);
    prop_oneof![
        8 => (span.clone(), any::<u64>()).prop_map(|((at, len), seed)| Op::Write { at, len, seed }),
        2 => span.clone().prop_map(|(at, len)| Op::Zeroes { at, len: len * 4 }),
        2 => span.clone().prop_map(|(at, len)| Op::Trim { at, len }),
        2 => span.clone().prop_map(|(at, len)| Op::Read { at, len }),
        2 => (0u8..5).prop_map(Op::Snapshot),
        1 => (0u8..5).prop_map(Op::Delete),
        1 => (0u8..5).prop_map(Op::Rollback),
        1 => (0u64..40).prop_map(Op::Expand),
        1 => ((0u8..5), span).prop_map(|(snap, (at, len))| Op::ReadSnapshot { snap, at, len }),
        1 => any::<u64>().prop_map(Op::OutOfRangeWrite),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::PowerLoss),
        1 => Just(Op::Verify),
    ]
}

struct Harness {
    storage: MemStorage,
    vol: Volume,
    model: Model,
    options: VolumeOptions,
}

fn clamp(size: u64, at: u64, len: u64) -> (u64, u64) {
    let at = at % size;
    (at, len.min(size - at))
}

fn snap_id(n: u8) -> SnapshotId {
    SnapshotId::new(format!("snap-{n}")).unwrap()
}

impl Harness {
    fn apply(&mut self, op: &Op) {
        let size = self.model.size();
        match *op {
            Op::Write { at, len, seed } => {
                let (at, len) = clamp(size, at, len);
                let data = Rng(seed).bytes(len as usize);
                self.vol.write(at, &data).unwrap();
                self.model.write(at, &data);
            }
            Op::Zeroes { at, len } | Op::Trim { at, len } => {
                let (at, len) = clamp(size, at, len);
                if matches!(op, Op::Trim { .. }) {
                    self.vol.trim(at, len).unwrap();
                } else {
                    self.vol.write_zeroes(at, len).unwrap();
                }
                self.model.zero(at, len);
            }
            Op::Read { at, len } => {
                let (at, len) = clamp(size, at, len);
                let got = self.vol.read(at, len).unwrap();
                assert_eq!(got, &self.model.head[at as usize..(at + len) as usize]);
            }
            Op::Snapshot(n) => {
                let id = snap_id(n);
                match self.vol.snapshot(&id) {
                    Ok(()) => self.model.snapshot(id.as_str()),
                    Err(EngineError::SnapshotExists(_)) => {
                        assert!(self.model.snaps.contains_key(id.as_str()))
                    }
                    Err(e) => panic!("snapshot: {e}"),
                }
            }
            Op::Delete(n) => {
                let id = snap_id(n);
                match self.vol.delete_snapshot(&id) {
                    Ok(()) => assert!(self.model.snaps.remove(id.as_str()).is_some()),
                    Err(EngineError::SnapshotNotFound(_)) => {
                        assert!(!self.model.snaps.contains_key(id.as_str()))
                    }
                    Err(e) => panic!("delete: {e}"),
                }
            }
            Op::Rollback(n) => {
                let id = snap_id(n);
                match self.vol.rollback(&id) {
                    Ok(()) => self.model.rollback(id.as_str()),
                    Err(EngineError::SnapshotNotFound(_)) => {
                        assert!(!self.model.snaps.contains_key(id.as_str()))
                    }
                    Err(e) => panic!("rollback: {e}"),
                }
            }
            Op::Expand(blocks) => {
                let new = size + blocks * u64::from(self.vol.geometry().block_size);
                self.vol.expand(new).unwrap();
                self.model.expand(new);
                if blocks > 0 {
                    assert!(matches!(
                        self.vol.expand(size),
                        Err(EngineError::Shrink { .. })
                    ));
                }
            }
            Op::ReadSnapshot { snap, at, len } => {
                let id = snap_id(snap);
                match self.model.snaps.get(id.as_str()) {
                    Some(content) => {
                        let (at, len) = clamp(content.len() as u64, at, len);
                        let mut buf = vec![0; len as usize];
                        self.vol.read_snapshot_at(&id, at, &mut buf).unwrap();
                        assert_eq!(buf, &content[at as usize..(at + len) as usize]);
                    }
                    None => assert!(self.vol.read_snapshot_at(&id, 0, &mut [0]).is_err()),
                }
            }
            Op::OutOfRangeWrite(at) => {
                let at = size.saturating_sub(3) + at % 8;
                let r = self.vol.write(at, &[1, 2, 3, 4]);
                if at + 4 > size {
                    assert!(matches!(r, Err(EngineError::OutOfRange { .. })));
                } else {
                    r.unwrap();
                    self.model.write(at, &[1, 2, 3, 4]);
                }
                assert!(self.vol.write(u64::MAX - 1, &[1, 2]).is_err());
            }
            Op::Reopen => {
                let storage = Arc::new(self.storage.clone());
                self.vol = Volume::open(storage, self.options).unwrap();
            }
            Op::PowerLoss(seed) => {
                // Write-back volumes keep what was flushed: flush, then cut the power.
                if self.options.write_back {
                    self.vol.flush().unwrap();
                }
                let mode = if seed % 2 == 0 {
                    CrashMode::LoseUnsynced
                } else {
                    CrashMode::Torn { seed }
                };
                self.storage = self.storage.crash(mode);
                self.vol = Volume::open(Arc::new(self.storage.clone()), self.options).unwrap();
            }
            Op::Verify => {
                let report = self.vol.verify().unwrap();
                assert!(report.bad.is_empty(), "{report:?}");
            }
        }
    }

    fn check(&self) {
        assert_eq!(self.vol.size(), self.model.size());
        let all = self.vol.read(0, self.model.size()).unwrap();
        assert!(
            all == self.model.head,
            "volume content differs from the model"
        );
        let listed: Vec<String> = self
            .vol
            .list_snapshots()
            .into_iter()
            .map(|s| s.id.as_str().to_owned())
            .collect();
        let mut expected: Vec<String> = self.model.snaps.keys().cloned().collect();
        let mut sorted = listed.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
    }
}

fn run(geometry: Geometry, blocks: u64, ops: &[Op], write_back: bool) {
    let storage = MemStorage::new();
    // Writes of two blocks or more put fresh blocks in place: both write paths are modelled.
    let options = VolumeOptions {
        wal_limit: 48 << 10,
        direct_write_min: 2 * u64::from(geometry.block_size),
        write_back,
        // Small, so writes spill to their place between flushes too.
        write_back_limit: 8 * u64::from(geometry.block_size),
    };
    let size = blocks * u64::from(geometry.block_size);
    let vol = Volume::create(Arc::new(storage.clone()), size, geometry, options).unwrap();
    let mut h = Harness {
        storage,
        vol,
        model: Model::new(size),
        options,
    };
    for op in ops {
        h.apply(op);
        h.check();
    }
    assert!(h.vol.verify().unwrap().bad.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn volume_matches_model_512(blocks in 16u64..80, ops in prop::collection::vec(op(), 1..60)) {
        run(Geometry { block_size: 512, chunk_blocks: 8 }, blocks, &ops, false);
    }

    #[test]
    fn write_back_volume_matches_model_512(blocks in 16u64..80, ops in prop::collection::vec(op(), 1..60)) {
        run(Geometry { block_size: 512, chunk_blocks: 8 }, blocks, &ops, true);
    }

    #[test]
    fn volume_matches_model_4096(blocks in 8u64..40, ops in prop::collection::vec(op(), 1..40)) {
        run(Geometry { block_size: 4096, chunk_blocks: 16 }, blocks, &ops, false);
    }
}
