//! The layer tree of one volume in memory: every layer's files and chunk metadata, and the
//! head's block→layer index that makes a read O(1) in the number of snapshots.
//!
//! A read takes each block from the nearest layer on the head's ancestor chain that holds it;
//! `HeadIndex` caches that answer per block and is updated on every write to the head.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::addressing::{ChunkIndex, Geometry, LayerId, SnapshotId};
use crate::chunk_meta::{BlockState, ChunkMeta};
use crate::format::{Seal, NO_SEAL};
use crate::manifest::{LayerRecord, Role};
use crate::storage::StorageFile;

/// One layer of one volume.
pub(crate) struct Layer {
    pub record: LayerRecord,
    pub data: Arc<dyn StorageFile>,
    pub meta: Arc<dyn StorageFile>,
    pub chunks: RwLock<HashMap<ChunkIndex, ChunkMeta>>,
    /// Blocks in state `Data`, kept in step with `chunks` for space reporting.
    pub data_blocks: AtomicU64,
    /// The volume's blocks carry seals (kept in each chunk's metadata).
    pub sealed: bool,
}

impl Layer {
    pub(crate) fn new(
        record: LayerRecord,
        data: Arc<dyn StorageFile>,
        meta: Arc<dyn StorageFile>,
        chunks: HashMap<ChunkIndex, ChunkMeta>,
        sealed: bool,
    ) -> Self {
        let blocks = chunks.values().map(ChunkMeta::data_blocks).sum();
        Self {
            record,
            data,
            meta,
            chunks: RwLock::new(chunks),
            data_blocks: AtomicU64::new(blocks),
            sealed,
        }
    }

    pub(crate) fn id(&self) -> LayerId {
        self.record.id
    }

    /// State of one block in this layer.
    pub(crate) fn state(&self, chunk: ChunkIndex, slot: usize) -> BlockState {
        self.chunks
            .read()
            .get(&chunk)
            .map_or(BlockState::Absent, |m| m.states[slot])
    }

    /// One block's generation and seal ([`NO_SEAL`](crate::format::NO_SEAL) without seals).
    pub(crate) fn stamp(&self, chunk: ChunkIndex, slot: usize) -> (u64, Seal) {
        self.chunks.read().get(&chunk).map_or((0, NO_SEAL), |m| {
            (
                m.gens.get(slot).copied().unwrap_or(0),
                m.seals.get(slot).copied().unwrap_or(NO_SEAL),
            )
        })
    }

    /// Sets one block's state, generation and seal (ignored without seals); returns the
    /// previous state.
    pub(crate) fn set_state(
        &self,
        chunk: ChunkIndex,
        slot: usize,
        state: BlockState,
        (generation, seal): (u64, &Seal),
        chunk_blocks: u32,
    ) -> BlockState {
        let mut chunks = self.chunks.write();
        let meta = chunks
            .entry(chunk)
            .or_insert_with(|| ChunkMeta::new(chunk_blocks, self.sealed));
        let old = std::mem::replace(&mut meta.states[slot], state);
        meta.gens[slot] = generation;
        if let Some(s) = meta.seals.get_mut(slot) {
            *s = *seal;
        }
        let was = matches!(old, BlockState::Data(_));
        let is = matches!(state, BlockState::Data(_));
        if is && !was {
            self.data_blocks.fetch_add(1, Ordering::Relaxed);
        } else if was && !is {
            self.data_blocks.fetch_sub(1, Ordering::Relaxed);
        }
        old
    }

    /// The snapshot id, if the layer is a visible snapshot.
    pub(crate) fn snapshot_id(&self) -> Option<&SnapshotId> {
        match &self.record.role {
            Role::Snapshot(id) => Some(id),
            _ => None,
        }
    }
}

/// Per chunk, per block: the id of the nearest layer on the head's chain whose state for the
/// block is not `Absent` (`0` when none: the block reads as zeros).
pub(crate) type HeadIndex = HashMap<ChunkIndex, Box<[u64]>>;

/// The layer tree, size and head of one volume.
pub(crate) struct Tree {
    pub size: u64,
    pub head: LayerId,
    pub next_layer_id: u64,
    pub layers: BTreeMap<LayerId, Layer>,
    pub index: RwLock<HeadIndex>,
}

impl Tree {
    /// The chain from `layer` up to the root, nearest first.
    pub(crate) fn chain(&self, layer: LayerId) -> Vec<&Layer> {
        let mut out = Vec::new();
        let mut next = Some(layer);
        while let Some(id) = next {
            let Some(l) = self.layers.get(&id) else { break };
            out.push(l);
            next = l.record.parent;
        }
        out
    }

    /// Owners of every block of `chunk`, resolved along `chain` (nearest first).
    pub(crate) fn resolve_chunk(
        chain: &[&Layer],
        chunk: ChunkIndex,
        chunk_blocks: u32,
    ) -> Option<Box<[u64]>> {
        let mut owners: Option<Box<[u64]>> = None;
        let mut unresolved = chunk_blocks as usize;
        for layer in chain {
            let chunks = layer.chunks.read();
            let Some(meta) = chunks.get(&chunk) else {
                continue;
            };
            let owners = owners.get_or_insert_with(|| vec![0; chunk_blocks as usize].into());
            for (slot, state) in meta.states.iter().enumerate() {
                if owners[slot] == 0 && *state != BlockState::Absent {
                    owners[slot] = layer.id().0;
                    unresolved -= 1;
                }
            }
            if unresolved == 0 {
                break;
            }
        }
        owners
    }

    /// Rebuilds the head index from the head's chain.
    pub(crate) fn rebuild_index(&self, geometry: Geometry) {
        let chain = self.chain(self.head);
        let mut chunks: Vec<ChunkIndex> = Vec::new();
        for layer in &chain {
            chunks.extend(layer.chunks.read().keys().copied());
        }
        chunks.sort_unstable();
        chunks.dedup();
        let mut index = HeadIndex::with_capacity(chunks.len());
        for chunk in chunks {
            if let Some(owners) = Self::resolve_chunk(&chain, chunk, geometry.chunk_blocks) {
                index.insert(chunk, owners);
            }
        }
        *self.index.write() = index;
    }

    /// Children of `layer`.
    pub(crate) fn children(&self, layer: LayerId) -> Vec<LayerId> {
        self.layers
            .values()
            .filter(|l| l.record.parent == Some(layer))
            .map(Layer::id)
            .collect()
    }

    /// The layer holding the visible snapshot `id`.
    pub(crate) fn snapshot_layer(&self, id: &SnapshotId) -> Option<&Layer> {
        self.layers.values().find(|l| l.snapshot_id() == Some(id))
    }
}
