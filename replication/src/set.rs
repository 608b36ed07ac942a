//! `ReplicaSet`: one volume kept in three replicas. Every write goes to all replicas in
//! parallel (one shared payload) and is acknowledged when durable on every in-service replica
//! and on at least two; structural changes are ordered with respect to writes; reads go to
//! one replica and fall back (and heal) when a copy is bad. The decisions are
//! [`Membership`]'s; this module waits on replicas and applies them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tripod_engine::{
    BlockIndex, BlockLocks, BlockSeal, EngineError, Geometry, SnapshotId, SnapshotInfo, View,
};

use crate::cipher::{Unauthentic, VolumeCipher};
use crate::error::{ReplicaFault, ReplicationError, Result};
use crate::fanout::{Fanout, Lag};
use crate::ids::{PerReplica, ReplicaId};
use crate::membership::Membership;
use crate::replica::{Pending, Replica};
use crate::set_state::{random_volume_id, Member, SetState};

/// Each block's seal on a sealed copy (`None` for a block that reads as zeros).
pub(crate) type Seals = Vec<Option<BlockSeal>>;

/// Tuning of a replica set.
#[derive(Debug, Clone, Copy)]
pub struct SetConfig {
    /// How long an I/O may take on one replica before it is taken out of service. Long
    /// enough for a disk under load (seconds), short enough that clients do not hang.
    pub io_timeout: Duration,
    /// How long a whole-replica operation (verify, open-time reconciliation) may take.
    pub long_timeout: Duration,
    /// Once two replicas have answered a write or flush, how much longer the third is waited
    /// for (at least; four times what the two took if that is longer) before it leaves
    /// service with what it missed recorded: a hung disk or node delays the first request
    /// by about this much, and later ones not at all. Structural changes (snapshot, rollback,
    /// expand) give it ten times as long, as a copy that misses one needs a full rebuild.
    pub lag_timeout: Duration,
    /// When writes become durable against power loss.
    pub durability: Durability,
    /// Most bytes per second a resync or rebuild copies to a replica (`None`: as fast as
    /// the disks go), so that bringing a copy back leaves the disks to clients.
    pub sync_rate: Option<u64>,
}

/// When an acknowledged write is durable against power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Block-device semantics: at the next [`ReplicaSet::flush`] (NBD FLUSH, or a FUA
    /// write). What the replicas' stores promise on their own decides the rest: a replica
    /// whose store syncs every write is durable at once.
    #[default]
    Flush,
    /// Every write is flushed on every replica before it is acknowledged (`durability=sync`).
    Sync,
}

impl Default for SetConfig {
    fn default() -> Self {
        Self {
            io_timeout: Duration::from_secs(30),
            long_timeout: Duration::from_secs(3600),
            lag_timeout: Duration::from_secs(2),
            durability: Durability::Flush,
            sync_rate: None,
        }
    }
}

impl SetConfig {
    /// The wait for a lagging replica after a quorum answered a client request. Only when
    /// all three replicas are in service: with two, both are needed (and a copy still being
    /// resynced does not count towards the quorum).
    pub(crate) fn client_lag(&self, in_service: usize) -> Option<Lag> {
        (in_service == 3).then_some(Lag {
            quorum: 2,
            grace: self.lag_timeout,
            factor: 4,
        })
    }

    /// The wait for a lagging replica after a quorum applied a structural change (as
    /// [`SetConfig::client_lag`]).
    pub(crate) fn structural_lag(&self, in_service: usize) -> Option<Lag> {
        (in_service == 3).then_some(Lag {
            quorum: 2,
            grace: self.lag_timeout.saturating_mul(10),
            factor: 4,
        })
    }
}

/// Three replicas of one volume.
pub struct ReplicaSet {
    pub(crate) replicas: RwLock<PerReplica<Arc<dyn Replica>>>,
    pub(crate) membership: Mutex<Membership>,
    /// Serialises persisting the set state; holds the epoch last persisted.
    pub(crate) persisted: Mutex<u64>,
    /// Structural changes take it exclusively, I/O and sync steps shared (a client write
    /// holds its share, owned, until it is settled).
    pub(crate) structure: Arc<RwLock<()>>,
    /// Orders overlapping writes (and region copies) the same way on every replica.
    pub(crate) block_locks: BlockLocks,
    pub(crate) size: AtomicU64,
    pub(crate) geometry: Geometry,
    pub(crate) next_generation: AtomicU64,
    pub(crate) read_turn: AtomicUsize,
    pub(crate) repairs: AtomicU64,
    /// Writes and changes refused for lack of space so far.
    pub(crate) space_refusals: AtomicU64,
    /// The latest write was refused for lack of space (cleared by the next that succeeds).
    pub(crate) out_of_space: AtomicBool,
    /// Reads of a block that failed authentication on the copy read (encrypted volumes).
    pub(crate) integrity_errors: AtomicU64,
    /// Bytes resyncs and rebuilds have copied (paced by [`SetConfig::sync_rate`]).
    pub(crate) sync_copied: AtomicU64,
    /// Every write is flushed before its acknowledgement although the configuration says
    /// [`Durability::Flush`] (the volume's type asks for `durability=sync`).
    pub(crate) sync_writes: AtomicBool,
    pub(crate) config: SetConfig,
    /// The copies keep a seal beside every block (an encrypted volume).
    pub(crate) sealed: bool,
    /// An encrypted volume's cipher: blocks are encrypted before they go to the replicas
    /// and decrypted after they come back.
    pub(crate) cipher: Option<Arc<VolumeCipher>>,
}

impl ReplicaSet {
    /// Creates a new volume of `size` bytes on three empty replicas.
    pub fn create(
        replicas: [Arc<dyn Replica>; 3],
        size: u64,
        geometry: Geometry,
        config: SetConfig,
    ) -> Result<Self> {
        Self::create_with(replicas, size, geometry, config, None)
    }

    /// [`ReplicaSet::create`] for an encrypted volume: its copies keep seals and only ever
    /// see ciphertext under `cipher` (see [`crate::cipher`]).
    pub fn create_encrypted(
        replicas: [Arc<dyn Replica>; 3],
        size: u64,
        geometry: Geometry,
        config: SetConfig,
        cipher: Arc<VolumeCipher>,
    ) -> Result<Self> {
        Self::create_with(replicas, size, geometry, config, Some(cipher))
    }

    fn create_with(
        replicas: [Arc<dyn Replica>; 3],
        size: u64,
        geometry: Geometry,
        config: SetConfig,
        cipher: Option<Arc<VolumeCipher>>,
    ) -> Result<Self> {
        let replicas = PerReplica(replicas);
        let sealed = cipher.is_some();
        let pending: Vec<_> = replicas
            .iter()
            .map(|(id, r)| (id, r.format(size, geometry, sealed)))
            .collect();
        for (id, p) in pending {
            p.wait(config.io_timeout).map_err(|source| match source {
                ReplicaFault::Engine(e @ EngineError::InvalidSize { .. })
                | ReplicaFault::Engine(e @ EngineError::InvalidGeometry(_)) => {
                    ReplicationError::Invalid(e)
                }
                source => ReplicationError::Replica {
                    replica: id,
                    source,
                },
            })?;
        }
        let state = SetState {
            volume_id: random_volume_id(),
            epoch: 1,
            block_size: geometry.block_size,
            chunk_blocks: geometry.chunk_blocks,
            members: PerReplica::from_fn(|_| Member::InService),
            key_check: cipher.as_ref().map(|c| c.key_check()),
        };
        let set = Self::assemble(replicas, state, (size, geometry), 1, config, cipher);
        set.persist()?;
        Ok(set)
    }

    pub(crate) fn assemble(
        replicas: PerReplica<Arc<dyn Replica>>,
        state: SetState,
        (size, geometry): (u64, Geometry),
        next_generation: u64,
        config: SetConfig,
        cipher: Option<Arc<VolumeCipher>>,
    ) -> Self {
        Self {
            replicas: RwLock::new(replicas),
            membership: Mutex::new(Membership::new(state)),
            persisted: Mutex::new(0),
            structure: Arc::new(RwLock::new(())),
            block_locks: BlockLocks::new(),
            size: AtomicU64::new(size),
            geometry,
            next_generation: AtomicU64::new(next_generation),
            read_turn: AtomicUsize::new(0),
            repairs: AtomicU64::new(0),
            space_refusals: AtomicU64::new(0),
            out_of_space: AtomicBool::new(false),
            integrity_errors: AtomicU64::new(0),
            sync_copied: AtomicU64::new(0),
            sync_writes: AtomicBool::new(false),
            config,
            sealed: cipher.is_some(),
            cipher,
        }
    }

    /// Whether the volume is encrypted (its copies keep only ciphertext and seals).
    pub fn is_encrypted(&self) -> bool {
        self.sealed
    }

    /// Reads so far that met a block failing authentication on the copy read (an encrypted
    /// volume's copy altered, moved or rolled back; each is served from another copy if one
    /// holds it authentic, else the read fails).
    pub fn integrity_errors(&self) -> u64 {
        self.integrity_errors.load(Ordering::Relaxed)
    }

    /// Makes every write durable before it is acknowledged (`true`: `durability=sync`, a
    /// FLUSH then has nothing left to do) or at the next FLUSH (`false`), from the next write
    /// on. A set configured with [`Durability::Sync`] syncs every write either way.
    pub fn set_sync_writes(&self, on: bool) {
        self.sync_writes.store(on, Ordering::SeqCst);
    }

    /// Whether every write is durable when acknowledged.
    pub fn syncs_every_write(&self) -> bool {
        self.config.durability == Durability::Sync || self.sync_writes.load(Ordering::SeqCst)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    /// Block and chunk size.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Blocks repaired from another replica so far (self-healing reads and scrubs).
    pub fn repairs(&self) -> u64 {
        self.repairs.load(Ordering::Relaxed)
    }

    /// The replica in slot `id` (for inspection, e.g. reading one copy alone).
    pub fn replica(&self, id: ReplicaId) -> Arc<dyn Replica> {
        self.replicas.read()[id].clone()
    }

    pub(crate) fn chunk_of(&self, offset: u64) -> u64 {
        offset / (self.geometry.bs() * u64::from(self.geometry.chunk_blocks))
    }

    /// Chunks touched by `offset..offset+len` (len > 0).
    pub(crate) fn chunks_of(&self, offset: u64, len: u64) -> Vec<u64> {
        (self.chunk_of(offset)..=self.chunk_of(offset + len - 1)).collect()
    }

    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        self.check_key()?;
        let size = self.size();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(ReplicationError::Invalid(EngineError::OutOfRange {
                offset,
                len,
                size,
            }));
        }
        Ok(())
    }

    /// Client I/O of an encrypted volume needs its key (a set opened for maintenance has
    /// none).
    pub(crate) fn check_key(&self) -> Result<()> {
        if self.sealed && self.cipher.is_none() {
            return Err(ReplicationError::KeyNeeded);
        }
        Ok(())
    }

    /// Persists the set state on every in-service replica; replicas that fail to store it
    /// leave service (and the state is stored again without them).
    pub(crate) fn persist(&self) -> Result<()> {
        let mut persisted = self.persisted.lock();
        loop {
            let (state, targets) = {
                let m = self.membership.lock();
                (m.state.clone(), m.in_service())
            };
            if state.epoch <= *persisted {
                return Ok(());
            }
            let replicas = self.replicas.read().clone();
            let pending: Vec<_> = targets
                .iter()
                .map(|id| {
                    let bytes = Bytes::from(state.encode(*id));
                    (*id, replicas[*id].store_set_state(bytes))
                })
                .collect();
            let mut failed = Vec::new();
            let lag = self.config.client_lag(targets.len());
            let answers = Fanout::with_lag(pending, self.config.io_timeout, lag);
            for (id, answer) in answers.wait() {
                if let Err(e) = answer {
                    tracing::warn!(replica = %id, "cannot store the set state: {e}");
                    failed.push(id);
                }
            }
            if failed.is_empty() {
                *persisted = state.epoch;
                return Ok(());
            }
            let mut m = self.membership.lock();
            for id in failed {
                m.take_out(id, &[], false);
            }
            if let Err(in_service) = m.check_quorum() {
                if in_service == 0 {
                    return Err(ReplicationError::NoQuorum { in_service });
                }
            }
        }
    }

    /// Runs one structural change on every replica that takes writes, in order with
    /// respect to all writes.
    pub(crate) fn structural(&self, op: impl Fn(&dyn Replica) -> Pending<()>) -> Result<()> {
        match self.structural_applied(op)? {
            ok if ok >= 2 => Ok(()),
            ok => Err(ReplicationError::NoQuorum { in_service: ok }),
        }
    }

    /// [`Self::structural`], answering how many in-service replicas applied the change (the
    /// ones left in service afterwards) instead of failing below two.
    fn structural_applied(&self, op: impl Fn(&dyn Replica) -> Pending<()>) -> Result<usize> {
        let _structure = self.structure.write();
        let (targets, in_service) = {
            let m = self.membership.lock();
            m.check_quorum()
                .map_err(|in_service| ReplicationError::NoQuorum { in_service })?;
            (m.write_targets(), m.in_service().len())
        };
        let replicas = self.replicas.read().clone();
        let pending: Vec<_> = targets
            .iter()
            .map(|id| (*id, op(replicas[*id].as_ref())))
            .collect();
        let mut outcome = PerReplica::default();
        let mut logical = None;
        let answers = Fanout::with_lag(
            pending,
            self.config.long_timeout,
            self.config.structural_lag(in_service),
        );
        let mut refused = PerReplica::default();
        for (id, answer) in answers.wait() {
            match answer {
                Ok(()) => outcome[id] = Some(true),
                Err(e) if e.is_caller_error() => logical = Some((id, e)),
                Err(e) if e.is_no_space() => {
                    tracing::warn!(replica = %id, "structural change refused: {e}");
                    outcome[id] = Some(false);
                    refused[id] = true;
                }
                Err(e) => {
                    tracing::warn!(replica = %id, "structural change failed: {e}");
                    outcome[id] = Some(false);
                }
            }
        }
        if let Some((id, e)) = logical {
            // The same request was refused: a caller error if no replica applied it.
            if ReplicaId::ALL.iter().all(|r| outcome[*r] != Some(true)) {
                return Err(match e {
                    ReplicaFault::Engine(e) => ReplicationError::Invalid(e),
                    other => ReplicationError::Replica {
                        replica: id,
                        source: other,
                    },
                });
            }
            outcome[id] = Some(false); // disagrees with the others: rebuild it
        }
        let (ok, changed, no_space) = {
            let mut m = self.membership.lock();
            let (outcome, no_space) = m.refused_for_space(&outcome, &refused);
            let (ok, changed) = m.settle_structural(&outcome);
            (ok, changed, no_space.then(|| m.in_service().len()))
        };
        if changed {
            self.persist()?;
        }
        match no_space {
            Some(in_service) => {
                self.space_refusals.fetch_add(1, Ordering::Relaxed);
                Err(ReplicationError::NoSpace { in_service })
            }
            None => Ok(ok),
        }
    }

    /// Takes snapshot `id`: every write acknowledged before is in it on every replica.
    pub fn snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.structural(|r| r.snapshot(id.clone(), None))
    }

    /// Deletes snapshot `id` on every replica.
    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.structural(|r| r.delete_snapshot(id.clone()))
    }

    /// Rolls the volume back to snapshot `id` on every replica.
    pub fn rollback(&self, id: &SnapshotId) -> Result<()> {
        self.structural(|r| r.rollback(id.clone()))
    }

    /// Grows the volume to `new_size` bytes online.
    ///
    /// An expand that did not reach two replicas is not acknowledged, but when any replica
    /// left in service applied it the set takes the new size anyway: the copies it serves
    /// from have it, the others catch up when they rejoin, and a retry is a no-op (as
    /// [`ReplicaSet::open`] takes the largest size it finds).
    pub fn expand(&self, new_size: u64) -> Result<()> {
        let ok = self.structural_applied(|r| r.expand(new_size))?;
        if ok >= 1 {
            self.size.fetch_max(new_size, Ordering::SeqCst);
        }
        if ok >= 2 {
            Ok(())
        } else {
            Err(ReplicationError::NoQuorum { in_service: ok })
        }
    }

    /// The snapshots, oldest first, as an in-service replica reports them.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let (id, r) = self.any_in_service()?;
        r.info()
            .wait(self.config.io_timeout)
            .map(|i| i.snapshots)
            .map_err(|source| ReplicationError::Replica {
                replica: id,
                source,
            })
    }

    pub(crate) fn any_in_service(&self) -> Result<(ReplicaId, Arc<dyn Replica>)> {
        let in_service = self.membership.lock().in_service();
        let id = *in_service
            .first()
            .ok_or(ReplicationError::NoQuorum { in_service: 0 })?;
        Ok((id, self.replica(id)))
    }

    /// Reads `len` bytes at `offset` of the head.
    pub fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        self.read_view(&View::Head, offset, len)
    }

    /// Reads from `view`, spreading reads over the in-service replicas. A copy that fails its
    /// checksum (or its I/O) is served from another replica and repaired. An encrypted
    /// volume's blocks are decrypted; a block no copy holds authentic fails the read.
    pub fn read_view(&self, view: &View, offset: u64, len: u64) -> Result<Bytes> {
        let _structure = self.structure.read();
        self.check_key()?;
        if *view == View::Head {
            self.check_range(offset, len)?;
        }
        match &self.cipher {
            Some(cipher) => self.read_decrypted(cipher, view, offset, len),
            None => self.read_healing(view, offset, len, None),
        }
    }

    /// An encrypted volume's read (callers hold the structure lock): the whole blocks
    /// around the range as stored, healed as any read, then decrypted. A block that does not
    /// authenticate on the copy read is tried on every other in-service copy (a copy altered
    /// with its checksum made to match is not a bad checksum) before the read fails.
    pub(crate) fn read_decrypted(
        &self,
        cipher: &VolumeCipher,
        view: &View,
        offset: u64,
        len: u64,
    ) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let bs = self.geometry.bs();
        let first = offset / bs;
        let end = (offset + len).div_ceil(bs);
        let (at, span) = (first * bs, (end - first) * bs);
        let stored = self.read_stored(view, at, span, None)?;
        let plain = match self.decrypt(cipher, first, &stored) {
            Ok(plain) => plain,
            Err(Unauthentic(block)) => {
                self.integrity_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(block, replica = ?stored.from, "block failed authentication; trying the other copies");
                let others: Vec<ReplicaId> = self
                    .membership
                    .lock()
                    .in_service()
                    .into_iter()
                    .filter(|id| Some(*id) != stored.from)
                    .collect();
                let mut found = None;
                for id in others {
                    let Ok(r) = self
                        .replica(id)
                        .read_sealed(view.clone(), at, span)
                        .wait(self.config.io_timeout)
                    else {
                        continue;
                    };
                    let copy = Stored {
                        data: r.data,
                        seals: Some(r.seals),
                        from: Some(id),
                    };
                    if let Ok(plain) = self.decrypt(cipher, first, &copy) {
                        found = Some(plain);
                        break;
                    }
                }
                match found {
                    Some(plain) => plain,
                    // No copy holds the whole range authentic; copies bad on different
                    // blocks still serve it block by block.
                    None if end - first > 1 => {
                        let mut plain = Vec::with_capacity(usize::try_from(span).unwrap_or(0));
                        for b in first..end {
                            plain.extend_from_slice(&self.read_decrypted(
                                cipher,
                                view,
                                b * bs,
                                bs,
                            )?);
                        }
                        plain
                    }
                    None => {
                        return Err(ReplicationError::Unauthentic {
                            block: BlockIndex(block),
                        })
                    }
                }
            }
        };
        let skip = usize::try_from(offset - at).unwrap_or(0);
        let take = usize::try_from(len).unwrap_or(0);
        Ok(Bytes::from(plain).slice(skip..skip + take))
    }

    /// The plaintext of `stored` (whole blocks from `first`), or the first block that does
    /// not authenticate. Blocks holding no data read as zeros.
    pub(crate) fn decrypt(
        &self,
        cipher: &VolumeCipher,
        first: u64,
        stored: &Stored,
    ) -> std::result::Result<Vec<u8>, Unauthentic> {
        let bs = usize::try_from(self.geometry.bs()).unwrap_or(4096);
        let seals = stored.seals.as_deref().ok_or(Unauthentic(first))?;
        let mut out = stored.data.to_vec();
        for (i, block) in out.chunks_mut(bs).enumerate() {
            let index = first + i as u64;
            match seals.get(i) {
                Some(Some(s)) => cipher.open_block(index, s.generation, block, &s.seal)?,
                Some(None) => block.fill(0),
                None => return Err(Unauthentic(index)),
            }
        }
        Ok(out)
    }

    /// The read path without the structure lock (callers hold it), optionally avoiding one
    /// replica: the bytes as the copies store them (an encrypted volume's ciphertext).
    pub(crate) fn read_healing(
        &self,
        view: &View,
        offset: u64,
        len: u64,
        avoid: Option<ReplicaId>,
    ) -> Result<Bytes> {
        Ok(self.read_stored(view, offset, len, avoid)?.data)
    }

    /// One copy's answer to a read: sealed copies give each block's seal too.
    fn read_copy(
        &self,
        replica: &dyn Replica,
        view: &View,
        offset: u64,
        len: u64,
    ) -> std::result::Result<(Bytes, Option<Seals>), ReplicaFault> {
        if self.sealed {
            let r = replica
                .read_sealed(view.clone(), offset, len)
                .wait(self.config.io_timeout)?;
            Ok((r.data, Some(r.seals)))
        } else {
            let data = replica
                .read(view.clone(), offset, len)
                .wait(self.config.io_timeout)?;
            Ok((data, None))
        }
    }

    /// [`ReplicaSet::read_healing`] with, for a sealed volume, every block's generation and
    /// seal (the range must then be whole blocks) and the copy that answered.
    pub(crate) fn read_stored(
        &self,
        view: &View,
        offset: u64,
        len: u64,
        avoid: Option<ReplicaId>,
    ) -> Result<Stored> {
        let in_service: Vec<ReplicaId> = self
            .membership
            .lock()
            .in_service()
            .into_iter()
            .filter(|id| Some(*id) != avoid)
            .collect();
        if in_service.is_empty() {
            return Err(ReplicationError::NoQuorum { in_service: 0 });
        }
        let start = self.read_turn.fetch_add(1, Ordering::Relaxed);
        let n = in_service.len();
        let mut bad_copies = Vec::new();
        let mut last_error = None;
        for i in 0..n {
            let Some(&id) = in_service.get((start + i) % n) else {
                break;
            };
            let replica = self.replica(id);
            match self.read_copy(replica.as_ref(), view, offset, len) {
                Ok((data, seals)) => {
                    for bad in bad_copies {
                        self.heal(bad, view, offset, &data);
                    }
                    return Ok(Stored {
                        data,
                        seals,
                        from: Some(id),
                    });
                }
                Err(ReplicaFault::Engine(EngineError::ChecksumMismatch { block, .. })) => {
                    tracing::warn!(replica = %id, %block, "checksum mismatch; reading another copy");
                    bad_copies.push(id);
                    last_error = Some(ReplicationError::NoGoodCopy { block });
                }
                Err(e) if e.is_caller_error() => {
                    return Err(match e {
                        ReplicaFault::Engine(e) => ReplicationError::Invalid(e),
                        e => ReplicationError::Replica {
                            replica: id,
                            source: e,
                        },
                    })
                }
                Err(e) => {
                    tracing::warn!(replica = %id, "read failed, taking it out of service: {e}");
                    let chunks = if len == 0 {
                        vec![]
                    } else {
                        self.chunks_of(offset, len)
                    };
                    if self.membership.lock().take_out(id, &chunks, false) {
                        self.persist()?;
                    }
                    last_error = Some(ReplicationError::Replica {
                        replica: id,
                        source: e,
                    });
                }
            }
        }
        if n > 1 && bad_copies.len() == n {
            // Every copy has a bad block somewhere in the range, perhaps not the same one:
            // put the range together block by block from whichever copy holds each.
            let stored = self.read_by_block(view, offset, len, &in_service)?;
            for bad in bad_copies {
                self.heal(bad, view, offset, &stored.data);
            }
            return Ok(stored);
        }
        Err(last_error.unwrap_or(ReplicationError::NoQuorum { in_service: 0 }))
    }

    /// Reads `offset..offset+len` one block at a time, each from the first of `from` whose
    /// copy passes its checksum; a block no copy holds whole fails the read.
    fn read_by_block(
        &self,
        view: &View,
        offset: u64,
        len: u64,
        from: &[ReplicaId],
    ) -> Result<Stored> {
        let bs = self.geometry.bs();
        let end = offset + len;
        let mut out = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut seals = self.sealed.then(Vec::new);
        let mut at = offset;
        while at < end {
            let next = ((at / bs + 1) * bs).min(end);
            let mut got = None;
            let mut last_error = ReplicationError::NoGoodCopy {
                block: tripod_engine::BlockIndex(at / bs),
            };
            for id in from {
                match self.read_copy(self.replica(*id).as_ref(), view, at, next - at) {
                    Ok(data) => {
                        got = Some(data);
                        break;
                    }
                    Err(ReplicaFault::Engine(EngineError::ChecksumMismatch { .. })) => {}
                    Err(source) => {
                        last_error = ReplicationError::Replica {
                            replica: *id,
                            source,
                        }
                    }
                }
            }
            let (data, block_seals) = got.ok_or(last_error)?;
            out.extend_from_slice(&data);
            if let (Some(all), Some(these)) = (seals.as_mut(), block_seals) {
                all.extend(these);
            }
            at = next;
        }
        Ok(Stored {
            data: out.freeze(),
            seals,
            from: None,
        })
    }

    /// Repairs every bad block of replica `id` in `offset..offset+len` of `view` from `good`.
    /// A read stops at the first bad block it meets, so the range is re-read from just after
    /// each repaired block, one chunk at a time: every byte is read about once, however many
    /// blocks are bad.
    fn heal(&self, id: ReplicaId, view: &View, offset: u64, good: &Bytes) {
        let bs = self.geometry.bs();
        let chunk_bytes = bs * u64::from(self.geometry.chunk_blocks);
        let replica = self.replica(id);
        let end = offset + good.len() as u64;
        let mut at = offset;
        while at < end {
            let piece_end = ((at / chunk_bytes + 1) * chunk_bytes).min(end);
            match replica
                .read(view.clone(), at, piece_end - at)
                .wait(self.config.io_timeout)
            {
                Ok(_) => at = piece_end,
                Err(ReplicaFault::Engine(EngineError::ChecksumMismatch { block, .. })) => {
                    let (start, next) = (block.0 * bs, (block.0 + 1) * bs);
                    if next <= at || start >= piece_end {
                        return; // not a block of this piece: nothing sensible to repair
                    }
                    // An edge block only partly inside the request has no full good copy here;
                    // scrub or a later read covering it repairs it.
                    if let Some(within) = block_in(good, start.checked_sub(offset), bs) {
                        let data = good.slice(within);
                        match replica
                            .repair(view.clone(), block, data)
                            .wait(self.config.io_timeout)
                        {
                            Ok(true) => {
                                self.repairs.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(replica = %id, %block, "repaired a bad copy from another replica");
                            }
                            Ok(false) => return,
                            Err(e) => {
                                tracing::warn!(replica = %id, %block, "repair failed: {e}");
                                return;
                            }
                        }
                    }
                    at = next;
                }
                Err(e) => {
                    tracing::warn!(replica = %id, "re-read after repair failed: {e}");
                    return;
                }
            }
        }
    }
}

/// Bytes as the copies store them, with each block's generation and seal when the volume is
/// sealed, and the copy that answered (`None`: put together from several).
pub(crate) struct Stored {
    pub data: Bytes,
    pub seals: Option<Seals>,
    pub from: Option<ReplicaId>,
}

/// Where a block that starts `at` bytes into `data` lies in it, if wholly inside.
fn block_in(data: &Bytes, at: Option<u64>, bs: u64) -> Option<std::ops::Range<usize>> {
    let from = usize::try_from(at?).ok()?;
    let to = from.checked_add(usize::try_from(bs).ok()?)?;
    (to <= data.len()).then_some(from..to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straggler_gets_only_the_lag_when_all_three_are_in_service() {
        let c = SetConfig::default();
        assert!(c.client_lag(3).is_some() && c.structural_lag(3).is_some());
        // With two in service both are needed: no lag, the I/O timeout holds.
        assert!(c.client_lag(2).is_none() && c.structural_lag(2).is_none());
    }
}
