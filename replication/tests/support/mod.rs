//! Test helpers: replicas over in-memory storage that can be switched off, made to hang or
//! given disk faults, and a plain model of the volume.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod ops;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tripod_engine::{
    BlockIndex, BlockInfo, ChunkIndex, FaultPlan, FaultyStorage, Geometry, MemStorage, RawBlock,
    SnapshotId, Storage, VerifyReport, View, VolumeOptions,
};
use tripod_replication::cipher::VolumeCipher;
use tripod_replication::{
    LocalReplica, Pending, Replica, ReplicaFault, ReplicaId, ReplicaInfo, ReplicaSet, SealedRead,
    SetConfig,
};

/// What a [`Flaky`] replica does with calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Passes them on.
    Up,
    /// Fails them at once (disconnected).
    Down,
    /// Never answers (the set times out).
    Hang,
}

/// A local replica that can be switched down or made to hang.
pub struct Flaky {
    pub inner: LocalReplica,
    pub mode: Mutex<Mode>,
    /// Fails `expand` calls (as a disk that cannot grow its files would) while set.
    pub refuse_expand: AtomicBool,
    /// Answers block summaries one entry short (a node that breaks the protocol) while set.
    pub short_summaries: AtomicBool,
    /// Bytes asked for by `read` calls so far.
    pub read_bytes: AtomicU64,
    parked: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl Flaky {
    pub fn new(storage: Arc<dyn Storage>, options: VolumeOptions) -> Self {
        Self {
            inner: LocalReplica::new("flaky", storage, options),
            mode: Mutex::new(Mode::Up),
            refuse_expand: AtomicBool::new(false),
            short_summaries: AtomicBool::new(false),
            read_bytes: AtomicU64::new(0),
            parked: Mutex::new(Vec::new()),
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }

    fn gate<T: Send + 'static>(&self, call: impl FnOnce() -> Pending<T>) -> Pending<T> {
        match *self.mode.lock() {
            Mode::Up => call(),
            Mode::Down => Pending::ready(Err(ReplicaFault::Disconnected)),
            Mode::Hang => {
                let (done, pending) = Pending::new();
                self.parked.lock().push(Box::new(done));
                pending
            }
        }
    }
}

impl Replica for Flaky {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn format(&self, size: u64, geometry: Geometry, sealed: bool) -> Pending<()> {
        self.gate(|| self.inner.format(size, geometry, sealed))
    }
    fn info(&self) -> Pending<ReplicaInfo> {
        self.gate(|| self.inner.info())
    }
    fn write(&self, offset: u64, data: Bytes, generation: u64) -> Pending<()> {
        self.gate(|| self.inner.write(offset, data, generation))
    }
    fn write_zeroes(&self, offset: u64, len: u64, generation: u64) -> Pending<()> {
        self.gate(|| self.inner.write_zeroes(offset, len, generation))
    }
    fn write_raw(&self, first: BlockIndex, blocks: Vec<RawBlock>) -> Pending<()> {
        self.gate(|| self.inner.write_raw(first, blocks))
    }
    fn read(&self, view: View, offset: u64, len: u64) -> Pending<Bytes> {
        self.read_bytes.fetch_add(len, Ordering::SeqCst);
        self.gate(|| self.inner.read(view, offset, len))
    }
    fn write_sealed(
        &self,
        offset: u64,
        data: Bytes,
        generation: u64,
        seals: std::sync::Arc<[tripod_engine::Seal]>,
    ) -> Pending<()> {
        self.gate(|| self.inner.write_sealed(offset, data, generation, seals))
    }
    fn read_sealed(&self, view: View, offset: u64, len: u64) -> Pending<SealedRead> {
        self.read_bytes.fetch_add(len, Ordering::SeqCst);
        self.gate(|| self.inner.read_sealed(view, offset, len))
    }
    fn flush(&self) -> Pending<()> {
        self.gate(|| self.inner.flush())
    }
    fn caches_writes(&self) -> bool {
        self.inner.caches_writes()
    }
    fn snapshot(&self, id: SnapshotId, size: Option<u64>) -> Pending<()> {
        self.gate(|| self.inner.snapshot(id, size))
    }
    fn delete_snapshot(&self, id: SnapshotId) -> Pending<()> {
        self.gate(|| self.inner.delete_snapshot(id))
    }
    fn rollback(&self, id: SnapshotId) -> Pending<()> {
        self.gate(|| self.inner.rollback(id))
    }
    fn expand(&self, size: u64) -> Pending<()> {
        if self.refuse_expand.load(Ordering::SeqCst) {
            return Pending::ready(Err(ReplicaFault::Disconnected));
        }
        self.gate(|| self.inner.expand(size))
    }
    fn verify(&self) -> Pending<VerifyReport> {
        self.gate(|| self.inner.verify())
    }
    fn view_chunks(&self, view: View) -> Pending<Vec<ChunkIndex>> {
        self.gate(|| self.inner.view_chunks(view))
    }
    fn chunk_summary(&self, view: View, chunk: ChunkIndex) -> Pending<Vec<BlockInfo>> {
        let answer = self.gate(|| self.inner.chunk_summary(view, chunk));
        if !self.short_summaries.load(Ordering::SeqCst) {
            return answer;
        }
        Pending::ready(answer.wait(Duration::from_secs(5)).map(|mut s| {
            s.pop();
            s
        }))
    }
    fn repair(&self, view: View, block: BlockIndex, data: Bytes) -> Pending<bool> {
        self.gate(|| self.inner.repair(view, block, data))
    }
    fn load_set_state(&self) -> Pending<Option<Bytes>> {
        self.gate(|| self.inner.load_set_state())
    }
    fn store_set_state(&self, state: Bytes) -> Pending<()> {
        self.gate(|| self.inner.store_set_state(state))
    }
    fn reconnect(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        match *self.mode.lock() {
            Mode::Up => self.inner.reconnect(timeout),
            _ => Err(ReplicaFault::Disconnected),
        }
    }
    fn discard(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        match *self.mode.lock() {
            Mode::Up => self.inner.discard(timeout),
            _ => Err(ReplicaFault::Disconnected),
        }
    }
    fn check_health(&self) -> Result<(), ReplicaFault> {
        match *self.mode.lock() {
            Mode::Up => self.inner.check_health(),
            _ => Err(ReplicaFault::Disconnected),
        }
    }
}

/// Small chunks so tests span many of them.
pub const GEOMETRY: Geometry = Geometry {
    block_size: 512,
    chunk_blocks: 8,
};
pub const BS: u64 = 512;

pub fn options() -> VolumeOptions {
    VolumeOptions {
        wal_limit: 16 << 10,
        direct_write_min: 2 * BS,
        ..VolumeOptions::default()
    }
}

/// [`options`] with block-device semantics: writes durable at the next flush.
pub fn write_back_options() -> VolumeOptions {
    VolumeOptions {
        write_back: true,
        write_back_limit: 4 << 10,
        ..options()
    }
}

pub fn config() -> SetConfig {
    SetConfig {
        io_timeout: Duration::from_millis(300),
        long_timeout: Duration::from_secs(2),
        ..SetConfig::default()
    }
}

/// Three flaky replicas over in-memory storage (optionally with a fault plan each).
pub struct Rig {
    pub mems: [MemStorage; 3],
    pub faulty: [FaultyStorage; 3],
    pub flaky: [Arc<Flaky>; 3],
}

impl Rig {
    pub fn new(plans: [FaultPlan; 3]) -> Self {
        let mems = [MemStorage::new(), MemStorage::new(), MemStorage::new()];
        Self::over(mems, plans)
    }

    pub fn over(mems: [MemStorage; 3], plans: [FaultPlan; 3]) -> Self {
        Self::with_options(mems, plans, options())
    }

    /// Replicas whose stores use `options` (e.g. write-back).
    pub fn with_options(
        mems: [MemStorage; 3],
        plans: [FaultPlan; 3],
        options: VolumeOptions,
    ) -> Self {
        let faulty = [0, 1, 2].map(|i| FaultyStorage::new(Arc::new(mems[i].clone()), plans[i]));
        let flaky = [0, 1, 2].map(|i| Arc::new(Flaky::new(Arc::new(faulty[i].clone()), options)));
        Self {
            mems,
            faulty,
            flaky,
        }
    }

    pub fn replicas(&self) -> [Arc<dyn Replica>; 3] {
        [0, 1, 2].map(|i| self.flaky[i].clone() as Arc<dyn Replica>)
    }

    pub fn create(&self, size: u64) -> ReplicaSet {
        ReplicaSet::create(self.replicas(), size, GEOMETRY, config()).unwrap()
    }

    /// [`Rig::create`], encrypted with `key` if one is given.
    pub fn create_with(&self, size: u64, key: Option<&Arc<VolumeCipher>>) -> ReplicaSet {
        match key {
            Some(key) => self.create_encrypted(size, key),
            None => self.create(size),
        }
    }

    /// Opens the set over these replicas, with `key` if the volume is encrypted.
    pub fn open_with(
        &self,
        key: Option<&Arc<VolumeCipher>>,
    ) -> Result<ReplicaSet, tripod_replication::ReplicationError> {
        match key {
            Some(key) => ReplicaSet::open_encrypted(self.replicas(), config(), key.clone()),
            None => ReplicaSet::open(self.replicas(), config()),
        }
    }

    /// [`Rig::create`] for an encrypted volume.
    pub fn create_encrypted(&self, size: u64, cipher: &Arc<VolumeCipher>) -> ReplicaSet {
        ReplicaSet::create_encrypted(self.replicas(), size, GEOMETRY, config(), cipher.clone())
            .unwrap()
    }
}

/// A data key for tests, distinct per `n`.
pub fn test_cipher(n: u8) -> Arc<VolumeCipher> {
    let key = zeroize::Zeroizing::new([n.wrapping_mul(37).wrapping_add(1); 32]);
    Arc::new(VolumeCipher::new(&key, [n; 16]))
}

/// The volume as it should be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub head: Vec<u8>,
    pub snaps: BTreeMap<String, Vec<u8>>,
}

impl Model {
    pub fn new(size: u64) -> Self {
        Self {
            head: vec![0; size as usize],
            snaps: BTreeMap::new(),
        }
    }
    pub fn size(&self) -> u64 {
        self.head.len() as u64
    }
    pub fn write(&mut self, at: u64, data: &[u8]) {
        self.head[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
}

/// Reads the head and every snapshot from replica `id` alone and compares with `model`.
pub fn assert_replica_matches(set: &ReplicaSet, id: ReplicaId, model: &Model, what: &str) {
    assert_replica_matches_with(set, id, model, what, None)
}

/// Decrypts whole blocks read from one sealed copy (the test's own check of what it holds).
pub fn open_sealed(cipher: &VolumeCipher, first: u64, read: &SealedRead) -> Vec<u8> {
    let mut out = read.data.to_vec();
    for (i, block) in out.chunks_mut(BS as usize).enumerate() {
        let index = first + i as u64;
        match &read.seals[i] {
            Some(s) => cipher
                .open_block(index, s.generation, block, &s.seal)
                .unwrap_or_else(|e| panic!("{e}")),
            None => block.fill(0),
        }
    }
    out
}

/// [`assert_replica_matches`] for an encrypted volume's copy (`cipher`: its key), which
/// holds ciphertext: every block is read with its seal and must authenticate.
pub fn assert_replica_matches_with(
    set: &ReplicaSet,
    id: ReplicaId,
    model: &Model,
    what: &str,
    cipher: Option<&VolumeCipher>,
) {
    let r = set.replica(id);
    let t = Duration::from_secs(10);
    // A one-off injected fault may hit these direct reads (or work the store does beside
    // them, which then refuses everything as poisoned): reopen the copy, as the set's heal
    // would, and retry once.
    let read = |view: View, len: u64| match cipher {
        None => r
            .read(view.clone(), 0, len)
            .wait(t)
            .or_else(|_| {
                let _ = r.reconnect(t);
                r.read(view, 0, len).wait(t)
            })
            .unwrap(),
        Some(cipher) => {
            let sealed = r
                .read_sealed(view.clone(), 0, len)
                .wait(t)
                .or_else(|_| {
                    let _ = r.reconnect(t);
                    r.read_sealed(view, 0, len).wait(t)
                })
                .unwrap();
            Bytes::from(open_sealed(cipher, 0, &sealed))
        }
    };
    let head = read(View::Head, model.size());
    assert!(head[..] == model.head[..], "{what}: {id} head differs");
    let info = r
        .info()
        .wait(t)
        .or_else(|_| {
            let _ = r.reconnect(t);
            r.info().wait(t)
        })
        .unwrap();
    let names: Vec<String> = info.snapshots.iter().map(|s| s.id.to_string()).collect();
    let expected: Vec<String> = model.snaps.keys().cloned().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "{what}: {id} snapshots");
    for (name, content) in &model.snaps {
        let view = View::Snapshot(SnapshotId::new(name.as_str()).unwrap());
        let got = read(view, content.len() as u64);
        assert!(
            got[..] == content[..],
            "{what}: {id} snapshot {name} differs"
        );
    }
}

/// SplitMix64 for reproducible data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        if self.below(6) == 0 {
            return vec![0; len];
        }
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Every 8-byte window of a random pattern, to look for any piece of it in stored files or
/// captured traffic (a chance match of random 8-byte windows is ~2^-40 per MiB searched).
pub struct Needles(std::collections::HashSet<u64>);

impl Needles {
    pub fn of(pattern: &[u8]) -> Self {
        Self(
            pattern
                .windows(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
                .filter(|w| *w != 0)
                .collect(),
        )
    }

    /// Whether `hay` holds any 8 consecutive bytes of the pattern.
    pub fn found_in(&self, hay: &[u8]) -> bool {
        hay.windows(8)
            .any(|w| self.0.contains(&u64::from_le_bytes(w.try_into().unwrap())))
    }

    /// Whether any file under `dir` holds any 8 consecutive bytes of the pattern.
    pub fn found_under(&self, dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir).unwrap().any(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                self.found_under(&path)
            } else {
                self.found_in(&std::fs::read(&path).unwrap())
            }
        })
    }
}

/// Random bytes without zero runs (a pattern to look for).
pub fn random_pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..len).map(|_| (rng.next() as u8) | 1).collect()
}
