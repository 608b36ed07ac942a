//! Replica failures a user meets: a replica directory deleted mid-workload and rebuilt into
//! a fresh one, a replica that hangs (one short delay, not the I/O timeout), bit flips
//! healed by reads and by scrub (each byte re-read about once), a block bad on every copy
//! (an error for that block alone), a range bad on a different block of each copy (served
//! block by block), short block summaries from a replica (its fault, never a panic), and
//! expansions that reached only some replicas (never a stranded copy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tripod_engine::{FaultPlan, FileStorage, Geometry, MemStorage, SnapshotId, View};
use tripod_replication::{
    LocalReplica, Replica, ReplicaHealth, ReplicaId, ReplicaSet, ReplicationError, SetConfig,
};

const R1: ReplicaId = ReplicaId::ALL[1];

fn file_replica(dir: &std::path::Path) -> Arc<dyn Replica> {
    let storage = Arc::new(FileStorage::new(dir).unwrap());
    Arc::new(LocalReplica::new(
        dir.display().to_string(),
        storage,
        options(),
    ))
}

#[test]
fn deleting_a_replica_directory_mid_workload_is_invisible_and_a_rebuild_restores_three_copies() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| root.path().join(format!("r{i}"))).collect();
    let replicas = [0, 1, 2].map(|i| file_replica(&dirs[i]));
    let geometry = Geometry {
        block_size: 4096,
        chunk_blocks: 16,
    };
    let size = 4 << 20;
    let set = Arc::new(ReplicaSet::create(replicas, size, geometry, config()).unwrap());
    let mut model = Model::new(size);
    let mut rng = Rng(11);
    let mut write = |set: &ReplicaSet, model: &mut Model| {
        let at = rng.below(size - 8192);
        let len = 1 + rng.below(8192) as usize;
        let data = rng.bytes(len);
        set.write(at, &data).unwrap();
        model.head[at as usize..at as usize + data.len()].copy_from_slice(&data);
    };
    for _ in 0..100 {
        write(&set, &mut model);
    }
    set.snapshot(&SnapshotId::new("before").unwrap()).unwrap();
    model.snaps.insert("before".into(), model.head.clone());
    // A client keeps writing on its own thread while the directory vanishes, the loss is
    // noticed, and a fresh directory is rebuilt.
    let model = std::sync::Mutex::new(model);
    let progress = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng(12);
            for i in 0..400u64 {
                let at = rng.below(size - 8192);
                let len = 1 + rng.below(8192) as usize;
                let data = rng.bytes(len);
                let mut m = model.lock().unwrap();
                set.write(at, &data).unwrap();
                m.head[at as usize..at as usize + len].copy_from_slice(&data);
                drop(m);
                progress.store(i, std::sync::atomic::Ordering::SeqCst);
            }
        });
        while progress.load(std::sync::atomic::Ordering::SeqCst) < 50 {
            std::thread::yield_now();
        }
        std::fs::remove_dir_all(&dirs[1]).unwrap();
        set.check_health().unwrap();
        assert!(matches!(
            set.status().replicas[R1].health,
            ReplicaHealth::Degraded {
                needs_rebuild: true,
                ..
            }
        ));
        while progress.load(std::sync::atomic::Ordering::SeqCst) < 150 {
            std::thread::yield_now();
        }
        let fresh = root.path().join("r1-new");
        set.replace(R1, file_replica(&fresh)).unwrap();
        let report = set.heal_now();
        assert_eq!(report.rejoined, vec![R1], "{report:?}");
    });
    let mut model = model.into_inner().unwrap();
    set.snapshot(&SnapshotId::new("after").unwrap()).unwrap();
    model.snaps.insert("after".into(), model.head.clone());
    assert_eq!(&set.read(0, size).unwrap()[..], &model.head[..]);
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after rebuild");
    }
    let fresh = root.path().join("r1-new");
    // And the set reopens from the three directories.
    drop(set);
    let dirs = [dirs[0].clone(), fresh, dirs[2].clone()];
    let set = ReplicaSet::open([0, 1, 2].map(|i| file_replica(&dirs[i])), config()).unwrap();
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after reopen");
    }
}

#[test]
fn a_hanging_replica_times_out_and_resyncs_only_what_it_missed() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(64 * BS);
    set.write(0, &[1; 2048]).unwrap();
    // Flushed: chunk 0 leaves the activity log (unflushed chunks count as missed too).
    set.flush().unwrap();
    rig.flaky[2].set(Mode::Hang);
    set.write(40 * BS, &[2; 512]).unwrap(); // waits one timeout, then acks on two
    set.write(41 * BS, &[3; 512]).unwrap();
    match &set.status().replicas[ReplicaId::ALL[2]].health {
        ReplicaHealth::Degraded {
            missing_chunks,
            needs_rebuild: false,
        } => assert_eq!(*missing_chunks, 1),
        other => panic!("{other:?}"),
    }
    rig.flaky[2].set(Mode::Up);
    assert_eq!(set.heal_now().rejoined, vec![ReplicaId::ALL[2]]);
    let got = set
        .replica(ReplicaId::ALL[2])
        .read(View::Head, 40 * BS, 1024)
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(&got[..512], &[2; 512]);
    assert_eq!(&got[512..], &[3; 512]);
}

#[test]
fn bit_flips_in_one_replica_are_served_from_another_and_repaired_once() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let blocks = 256u64;
    let set = rig.create(blocks * BS);
    let mut model = Model::new(blocks * BS);
    let mut rng = Rng(5);
    for b in 0..blocks {
        let data = rng.bytes(BS as usize);
        set.write(b * BS, &data).unwrap();
        model.head[(b * BS) as usize..((b + 1) * BS) as usize].copy_from_slice(&data);
    }
    // Flip bits in 40 random blocks of replica 0's data file.
    let mem = &rig.mems[0];
    let name = tripod_engine::Storage::list(mem)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".data"))
        .unwrap();
    let mut flipped = std::collections::BTreeSet::new();
    while flipped.len() < 40 {
        let b = rng.below(blocks);
        if flipped.insert(b) {
            mem.flip_bits(&name, b * BS + rng.below(BS), 1 << rng.below(8))
                .unwrap();
        }
    }
    let mut non_zero = 0;
    for b in &flipped {
        // Zero blocks hold no data to damage.
        if model.head[(b * BS) as usize..((b + 1) * BS) as usize]
            .iter()
            .any(|&x| x != 0)
        {
            non_zero += 1;
        }
    }
    // Every read is correct, whichever replica serves it.
    for _ in 0..3 {
        for b in 0..blocks {
            let got = set.read(b * BS, BS).unwrap();
            assert!(got[..] == model.head[(b * BS) as usize..((b + 1) * BS) as usize]);
        }
    }
    let repairs = set.repairs();
    assert_eq!(repairs, non_zero, "each bad copy repaired exactly once");
    // A second pass needs no repair; scrub finds nothing left.
    for b in 0..blocks {
        set.read(b * BS, BS).unwrap();
    }
    assert_eq!(set.repairs(), repairs);
    let scrub = set.scrub().unwrap();
    assert_eq!((scrub.bad, scrub.repaired), (0, 0), "{scrub:?}");
}

#[test]
fn scrub_repairs_bad_copies_in_snapshots_too() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(64 * BS);
    for b in 0..64u64 {
        set.write(b * BS, &[b as u8 + 1; 512]).unwrap();
    }
    set.snapshot(&SnapshotId::new("s").unwrap()).unwrap();
    for b in 0..32u64 {
        set.write(b * BS, &[200; 512]).unwrap();
    }
    // Damage replica 2's snapshot layer (the first layer file) in blocks 0..8 (only the
    // snapshot reads them) and 40..48 (the head reads them through the snapshot).
    let mem = &rig.mems[2];
    let mut names: Vec<String> = tripod_engine::Storage::list(mem)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .collect();
    names.sort();
    for b in (0..8u64).chain(40..48) {
        mem.flip_bits(&names[0], b * BS + 3, 0x10).unwrap();
    }
    let report = set.scrub().unwrap();
    assert_eq!((report.bad, report.repaired), (16, 16), "{report:?}");
    assert!(report.unrepairable.is_empty());
    let again = set.scrub().unwrap();
    assert_eq!(again.bad, 0);
    let snap = View::Snapshot(SnapshotId::new("s").unwrap());
    let got = set
        .replica(ReplicaId::ALL[2])
        .read(snap, 0, 64 * BS)
        .wait(Duration::from_secs(5))
        .unwrap();
    for b in 0..64usize {
        assert!(got[b * 512..(b + 1) * 512]
            .iter()
            .all(|&x| x == b as u8 + 1));
    }
}

#[test]
fn writes_fail_cleanly_without_quorum_and_nothing_is_acknowledged() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(64 * BS);
    set.write(0, &[7; 512]).unwrap();
    rig.flaky[0].set(Mode::Down);
    rig.flaky[1].set(Mode::Down);
    let err = set.write(0, &[8; 512]).unwrap_err();
    assert!(
        matches!(err, tripod_replication::ReplicationError::NoQuorum { .. }),
        "{err}"
    );
    assert!(set.write(BS, &[9; 512]).is_err());
    assert!(set.snapshot(&SnapshotId::new("x").unwrap()).is_err());
    // The one replica left still serves reads.
    let got = set.read(0, 512).unwrap();
    assert!(got[..] == [7; 512] || got[..] == [8; 512]);
    rig.flaky[0].set(Mode::Up);
    rig.flaky[1].set(Mode::Up);
    let report = set.heal_now();
    assert_eq!(report.rejoined.len(), 2, "{report:?}");
    set.write(BS, &[9; 512]).unwrap();
    let first = set.read(0, 512).unwrap();
    for id in ReplicaId::ALL {
        let got = set
            .replica(id)
            .read(View::Head, 0, 512)
            .wait(Duration::from_secs(5))
            .unwrap();
        assert_eq!(got, first, "{id} disagrees");
    }
}

#[test]
fn a_replica_of_another_volume_is_never_touched() {
    let a = Rig::new([FaultPlan::default(); 3]);
    let b = Rig::new([FaultPlan::default(); 3]);
    let set_a = a.create(32 * BS);
    let set_b = b.create(32 * BS);
    set_b.write(0, &[5; 512]).unwrap();
    drop(set_b);
    set_a.replace(R1, b.flaky[1].clone()).unwrap();
    let report = set_a.heal_now();
    assert!(report.rejoined.is_empty(), "{report:?}");
    let got = b.flaky[1]
        .read(View::Head, 0, 512)
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(&got[..], &[5; 512]);
    let _ = (MemStorage::new(), SetConfig::default());
}

#[test]
fn reopening_after_a_crash_reconciles_what_reached_only_some_replicas() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(64 * BS);
    set.write(0, &[1; 1024]).unwrap();
    let t = Duration::from_secs(5);
    // As a crash can leave them: a write durable on replica 0 only, and a snapshot that
    // reached replica 2 only. Neither was acknowledged.
    let r0 = set.replica(ReplicaId::ALL[0]);
    r0.write(
        512,
        bytes::Bytes::from(vec![9u8; 512]),
        set.generation() + 3,
    )
    .wait(t)
    .unwrap();
    let r2 = set.replica(ReplicaId::ALL[2]);
    r2.snapshot(SnapshotId::new("half").unwrap(), None)
        .wait(t)
        .unwrap();
    drop(set);
    let set = ReplicaSet::open(rig.replicas(), config()).unwrap();
    assert!(set.list_snapshots().unwrap().is_empty());
    let mut expected = vec![1u8; 1024];
    expected[512..].fill(9);
    for id in ReplicaId::ALL {
        let got = set.replica(id).read(View::Head, 0, 1024).wait(t).unwrap();
        assert_eq!(&got[..], &expected[..], "{id}");
        let snaps = set.replica(id).info().wait(t).unwrap().snapshots;
        assert!(snaps.is_empty(), "{id} kept the half-made snapshot");
    }
    // New writes take generations above everything seen.
    set.write(512, &[4; 512]).unwrap();
    drop(set);
    let set = ReplicaSet::open(rig.replicas(), config()).unwrap();
    assert_eq!(&set.read(512, 512).unwrap()[..], &[4; 512]);
}

#[test]
fn an_expand_that_reached_one_replica_is_adopted_and_the_others_catch_up() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(32 * BS);
    set.write(0, &[5; 1024]).unwrap();
    rig.flaky[2].set(Mode::Down);
    rig.flaky[1].refuse_expand.store(true, Ordering::SeqCst);
    // Replica 0 grows, replica 1 refuses, replica 2 is away: not acknowledged, but the one
    // copy left in service is the larger one, so the set now has that size.
    assert!(matches!(
        set.expand(40 * BS),
        Err(ReplicationError::NoQuorum { in_service: 1 })
    ));
    assert_eq!(set.size(), 40 * BS);
    rig.flaky[1].refuse_expand.store(false, Ordering::SeqCst);
    rig.flaky[2].set(Mode::Up);
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    let mut model = Model::new(40 * BS);
    model.head[..1024].fill(5);
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after heal");
    }
    set.expand(48 * BS).unwrap();
    assert_sizes(&set, 48 * BS);
}

#[test]
fn a_replica_that_grew_past_the_set_while_out_is_rebuilt_not_stranded() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(32 * BS);
    set.write(0, &[6; 1024]).unwrap();
    // Replica 0 misses a snapshot (so it needs a full rebuild) ...
    rig.flaky[0].set(Mode::Hang);
    set.snapshot(&SnapshotId::new("s").unwrap()).unwrap();
    // ... and an expand the other two refused reached it after its answer was lost.
    rig.flaky[0].set(Mode::Up);
    rig.flaky[0]
        .inner
        .expand(36 * BS)
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(set.size(), 32 * BS);
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    assert_eq!(set.size(), 36 * BS);
    let mut model = Model::new(36 * BS);
    model.head[..1024].fill(6);
    let mut snap = vec![0; 32 * BS as usize];
    snap[..1024].fill(6);
    model.snaps.insert("s".into(), snap);
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after rebuild");
    }
    set.expand(40 * BS).unwrap();
    assert_sizes(&set, 40 * BS);
}

#[test]
fn a_snapshot_name_reused_at_another_size_while_a_replica_was_away_is_rebuilt() {
    // Found by the model test: the old and the new snapshot hold the same blocks (none
    // written), so their summaries agree, but the new one is larger.
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(24 * BS);
    let s = SnapshotId::new("s").unwrap();
    set.snapshot(&s).unwrap();
    set.expand(25 * BS).unwrap();
    rig.flaky[0].set(Mode::Down);
    set.delete_snapshot(&s).unwrap();
    set.snapshot(&s).unwrap();
    rig.flaky[0].set(Mode::Up);
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    let mut model = Model::new(25 * BS);
    model.snaps.insert("s".into(), vec![0; 25 * BS as usize]);
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after rebuild");
    }
}

#[test]
fn a_block_bad_on_every_copy_fails_alone_and_the_volume_still_opens() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let blocks = 64u64;
    let set = rig.create(blocks * BS);
    let mut rng = Rng(11);
    let mut model = Model::new(blocks * BS);
    for b in 0..blocks {
        let data = rng.bytes(BS as usize);
        set.write(b * BS, &data).unwrap();
        model.head[(b * BS) as usize..((b + 1) * BS) as usize].copy_from_slice(&data);
    }
    let bad = 9u64;
    let pattern: Vec<u8> = (0..BS).map(|i| (i * 7 + 1) as u8).collect();
    set.write(bad * BS, &pattern).unwrap();
    model.head[(bad * BS) as usize..((bad + 1) * BS) as usize].copy_from_slice(&pattern);
    // Rewrite the others until the log has been checkpointed past the bad block's record
    // (replay would otherwise rewrite it in place).
    for _ in 0..3 {
        for b in (0..blocks).filter(|b| *b != bad) {
            let data = rng.bytes(BS as usize);
            set.write(b * BS, &data).unwrap();
            model.head[(b * BS) as usize..((b + 1) * BS) as usize].copy_from_slice(&data);
        }
    }
    set.flush().unwrap();
    drop(set);
    for mem in &rig.mems {
        let name = tripod_engine::Storage::list(mem)
            .unwrap()
            .into_iter()
            .find(|n| n.ends_with(".data"))
            .unwrap();
        // Find the block by its content: the data file's layout is the engine's business.
        let file = mem.read_file(&name).unwrap();
        let want = &model.head[(bad * BS) as usize..((bad + 1) * BS) as usize];
        let at = file
            .chunks(BS as usize)
            .position(|c| c == want)
            .expect("block in the data file") as u64;
        mem.flip_bits(&name, at * BS + 7, 0x10).unwrap();
    }
    // A restart: fresh replicas over the same stores.
    let mems = rig.mems.clone();
    drop(rig);
    let rig = Rig::over(mems, [FaultPlan::default(); 3]);
    let set = ReplicaSet::open(rig.replicas(), config()).unwrap();
    for b in 0..blocks {
        let got = set.read(b * BS, BS);
        if b == bad {
            assert!(got.is_err(), "block {b} served although every copy is bad");
        } else {
            let got = got.unwrap();
            assert!(got[..] == model.head[(b * BS) as usize..((b + 1) * BS) as usize]);
        }
    }
    // A read spanning the bad block fails; the ones around it do not.
    assert!(set.read(0, blocks * BS).is_err());
    let scrub = set.scrub().unwrap();
    assert!(
        scrub.unrepairable.iter().any(|(_, block)| block.0 == bad),
        "{scrub:?}"
    );
    // Overwriting the block heals it for good.
    set.write(bad * BS, &[3; BS as usize]).unwrap();
    assert_eq!(&set.read(bad * BS, BS).unwrap()[..], &[3; BS as usize]);
    assert!(set.read(0, blocks * BS).is_ok());
}

#[test]
fn short_block_summaries_cost_the_replica_that_sent_them_never_a_panic() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(32 * BS);
    set.write(0, &[1; 2048]).unwrap();
    rig.flaky[2].set(Mode::Down);
    set.write(20 * BS, &[2; 1024]).unwrap();
    // Resync compares summaries: the short answer is an error for replica 2 alone.
    rig.flaky[2].set(Mode::Up);
    rig.flaky[2].short_summaries.store(true, Ordering::SeqCst);
    let report = set.heal_now();
    assert_eq!(report.still_out.len(), 1, "{report:?}");
    assert_eq!(report.still_out[0].0, ReplicaId::ALL[2]);
    assert_eq!(&set.read(20 * BS, 1024).unwrap()[..], &[2; 1024]);
    rig.flaky[2].short_summaries.store(false, Ordering::SeqCst);
    assert!(set.heal_now().still_out.is_empty());
    drop(set);

    // At open, reconciling reads every copy's summaries: a replica answering short ones
    // leaves service for a rebuild and the volume opens from the other two.
    let mems = rig.mems.clone();
    drop(rig);
    let rig = Rig::over(mems, [FaultPlan::default(); 3]);
    rig.flaky[1].short_summaries.store(true, Ordering::SeqCst);
    let set = ReplicaSet::open(rig.replicas(), config()).unwrap();
    assert!(matches!(
        set.status().replicas[R1].health,
        ReplicaHealth::Degraded { .. }
    ));
    assert_eq!(&set.read(0, 2048).unwrap()[..], &[1; 2048]);
    rig.flaky[1].short_summaries.store(false, Ordering::SeqCst);
    assert!(set.heal_now().still_out.is_empty());
    let mut model = Model::new(32 * BS);
    model.head[..2048].fill(1);
    model.head[(20 * BS) as usize..(22 * BS) as usize].fill(2);
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after rebuild");
    }
}

/// Writes `blocks` distinct non-zero blocks through `set` and returns the model.
fn fill(set: &ReplicaSet, blocks: u64) -> Model {
    let mut model = Model::new(blocks * BS);
    for b in 0..blocks {
        let data: Vec<u8> = (0..BS).map(|i| (b * 31 + i * 7 + 1) as u8).collect();
        set.write(b * BS, &data).unwrap();
        model.head[(b * BS) as usize..((b + 1) * BS) as usize].copy_from_slice(&data);
    }
    model
}

/// Flips a bit of logical block `block` in replica `r`'s data file (found by content).
fn damage(rig: &Rig, r: usize, model: &Model, block: u64) {
    let mem = &rig.mems[r];
    let name = tripod_engine::Storage::list(mem)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".data"))
        .unwrap();
    let file = mem.read_file(&name).unwrap();
    let want = &model.head[(block * BS) as usize..((block + 1) * BS) as usize];
    let at = file.chunks(BS as usize).position(|c| c == want).unwrap() as u64;
    mem.flip_bits(&name, at * BS + 5, 0x04).unwrap();
}

#[test]
fn a_range_bad_somewhere_on_every_copy_is_served_block_by_block_and_healed() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(32 * BS);
    let model = fill(&set, 32);
    for (r, block) in [(0, 3), (1, 7), (2, 11)] {
        damage(&rig, r, &model, block);
    }
    let got = set.read(0, 32 * BS).unwrap();
    assert!(got[..] == model.head[..]);
    assert_eq!(set.repairs(), 3, "each bad copy repaired once");
    let scrub = set.scrub().unwrap();
    assert_eq!((scrub.bad, scrub.repaired), (0, 0), "{scrub:?}");
}

#[test]
fn healing_many_bad_blocks_reads_the_range_about_once() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let blocks = 256u64;
    let set = rig.create(blocks * BS);
    let model = fill(&set, blocks);
    // Only replica 0 is damaged and only its reads are counted (reads take turns over the
    // copies, so the loop below reads until replica 0 had its turn).
    for block in (0..blocks).step_by(6) {
        damage(&rig, 0, &model, block);
    }
    let bad = blocks.div_ceil(6);
    let mut before = rig.flaky[0].read_bytes.load(Ordering::SeqCst);
    // Read until replica 0 served (and so healed) the range once.
    for _ in 0..3 {
        let got = set.read(0, blocks * BS).unwrap();
        assert!(got[..] == model.head[..]);
        if set.repairs() > 0 {
            break;
        }
        before = rig.flaky[0].read_bytes.load(Ordering::SeqCst);
    }
    assert_eq!(set.repairs(), bad);
    let read = rig.flaky[0].read_bytes.load(Ordering::SeqCst) - before;
    // One failed read of the range, then the healing pass: about the range once more, plus
    // at most a chunk per bad block (not the whole range per bad block).
    let range = blocks * BS;
    let chunk = 8 * BS;
    assert!(
        read <= 2 * range + bad * chunk,
        "read {read} bytes for a {range}-byte range"
    );
}

#[test]
fn a_hung_replica_delays_one_write_by_the_lag_not_the_io_timeout() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let config = SetConfig {
        io_timeout: Duration::from_secs(120),
        lag_timeout: Duration::from_millis(200),
        ..config()
    };
    let set = ReplicaSet::create(rig.replicas(), 64 * BS, GEOMETRY, config).unwrap();
    set.write(0, &[1; 1024]).unwrap();
    set.flush().unwrap();
    rig.flaky[2].set(Mode::Hang);
    let began = std::time::Instant::now();
    set.write(40 * BS, &[2; 512]).unwrap();
    // Far below the two-minute I/O timeout: the hung copy was given the lag only.
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "{:?}",
        began.elapsed()
    );
    // What it missed was recorded before the write was acknowledged.
    match &set.status().replicas[ReplicaId::ALL[2]].health {
        ReplicaHealth::Degraded {
            missing_chunks,
            needs_rebuild: false,
        } => assert!(*missing_chunks >= 1),
        other => panic!("{other:?}"),
    }
    // Later writes and flushes do not wait for it at all.
    set.write(41 * BS, &[3; 512]).unwrap();
    set.flush().unwrap();
    // A structural change goes on without it too (it will need a rebuild).
    set.snapshot(&SnapshotId::new("s").unwrap()).unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "{:?}",
        began.elapsed()
    );
    rig.flaky[2].set(Mode::Up);
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    let got = set
        .replica(ReplicaId::ALL[2])
        .read(View::Head, 40 * BS, 1024)
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(&got[..512], &[2; 512]);
    assert_eq!(&got[512..], &[3; 512]);
}

/// Every replica alone has the volume at `size` bytes.
fn assert_sizes(set: &ReplicaSet, size: u64) {
    for id in ReplicaId::ALL {
        let info = set.replica(id).info().wait(Duration::from_secs(5)).unwrap();
        assert_eq!(info.size, size, "{id}");
    }
}

#[test]
fn a_resync_keeps_to_the_configured_rate() {
    // 256 KiB/s: the 64 chunks (256 KiB of data) a replica missed take at least a second to
    // copy back, where unthrottled they take milliseconds. (A lower bound the pacing's
    // sleeps guarantee, not a performance threshold.)
    let rig = Rig::new([FaultPlan::default(); 3]);
    let config = SetConfig {
        sync_rate: Some(256 << 10),
        ..config()
    };
    let set = ReplicaSet::create(rig.replicas(), 512 * BS, GEOMETRY, config).unwrap();
    set.flush().unwrap();
    rig.flaky[2].set(Mode::Down);
    let mut model = Model::new(512 * BS);
    for chunk in 0..64u64 {
        let data = vec![chunk as u8 + 1; 512 * 8];
        set.write(chunk * 8 * BS, &data).unwrap();
        model.write(chunk * 8 * BS, &data);
    }
    rig.flaky[2].set(Mode::Up);
    let began = std::time::Instant::now();
    assert_eq!(set.heal_now().rejoined, vec![ReplicaId::ALL[2]]);
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    assert_replica_matches(&set, ReplicaId::ALL[2], &model, "after a paced resync");
}

#[test]
fn a_replica_directory_removed_and_back_empty_is_rebuilt_in_place() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| root.path().join(format!("r{i}"))).collect();
    let size = 256 * BS;
    let set = ReplicaSet::create(
        [0, 1, 2].map(|i| file_replica(&dirs[i])),
        size,
        GEOMETRY,
        config(),
    )
    .unwrap();
    let mut model = Model::new(size);
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    set.write(0, &data).unwrap();
    model.write(0, &data);
    set.flush().unwrap();
    std::fs::remove_dir_all(&dirs[1]).unwrap();
    set.check_health().unwrap();
    // While it is gone nothing can be done; the set keeps trying.
    assert!(set.heal_now().rejoined.is_empty());
    // The disk comes back empty (a new one mounted at the same place): rebuilt there.
    std::fs::create_dir_all(&dirs[1]).unwrap();
    let report = set.heal_now();
    assert_eq!(report.rejoined, vec![ReplicaId::ALL[1]], "{report:?}");
    assert_replica_matches(&set, ReplicaId::ALL[1], &model, "rebuilt in place");
}
