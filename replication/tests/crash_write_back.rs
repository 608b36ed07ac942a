//! The durability contract of block-device semantics for a replica set whose stores are
//! write-back (writes acknowledged once in every in-service replica's kernel, durable at a
//! flush):
//!
//! - power loss of all three stores at random points: every block reads its content as of
//!   the last acknowledged flush (or snapshot, rollback, delete, expansion — each is durable
//!   when acknowledged) or a value written since; snapshots are exact; the three replicas
//!   converge after reopening;
//! - power loss of one replica while the set goes on: the writes it lost since the last
//!   flush are in its activity log, so it is resynced with them, never trusted blindly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use support::ops::{apply_model, apply_set, next_op, Op};
use support::*;
use tripod_engine::{
    BlockIndex, BlockInfo, ChunkIndex, CrashMode, FaultPlan, Geometry, MemStorage, RawBlock,
    SnapshotId, VerifyReport, View,
};
use tripod_replication::{
    LocalReplica, Pending, Replica, ReplicaFault, ReplicaId, ReplicaInfo, ReplicaSet,
    ReplicationError, SealedRead,
};

/// What may be read after a power loss (see the module doc).
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

    fn settle(&mut self) {
        self.durable = self.acked.head.clone();
        self.since = vec![BTreeSet::new(); self.durable.len() / BS as usize];
    }

    fn note(&mut self, at: u64, len: u64) {
        for b in at / BS..(at + len).div_ceil(BS) {
            let block = self.acked.head[(b * BS) as usize..((b + 1) * BS) as usize].to_vec();
            self.since[b as usize].insert(block);
        }
    }

    /// Adds the blocks of `op` as allowed outcomes and applies it to the acknowledged
    /// model; a flush or a structural change makes everything durable.
    fn apply(&mut self, op: &Op) {
        apply_model(&mut self.acked, op);
        match op {
            Op::Write(at, d) => self.note(*at, d.len() as u64),
            Op::Zeroes(at, len) => self.note(*at, *len),
            _ => self.settle(),
        }
    }
}

fn check(set: &ReplicaSet, expect: &Expect, pending: Option<&Op>, what: &str) {
    let mut with = expect.clone();
    if let Some(op) = pending {
        with.apply(op);
    }
    let size = set.size();
    assert!(
        size == expect.acked.size() || size == with.acked.size(),
        "{what}: size {size}"
    );
    let got = set
        .read(0, size)
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    let rolled_back = matches!(pending, Some(Op::Rollback(_)))
        && got[..] == with.acked.head[..size.min(with.acked.size()) as usize];
    if !rolled_back {
        for (b, g) in got.chunks(BS as usize).enumerate() {
            let r = b * BS as usize..(b + 1) * BS as usize;
            let durable = expect.durable.get(r).unwrap_or(&[0; BS as usize]);
            let allowed = g == durable
                || expect.since.get(b).is_some_and(|s| s.contains(g))
                || with.since.get(b).is_some_and(|s| s.contains(g));
            assert!(
                allowed,
                "{what}: block {b} holds content never written there"
            );
        }
    }
    let listed: Vec<String> = set
        .list_snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    for (name, content) in &expect.acked.snaps {
        if !listed.contains(name) {
            assert!(
                matches!(pending, Some(Op::Delete(d)) if d == name),
                "{what}: lost {name}"
            );
            continue;
        }
        let view = View::Snapshot(SnapshotId::new(name.as_str()).unwrap());
        let got = set.read_view(&view, 0, content.len() as u64).unwrap();
        assert!(got[..] == content[..], "{what}: snapshot {name} changed");
    }
}

#[test]
fn power_loss_of_every_replica_keeps_what_was_flushed_and_the_copies_converge() {
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let blocks = 32 + rng.below(32);
        let plans = [0, 1, 2].map(|_| FaultPlan {
            die_at_op: (rng.below(3) > 0).then(|| 30 + rng.below(1500)),
            tear_dying_write: true,
            ..FaultPlan::default()
        });
        let mems = [MemStorage::new(), MemStorage::new(), MemStorage::new()];
        let rig = Rig::with_options(mems, plans, write_back_options());
        // Odd seeds run on an encrypted volume.
        let key = (seed % 2 == 1).then(|| test_cipher(seed as u8));
        let set = rig.create_with(blocks * BS, key.as_ref());
        let mut expect = Expect::new(blocks * BS);
        let mut pending = None;
        let mut n = 0;
        for _ in 0..(10 + rng.below(80)) {
            let op = next_op(&mut rng, &expect.acked, &mut n, true);
            match apply_set(&set, &op) {
                Ok(()) => expect.apply(&op),
                Err(ReplicationError::Invalid(e)) => panic!("seed {seed}: {e}"),
                Err(_) => {
                    pending = Some(op);
                    break;
                }
            }
        }
        drop(set);
        let mems = [0, 1, 2].map(|i| {
            rig.mems[i].crash(CrashMode::Torn {
                seed: seed * 7 + i as u64,
            })
        });
        let rig = Rig::with_options(mems, [FaultPlan::default(); 3], write_back_options());
        let what = format!("seed {seed} pending {pending:?}");
        let set = rig
            .open_with(key.as_ref())
            .unwrap_or_else(|e| panic!("{what}: open: {e}"));
        check(&set, &expect, pending.as_ref(), &what);
        let report = set.heal_now();
        assert!(report.still_out.is_empty(), "{what}: {report:?}");
        let mut served = Model::new(set.size());
        served.head = set.read(0, set.size()).unwrap().to_vec();
        for s in set.list_snapshots().unwrap() {
            let view = View::Snapshot(s.id.clone());
            let content = set.read_view(&view, 0, s.size).unwrap();
            served.snaps.insert(s.id.to_string(), content.to_vec());
        }
        for id in ReplicaId::ALL {
            assert_replica_matches_with(&set, id, &served, &what, key.as_deref());
        }
    }
}

/// A replica whose store can be swapped for what survived a power loss, and which can be
/// cut off meanwhile (as a node that lost power is, until it restarts).
struct Swappable {
    inner: RwLock<Arc<LocalReplica>>,
    down: RwLock<bool>,
}

impl Swappable {
    fn over(mem: &MemStorage) -> Self {
        Self {
            inner: RwLock::new(Arc::new(LocalReplica::new(
                "swappable",
                Arc::new(mem.clone()),
                write_back_options(),
            ))),
            down: RwLock::new(false),
        }
    }

    fn call<T: Send + 'static>(&self, f: impl FnOnce(&LocalReplica) -> Pending<T>) -> Pending<T> {
        if *self.down.read() {
            return Pending::ready(Err(ReplicaFault::Disconnected));
        }
        let inner = self.inner.read().clone();
        f(&inner)
    }
}

impl Replica for Swappable {
    fn describe(&self) -> String {
        "swappable".into()
    }
    fn format(&self, size: u64, geometry: Geometry, sealed: bool) -> Pending<()> {
        self.call(|r| r.format(size, geometry, sealed))
    }
    fn info(&self) -> Pending<ReplicaInfo> {
        self.call(|r| r.info())
    }
    fn write(&self, offset: u64, data: Bytes, generation: u64) -> Pending<()> {
        self.call(|r| r.write(offset, data, generation))
    }
    fn write_zeroes(&self, offset: u64, len: u64, generation: u64) -> Pending<()> {
        self.call(|r| r.write_zeroes(offset, len, generation))
    }
    fn write_raw(&self, first: BlockIndex, blocks: Vec<RawBlock>) -> Pending<()> {
        self.call(|r| r.write_raw(first, blocks))
    }
    fn read(&self, view: View, offset: u64, len: u64) -> Pending<Bytes> {
        self.call(|r| r.read(view, offset, len))
    }
    fn write_sealed(
        &self,
        offset: u64,
        data: Bytes,
        generation: u64,
        seals: Arc<[tripod_engine::Seal]>,
    ) -> Pending<()> {
        self.call(|r| r.write_sealed(offset, data, generation, seals))
    }
    fn read_sealed(&self, view: View, offset: u64, len: u64) -> Pending<SealedRead> {
        self.call(|r| r.read_sealed(view, offset, len))
    }
    fn flush(&self) -> Pending<()> {
        self.call(|r| r.flush())
    }
    fn snapshot(&self, id: SnapshotId, size: Option<u64>) -> Pending<()> {
        self.call(|r| r.snapshot(id, size))
    }
    fn delete_snapshot(&self, id: SnapshotId) -> Pending<()> {
        self.call(|r| r.delete_snapshot(id))
    }
    fn rollback(&self, id: SnapshotId) -> Pending<()> {
        self.call(|r| r.rollback(id))
    }
    fn expand(&self, size: u64) -> Pending<()> {
        self.call(|r| r.expand(size))
    }
    fn verify(&self) -> Pending<VerifyReport> {
        self.call(|r| r.verify())
    }
    fn view_chunks(&self, view: View) -> Pending<Vec<ChunkIndex>> {
        self.call(|r| r.view_chunks(view))
    }
    fn chunk_summary(&self, view: View, chunk: ChunkIndex) -> Pending<Vec<BlockInfo>> {
        self.call(|r| r.chunk_summary(view, chunk))
    }
    fn repair(&self, view: View, block: BlockIndex, data: Bytes) -> Pending<bool> {
        self.call(|r| r.repair(view, block, data))
    }
    fn load_set_state(&self) -> Pending<Option<Bytes>> {
        self.call(|r| r.load_set_state())
    }
    fn store_set_state(&self, state: Bytes) -> Pending<()> {
        self.call(|r| r.store_set_state(state))
    }
    fn reconnect(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        if *self.down.read() {
            return Err(ReplicaFault::Disconnected);
        }
        self.inner.read().reconnect(timeout)
    }
    fn check_health(&self) -> Result<(), ReplicaFault> {
        if *self.down.read() {
            return Err(ReplicaFault::Disconnected);
        }
        self.inner.read().check_health()
    }
}

/// Regression test for the activity log: without it the replica that lost power would be
/// resynced only with the chunks written while it was away, and would keep stale copies of
/// the writes it had acknowledged but not yet synced.
#[test]
fn a_replica_that_lost_power_is_resynced_with_every_chunk_written_since_the_last_flush() {
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let blocks = 64u64;
        let mems = [MemStorage::new(), MemStorage::new(), MemStorage::new()];
        let swappable = [0, 1, 2].map(|i| Arc::new(Swappable::over(&mems[i])));
        let replicas = [0, 1, 2].map(|i| swappable[i].clone() as Arc<dyn Replica>);
        let set = ReplicaSet::create(replicas, blocks * BS, GEOMETRY, config()).unwrap();
        let mut model = Model::new(blocks * BS);
        let write = |set: &ReplicaSet, model: &mut Model, rng: &mut Rng| {
            let at = rng.below(blocks - 4) * BS;
            let len = (1 + rng.below(4) as usize) * BS as usize;
            let data = rng.bytes(len);
            set.write(at, &data).unwrap();
            model.head[at as usize..at as usize + data.len()].copy_from_slice(&data);
        };
        for _ in 0..20 {
            write(&set, &mut model, &mut rng);
        }
        set.flush().unwrap();
        for _ in 0..(5 + rng.below(20)) {
            write(&set, &mut model, &mut rng);
        }
        // Replica 2 loses power: cut off, its store keeps only what it synced.
        let victim = ReplicaId::ALL[2];
        *swappable[2].down.write() = true;
        write(&set, &mut model, &mut rng); // fails on replica 2: it leaves service
        let crashed = mems[2].crash(CrashMode::LoseUnsynced);
        *swappable[2].inner.write() = Arc::new(LocalReplica::new(
            "swappable",
            Arc::new(crashed),
            write_back_options(),
        ));
        *swappable[2].down.write() = false;
        assert_eq!(set.heal_now().rejoined, vec![victim], "seed {seed}");
        for id in ReplicaId::ALL {
            assert_replica_matches(&set, id, &model, &format!("seed {seed}"));
        }
    }
}

/// A set asked at run time to sync every write (a volume type's `durability=sync`) keeps
/// each acknowledged write through a power loss of all three write-back stores, without a
/// flush; the same write on a set that was not asked is lost (so the check can tell).
#[test]
fn durability_sync_at_run_time_survives_power_loss_without_a_flush() {
    for sync in [true, false] {
        let mems = [MemStorage::new(), MemStorage::new(), MemStorage::new()];
        let rig = Rig::with_options(
            mems.clone(),
            [FaultPlan::default(); 3],
            write_back_options(),
        );
        let set = rig.create(64 * BS);
        set.flush().unwrap();
        set.set_sync_writes(sync);
        assert_eq!(set.syncs_every_write(), sync);
        set.write(8 * BS, &[0x5a; 2 * BS as usize]).unwrap();
        drop(set);
        let survivors = [0, 1, 2].map(|i| {
            Arc::new(LocalReplica::new(
                "after",
                Arc::new(mems[i].crash(CrashMode::LoseUnsynced)),
                write_back_options(),
            )) as Arc<dyn Replica>
        });
        let set = ReplicaSet::open(survivors, config()).unwrap();
        let back = set.read(8 * BS, 2 * BS).unwrap();
        let expect = if sync { 0x5a } else { 0 };
        assert!(
            back.iter().all(|b| *b == expect),
            "sync={sync}: read {:?}…",
            &back[..8]
        );
    }
}
