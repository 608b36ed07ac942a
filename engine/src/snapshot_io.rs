//! Reading a snapshot's content and cloning it into a new, independent volume.

use std::sync::Arc;

use crate::addressing::{BlockIndex, ChunkIndex, LayerId, SnapshotId};
use crate::chunk_meta::BlockState;
use crate::error::{EngineError, Result};
use crate::format::NO_SEAL;
use crate::layer::{Layer, Tree};
use crate::storage::Storage;
use crate::volume::{Access, RawBlock, Volume, VolumeOptions};

use bytes::Bytes;

/// Bytes copied per write while cloning: large enough to amortise the log sync, small enough
/// to keep memory flat.
const CLONE_BATCH: u64 = 4 << 20;

impl Volume {
    /// Fills `buf` from byte `offset` of snapshot `id` (its size is the volume size when it
    /// was taken). Checked against the CRCs like any read.
    pub fn read_snapshot_at(&self, id: &SnapshotId, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_poison()?;
        let tree = self.tree.read();
        let (size, chain) = snapshot_chain(&tree, id)?;
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(EngineError::OutOfRange { offset, len, size });
        }
        let bs = self.geometry.bs();
        let first = offset / bs;
        let end = (offset + len).div_ceil(bs);
        let mut tmp = vec![0u8; ((end - first) * bs) as usize];
        let mut b = first;
        while b < end {
            let (chunk, _) = self.geometry.locate(BlockIndex(b));
            let chunk_end = ((chunk.0 + 1) * u64::from(self.geometry.chunk_blocks)).min(end);
            let at = ((b - first) * bs) as usize;
            let to = ((chunk_end - first) * bs) as usize;
            self.read_chain_blocks(&tree, &chain, chunk, b, &mut tmp[at..to])?;
            b = chunk_end;
        }
        let skip = (offset - first * bs) as usize;
        buf.copy_from_slice(&tmp[skip..skip + buf.len()]);
        Ok(())
    }

    /// Reads blocks from `first` (all inside `chunk`) as seen from the top of `chain`.
    fn read_chain_blocks(
        &self,
        tree: &Tree,
        chain: &[&Layer],
        chunk: ChunkIndex,
        first: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let g = self.geometry;
        let bs = g.block_size as usize;
        let Some(owners) = Tree::resolve_chunk(chain, chunk, g.chunk_blocks) else {
            out.fill(0);
            return Ok(());
        };
        let end = first + (out.len() / bs) as u64;
        let _guard = self.locks.read(first, end);
        for (i, b) in (first..end).enumerate() {
            let (_, slot) = g.locate(BlockIndex(b));
            let dst = &mut out[i * bs..(i + 1) * bs];
            let owner = LayerId(owners[slot]);
            match tree.layers.get(&owner).map(|l| l.state(chunk, slot)) {
                Some(BlockState::Data(crc)) => {
                    self.read_run(tree, owner, (b, &[crc]), dst, Access::Any)?;
                }
                _ => dst.fill(0),
            }
        }
        Ok(())
    }

    /// Creates a new, independent volume in `target` holding snapshot `id`'s content (a full
    /// copy of its data blocks; holes stay holes). `progress(done, total)` is called in bytes.
    /// Writes to this volume continue meanwhile; snapshot changes wait until the copy ends.
    pub fn clone_snapshot(
        &self,
        id: &SnapshotId,
        target: Arc<dyn Storage>,
        options: VolumeOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Volume> {
        self.check_poison()?;
        let tree = self.tree.read();
        let (size, chain) = snapshot_chain(&tree, id)?;
        let g = self.geometry;
        let clone = if self.sealed {
            Volume::create_sealed(target, size, g, options)?
        } else {
            Volume::create(target, size, g, options)?
        };
        let mut chunks: Vec<ChunkIndex> = chain
            .iter()
            .flat_map(|l| l.chunks.read().keys().copied().collect::<Vec<_>>())
            .collect();
        chunks.sort_unstable();
        chunks.dedup();
        let chunk_bytes = u64::from(g.chunk_blocks) * g.bs();
        let mut buf = Vec::new();
        for chunk in chunks {
            let start = chunk.0 * chunk_bytes;
            if start >= size {
                continue;
            }
            let end = (start + chunk_bytes).min(size);
            let mut at = start;
            while at < end {
                let n = (end - at).min(CLONE_BATCH);
                buf.resize(n as usize, 0);
                let first = at / g.bs();
                if self.sealed {
                    // Seals go with their blocks: the clone reads as the snapshot did.
                    let seals = self.read_sealed_in(&tree, &chain, first, &mut buf)?;
                    if seals.iter().any(Option::is_some) {
                        let raw: Vec<RawBlock> = buf
                            .chunks(g.block_size as usize)
                            .zip(seals)
                            .map(|(data, s)| RawBlock {
                                data: s.map(|_| Bytes::copy_from_slice(data)),
                                generation: s.map_or(0, |s| s.generation),
                                seal: s.map_or(NO_SEAL, |s| s.seal),
                            })
                            .collect();
                        clone.write_raw(BlockIndex(first), &raw)?;
                    }
                } else {
                    self.read_chain_blocks(&tree, &chain, chunk, first, &mut buf)?;
                    if buf.iter().any(|&b| b != 0) {
                        clone.write(at, &buf)?;
                    }
                }
                at += n;
            }
            progress(end, size);
        }
        progress(size, size);
        Ok(clone)
    }
}

/// The size of snapshot `id` and its chain of layers, nearest first.
fn snapshot_chain<'t>(tree: &'t Tree, id: &SnapshotId) -> Result<(u64, Vec<&'t Layer>)> {
    let layer = tree
        .snapshot_layer(id)
        .ok_or_else(|| EngineError::SnapshotNotFound(id.clone()))?;
    Ok((layer.record.size, tree.chain(layer.id())))
}
