//! Group commit and the write order. Every mutation of block content takes this path:
//!
//! 1. the writer queues its block updates; one writer at a time becomes the leader and takes
//!    every queued update (and any waiting flush) as one batch;
//! 2. the leader appends one WAL record per update (blocks of a large write that the head
//!    layer never held are written in place first and their records carry only the CRC —
//!    see [`VolumeOptions::direct_write_min`](crate::VolumeOptions::direct_write_min));
//! 3. a volume that syncs every write syncs the placed data, then the log, **once** for the
//!    batch, then applies it in place (data file writes / hole punches, chunk metadata, head
//!    index) and wakes every writer of the batch, which may then acknowledge;
//! 4. a write-back volume ([`VolumeOptions::write_back`](crate::VolumeOptions::write_back))
//!    syncs nothing: the batch's block states change at once, its data stays readable from
//!    memory, and the writers return (the records are in the kernel, so a process crash
//!    loses nothing). A flush — or the memory limit, or a checkpoint — *settles*: placed
//!    data synced, the log synced, then the kept updates written in place. Placed records of
//!    a write-back volume say that their data was not synced first; replay keeps such a
//!    block only if its data in place matches the CRC;
//! 5. when the log passes its limit, a checkpoint settles, syncs the layer files, writes the
//!    dirty chunk records (two-slot), publishes a manifest with a new WAL epoch and restarts
//!    the log.
//!
//! Rules: nothing in a layer file is overwritten before its WAL record is durable; the
//! manifest never names a file before the file and its directory entry are durable; the log
//! is reused only after a manifest with a new epoch is durable. A failed write or sync
//! poisons the volume.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::addressing::{BlockIndex, ChunkIndex, Geometry, LayerId, Lsn};
use crate::chunk_meta::{self, BlockState};
use crate::error::{EngineError, Result};
use crate::format::{Seal, NO_SEAL};
use crate::layer::Tree;
use crate::manifest::Manifest;
use crate::storage::StorageFile;
use crate::volume::Volume;
use crate::wal;

/// Bytes kept in memory by write-back volumes of this process, waiting to go in place.
static UNAPPLIED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Past this many bytes waiting in all write-back volumes of the process together, each
/// volume settles at its next write, whatever its own limit: with a thousand volumes open
/// their per-volume limits alone would allow tens of GiB. 1 GiB keeps the cache useful
/// for a few busy volumes and bounded for many.
const UNAPPLIED_PROCESS_LIMIT: u64 = 1 << 30;

/// One change of block content, always to the head layer, with the generation of the write
/// it belongs to.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    /// One block of data (exactly one block long).
    Data(BlockIndex, Bytes, Stamp),
    /// `count` blocks from `first` read as zeros and hold no data.
    Zero(BlockIndex, u64, u64),
    /// One block of data for a slot the head layer has never held (absent there): written in
    /// place before its record, which then carries only the CRC.
    Placed(BlockIndex, Bytes, Stamp),
}

/// What a write stamps on a data block besides its content: the write's generation and the
/// block's seal ([`NO_SEAL`] in volumes without seals).
pub(crate) type Stamp = (u64, Seal);

/// The write-ahead log's position and what the next checkpoint must persist.
pub(crate) struct WalState {
    pub file: Arc<dyn StorageFile>,
    pub epoch: u64,
    pub next_lsn: Lsn,
    /// Every record up to this one is durable in the layer files (the manifest's value).
    pub checkpoint_lsn: Lsn,
    pub offset: u64,
    /// The log file is written (not a hole, not past its end) up to here: appends below it
    /// change no file metadata, so their sync is a data sync only (see [`WalState::append`]).
    pub written_end: u64,
    /// Chunk records changed since the last checkpoint.
    pub dirty_chunks: HashSet<(LayerId, ChunkIndex)>,
    /// Layers whose data file was written since the last checkpoint.
    pub dirty_data: HashSet<LayerId>,
    /// Write-back: records appended since the last log sync.
    pub unsynced: bool,
    /// Write-back: layers whose data file holds placed blocks not yet synced.
    pub unsynced_placed: HashSet<LayerId>,
    /// Write-back: logged updates not yet applied in place (in log order), and their bytes.
    pub unapplied: Vec<(LayerId, Update)>,
    pub unapplied_bytes: u64,
}

/// The log grows ahead of its appends in steps this large.
const WAL_GROWTH: u64 = 1 << 20;

impl WalState {
    pub(crate) fn new(file: Arc<dyn StorageFile>, epoch: u64, checkpoint_lsn: Lsn) -> Self {
        let written_end = file.size().unwrap_or(0);
        Self {
            file,
            epoch,
            next_lsn: Lsn(checkpoint_lsn.0 + 1),
            checkpoint_lsn,
            offset: 0,
            written_end,
            dirty_chunks: HashSet::new(),
            dirty_data: HashSet::new(),
            unsynced: false,
            unsynced_placed: HashSet::new(),
            unapplied: Vec::new(),
            unapplied_bytes: 0,
        }
    }

    /// Writes `buf` at the end of the log (no sync) and, when the append came near the end
    /// of the file, writes zeros ahead of it.
    ///
    /// Why: an append past the end of the file changes its size and allocates blocks, so the
    /// sync after it must commit the file system's journal too (on ext4 a journal commit
    /// beside the data, measured: 467 µs per FLUSH at QD1 while a fresh volume's log grows,
    /// 317 µs once it runs inside written space). Zeros ahead make nearly every sync a data
    /// sync. They are safe: replay stops at the first record that does not decode (zeros do
    /// not), as it does at the end of the file or at a record of an older epoch. The log
    /// never grows past what it would reach anyway (its limit plus one step); a failure to
    /// grow (a full disk) is left to the next real append to report.
    pub(crate) fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        if self.offset > self.written_end.saturating_sub(WAL_GROWTH / 2) {
            let from = self.written_end.max(self.offset);
            let to = (self.offset / WAL_GROWTH + 2) * WAL_GROWTH;
            let len = usize::try_from(to - from).unwrap_or(0);
            if len > 0 && self.file.write_at(&vec![0u8; len], from).is_ok() {
                self.written_end = to;
            }
        }
        Ok(())
    }
}

/// Writers waiting for group commit.
#[derive(Default)]
pub(crate) struct Queue {
    pending: Vec<Update>,
    /// Some waiting caller asked for everything logged so far to become durable.
    sync: bool,
    leader: bool,
    next_ticket: u64,
    done_upto: u64,
    failed_from: Option<u64>,
    /// Batches refused for lack of space before anything was logged (the volume goes on):
    /// tickets `start..=end`, and how many of their callers have not yet taken the error.
    no_space: Vec<NoSpaceBatch>,
}

/// A batch refused for lack of space.
struct NoSpaceBatch {
    start: u64,
    end: u64,
    untold: u64,
    context: String,
}

impl Queue {
    /// The error for `ticket` if its batch was refused for lack of space (each caller
    /// takes it once; the record goes when all have).
    fn take_no_space(&mut self, ticket: u64) -> Option<EngineError> {
        let i = self
            .no_space
            .iter()
            .position(|b| (b.start..=b.end).contains(&ticket))?;
        let b = self.no_space.get_mut(i)?;
        b.untold = b.untold.saturating_sub(1);
        let context = b.context.clone();
        if b.untold == 0 {
            self.no_space.swap_remove(i);
        }
        Some(EngineError::NoSpace {
            context,
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        })
    }
}

/// How a leader's batch failed.
pub(crate) struct Failed {
    error: EngineError,
    /// Some of it reached the log (the volume's state is unknown: it must poison itself).
    logged: bool,
}

impl From<EngineError> for Failed {
    fn from(error: EngineError) -> Self {
        Failed {
            error,
            logged: true,
        }
    }
}

/// A failure before anything of the batch was logged.
fn before_log(error: EngineError) -> Failed {
    Failed {
        error,
        logged: false,
    }
}

impl Volume {
    /// Logs and applies `updates`, sharing the work with concurrent writers; with `sync` (or
    /// on a volume that is not write-back) everything logged so far is durable when it
    /// returns. The caller holds the tree's read lock and the block locks of every updated
    /// block.
    pub(crate) fn commit(&self, tree: &Tree, updates: Vec<Update>, sync: bool) -> Result<()> {
        let mut q = self.queue.lock();
        q.next_ticket += 1;
        let ticket = q.next_ticket;
        q.pending.extend(updates);
        q.sync |= sync;
        loop {
            if q.done_upto >= ticket {
                if let Some(e) = q.take_no_space(ticket) {
                    return Err(e);
                }
                return match q.failed_from {
                    Some(f) if ticket >= f => Err(EngineError::Poisoned),
                    _ => Ok(()),
                };
            }
            if q.leader {
                self.queue_cv.wait(&mut q);
                continue;
            }
            q.leader = true;
            let batch = std::mem::take(&mut q.pending);
            let sync = std::mem::take(&mut q.sync);
            let start = q.done_upto + 1;
            let upto = q.next_ticket;
            drop(q);
            let result = if self.is_poisoned() {
                Err(Failed::from(EngineError::Poisoned))
            } else {
                self.log_and_apply(tree, batch, sync)
            };
            q = self.queue.lock();
            q.leader = false;
            q.done_upto = upto;
            match result {
                Ok(()) => {}
                Err(Failed {
                    error: EngineError::NoSpace { context, source },
                    logged: false,
                }) => {
                    // Nothing of the batch was recorded: its writers are told, the volume
                    // goes on unchanged.
                    q.no_space.push(NoSpaceBatch {
                        start,
                        end: upto,
                        untold: upto - start, // every caller but this one
                        context: context.clone(),
                    });
                    q.no_space.retain(|b| b.untold > 0);
                    self.queue_cv.notify_all();
                    return Err(EngineError::NoSpace { context, source });
                }
                Err(Failed { error, .. }) => {
                    self.poison();
                    q.failed_from = Some(q.failed_from.map_or(start, |f| f.min(start)));
                    self.queue_cv.notify_all();
                    drop(q);
                    return Err(error);
                }
            }
            self.queue_cv.notify_all();
        }
    }

    /// Logs and applies one batch (the leader's work). A write-back volume appends the
    /// records without a sync, takes the new block states at once and keeps the data for
    /// reads until a later sync lets it go in place ([`Volume::settle`]).
    fn log_and_apply(
        &self,
        tree: &Tree,
        batch: Vec<Update>,
        sync: bool,
    ) -> std::result::Result<(), Failed> {
        let write_back = self.options.write_back;
        let mut wal = self.wal.lock();
        if !batch.is_empty() {
            // Everything that needs new space is claimed before the records: a full file
            // system refuses this batch, not a later write in place that must not fail.
            self.reserve_space(tree, &batch).map_err(before_log)?;
            self.place_blocks(tree, &mut wal, &batch)
                .map_err(before_log)?;
            let crcs = self.append(tree, &mut wal, &batch).map_err(before_log)?;
            if write_back {
                self.take_states(tree, &mut wal, batch, &crcs);
            } else {
                self.sync_log(&mut wal)?;
                self.apply_batch(tree, &mut wal, &batch, &crcs)?;
            }
        }
        let over = wal.offset >= self.options.wal_limit;
        let crowded = wal.unapplied_bytes > 0
            && UNAPPLIED_TOTAL.load(Ordering::Relaxed) >= UNAPPLIED_PROCESS_LIMIT;
        if over || crowded || wal.unapplied_bytes >= self.options.write_back_limit {
            self.settle(tree, &mut wal)?;
        } else if sync {
            // A flush needs durability only: what waits in memory goes in place later (at
            // the limit, a checkpoint or a structural change), off the flush's latency.
            self.make_durable(tree, &mut wal)?;
        }
        if over {
            self.checkpoint_unless_full(tree, &mut wal)?;
        }
        Ok(())
    }

    /// A checkpoint, put off if the file system is full: a failed one leaves the files as a
    /// crash during it would (replay covers it) and the next batch over the limit tries
    /// again, so the log keeps serving in the meantime.
    pub(crate) fn checkpoint_unless_full(&self, tree: &Tree, wal: &mut WalState) -> Result<()> {
        match self.checkpoint(tree, wal) {
            Err(EngineError::NoSpace { .. }) => Ok(()),
            r => r,
        }
    }

    /// Claims the space a batch will need later: data blocks the head's file does not hold
    /// yet, which are written in place after the records (by a settle that must not fail).
    /// Metadata needs none claimed: a checkpoint that finds no space is put off. Skipped
    /// while the file system has plenty of room (`space`).
    fn reserve_space(&self, tree: &Tree, batch: &[Update]) -> Result<()> {
        let Some(head) = tree.layers.get(&tree.head) else {
            return Ok(());
        };
        if self.room.plenty(self.storage.as_ref()) {
            return Ok(());
        }
        let g = self.geometry;
        let reserve = |(first, count): (u64, u64)| {
            head.data
                .reserve(g.byte_offset(BlockIndex(first)), count * g.bs())
                .map_err(EngineError::io("reserving space in a layer data file"))
        };
        let mut run: Option<(u64, u64)> = None;
        {
            let metas = head.chunks.read();
            for u in batch {
                let Update::Data(block, ..) = u else {
                    continue;
                };
                let (chunk, slot) = g.locate(*block);
                let held = metas
                    .get(&chunk)
                    .is_some_and(|m| matches!(m.states.get(slot), Some(BlockState::Data(_))));
                if held {
                    continue;
                }
                run = match run {
                    Some((f, n)) if f + n == block.0 => Some((f, n + 1)),
                    Some(done) => {
                        reserve(done)?;
                        Some((block.0, 1))
                    }
                    None => Some((block.0, 1)),
                };
            }
        }
        run.map_or(Ok(()), reserve)
    }

    /// Appends one record per update to the log (no sync). Returns each update's data CRC
    /// (0 for zeros), computed once here for the log and the block state alike.
    fn append(&self, tree: &Tree, wal: &mut WalState, batch: &[Update]) -> Result<Vec<u32>> {
        let bs = self.geometry.block_size as usize;
        let mut buf = Vec::with_capacity(batch.len() * (wal::HEADER_LEN + bs));
        let first_lsn = wal.next_lsn;
        let unsynced_placed = self.options.write_back;
        let mut crcs = Vec::with_capacity(batch.len());
        for u in batch {
            let lsn = wal.next_lsn;
            wal.next_lsn = Lsn(lsn.0 + 1);
            let sealed = self.sealed;
            let target = |block, (generation, seal): Stamp| wal::Target {
                epoch: wal.epoch,
                lsn,
                layer: tree.head,
                block,
                generation,
                seal: sealed.then_some(seal),
            };
            match u {
                Update::Data(block, data, g) => {
                    let crc = crc32fast::hash(data);
                    crcs.push(crc);
                    wal::encode(&mut buf, target(*block, *g), wal::Body::Data(data, crc))
                }
                Update::Zero(first, count, g) => {
                    crcs.push(0);
                    let stamp = (*g, NO_SEAL);
                    wal::encode(&mut buf, target(*first, stamp), wal::Body::Zero(*count))
                }
                Update::Placed(block, data, g) => {
                    let crc = crc32fast::hash(data);
                    crcs.push(crc);
                    let body = if unsynced_placed {
                        wal::Body::PlacedUnsynced(crc)
                    } else {
                        wal::Body::Placed(crc)
                    };
                    wal::encode(&mut buf, target(*block, *g), body)
                }
            }
        }
        if let Err(e) = wal.append(&buf) {
            wal.next_lsn = first_lsn;
            return Err(EngineError::io("writing the write-ahead log")(e));
        }
        wal.unsynced = true;
        Ok(crcs)
    }

    fn sync_log(&self, wal: &mut WalState) -> Result<()> {
        if wal.unsynced {
            wal.file
                .sync_data()
                .map_err(EngineError::io("syncing the write-ahead log"))?;
            wal.unsynced = false;
        }
        Ok(())
    }

    /// Write-back: gives the head the batch's block states now and keeps its data readable
    /// from memory until [`Volume::settle`] writes it in place.
    fn take_states(&self, tree: &Tree, wal: &mut WalState, batch: Vec<Update>, crcs: &[u32]) {
        let head = tree.head;
        let mut cached = self.unapplied.write();
        for (u, crc) in batch.into_iter().zip(crcs) {
            match &u {
                Update::Data(block, data, g) => {
                    let state = (BlockState::Data(*crc), *g);
                    self.record_state(tree, wal, head, *block, state, true);
                    cached.insert((head, block.0), data.clone());
                    wal.unapplied_bytes += data.len() as u64;
                    UNAPPLIED_TOTAL.fetch_add(data.len() as u64, Ordering::Relaxed);
                    wal.unapplied.push((head, u));
                }
                Update::Zero(first, count, g) => {
                    for b in first.0..first.0 + count {
                        let state = (BlockState::Zero, (*g, NO_SEAL));
                        self.record_state(tree, wal, head, BlockIndex(b), state, true);
                    }
                    wal.unapplied.push((head, u));
                }
                Update::Placed(block, _, g) => {
                    let state = (BlockState::Data(*crc), *g);
                    self.apply_placed(tree, wal, head, *block, state, true);
                }
            }
        }
    }

    /// Makes everything logged so far durable: the data files holding unsynced placed
    /// blocks, then the log. What waits in memory stays there (durable in the log).
    fn make_durable(&self, tree: &Tree, wal: &mut WalState) -> Result<()> {
        let placed = std::mem::take(&mut wal.unsynced_placed);
        for id in &placed {
            if let Some(l) = tree.layers.get(id) {
                l.data
                    .sync_data()
                    .map_err(EngineError::io("syncing a layer data file"))?;
            }
        }
        if !placed.is_empty() {
            // Say so in the log (synced with it): replay then trusts those blocks, so one
            // that rots later reads as a checksum error, not as its old content. Without
            // room for the mark replay checks them against their CRCs instead, as before a
            // flush: still consistent, just blind to later decay.
            match self.append_mark(tree, wal) {
                Err(EngineError::NoSpace { .. }) => {}
                r => r?,
            }
        }
        self.sync_log(wal)
    }

    /// Appends a `synced` mark to the log (no sync).
    fn append_mark(&self, tree: &Tree, wal: &mut WalState) -> Result<()> {
        let mut buf = Vec::with_capacity(wal::HEADER_LEN);
        let target = wal::Target {
            epoch: wal.epoch,
            lsn: wal.next_lsn,
            layer: tree.head,
            block: crate::addressing::BlockIndex(0),
            generation: 0,
            seal: None,
        };
        wal::encode(&mut buf, target, wal::Body::Synced);
        wal.append(&buf)
            .map_err(EngineError::io("writing the write-ahead log"))?;
        wal.next_lsn = Lsn(wal.next_lsn.0 + 1);
        wal.unsynced = true;
        Ok(())
    }

    /// Makes everything logged so far durable and applies what write-back kept in memory:
    /// placed data files synced, the log synced, then the logged updates written in place
    /// (their data leaves the read cache only once it is in the file).
    pub(crate) fn settle(&self, tree: &Tree, wal: &mut WalState) -> Result<()> {
        self.make_durable(tree, wal)?;
        let updates = std::mem::take(&mut wal.unapplied);
        UNAPPLIED_TOTAL.fetch_sub(std::mem::take(&mut wal.unapplied_bytes), Ordering::Relaxed);
        // Between two zero updates (which must keep their place in the order), the data goes
        // in sorted by position, each block once with its newest content, runs of
        // consecutive blocks in one vectored write: the log's random order would cost a
        // write per block, in the order the client happened to send them.
        let mut segment: BTreeMap<(LayerId, u64), &Bytes> = BTreeMap::new();
        for (layer, u) in &updates {
            match u {
                Update::Data(block, data, _) => {
                    segment.insert((*layer, block.0), data);
                }
                Update::Zero(first, count, _) => {
                    self.write_sorted(tree, wal, &mut segment)?;
                    self.punch_in_place(tree, wal, *layer, *first, *count)?
                }
                Update::Placed(..) => {}
            }
        }
        self.write_sorted(tree, wal, &mut segment)?;
        let mut cached = self.unapplied.write();
        for (layer, u) in &updates {
            if let Update::Data(block, data, _) = u {
                if cached
                    .get(&(*layer, block.0))
                    .is_some_and(|c| c.as_ptr() == data.as_ptr())
                {
                    cached.remove(&(*layer, block.0));
                }
            }
        }
        Ok(())
    }

    /// Writes `blocks` (sorted by layer and block) in place, runs of consecutive blocks of one
    /// layer with one call, and empties it.
    fn write_sorted(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        blocks: &mut BTreeMap<(LayerId, u64), &Bytes>,
    ) -> Result<()> {
        let mut run: Vec<Bytes> = Vec::new();
        let mut start: Option<(LayerId, u64)> = None;
        for ((layer, block), data) in std::mem::take(blocks) {
            let follows = start.is_some_and(|(l, b)| l == layer && b + run.len() as u64 == block);
            if !follows {
                if let Some((l, b)) = start {
                    self.write_in_place(tree, wal, l, BlockIndex(b), &run)?;
                }
                run.clear();
                start = Some((layer, block));
            }
            run.push(data.clone());
        }
        if let Some((l, b)) = start {
            self.write_in_place(tree, wal, l, BlockIndex(b), &run)?;
        }
        Ok(())
    }

    /// Writes the batch's placed blocks into the head's data file (runs of consecutive
    /// blocks with one call). A volume that syncs every write syncs the file here, so the
    /// blocks are durable before any record names them; a write-back volume leaves that to
    /// the next [`Volume::settle`] (its records say so, and replay checks the data).
    /// Nothing reads those slots until their records are applied: the head does not hold them.
    fn place_blocks(&self, tree: &Tree, wal: &mut WalState, batch: &[Update]) -> Result<()> {
        if !batch.iter().any(|u| matches!(u, Update::Placed(..))) {
            return Ok(());
        }
        // The tree lock is held across the batch, so the head cannot go away; if it ever
        // did, nothing may be recorded as placed.
        let head = tree.layers.get(&tree.head).ok_or(EngineError::Poisoned)?;
        let g = self.geometry;
        let mut i = 0;
        while i < batch.len() {
            let Update::Placed(first, ..) = &batch[i] else {
                i += 1;
                continue;
            };
            let mut run: Vec<&[u8]> = Vec::new();
            while let Some(Update::Placed(b, d, _)) = batch.get(i) {
                if b.0 != first.0 + run.len() as u64 {
                    break;
                }
                run.push(d);
                i += 1;
            }
            head.data
                .write_vectored_at(&run, g.byte_offset(*first))
                .map_err(EngineError::io("writing a layer data file"))?;
        }
        if self.options.write_back {
            wal.unsynced_placed.insert(tree.head);
        } else {
            head.data
                .sync_data()
                .map_err(EngineError::io("syncing a layer data file"))?;
        }
        Ok(())
    }

    /// Applies a durable batch in place, writing runs of consecutive blocks with one call.
    /// `crcs` are the updates' CRCs as [`Volume::append`] computed them.
    fn apply_batch(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        batch: &[Update],
        crcs: &[u32],
    ) -> Result<()> {
        let head = tree.head;
        let mut i = 0;
        while i < batch.len() {
            match &batch[i] {
                Update::Zero(first, count, g) => {
                    self.apply_zero(tree, wal, head, *first, *count, *g, true)?;
                    i += 1;
                }
                Update::Placed(block, _, g) => {
                    let crc = crcs.get(i).copied().unwrap_or_default();
                    let state = (BlockState::Data(crc), *g);
                    self.apply_placed(tree, wal, head, *block, state, true);
                    i += 1;
                }
                Update::Data(first, ..) => {
                    let mut run = vec![];
                    let mut stamps = vec![];
                    let mut next = first.0;
                    while let Some(Update::Data(b, d, g)) = batch.get(i) {
                        if b.0 != next {
                            break;
                        }
                        run.push(d.clone());
                        stamps.push(*g);
                        next += 1;
                        i += 1;
                    }
                    self.apply_data_run(tree, wal, head, *first, (&run, &stamps), true)?;
                }
            }
        }
        Ok(())
    }

    /// Writes consecutive data blocks starting at `first` into `layer` and records them with
    /// their generations and seals.
    pub(crate) fn apply_data_run(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        layer: LayerId,
        first: BlockIndex,
        (blocks, stamps): (&[Bytes], &[Stamp]),
        update_index: bool,
    ) -> Result<()> {
        if !tree.layers.contains_key(&layer) {
            return Ok(()); // a record of a layer deleted since: nothing to do
        }
        self.write_in_place(tree, wal, layer, first, blocks)?;
        for (i, (data, g)) in blocks.iter().zip(stamps).enumerate() {
            let block = BlockIndex(first.0 + i as u64);
            let state = BlockState::Data(crc32fast::hash(data));
            self.record_state(tree, wal, layer, block, (state, *g), update_index);
        }
        Ok(())
    }

    /// Writes consecutive blocks into `layer`'s data file with one vectored call.
    fn write_in_place(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        layer: LayerId,
        first: BlockIndex,
        blocks: &[Bytes],
    ) -> Result<()> {
        let Some(l) = tree.layers.get(&layer) else {
            return Ok(());
        };
        let bufs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
        l.data
            .write_vectored_at(&bufs, self.geometry.byte_offset(first))
            .map_err(EngineError::io("writing a layer data file"))?;
        wal.dirty_data.insert(layer);
        Ok(())
    }

    /// Frees `count` blocks from `first` in `layer`'s data file.
    fn punch_in_place(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        layer: LayerId,
        first: BlockIndex,
        count: u64,
    ) -> Result<()> {
        let Some(l) = tree.layers.get(&layer) else {
            return Ok(());
        };
        let g = self.geometry;
        l.data
            .punch_hole(g.byte_offset(first), count * g.bs())
            .map_err(EngineError::io("punching a hole in a layer data file"))?;
        wal.dirty_data.insert(layer);
        Ok(())
    }

    /// Makes `count` blocks from `first` of `layer` read as zeros and frees their space.
    #[expect(
        clippy::too_many_arguments,
        reason = "one record's fields plus the context"
    )]
    pub(crate) fn apply_zero(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        layer: LayerId,
        first: BlockIndex,
        count: u64,
        generation: u64,
        update_index: bool,
    ) -> Result<()> {
        if !tree.layers.contains_key(&layer) {
            return Ok(());
        }
        self.punch_in_place(tree, wal, layer, first, count)?;
        for b in first.0..first.0 + count {
            let state = (BlockState::Zero, (generation, NO_SEAL));
            self.record_state(tree, wal, layer, BlockIndex(b), state, update_index);
        }
        Ok(())
    }

    /// Makes a block whose data is already in place present in `layer`.
    pub(crate) fn apply_placed(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        layer: LayerId,
        block: BlockIndex,
        state: (BlockState, Stamp),
        update_index: bool,
    ) {
        wal.dirty_data.insert(layer);
        self.record_state(tree, wal, layer, block, state, update_index);
    }

    fn record_state(
        &self,
        tree: &Tree,
        wal: &mut WalState,
        layer: LayerId,
        block: BlockIndex,
        (state, (generation, seal)): (BlockState, Stamp),
        update_index: bool,
    ) {
        let g = self.geometry;
        let (chunk, slot) = g.locate(block);
        if let Some(l) = tree.layers.get(&layer) {
            l.set_state(chunk, slot, state, (generation, &seal), g.chunk_blocks);
        }
        self.generation.fetch_max(generation, Ordering::SeqCst);
        wal.dirty_chunks.insert((layer, chunk));
        if update_index && layer == tree.head {
            let mut index = tree.index.write();
            let owners = index
                .entry(chunk)
                .or_insert_with(|| vec![0; g.chunk_blocks as usize].into());
            owners[slot] = layer.0;
        }
    }

    /// Persists everything applied so far and restarts the log under a new epoch.
    pub(crate) fn checkpoint(&self, tree: &Tree, wal: &mut WalState) -> Result<()> {
        self.settle(tree, wal)?;
        for id in &wal.dirty_data {
            if let Some(l) = tree.layers.get(id) {
                l.data
                    .sync_data()
                    .map_err(EngineError::io("syncing a layer data file"))?;
            }
        }
        let mut by_layer: BTreeMap<LayerId, Vec<ChunkIndex>> = BTreeMap::new();
        for (layer, chunk) in &wal.dirty_chunks {
            by_layer.entry(*layer).or_default().push(*chunk);
        }
        for (layer, chunks) in &by_layer {
            persist_chunks(tree, self.geometry, *layer, chunks)?;
        }
        let applied = Lsn(wal.next_lsn.0 - 1);
        let manifest = self.manifest_of(tree, wal.epoch + 1, applied);
        manifest.store(self.storage.as_ref())?;
        wal.epoch += 1;
        wal.checkpoint_lsn = applied;
        wal.offset = 0;
        wal.dirty_chunks.clear();
        wal.dirty_data.clear();
        Ok(())
    }

    /// The manifest describing `tree` with the given log position.
    pub(crate) fn manifest_of(&self, tree: &Tree, epoch: u64, checkpoint_lsn: Lsn) -> Manifest {
        Manifest {
            size: tree.size,
            geometry: self.geometry,
            epoch,
            checkpoint_lsn,
            next_layer_id: tree.next_layer_id,
            head: tree.head,
            layers: tree.layers.values().map(|l| l.record.clone()).collect(),
            sealed: self.sealed,
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Fails with `Poisoned` once an earlier write failed.
    pub(crate) fn check_poison(&self) -> Result<()> {
        if self.is_poisoned() {
            Err(EngineError::Poisoned)
        } else {
            Ok(())
        }
    }
}

/// Writes the chunk records of `chunks` of `layer` into their spare slots and syncs them.
pub(crate) fn persist_chunks(
    tree: &Tree,
    g: Geometry,
    layer: LayerId,
    chunks: &[ChunkIndex],
) -> Result<()> {
    let Some(l) = tree.layers.get(&layer) else {
        return Ok(());
    };
    let mut written = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let (bytes, seq, slot) = {
            let metas = l.chunks.read();
            let Some(meta) = metas.get(chunk) else {
                continue;
            };
            let seq = meta.seq + 1;
            let slot = match meta.durable_slot {
                Some(0) => 1,
                _ => 0,
            };
            (chunk_meta::encode(layer, *chunk, seq, meta), seq, slot)
        };
        let at = chunk_meta::slot_offset(g.chunk_blocks, l.sealed, *chunk, slot);
        l.meta
            .write_at(&bytes, at)
            .map_err(EngineError::io("writing chunk metadata"))?;
        written.push((*chunk, seq, slot));
    }
    l.meta
        .sync_data()
        .map_err(EngineError::io("syncing chunk metadata"))?;
    let mut metas = l.chunks.write();
    for (chunk, seq, slot) in written {
        if let Some(m) = metas.get_mut(&chunk) {
            m.seq = seq;
            m.durable_slot = Some(slot);
        }
    }
    Ok(())
}

impl Drop for Volume {
    fn drop(&mut self) {
        // What waited in memory is in the log (replayed on the next open); it no longer
        // counts against the process's write-back memory.
        let waiting = self.wal.get_mut().unapplied_bytes;
        UNAPPLIED_TOTAL.fetch_sub(waiting, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemStorage, Storage};

    fn record(epoch: u64, lsn: u64, fill: u8) -> Vec<u8> {
        let data = vec![fill; 4096];
        let target = wal::Target {
            epoch,
            lsn: Lsn(lsn),
            layer: LayerId(1),
            block: BlockIndex(lsn),
            generation: lsn,
            seal: None,
        };
        let mut buf = Vec::new();
        wal::encode(
            &mut buf,
            target,
            wal::Body::Data(&data, crc32fast::hash(&data)),
        );
        buf
    }

    fn scan_lsns(file: &dyn StorageFile, epoch: u64) -> (Vec<u64>, u64) {
        let mut lsns = Vec::new();
        let end = wal::scan(
            file,
            (epoch, Lsn(1), 4096),
            |e| e,
            |e| {
                lsns.push(e.lsn.0);
                Ok(())
            },
        )
        .unwrap();
        (lsns, end.end_offset)
    }

    #[test]
    fn the_log_is_written_ahead_of_its_appends_and_replay_stops_at_the_zeros() {
        let storage = MemStorage::new();
        let file = storage.create_file("wal").unwrap();
        let mut wal = WalState::new(file.clone(), 1, Lsn(0));
        for lsn in 1..=600 {
            wal.append(&record(1, lsn, lsn as u8)).unwrap();
            let size = file.size().unwrap();
            assert!(
                size >= wal.offset + WAL_GROWTH / 2,
                "{size} at {}",
                wal.offset
            );
            assert!(size <= wal.offset + 2 * WAL_GROWTH);
        }
        let (lsns, end) = scan_lsns(file.as_ref(), 1);
        assert_eq!(lsns, (1..=600).collect::<Vec<_>>());
        assert_eq!(end, wal.offset);

        // After a checkpoint the log restarts at 0 under the next epoch, inside written
        // space: the file no longer grows, and only the new epoch's records replay.
        let size = file.size().unwrap();
        wal.epoch = 2;
        wal.offset = 0;
        for lsn in 1..=3 {
            wal.append(&record(2, lsn, 9)).unwrap();
        }
        assert_eq!(file.size().unwrap(), size);
        assert_eq!(scan_lsns(file.as_ref(), 2).0, vec![1, 2, 3]);

        // A reopened log knows how far it is written.
        let reopened = WalState::new(file.clone(), 2, Lsn(0));
        assert_eq!(reopened.written_end, size);
    }
}
