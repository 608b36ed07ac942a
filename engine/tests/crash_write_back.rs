//! Crash test for write-back volumes (block-device semantics): writes are acknowledged once
//! in the operating system and durable at the next flush. For seeded random sequences of
//! writes, zeroes, flushes, snapshots, rollbacks, deletes and expansions:
//!
//! - **power loss** (every unsynced byte lost, or a random subset of unsynced writes torn)
//!   at every sync point and at random operations: every block reads its content as of the
//!   last acknowledged flush (or structural change, which flushes first) or one of the values
//!   written since; snapshots are exact; no read returns a checksum error;
//! - **process crash** (`kill -9`: the kernel keeps everything handed to it): every
//!   acknowledged write reads back exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use support::ops::{apply_model, apply_sealed, apply_volume, check_seals, ops_for, Op};
use support::{Model, Rng};
use tripod_engine::{
    CrashMode, FaultPlan, FaultyStorage, Geometry, MemStorage, SnapshotId, Storage, View, Volume,
    VolumeOptions,
};

const GEOMETRY: Geometry = Geometry {
    block_size: 512,
    chunk_blocks: 8,
};
const BS: u64 = 512;

/// Small limits so checkpoints and write-back spills happen inside short sequences; writes
/// of two blocks or more place fresh blocks in place, so both write paths crash.
const OPTIONS: VolumeOptions = VolumeOptions {
    wal_limit: 8 << 10,
    direct_write_min: 2 * BS,
    write_back: true,
    write_back_limit: 3 << 10,
};

/// What may be read after a power loss: the content at the last durable point plus, per
/// block, every value written since.
#[derive(Debug, Clone)]
struct Expect {
    acked: Model,
    durable: Vec<u8>,
    since: Vec<BTreeSet<Vec<u8>>>,
}

impl Expect {
    fn new(size: u64) -> Self {
        Self {
            acked: Model::new(size),
            durable: vec![0; size as usize],
            since: vec![BTreeSet::new(); (size / BS) as usize],
        }
    }

    /// Everything acknowledged so far is durable now.
    fn settle(&mut self) {
        self.durable = self.acked.head.clone();
        self.since = vec![BTreeSet::new(); self.durable.len() / BS as usize];
    }

    /// Adds the blocks of `op` as allowed outcomes and applies it to the acknowledged model;
    /// a flush or a structural change (which flushes first) makes everything durable.
    fn apply(&mut self, op: &Op) {
        apply_model(&mut self.acked, op);
        match op {
            Op::Write(at, data) => self.note(*at, data.len() as u64),
            Op::Zeroes(at, len) => self.note(*at, *len),
            _ => self.settle(),
        }
    }

    fn note(&mut self, at: u64, len: u64) {
        for b in at / BS..(at + len).div_ceil(BS) {
            let block = self.acked.head[(b * BS) as usize..((b + 1) * BS) as usize].to_vec();
            self.since[b as usize].insert(block);
        }
    }
}

/// Runs `ops` until the storage dies; returns the memory underneath, the expectations of
/// everything acknowledged (`None`: not even the creation was), the failed op and the syncs.
/// With `sealed`, the volume keeps seals and takes every write as an encrypting layer would
/// give it ([`apply_sealed`]).
fn run(
    blocks: u64,
    ops: &[Op],
    plan: FaultPlan,
    sealed: bool,
) -> (MemStorage, Option<Expect>, Option<Op>, u64) {
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.clone()), plan);
    let storage: Arc<dyn Storage> = Arc::new(faulty.clone());
    let created = if sealed {
        Volume::create_sealed(storage, blocks * BS, GEOMETRY, OPTIONS)
    } else {
        Volume::create(storage, blocks * BS, GEOMETRY, OPTIONS)
    };
    let Ok(vol) = created else {
        return (mem, None, None, faulty.syncs());
    };
    let apply = if sealed { apply_sealed } else { apply_volume };
    let mut expect = Expect::new(blocks * BS);
    for op in ops {
        if apply(&vol, op).is_err() {
            return (mem, Some(expect), Some(op.clone()), faulty.syncs());
        }
        expect.apply(op);
    }
    (mem, Some(expect), None, faulty.syncs())
}

/// Checks a volume reopened after power loss against `expect` and the failed op.
fn check_power_loss(mem: &MemStorage, expect: Option<&Expect>, pending: Option<&Op>, what: &str) {
    let opened = Volume::open(Arc::new(mem.clone()), OPTIONS);
    let Some(expect) = expect else {
        if let Ok(v) = opened {
            let all = v.read(0, v.size()).unwrap();
            assert!(all.iter().all(|&b| b == 0), "{what}: new volume not empty");
        }
        return;
    };
    let vol = opened.unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let mut with_pending = expect.clone();
    if let Some(op) = pending {
        with_pending.apply(op);
    }
    let size = vol.size();
    assert!(
        size == expect.acked.size() || size == with_pending.acked.size(),
        "{what}: size {size}"
    );
    let content = vol
        .read(0, size)
        .unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    let rolled_back = matches!(pending, Some(Op::Rollback(_)))
        && content[..with_pending.acked.head.len().min(content.len())]
            == with_pending.acked.head[..with_pending.acked.head.len().min(content.len())];
    if !rolled_back {
        for (b, got) in content.chunks(BS as usize).enumerate() {
            let durable = expect
                .durable
                .get(b * BS as usize..(b + 1) * BS as usize)
                .unwrap_or(&[0; BS as usize]);
            let allowed = got == durable
                || expect.since.get(b).is_some_and(|s| s.contains(got))
                || with_pending.since.get(b).is_some_and(|s| s.contains(got))
                || got.iter().all(|&x| x == 0) && b * BS as usize >= expect.durable.len();
            assert!(
                allowed,
                "{what}: block {b} holds content never written there"
            );
        }
    }
    let listed: Vec<String> = vol
        .list_snapshots()
        .into_iter()
        .map(|s| s.id.as_str().to_owned())
        .collect();
    for (name, snap) in &expect.acked.snaps {
        if !listed.contains(name) {
            assert!(
                matches!(pending, Some(Op::Delete(d)) if d == name),
                "{what}: acknowledged snapshot {name} lost"
            );
            continue;
        }
        let mut buf = vec![0; snap.len()];
        vol.read_snapshot_at(&SnapshotId::new(name.as_str()).unwrap(), 0, &mut buf)
            .unwrap_or_else(|e| panic!("{what}: snapshot {name}: {e}"));
        assert!(buf == *snap, "{what}: snapshot {name} changed");
    }
    assert!(vol.verify().unwrap().bad.is_empty(), "{what}: bad blocks");
    if vol.is_sealed() {
        check_seals(&vol, &View::Head, what);
        for s in vol.list_snapshots() {
            check_seals(&vol, &View::Snapshot(s.id), what);
        }
    }
}

#[test]
fn power_loss_at_every_sync_point_keeps_what_was_flushed() {
    power_loss_at_every_sync_point(0..48, false);
}

#[test]
fn sealed_power_loss_at_every_sync_point_keeps_what_was_flushed_with_its_seals() {
    power_loss_at_every_sync_point(0..24, true);
}

fn power_loss_at_every_sync_point(seeds: std::ops::Range<u64>, sealed: bool) {
    for seed in seeds {
        let blocks = 24 + seed % 16;
        let ops = ops_for(seed, blocks, BS, 50, true);
        let (_, _, _, total_syncs) = run(blocks, &ops, FaultPlan::default(), sealed);
        for k in 0..total_syncs {
            let plan = FaultPlan {
                die_at_sync: Some(k),
                ..FaultPlan::default()
            };
            let (mem, expect, pending, _) = run(blocks, &ops, plan, sealed);
            let what = format!("seed {seed} sync {k}");
            check_power_loss(
                &mem.crash(CrashMode::LoseUnsynced),
                expect.as_ref(),
                pending.as_ref(),
                &what,
            );
            let torn = CrashMode::Torn {
                seed: seed * 1000 + k,
            };
            check_power_loss(
                &mem.crash(torn),
                expect.as_ref(),
                pending.as_ref(),
                &format!("{what} torn"),
            );
        }
    }
}

#[test]
fn power_loss_at_random_operations_with_torn_writes_keeps_what_was_flushed() {
    power_loss_at_random_operations(100..1600, false);
}

#[test]
fn sealed_power_loss_at_random_operations_with_torn_writes_keeps_seals_with_their_blocks() {
    power_loss_at_random_operations(5000..5600, true);
}

fn power_loss_at_random_operations(seeds: std::ops::Range<u64>, sealed: bool) {
    for seed in seeds {
        let blocks = 32;
        let ops = ops_for(seed, blocks, BS, 60, true);
        let mut rng = Rng(seed);
        let plan = FaultPlan {
            die_at_op: Some(rng.below(2000)),
            tear_dying_write: true,
            ..FaultPlan::default()
        };
        let (mem, expect, pending, _) = run(blocks, &ops, plan, sealed);
        check_power_loss(
            &mem.crash(CrashMode::Torn { seed }),
            expect.as_ref(),
            pending.as_ref(),
            &format!("seed {seed} plan {plan:?}"),
        );
    }
}

/// `kill -9`: the process dies at a random operation, but the kernel keeps every write it
/// was handed, so every acknowledged write reads back exactly — flushed or not.
#[test]
fn process_crash_at_random_operations_loses_no_acknowledged_write() {
    process_crash_at_random_operations(2000..2600, false);
}

#[test]
fn sealed_process_crash_at_random_operations_loses_no_acknowledged_write_or_seal() {
    process_crash_at_random_operations(7000..7300, true);
}

fn process_crash_at_random_operations(seeds: std::ops::Range<u64>, sealed: bool) {
    for seed in seeds {
        let blocks = 32;
        let ops = ops_for(seed, blocks, BS, 60, true);
        let mut rng = Rng(seed);
        let plan = FaultPlan {
            die_at_op: Some(rng.below(2000)),
            ..FaultPlan::default()
        };
        let (mem, expect, pending, _) = run(blocks, &ops, plan, sealed);
        let Some(expect) = expect else { continue };
        let what = format!("seed {seed}");
        let vol = Volume::open(Arc::new(mem), OPTIONS)
            .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        let content = vol.read(0, vol.size()).unwrap();
        let mut with_pending = expect.acked.clone();
        if let Some(op) = &pending {
            let mut e = expect.clone();
            e.apply(op);
            with_pending = e.acked;
        }
        let acked = &expect.acked.head;
        let new = &with_pending.head;
        for (b, got) in content.chunks(BS as usize).enumerate() {
            let r = b * BS as usize..(b + 1) * BS as usize;
            let old = acked.get(r.clone()).unwrap_or(&[0; BS as usize]);
            let pend = new.get(r).unwrap_or(&[0; BS as usize]);
            assert!(
                got == old || got == pend,
                "{what}: block {b} lost an acknowledged write"
            );
        }
        if sealed {
            check_seals(&vol, &View::Head, &what);
        }
    }
}

/// Data written but not flushed is served from memory until it goes in place: reads see
/// it at once, a flush makes it durable, and reads after the flush still see it.
#[test]
fn unflushed_writes_read_back_and_survive_a_flush_then_power_loss() {
    let mem = MemStorage::new();
    let vol = Volume::create(Arc::new(mem.clone()), 64 * BS, GEOMETRY, OPTIONS).unwrap();
    vol.write(0, &[1; 512]).unwrap();
    vol.write(BS, &[2; 1024]).unwrap(); // placed: fresh blocks, two at once
    assert_eq!(vol.read(0, 1536).unwrap()[..512], [1; 512]);
    vol.write(0, &[3; 512]).unwrap();
    assert_eq!(vol.read(0, 512).unwrap(), vec![3; 512]);
    // Nothing was synced: power loss now loses it all, and the volume still opens clean.
    let lost = Volume::open(Arc::new(mem.crash(CrashMode::LoseUnsynced)), OPTIONS).unwrap();
    assert_eq!(lost.read(0, 1536).unwrap(), vec![0; 1536]);
    drop(lost);
    vol.flush().unwrap();
    assert_eq!(vol.read(0, 512).unwrap(), vec![3; 512]);
    let after = Volume::open(Arc::new(mem.crash(CrashMode::LoseUnsynced)), OPTIONS).unwrap();
    assert_eq!(after.read(0, 512).unwrap(), vec![3; 512]);
    assert_eq!(after.read(BS, 1024).unwrap(), vec![2; 1024]);
}

#[test]
fn a_flushed_placed_block_that_decays_reads_as_a_checksum_error_not_as_old_content() {
    let mem = MemStorage::new();
    let vol = Volume::create(Arc::new(mem.clone()), 64 * BS, GEOMETRY, OPTIONS).unwrap();
    vol.write(4 * BS, &[7; 1024]).unwrap(); // placed: fresh blocks 4 and 5
    vol.flush().unwrap();
    drop(vol);
    // Still only in the log (no checkpoint yet); now block 4 decays on the disk.
    let name = mem
        .list()
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".data"))
        .unwrap();
    mem.flip_bits(&name, 4 * BS + 3, 0x01).unwrap();
    let vol = Volume::open(Arc::new(mem.clone()), OPTIONS).unwrap();
    assert!(
        matches!(
            vol.read(4 * BS, BS),
            Err(tripod_engine::EngineError::ChecksumMismatch { .. })
        ),
        "a flushed block that decayed must not read as its old (absent) content"
    );
    assert_eq!(vol.read(5 * BS, BS).unwrap(), vec![7; 512]);
    assert_eq!(vol.verify().unwrap().bad.len(), 1);
}
