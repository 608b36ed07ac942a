//! Views (the head or one snapshot) and what the replica set needs to compare and repair
//! copies: per-chunk block summaries from metadata alone (content kind, CRC, generation),
//! reads of any view, and a checked in-place repair of a damaged block.

use crate::addressing::{BlockIndex, ChunkIndex, LayerId, SnapshotId};
use crate::chunk_meta::BlockState;
use crate::error::{EngineError, Result};
use crate::layer::{Layer, Tree};
use crate::volume::Volume;

/// Which content of a volume.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum View {
    /// The live head.
    Head,
    /// A visible snapshot.
    Snapshot(SnapshotId),
}

/// What one block of a view reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BlockContent {
    /// Never written anywhere on the view's chain: zeros.
    Hole,
    /// Written as zeros or trimmed: zeros.
    Zero,
    /// Data with this CRC32.
    Data(u32),
}

impl BlockContent {
    /// Whether the block reads as zeros.
    pub fn is_zero(self) -> bool {
        !matches!(self, BlockContent::Data(_))
    }
}

/// One block of a view, from metadata alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockInfo {
    /// What it reads as.
    pub content: BlockContent,
    /// Generation of the write that set it (0 for a hole).
    pub generation: u64,
}

impl BlockInfo {
    /// Whether two copies read the same: both zeros, or the same data CRC and generation.
    pub fn same_content(&self, other: &BlockInfo) -> bool {
        match (self.content, other.content) {
            (BlockContent::Data(a), BlockContent::Data(b)) => {
                a == b && self.generation == other.generation
            }
            (a, b) => a.is_zero() && b.is_zero(),
        }
    }
}

impl Volume {
    /// The chain of layers of `view`, nearest first, and the view's size.
    pub(crate) fn view_chain<'t>(
        &self,
        tree: &'t Tree,
        view: &View,
    ) -> Result<(u64, Vec<&'t Layer>)> {
        match view {
            View::Head => Ok((tree.size, tree.chain(tree.head))),
            View::Snapshot(id) => {
                let layer = tree
                    .snapshot_layer(id)
                    .ok_or_else(|| EngineError::SnapshotNotFound(id.clone()))?;
                Ok((layer.record.size, tree.chain(layer.id())))
            }
        }
    }

    /// Size in bytes of `view`.
    pub fn view_size(&self, view: &View) -> Result<u64> {
        let tree = self.tree.read();
        Ok(self.view_chain(&tree, view)?.0)
    }

    /// Chunks in which some layer of `view`'s chain holds a block (all others read as holes).
    pub fn view_chunks(&self, view: &View) -> Result<Vec<ChunkIndex>> {
        let tree = self.tree.read();
        let (size, chain) = self.view_chain(&tree, view)?;
        let chunk_bytes = u64::from(self.geometry.chunk_blocks) * self.geometry.bs();
        let mut chunks: Vec<ChunkIndex> = chain
            .iter()
            .flat_map(|l| l.chunks.read().keys().copied().collect::<Vec<_>>())
            .filter(|c| c.0 * chunk_bytes < size)
            .collect();
        chunks.sort_unstable();
        chunks.dedup();
        Ok(chunks)
    }

    /// The summary of every block of `chunk` in `view` (`chunk_blocks` entries; blocks past
    /// the view's end are holes).
    pub fn chunk_summary(&self, view: &View, chunk: ChunkIndex) -> Result<Vec<BlockInfo>> {
        self.check_poison()?;
        let tree = self.tree.read();
        let g = self.geometry;
        let (_, chain) = self.view_chain(&tree, view)?;
        let first = g.block_at(chunk, 0).0;
        let _guard = self.locks.read(first, first + u64::from(g.chunk_blocks));
        let hole = BlockInfo {
            content: BlockContent::Hole,
            generation: 0,
        };
        let mut out = vec![hole; g.chunk_blocks as usize];
        let Some(owners) = Tree::resolve_chunk(&chain, chunk, g.chunk_blocks) else {
            return Ok(out);
        };
        for (slot, owner) in owners.iter().enumerate() {
            let Some(layer) = tree.layers.get(&LayerId(*owner)) else {
                continue;
            };
            let chunks = layer.chunks.read();
            let Some(meta) = chunks.get(&chunk) else {
                continue;
            };
            let content = match meta.states[slot] {
                BlockState::Absent => BlockContent::Hole,
                BlockState::Zero => BlockContent::Zero,
                BlockState::Data(crc) => BlockContent::Data(crc),
            };
            out[slot] = BlockInfo {
                content,
                generation: meta.gens[slot],
            };
        }
        Ok(out)
    }

    /// Fills `buf` from byte `offset` of `view`.
    pub fn read_view_at(&self, view: &View, offset: u64, buf: &mut [u8]) -> Result<()> {
        match view {
            View::Head => self.read_at(offset, buf),
            View::Snapshot(id) => self.read_snapshot_at(id, offset, buf),
        }
    }

    /// Rewrites block `block` of `view` in place with `data`, only if `data` matches the
    /// CRC the owning layer recorded for it (so a repair can never change content, only
    /// restore it). Returns whether it wrote. Used to heal a copy that failed its checksum.
    pub fn repair(&self, view: &View, block: BlockIndex, data: &[u8]) -> Result<bool> {
        self.check_poison()?;
        let tree = self.tree.read();
        let g = self.geometry;
        if data.len() != g.block_size as usize {
            return Ok(false);
        }
        let (size, chain) = self.view_chain(&tree, view)?;
        if block.0 >= size / g.bs() {
            return Ok(false);
        }
        let _guard = self.locks.write(block.0, block.0 + 1);
        let (chunk, slot) = g.locate(block);
        let Some(owners) = Tree::resolve_chunk(&chain, chunk, g.chunk_blocks) else {
            return Ok(false);
        };
        let Some(layer) = tree.layers.get(&LayerId(owners[slot])) else {
            return Ok(false);
        };
        match layer.state(chunk, slot) {
            BlockState::Data(crc) if crc == crc32fast::hash(data) => {}
            _ => return Ok(false),
        }
        let mut current = vec![0u8; data.len()];
        layer
            .data
            .read_at(&mut current, g.byte_offset(block))
            .map_err(EngineError::io("reading a block to repair"))?;
        if current == data {
            return Ok(false); // the stored copy is good: nothing to repair
        }
        layer
            .data
            .write_at(data, g.byte_offset(block))
            .and_then(|()| layer.data.sync_data())
            .map_err(|e| {
                self.poison();
                EngineError::io("repairing a block")(e)
            })?;
        Ok(true)
    }

    /// The views that read block `block` from layer `layer`.
    pub(crate) fn views_reading(
        &self,
        tree: &Tree,
        layer: LayerId,
        block: BlockIndex,
    ) -> Vec<View> {
        let g = self.geometry;
        let (chunk, slot) = g.locate(block);
        let mut views = Vec::new();
        let mut candidates = vec![View::Head];
        candidates.extend(
            tree.layers
                .values()
                .filter_map(|l| l.snapshot_id().cloned().map(View::Snapshot)),
        );
        for view in candidates {
            let Ok((_, chain)) = self.view_chain(tree, &view) else {
                continue;
            };
            let owner = Tree::resolve_chunk(&chain, chunk, g.chunk_blocks).map(|o| o[slot]);
            if owner == Some(layer.0) {
                views.push(view);
            }
        }
        views
    }
}
