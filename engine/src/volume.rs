//! [`Volume`]: the public face of one replica's store, and its block I/O path (read, write,
//! write zeroes, trim, allocation map). Structural operations live in `structure`, creation and
//! recovery in `recovery`, the write order in `commit`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::addressing::{BlockIndex, Geometry, LayerId};
use crate::chunk_meta::BlockState;
use crate::commit::{Queue, Update, WalState};
use crate::error::{EngineError, Result};
use crate::format::{Seal, NO_SEAL};
use crate::layer::Tree;
use crate::locks::BlockLocks;
use crate::storage::Storage;

/// Largest buffer [`Volume::read`] allocates; larger reads use [`Volume::read_at`] with a
/// caller buffer. Stops a request from asking the engine for an unbounded allocation.
pub const MAX_READ_ALLOC: u64 = 256 << 20;

/// Longest zero run in one log record (callers' longer runs are split).
const MAX_ZERO_RUN: u64 = 1 << 24;

/// One write of [`Volume::write_batch`].
#[derive(Debug, Clone)]
pub struct BatchWrite {
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes of a zero write (a data write's length is its data's).
    pub len: u64,
    /// The data, or `None` for zeros (space freed).
    pub data: Option<Bytes>,
    /// Generation to stamp (`None`: the next one).
    pub generation: Option<u64>,
    /// Sealed volumes: one seal per block of a data write, which must cover whole blocks
    /// (see [`Volume::create_sealed`]); empty otherwise.
    pub seals: Vec<Seal>,
}

impl BatchWrite {
    fn byte_len(&self) -> u64 {
        self.data.as_ref().map_or(self.len, |d| d.len() as u64)
    }
}

/// Tuning of an open volume.
#[derive(Debug, Clone, Copy)]
pub struct VolumeOptions {
    /// Checkpoint when the write-ahead log grows past this many bytes. Larger means fewer
    /// checkpoints (each syncs every written layer file) but a longer replay after a crash;
    /// 64 MiB replays in well under a second.
    pub wal_limit: u64,
    /// Writes at least this many bytes long skip the log for their blocks the head layer has
    /// never held: the data goes in place and the layer file is synced first, then a
    /// record with only the CRC. That halves the bytes written for large and sequential
    /// writes, at the price of a second sync, so shorter writes keep the log path (they are
    /// latency-bound). Overwrites of blocks the head holds always go through the log.
    /// `u64::MAX` turns it off.
    pub direct_write_min: u64,
    /// Block-device semantics (a disk with a volatile write cache): a write returns once it
    /// is in the operating system (it survives a crash of this process), and becomes durable
    /// against power loss at the next [`Volume::flush`]. `false`: every write is durable when
    /// it returns (one log sync per batch of concurrent writers) and `flush` has nothing to do.
    pub write_back: bool,
    /// Write-back only: once this many bytes of logged data wait to be written in place, the
    /// next write syncs the log and writes them (as a flush would). Bounds the memory that
    /// serves reads of those blocks; 32 MiB amortises one sync over 8192 4 KiB writes.
    pub write_back_limit: u64,
}

impl VolumeOptions {
    /// The defaults with block-device (write-back) semantics.
    pub fn write_back() -> Self {
        Self {
            write_back: true,
            ..Self::default()
        }
    }
}

impl Default for VolumeOptions {
    fn default() -> Self {
        Self {
            wal_limit: 64 << 20,
            direct_write_min: 64 << 10,
            write_back: false,
            write_back_limit: 32 << 20,
        }
    }
}

/// One replica's copy of a volume: a layered, checksummed, crash-safe block store.
///
/// Every method takes `&self`; a `Volume` is meant to be shared (`Arc<Volume>`) by many
/// threads. Writes return only when durable, or with [`VolumeOptions::write_back`] once in
/// the operating system, durable at the next [`Volume::flush`]. See the crate documentation
/// for an example.
pub struct Volume {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) geometry: Geometry,
    pub(crate) options: VolumeOptions,
    pub(crate) tree: RwLock<Tree>,
    pub(crate) wal: Mutex<WalState>,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) queue_cv: Condvar,
    pub(crate) locks: BlockLocks,
    pub(crate) poisoned: AtomicBool,
    /// Highest write generation seen (stored per block; see [`Volume::generation`]).
    pub(crate) generation: AtomicU64,
    /// Write-back: data of logged blocks not yet written in place, by (layer, block); reads
    /// take a block from here before its data file.
    pub(crate) unapplied: RwLock<HashMap<(LayerId, u64), Bytes>>,
    /// Whether the file system has room to spare (then new blocks are not claimed early).
    pub(crate) room: crate::space::Room,
    /// Every data block carries a seal (fixed at creation; see [`Volume::create_sealed`]).
    pub(crate) sealed: bool,
}

/// One run of the allocation map returned by [`Volume::extents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset of the run.
    pub offset: u64,
    /// Length of the run in bytes.
    pub len: u64,
    /// `true`: the run holds data; `false`: it reads as zeros and holds no data (a hole).
    pub data: bool,
}

/// One whole block for [`Volume::write_raw`]: its data (`None`: zeros) and the generation of
/// the write it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBlock {
    /// Exactly one block of data, or `None` for a block that reads as zeros.
    pub data: Option<Bytes>,
    /// Generation to record for the block.
    pub generation: u64,
    /// The block's seal in a sealed volume ([`Volume::create_sealed`]); ignored otherwise.
    pub seal: Seal,
}

/// How a read may reach the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read, waiting for the disk if needed.
    Any,
    /// Only what needs no disk I/O.
    CachedOnly,
}

/// A validated byte range in blocks.
struct Span {
    offset: u64,
    len: u64,
    first: u64,
    end: u64,
}

impl Volume {
    /// Size of the volume in bytes.
    pub fn size(&self) -> u64 {
        self.tree.read().size
    }

    /// Block and chunk size.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn span(&self, tree: &Tree, offset: u64, len: u64) -> Result<Span> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > tree.size) {
            return Err(EngineError::OutOfRange {
                offset,
                len,
                size: tree.size,
            });
        }
        let bs = self.geometry.bs();
        Ok(Span {
            offset,
            len,
            first: offset / bs,
            end: (offset + len).div_ceil(bs),
        })
    }

    /// Reads `len` bytes at `offset` (at most [`MAX_READ_ALLOC`]).
    pub fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len > MAX_READ_ALLOC {
            return Err(EngineError::OutOfRange {
                offset,
                len,
                size: self.size(),
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from byte `offset`. Every block is checked against its CRC; a mismatch is
    /// [`EngineError::ChecksumMismatch`] and no data is returned.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_with(offset, buf, Access::Any).map(|_| ())
    }

    /// [`Volume::read_at`] only if no disk I/O is needed (everything is in memory or in the
    /// page cache): `Ok(false)` if some block would have to wait for the disk, and then
    /// `buf` holds nothing defined. Lets a caller serve cached reads on its own thread.
    pub fn read_cached(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
        self.read_with(offset, buf, Access::CachedOnly)
    }

    fn read_with(&self, offset: u64, buf: &mut [u8], access: Access) -> Result<bool> {
        self.check_poison()?;
        let tree = self.tree.read();
        let span = self.span(&tree, offset, buf.len() as u64)?;
        if span.len == 0 {
            return Ok(true);
        }
        let _guard = self.locks.read(span.first, span.end);
        let bs = self.geometry.bs();
        if span.offset % bs == 0 && span.len % bs == 0 {
            return self.read_blocks(&tree, span.first, buf, access);
        }
        let mut tmp = vec![0u8; ((span.end - span.first) * bs) as usize];
        if !self.read_blocks(&tree, span.first, &mut tmp, access)? {
            return Ok(false);
        }
        let skip = (span.offset - span.first * bs) as usize;
        buf.copy_from_slice(&tmp[skip..skip + buf.len()]);
        Ok(true)
    }

    /// Which layer holds `block` for the head, and in which state.
    fn locate_head(&self, tree: &Tree, block: BlockIndex) -> Option<(LayerId, BlockState)> {
        let (chunk, slot) = self.geometry.locate(block);
        let owner = tree.index.read().get(&chunk).map_or(0, |o| o[slot]);
        let layer = tree.layers.get(&LayerId(owner))?;
        Some((layer.id(), layer.state(chunk, slot)))
    }

    /// Reads whole blocks from `first` into `out` (a multiple of the block size), one file
    /// read per run of consecutive blocks held by the same layer. The caller holds the locks.
    /// `Ok(false)`: `access` is cached-only and some block is not in memory.
    pub(crate) fn read_blocks(
        &self,
        tree: &Tree,
        first: u64,
        out: &mut [u8],
        access: Access,
    ) -> Result<bool> {
        let bs = self.geometry.block_size as usize;
        let count = out.len() / bs;
        let owners: Vec<Option<(LayerId, BlockState)>> = (0..count)
            .map(|i| self.locate_head(tree, BlockIndex(first + i as u64)))
            .collect();
        let mut i = 0;
        while i < count {
            let Some((layer, BlockState::Data(_))) = owners[i] else {
                out[i * bs..(i + 1) * bs].fill(0);
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < count && matches!(owners[j], Some((l, BlockState::Data(_))) if l == layer) {
                j += 1;
            }
            let crcs: Vec<u32> = owners[i..j]
                .iter()
                .map(|o| match o {
                    Some((_, BlockState::Data(c))) => *c,
                    _ => 0,
                })
                .collect();
            let run = (first + i as u64, &crcs[..]);
            if !self.read_run(tree, layer, run, &mut out[i * bs..j * bs], access)? {
                return Ok(false);
            }
            i = j;
        }
        Ok(true)
    }

    /// Reads consecutive data blocks of one layer from `first` and checks each against
    /// `crcs`. `Ok(false)`: `access` is cached-only and the file read would wait for the disk.
    pub(crate) fn read_run(
        &self,
        tree: &Tree,
        layer: LayerId,
        (first, crcs): (u64, &[u32]),
        out: &mut [u8],
        access: Access,
    ) -> Result<bool> {
        let l = tree
            .layers
            .get(&layer)
            .ok_or_else(|| EngineError::corrupt("layer tree", format!("missing {layer}")))?;
        let bs = self.geometry.block_size as usize;
        // Blocks still waiting to go in place are taken before the file is read: settling
        // writes the file first and only then lets go of the cached copy.
        let cached: Vec<(usize, Bytes)> = {
            let map = self.unapplied.read();
            if map.is_empty() {
                Vec::new()
            } else {
                (0..crcs.len())
                    .filter_map(|i| map.get(&(layer, first + i as u64)).map(|d| (i, d.clone())))
                    .collect()
            }
        };
        if cached.len() < crcs.len() {
            let at = self.geometry.byte_offset(BlockIndex(first));
            let read = match access {
                Access::Any => l.data.read_at(out, at).map(|()| true),
                Access::CachedOnly => l.data.read_at_cached(out, at),
            };
            if !read.map_err(EngineError::io("reading a layer data file"))? {
                return Ok(false);
            }
        }
        for (i, data) in cached {
            if let Some(dst) = out.get_mut(i * bs..(i + 1) * bs) {
                dst.copy_from_slice(&data);
            }
        }
        for (i, (block, expected)) in out.chunks(bs).zip(crcs).enumerate() {
            let actual = crc32fast::hash(block);
            if actual != *expected {
                return Err(EngineError::ChecksumMismatch {
                    block: BlockIndex(first + i as u64),
                    layer,
                    expected: *expected,
                    actual,
                });
            }
        }
        Ok(true)
    }

    /// Writes `data` at `offset`; returns when data and checksums are durable. Partial blocks
    /// are read, patched and rewritten atomically with respect to other writers.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let data = Bytes::copy_from_slice(data);
        self.mutate(offset, data.len() as u64, Some(data), None, &[])
    }

    /// Makes `len` bytes at `offset` read as zeros; whole blocks hold no data afterwards.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.mutate(offset, len, None, None, &[])
    }

    /// Discards `len` bytes at `offset`: they read back as zeros and whole blocks free their
    /// space in the head layer. (Same effect as [`Volume::write_zeroes`]: a trimmed range
    /// must never show stale data.)
    pub fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.mutate(offset, len, None, None, &[])
    }

    /// [`Volume::write`] stamped with a caller-chosen generation (the replica set gives the
    /// same generation to every copy of one write, so replicas can tell which copy is newer).
    pub fn write_generation(&self, offset: u64, data: &[u8], generation: u64) -> Result<()> {
        let data = Bytes::copy_from_slice(data);
        self.mutate(offset, data.len() as u64, Some(data), Some(generation), &[])
    }

    /// [`Volume::write_generation`] taking a shared buffer, which the blocks then reference
    /// without a copy (the replica set hands one buffer to all three replicas).
    pub fn write_shared(&self, offset: u64, data: Bytes, generation: u64) -> Result<()> {
        self.mutate(offset, data.len() as u64, Some(data), Some(generation), &[])
    }

    /// [`Volume::write_shared`] for a sealed volume: `data` covers whole blocks from a block
    /// boundary and `seals` has one seal per block, stored with it.
    pub fn write_sealed(
        &self,
        offset: u64,
        data: Bytes,
        generation: u64,
        seals: &[Seal],
    ) -> Result<()> {
        self.mutate(
            offset,
            data.len() as u64,
            Some(data),
            Some(generation),
            seals,
        )
    }

    /// Whether the volume's blocks carry seals ([`Volume::create_sealed`]).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Commits several writes with one log sync (none for a write-back volume), as concurrent
    /// writers would share it through group commit but without a thread per write: how a
    /// replica's I/O worker drains its queue. Returns one result per write, in order. A write
    /// that fails validation (out of range) fails alone; a failed commit fails every write
    /// of it. Overlapping writes are committed one after the other, in order.
    pub fn write_batch(&self, writes: &[BatchWrite]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = writes.iter().map(|_| None).collect();
        let mut segment: Vec<(usize, Span)> = Vec::new();
        {
            let tree = self.tree.read();
            for (i, w) in writes.iter().enumerate() {
                let span = match self.span(&tree, w.offset, w.byte_len()) {
                    Ok(s) if s.len > 0 => s,
                    other => {
                        results[i] = Some(other.map(|_| ()));
                        continue;
                    }
                };
                let overlaps = segment
                    .iter()
                    .any(|(_, s)| span.first < s.end && s.first < span.end);
                if overlaps {
                    self.commit_segment(&tree, writes, &segment, &mut results);
                    segment.clear();
                }
                segment.push((i, span));
            }
            self.commit_segment(&tree, writes, &segment, &mut results);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::Poisoned)))
            .collect()
    }

    /// Commits the writes of `segment` (non-overlapping, validated against `tree`, which the
    /// caller still holds) as one batch.
    fn commit_segment(
        &self,
        tree: &Tree,
        writes: &[BatchWrite],
        segment: &[(usize, Span)],
        results: &mut [Option<Result<()>>],
    ) {
        if segment.is_empty() {
            return;
        }
        if self.check_poison().is_err() {
            for (i, _) in segment {
                results[*i] = Some(Err(EngineError::Poisoned));
            }
            return;
        }
        let ranges: Vec<(u64, u64)> = segment.iter().map(|(_, s)| (s.first, s.end)).collect();
        let _guard = self.locks.write_many(&ranges);
        let mut updates = Vec::new();
        let mut members = Vec::with_capacity(segment.len());
        for (i, span) in segment {
            let w = &writes[*i];
            let gen = w
                .generation
                .unwrap_or_else(|| self.generation.fetch_add(1, Ordering::SeqCst) + 1);
            match self.updates_for(tree, span, w.data.as_ref(), gen, &w.seals) {
                Ok(u) => {
                    updates.extend(u);
                    members.push(*i);
                }
                Err(e) => results[*i] = Some(Err(e)),
            }
        }
        match self.commit(tree, updates, false) {
            Ok(()) => members.iter().for_each(|&i| results[i] = Some(Ok(()))),
            Err(e) => {
                // The volume is poisoned now; the first write reports why.
                let mut first = Some(e);
                for &i in &members {
                    results[i] = Some(Err(first.take().unwrap_or(EngineError::Poisoned)));
                }
            }
        }
    }

    /// [`Volume::write_zeroes`] stamped with a caller-chosen generation.
    pub fn write_zeroes_generation(&self, offset: u64, len: u64, generation: u64) -> Result<()> {
        self.mutate(offset, len, None, Some(generation), &[])
    }

    /// Writes whole blocks from `first`, each with its own generation, durably and in one
    /// commit: how the replica set copies a region from one replica to another.
    pub fn write_raw(&self, first: BlockIndex, blocks: &[RawBlock]) -> Result<()> {
        self.check_poison()?;
        let tree = self.tree.read();
        let bs = self.geometry.bs();
        let len = blocks.len() as u64 * bs;
        let offset = first.0.saturating_mul(bs);
        let span = self.span(&tree, offset, len)?;
        if span.len == 0 {
            return Ok(());
        }
        let mut updates = Vec::with_capacity(blocks.len());
        for (i, raw) in blocks.iter().enumerate() {
            let block = BlockIndex(first.0 + i as u64);
            match &raw.data {
                Some(d) if d.len() as u64 != bs => {
                    return Err(EngineError::OutOfRange {
                        offset: block.0 * bs,
                        len: d.len() as u64,
                        size: tree.size,
                    })
                }
                Some(d) if d.iter().any(|&b| b != 0) => {
                    let seal = if self.sealed { raw.seal } else { NO_SEAL };
                    updates.push(Update::Data(block, d.clone(), (raw.generation, seal)))
                }
                _ => updates.push(Update::Zero(block, 1, raw.generation)),
            }
        }
        self.generation.fetch_max(
            blocks.iter().map(|b| b.generation).max().unwrap_or(0),
            Ordering::SeqCst,
        );
        let _guard = self.locks.write(span.first, span.end);
        self.commit(&tree, updates, true)
    }

    /// The highest write generation stored in the volume. Writes without an explicit
    /// generation take the next one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Makes every write that returned before this call durable (write-back volumes: one
    /// log sync shared with concurrent writers and flushes). Fails on a poisoned volume.
    pub fn flush(&self) -> Result<()> {
        self.check_poison()?;
        if !self.options.write_back {
            return Ok(());
        }
        let tree = self.tree.read();
        self.commit(&tree, Vec::new(), true)
    }

    /// Write-back: syncs and applies what waits in memory, under the log lock (structural
    /// operations and whole-volume reads of the data files start here).
    pub(crate) fn settle_now(&self, tree: &Tree) -> Result<()> {
        let mut wal = self.wal.lock();
        self.settle(tree, &mut wal).inspect_err(|_| self.poison())
    }

    fn mutate(
        &self,
        offset: u64,
        len: u64,
        data: Option<Bytes>,
        gen: Option<u64>,
        seals: &[Seal],
    ) -> Result<()> {
        self.check_poison()?;
        let tree = self.tree.read();
        let span = self.span(&tree, offset, len)?;
        if span.len == 0 {
            return Ok(());
        }
        let gen = match gen {
            Some(g) => g,
            None => self.generation.fetch_add(1, Ordering::SeqCst) + 1,
        };
        let _guard = self.locks.write(span.first, span.end);
        let updates = self.updates_for(&tree, &span, data.as_ref(), gen, seals)?;
        self.commit(&tree, updates, false)
    }

    /// The block updates that write `data` (or zeros) over `span`.
    fn updates_for(
        &self,
        tree: &Tree,
        span: &Span,
        whole: Option<&Bytes>,
        gen: u64,
        seals: &[Seal],
    ) -> Result<Vec<Update>> {
        let bs = self.geometry.bs();
        let g = self.geometry;
        if self.sealed {
            // The layer that seals merges partial blocks itself (it alone can open them).
            if span.offset % bs != 0 || span.len % bs != 0 {
                return Err(EngineError::Seals(
                    "a sealed volume takes whole blocks only".into(),
                ));
            }
            if whole.is_some() && seals.len() as u64 != span.end - span.first {
                return Err(EngineError::Seals(
                    "a write to a sealed volume needs one seal per block".into(),
                ));
            }
        } else if !seals.is_empty() {
            return Err(EngineError::Seals("this volume keeps no seals".into()));
        }
        let direct = whole.is_some() && span.len >= self.options.direct_write_min;
        let head = tree.layers.get(&tree.head);
        let mut updates: Vec<Update> = Vec::new();
        for b in span.first..span.end {
            let block_start = b * bs;
            let from = span.offset.max(block_start);
            let to = (span.offset + span.len).min(block_start + bs);
            let content: Option<Bytes> = if from == block_start && to == block_start + bs {
                whole.as_ref().map(|w| {
                    let at = (block_start - span.offset) as usize;
                    w.slice(at..at + bs as usize)
                })
            } else {
                let mut old = vec![0u8; bs as usize];
                self.read_blocks(tree, b, &mut old, Access::Any)?;
                let dst = &mut old[(from - block_start) as usize..(to - block_start) as usize];
                match &whole {
                    Some(w) => dst.copy_from_slice(
                        &w[(from - span.offset) as usize..(to - span.offset) as usize],
                    ),
                    None => dst.fill(0),
                }
                Some(Bytes::from(old))
            };
            let seal = seals
                .get((b - span.first) as usize)
                .copied()
                .unwrap_or(NO_SEAL);
            let stamp = (gen, seal);
            match content {
                Some(c) if c.iter().any(|&x| x != 0) => {
                    // Only a slot the head has never held: a record of the current log
                    // epoch that names the slot (data or zeros) would be replayed over the
                    // placed data after a crash. An absent slot has no such record.
                    let (chunk, slot) = g.locate(BlockIndex(b));
                    let fresh = head.is_some_and(|h| h.state(chunk, slot) == BlockState::Absent);
                    if direct && fresh {
                        updates.push(Update::Placed(BlockIndex(b), c, stamp))
                    } else {
                        updates.push(Update::Data(BlockIndex(b), c, stamp))
                    }
                }
                _ => push_zero(&mut updates, BlockIndex(b), gen),
            }
        }
        Ok(updates)
    }

    /// The allocation map of `offset..offset+len`: runs that hold data and runs that read as
    /// zeros without holding data (for NBD block status and sparse copies).
    pub fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        self.check_poison()?;
        let tree = self.tree.read();
        let span = self.span(&tree, offset, len)?;
        let g = self.geometry;
        let bs = g.bs();
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |start: u64, end: u64, data: bool| match out.last_mut() {
            Some(e) if e.data == data => e.len += end - start,
            _ => out.push(Extent {
                offset: start,
                len: end - start,
                data,
            }),
        };
        let clip = |from: u64, to: u64| (from.max(span.offset), to.min(span.offset + span.len));
        let mut b = span.first;
        while b < span.end {
            let (chunk, _) = g.locate(BlockIndex(b));
            let chunk_end = (chunk.0 + 1) * u64::from(g.chunk_blocks);
            if !tree.index.read().contains_key(&chunk) {
                // Nothing on the head's chain holds any block of this chunk.
                let (s, e) = clip(b * bs, chunk_end.min(span.end) * bs);
                push(s, e, false);
                b = chunk_end;
                continue;
            }
            let data = matches!(
                self.locate_head(&tree, BlockIndex(b)),
                Some((_, BlockState::Data(_)))
            );
            let (s, e) = clip(b * bs, (b + 1) * bs);
            push(s, e, data);
            b += 1;
        }
        Ok(out)
    }
}

/// Adds one zero block, extending the previous zero run when adjacent.
fn push_zero(updates: &mut Vec<Update>, block: BlockIndex, gen: u64) {
    if let Some(Update::Zero(first, count, _)) = updates.last_mut() {
        if first.0 + *count == block.0 && *count < MAX_ZERO_RUN {
            *count += 1;
            return;
        }
    }
    updates.push(Update::Zero(block, 1, gen));
}
