//! Bringing a replica that was out of service back, online, from metadata first: per-chunk
//! block summaries (content kind, CRC, generation) say which blocks differ, and only those
//! are copied. (Agreement among the replicas in service at open is `open.rs`.)
//!
//! - **resync**: a returning replica gets the chunks of its dirty map, online.
//! - **rebuild**: a new or stale replica gets every snapshot (in order, staged through its
//!   head) and then the head, online; restartable because finished work compares equal.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use tripod_engine::{
    BlockIndex, BlockInfo, BlockSeal, ChunkIndex, EngineError, RawBlock, SnapshotId, View,
};

use crate::error::{ReplicaFault, ReplicationError, Result};
use crate::ids::ReplicaId;
use crate::replica::Replica;
use crate::set::ReplicaSet;
use crate::set_state::SetState;

/// What one [`ReplicaSet::heal_now`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealReport {
    /// Replicas that rejoined.
    pub rejoined: Vec<ReplicaId>,
    /// Replicas still out, with why.
    pub still_out: Vec<(ReplicaId, String)>,
}

/// Holds a resync, and a rebuild's copy of the head, to
/// [`SetConfig::sync_rate`](crate::SetConfig::sync_rate): before each chunk, waits until the
/// bytes copied since it started are due at that rate. It waits outside every lock, so client
/// I/O and structural changes never queue behind the pacing.
struct Pace {
    rate: Option<u64>,
    started: std::time::Instant,
    base: u64,
}

impl Pace {
    fn start(set: &ReplicaSet) -> Self {
        Self {
            rate: set.config.sync_rate.filter(|r| *r > 0),
            started: std::time::Instant::now(),
            base: set.sync_copied.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn wait(&self, set: &ReplicaSet) {
        let Some(rate) = self.rate else {
            return;
        };
        let copied = set
            .sync_copied
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(self.base);
        let due = self.started + std::time::Duration::from_secs_f64(copied as f64 / rate as f64);
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

pub(crate) fn fault(replica: ReplicaId) -> impl FnOnce(ReplicaFault) -> ReplicationError {
    move |source| ReplicationError::Replica { replica, source }
}

/// Replica `who`'s block summary of `chunk` in `view`, checked to hold one entry per block
/// of a chunk: what a replica (a node over the network) answers is untrusted input.
pub(crate) fn summary(
    (who, r): (ReplicaId, &dyn Replica),
    view: &View,
    chunk: ChunkIndex,
    chunk_blocks: u32,
    timeout: std::time::Duration,
) -> Result<Vec<BlockInfo>> {
    let s = r
        .chunk_summary(view.clone(), chunk)
        .wait(timeout)
        .map_err(fault(who))?;
    if s.len() != chunk_blocks as usize {
        return Err(fault(who)(ReplicaFault::Remote(format!(
            "summary of chunk {} has {} entries, not {chunk_blocks}",
            chunk.0,
            s.len()
        ))));
    }
    Ok(s)
}

impl ReplicaSet {
    /// One pass over the replicas out of service: each that is reachable and belongs to
    /// this volume is resynced (dirty chunks) or rebuilt (full), online, and rejoins.
    pub fn heal_now(&self) -> HealReport {
        let mut report = HealReport::default();
        for id in ReplicaId::ALL {
            if self.membership.lock().is_in_service(id) {
                continue;
            }
            match self.try_sync(id) {
                Ok(true) => report.rejoined.push(id),
                Ok(false) => report.still_out.push((id, "sync did not complete".into())),
                Err(e) => report.still_out.push((id, e.to_string())),
            }
        }
        report
    }

    /// Checks that every in-service replica is still there (directory, connection). One that
    /// cannot be reached leaves service and is resynced when it answers again; one whose copy
    /// is gone or broken leaves service and will need a rebuild.
    pub fn check_health(&self) -> Result<()> {
        let in_service = self.membership.lock().in_service();
        for id in in_service {
            if let Err(e) = self.replica(id).check_health() {
                tracing::warn!(replica = %id, "health check failed: {e}");
                let unreachable =
                    matches!(e, ReplicaFault::Disconnected | ReplicaFault::Timeout(_));
                if self.membership.lock().take_out(id, &[], !unreachable) {
                    self.persist()?;
                }
            }
        }
        Ok(())
    }

    /// Puts a new replica (e.g. an empty directory on a new disk) in slot `id`; it is
    /// rebuilt in full by the next [`ReplicaSet::heal_now`]. Refused if the other two are not
    /// in service.
    pub fn replace(&self, id: ReplicaId, replica: Arc<dyn Replica>) -> Result<()> {
        let _structure = self.structure.write();
        {
            let mut m = self.membership.lock();
            let others = m.in_service().into_iter().filter(|r| *r != id).count();
            if others < 2 {
                return Err(ReplicationError::NoQuorum { in_service: others });
            }
            if m.syncing[id].is_some() {
                return Err(ReplicationError::Busy(id));
            }
            m.take_out(id, &[], true);
        }
        self.replicas.write()[id] = replica;
        self.persist()
    }

    fn try_sync(&self, id: ReplicaId) -> Result<bool> {
        let replica = self.replica(id);
        match replica.check_health() {
            Ok(()) => {}
            // The copy vanished under its open store (its directory removed, a disk
            // replaced): reopening shows whether it is back, empty, to be rebuilt.
            Err(ReplicaFault::Engine(EngineError::NotFound)) => {}
            Err(e) => return Err(fault(id)(e)),
        }
        match replica.reconnect(self.config.io_timeout) {
            Ok(()) => {}
            Err(ReplicaFault::Engine(e @ EngineError::Corrupt { .. }))
                if self.others_in_service(id) >= 2 =>
            {
                // A copy that cannot even be opened is worth nothing while two good ones
                // serve: start it again from nothing rather than leave it out for good.
                tracing::warn!(replica = %id, "copy cannot be opened ({e}); discarding it for a rebuild");
                replica.discard(self.config.io_timeout).map_err(fault(id))?;
                if self.membership.lock().take_out(id, &[], true) {
                    self.persist()?;
                }
            }
            Err(e) => return Err(fault(id)(e)),
        }
        self.check_identity(id, replica.as_ref())?;
        // A replica that came back empty (a node whose disk was replaced, a directory
        // recreated) cannot be resynced chunk by chunk: it needs the whole volume.
        if let Err(ReplicaFault::Empty) = replica.info().wait(self.config.io_timeout) {
            if self.membership.lock().take_out(id, &[], true) {
                tracing::warn!(replica = %id, "returned without its copy; rebuilding in full");
                self.persist()?;
            }
        }
        let Some((full, _)) = self.membership.lock().begin_sync(id) else {
            return Ok(false);
        };
        tracing::info!(replica = %id, full, "starting {}", if full { "rebuild" } else { "resync" });
        let result = if full {
            self.rebuild(id)
        } else {
            self.resync(id)
        };
        let complete = matches!(result, Ok(true));
        let changed = self.membership.lock().finish_sync(id, complete);
        if changed {
            self.persist()?;
            tracing::info!(replica = %id, "back in service");
        }
        result.map(|_| changed)
    }

    /// How many replicas other than `id` are in service.
    fn others_in_service(&self, id: ReplicaId) -> usize {
        let m = self.membership.lock();
        m.in_service().into_iter().filter(|r| *r != id).count()
    }

    /// Refuses a replica that holds another volume's set state.
    fn check_identity(&self, id: ReplicaId, replica: &dyn Replica) -> Result<()> {
        let ours = self.membership.lock().state.volume_id;
        match replica.load_set_state().wait(self.config.io_timeout) {
            Ok(Some(bytes)) => match SetState::decode(&bytes) {
                Ok((s, _)) if s.volume_id != ours => Err(ReplicationError::Open(format!(
                    "{id} holds another volume; not touching it"
                ))),
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(fault(id)(e)),
        }
    }

    /// Copies the dirty chunks of `id` while it receives client writes.
    fn resync(&self, id: ReplicaId) -> Result<bool> {
        {
            let _structure = self.structure.read();
            self.membership.lock().start_receiving(id);
        }
        self.sync_passes(id, |_| Ok(BTreeSet::new()))
    }

    /// Repeats passes over the chunks `id` misses (plus `extra`) until none is left.
    fn sync_passes(
        &self,
        id: ReplicaId,
        extra: impl Fn(&Self) -> Result<BTreeSet<u64>>,
    ) -> Result<bool> {
        let mut first = true;
        loop {
            let mut todo = self.membership.lock().dirty(id);
            if first {
                todo.extend(extra(self)?);
                first = false;
            }
            if todo.is_empty() {
                return Ok(true);
            }
            let total = todo.len() as u64;
            let pace = Pace::start(self);
            for (done, chunk) in todo.into_iter().enumerate() {
                pace.wait(self);
                if self.membership.lock().sync_aborted(id) {
                    return Ok(false);
                }
                let _structure = self.structure.read();
                self.copy_chunk(id, ChunkIndex(chunk), &View::Head, &View::Head)?;
                let mut m = self.membership.lock();
                m.chunk_copied(id, chunk);
                m.progress(id, done as u64 + 1, total);
            }
        }
    }

    /// Rebuilds `id` in full: its volume, every snapshot in order, then the head.
    fn rebuild(&self, id: ReplicaId) -> Result<bool> {
        let target = self.replica(id);
        let size = self.size();
        match target.info().wait(self.config.io_timeout) {
            Err(ReplicaFault::Empty) => target
                .format(size, self.geometry, self.sealed)
                .wait(self.config.io_timeout)
                .map_err(fault(id))?,
            Ok(info) if info.geometry != self.geometry => {
                return Err(ReplicationError::Open(format!(
                    "{id} holds a volume of another shape; wipe it to rebuild"
                )))
            }
            Ok(info) if info.size > size => {
                // Only an expand grows a copy, so this one applied an expand whose answer
                // was lost while the copies in service refused it: unacknowledged, so
                // either size is right. Adopt it (as opening the set would), rather than
                // strand a copy that can never shrink.
                tracing::warn!(
                    replica = %id,
                    size = info.size,
                    "rebuild target is larger than the set; adopting its size"
                );
                self.expand(info.size)?;
            }
            Ok(info) if info.size < size => target
                .expand(size)
                .wait(self.config.io_timeout)
                .map_err(fault(id))?,
            Ok(_) => {}
            Err(e) => return Err(fault(id)(e)),
        }
        let mut verified = BTreeSet::new();
        while !self.rebuild_snapshot_step(id, &mut verified)? {}
        self.sync_passes(id, |set| {
            let (src_id, src) = set.source_for(id)?;
            let mut all: BTreeSet<u64> = BTreeSet::new();
            for r in [src.as_ref(), set.replica(id).as_ref()] {
                let chunks = r
                    .view_chunks(View::Head)
                    .wait(set.config.io_timeout)
                    .map_err(fault(src_id))?;
                all.extend(chunks.into_iter().map(|c| c.0));
            }
            Ok(all)
        })
    }

    /// One step of a rebuild's snapshot phase; `true` once the target has exactly the
    /// source's snapshots (and then it starts receiving writes). A target snapshot counts
    /// only once its size and content are checked equal (an id may have been deleted and reused while
    /// the target was away); `verified` remembers the checked ones.
    fn rebuild_snapshot_step(
        &self,
        id: ReplicaId,
        verified: &mut BTreeSet<SnapshotId>,
    ) -> Result<bool> {
        let _structure = self.structure.read();
        let target = self.replica(id);
        let (src_id, src) = self.source_for(id)?;
        let timeout = self.config.io_timeout;
        let src_snaps = src.info().wait(timeout).map_err(fault(src_id))?.snapshots;
        let tgt_snaps = target.info().wait(timeout).map_err(fault(id))?.snapshots;
        let mut kept = Vec::new();
        for t in &tgt_snaps {
            // Same name, size and content: a snapshot deleted and taken again while the
            // target was away may agree block for block and still differ in size.
            let same = src_snaps.iter().any(|s| s.id == t.id && s.size == t.size)
                && (verified.contains(&t.id) || self.same_snapshot(id, &t.id)?);
            if same {
                verified.insert(t.id.clone());
                kept.push(t.clone());
            } else {
                target
                    .delete_snapshot(t.id.clone())
                    .wait(self.config.long_timeout)
                    .map_err(fault(id))?;
            }
        }
        let tgt_snaps = kept;
        let missing = src_snaps
            .iter()
            .find(|s| !tgt_snaps.iter().any(|t| t.id == s.id));
        let Some(snap) = missing else {
            self.membership.lock().start_receiving(id);
            return Ok(true);
        };
        self.stage_snapshot(id, &snap.id)?;
        target
            .snapshot(snap.id.clone(), Some(snap.size))
            .wait(self.config.long_timeout)
            .map_err(fault(id))?;
        Ok(false)
    }

    /// Whether snapshot `snap` reads the same on the target as on the source (compared by
    /// block summaries, metadata only).
    fn same_snapshot(&self, id: ReplicaId, snap: &SnapshotId) -> Result<bool> {
        let (src_id, src) = self.source_for(id)?;
        let target = self.replica(id);
        let view = View::Snapshot(snap.clone());
        let timeout = self.config.io_timeout;
        let mut chunks: BTreeSet<ChunkIndex> = BTreeSet::new();
        for (who, r) in [(src_id, src.as_ref()), (id, target.as_ref())] {
            let list = r
                .view_chunks(view.clone())
                .wait(timeout)
                .map_err(fault(who))?;
            chunks.extend(list);
        }
        let cb = self.geometry.chunk_blocks;
        for chunk in chunks {
            let a = summary((src_id, src.as_ref()), &view, chunk, cb, timeout)?;
            let b = summary((id, target.as_ref()), &view, chunk, cb, timeout)?;
            if a.iter().zip(&b).any(|(x, y)| !x.same_content(y)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes the target's head hold exactly snapshot `snap`'s content.
    fn stage_snapshot(&self, id: ReplicaId, snap: &SnapshotId) -> Result<()> {
        let (src_id, src) = self.source_for(id)?;
        let view = View::Snapshot(snap.clone());
        let timeout = self.config.io_timeout;
        let mut chunks: BTreeSet<u64> = BTreeSet::new();
        for (who, r) in [(src_id, src.as_ref()), (id, self.replica(id).as_ref())] {
            let v = if who == id { View::Head } else { view.clone() };
            let list = r.view_chunks(v).wait(timeout).map_err(fault(who))?;
            chunks.extend(list.into_iter().map(|c| c.0));
        }
        // Not paced: the caller holds the structure lock, and a snapshot or an expand must
        // not wait for a throttle. Only snapshots' own blocks are copied here; the head's
        // (most of a volume) follow in the paced passes.
        for chunk in chunks {
            self.copy_chunk(id, ChunkIndex(chunk), &view, &View::Head)?;
        }
        Ok(())
    }

    /// An in-service replica other than `id` to copy from.
    fn source_for(&self, id: ReplicaId) -> Result<(ReplicaId, Arc<dyn Replica>)> {
        let src = self
            .membership
            .lock()
            .in_service()
            .into_iter()
            .find(|r| *r != id)
            .ok_or(ReplicationError::NoQuorum { in_service: 0 })?;
        Ok((src, self.replica(src)))
    }

    /// Copies the blocks of `chunk` that differ between the source's `from` view and the
    /// target's `to` view. The caller holds the structure lock; this holds the chunk's block
    /// locks so no client write to it can interleave.
    fn copy_chunk(&self, id: ReplicaId, chunk: ChunkIndex, from: &View, to: &View) -> Result<()> {
        let g = self.geometry;
        let first = chunk.0 * u64::from(g.chunk_blocks);
        let _order = self
            .block_locks
            .write(first, first + u64::from(g.chunk_blocks));
        let (src_id, src) = self.source_for(id)?;
        let target = self.replica(id);
        let timeout = self.config.io_timeout;
        let cb = g.chunk_blocks;
        let want = summary((src_id, src.as_ref()), from, chunk, cb, timeout)?;
        let have = summary((id, target.as_ref()), to, chunk, cb, timeout)?;
        let differing: Vec<(u64, BlockInfo)> = want
            .iter()
            .zip(&have)
            .enumerate()
            .filter(|(_, (w, h))| !w.same_content(h))
            .map(|(i, (w, _))| (first + i as u64, *w))
            .collect();
        self.copy_blocks(from, target.as_ref(), id, &differing)
    }

    /// Writes `blocks` (index, source summary) to `target`, reading data from the in-service
    /// replicas (healing on the way), one raw write per run of consecutive blocks.
    fn copy_blocks(
        &self,
        from: &View,
        target: &dyn Replica,
        target_id: ReplicaId,
        blocks: &[(u64, BlockInfo)],
    ) -> Result<()> {
        let bs = self.geometry.bs();
        // Runs of consecutive blocks.
        for run in blocks.chunk_by(|a, b| b.0 == a.0 + 1) {
            let Some(&(first, _)) = run.first() else {
                continue;
            };
            let stored = if run.iter().any(|(_, b)| !b.content.is_zero()) {
                let span = run.len() as u64 * bs;
                Some(self.read_stored(from, first * bs, span, Some(target_id))?)
            } else {
                None
            };
            let data = stored.as_ref().map(|s| s.data.clone());
            let seals = stored.as_ref().and_then(|s| s.seals.as_deref());
            let raw = raw_blocks(run, data.as_ref(), bs, seals);
            if data.is_some() {
                self.sync_copied
                    .fetch_add(run.len() as u64 * bs, std::sync::atomic::Ordering::Relaxed);
            }
            target
                .write_raw(BlockIndex(first), raw)
                .wait(self.config.io_timeout)
                .map_err(fault(target_id))?;
        }
        Ok(())
    }
}

/// The raw blocks for a run: data sliced from `data` for data blocks, zeros otherwise; a
/// sealed volume's blocks carry the seals (and generations) they were read with.
pub(crate) fn raw_blocks(
    run: &[(u64, BlockInfo)],
    data: Option<&Bytes>,
    bs: u64,
    seals: Option<&[Option<BlockSeal>]>,
) -> Vec<RawBlock> {
    let bs = usize::try_from(bs).unwrap_or(usize::MAX);
    run.iter()
        .enumerate()
        .map(|(k, (_, info))| {
            let sealed = seals.map(|s| s.get(k).copied().flatten());
            let holds_data = match sealed {
                // A sealed copy says itself which blocks hold data.
                Some(s) => s.is_some(),
                None => !info.content.is_zero(),
            };
            RawBlock {
                data: match (holds_data, data) {
                    (true, Some(d)) => {
                        let at = k.saturating_mul(bs);
                        (at.saturating_add(bs) <= d.len()).then(|| d.slice(at..at + bs))
                    }
                    _ => None,
                },
                generation: sealed.flatten().map_or(info.generation, |s| s.generation),
                seal: sealed.flatten().map_or(tripod_engine::NO_SEAL, |s| s.seal),
            }
        })
        .collect()
}
