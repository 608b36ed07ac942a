//! Structural operations on the layer tree: snapshot, delete a snapshot, roll back, expand.
//! Each takes the tree's write lock, so it is ordered with respect to every write: a write
//! acknowledged before it is in the snapshot, a write after it is not. Each publishes a new
//! manifest before it changes anything in memory that a crash could contradict.

use std::collections::HashMap;

use crate::addressing::{BlockIndex, ChunkIndex, LayerId, SnapshotId};
use crate::chunk_meta::BlockState;
use crate::commit::persist_chunks;
use crate::error::{EngineError, Result};
use crate::format::{data_file, meta_file, MAX_LAYERS, NO_SEAL};
use crate::layer::{Layer, Tree};
use crate::manifest::{LayerRecord, Role};
use crate::recovery::{check_capacity, check_size, now_secs};
use crate::volume::Volume;

type FileHandle = std::sync::Arc<dyn crate::storage::StorageFile>;

/// A snapshot as listed by [`Volume::list_snapshots`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// Volume size when the snapshot was taken, in bytes.
    pub size: u64,
    /// When it was taken, in seconds since the Unix epoch.
    pub created: u64,
    /// Bytes of data held only by this snapshot's layer (blocks overwritten since).
    pub used_bytes: u64,
}

/// Space used by a volume's data, in bytes (metadata excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceUsage {
    /// All layers together.
    pub total_bytes: u64,
    /// The live head.
    pub head_bytes: u64,
    /// Deleted snapshots still read by later layers.
    pub hidden_bytes: u64,
    /// Each visible snapshot.
    pub snapshots: Vec<(SnapshotId, u64)>,
}

impl Volume {
    /// Freezes the current content as snapshot `id`, in O(metadata): no data is copied and
    /// the head continues on a new, empty layer.
    pub fn snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.snapshot_sized(id, None)
    }

    /// [`Volume::snapshot`] recording a size smaller than the volume's (the snapshot then
    /// reads only that far): how a replica being rebuilt recreates a snapshot taken before
    /// the volume grew. The caller makes sure the head holds nothing beyond `size`.
    pub fn snapshot_sized(&self, id: &SnapshotId, size: Option<u64>) -> Result<()> {
        self.check_poison()?;
        let mut tree = self.tree.write();
        let size = size.unwrap_or(tree.size);
        if size > tree.size {
            return Err(EngineError::InvalidSize {
                size,
                reason: "larger than the volume",
            });
        }
        if tree.snapshot_layer(id).is_some() {
            return Err(EngineError::SnapshotExists(id.clone()));
        }
        if tree.layers.len() >= MAX_LAYERS {
            return Err(EngineError::TooManyLayers { limit: MAX_LAYERS });
        }
        // Everything written before the snapshot goes in place (and is durable) first, so a
        // frozen layer never has data waiting in memory.
        self.settle_now(&tree)?;
        let old_head = tree.head;
        // Creating the new head touches the tree only once its files exist.
        self.new_head(&mut tree, old_head)?;
        if let Some(l) = tree.layers.get_mut(&old_head) {
            l.record.role = Role::Snapshot(id.clone());
            l.record.size = size;
            l.record.created = now_secs();
        }
        // The head index stays valid: its entries name layers, and the old head's blocks
        // still live in the (now frozen) old head layer.
        let published = self.publish(&tree);
        if let Err(EngineError::NoSpace { .. }) = &published {
            // The manifest on disk still describes the volume without the snapshot: so does
            // the tree again, and the volume goes on.
            let new_head = tree.head;
            tree.layers.remove(&new_head);
            tree.head = old_head;
            let size = tree.size;
            if let Some(l) = tree.layers.get_mut(&old_head) {
                l.record.role = Role::Head;
                l.record.size = size;
            }
            self.delete_layer_files(&[new_head]);
        }
        published
    }

    /// Deletes snapshot `id`, online. Its blocks that no later layer reads are freed; if later
    /// layers still read some, the layer stays as a hidden layer holding only those.
    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.check_poison()?;
        let mut tree = self.tree.write();
        let layer = tree
            .snapshot_layer(id)
            .map(Layer::id)
            .ok_or_else(|| EngineError::SnapshotNotFound(id.clone()))?;
        // Checkpoint first so the log holds no record that would re-fill freed blocks.
        self.with_wal(&tree, |v, t, w| v.checkpoint(t, w))?;
        if let Some(l) = tree.layers.get_mut(&layer) {
            l.record.role = Role::Hidden;
        }
        let mut removed = Vec::new();
        let survivor = remove_childless(&mut tree, layer, &mut removed);
        // Publish first: blocks of a layer may only be dropped once no manifest on disk
        // still shows that layer as a visible snapshot.
        self.publish(&tree).inspect_err(|_| self.poison())?;
        self.delete_layer_files(&removed);
        if let Some(h) = survivor {
            self.prune_blocks(&tree, h)?;
        }
        Ok(())
    }

    /// Makes the volume's content exactly snapshot `id`'s. The snapshot and every other
    /// snapshot survive; the current head's unsnapshotted changes are discarded. The volume
    /// keeps its current size: bytes beyond the snapshot's size read as zeros.
    pub fn rollback(&self, id: &SnapshotId) -> Result<()> {
        self.check_poison()?;
        let mut tree = self.tree.write();
        let target = tree
            .snapshot_layer(id)
            .map(Layer::id)
            .ok_or_else(|| EngineError::SnapshotNotFound(id.clone()))?;
        self.settle_now(&tree)?;
        // The new head replaces the old one, so the layer count does not grow.
        let old_head = tree.head;
        self.new_head(&mut tree, target)?;
        let mut removed = vec![old_head];
        let parent = tree.layers.remove(&old_head).and_then(|l| l.record.parent);
        let survivor = parent.and_then(|p| remove_childless(&mut tree, p, &mut removed));
        tree.rebuild_index(self.geometry);
        self.publish(&tree).inspect_err(|_| self.poison())?;
        self.forget_dirty(&removed);
        self.delete_layer_files(&removed);
        if let Some(h) = survivor {
            self.prune_blocks(&tree, h)?;
        }
        Ok(())
    }

    /// Grows the volume to `new_size` bytes, online and in O(metadata); the new space reads
    /// as zeros. Shrinking is refused.
    pub fn expand(&self, new_size: u64) -> Result<()> {
        self.check_poison()?;
        let mut tree = self.tree.write();
        if new_size < tree.size {
            return Err(EngineError::Shrink {
                current: tree.size,
                requested: new_size,
            });
        }
        check_size(new_size, self.geometry)?;
        if new_size == tree.size {
            return Ok(());
        }
        check_capacity(self.storage.as_ref(), new_size)?;
        self.settle_now(&tree)?;
        let head = tree.head;
        let old_size = tree.size;
        tree.size = new_size;
        if let Some(l) = tree.layers.get_mut(&head) {
            l.record.size = new_size;
        }
        let published = self.publish(&tree);
        if let Err(EngineError::NoSpace { .. }) = &published {
            // Not published: the volume keeps its size.
            tree.size = old_size;
            if let Some(l) = tree.layers.get_mut(&head) {
                l.record.size = old_size;
            }
        }
        published
    }

    /// The visible snapshots, oldest first.
    pub fn list_snapshots(&self) -> Vec<SnapshotInfo> {
        let tree = self.tree.read();
        let bs = self.geometry.bs();
        tree.layers
            .values()
            .filter_map(|l| {
                l.snapshot_id().map(|id| SnapshotInfo {
                    id: id.clone(),
                    size: l.record.size,
                    created: l.record.created,
                    used_bytes: l.data_blocks.load(std::sync::atomic::Ordering::Relaxed) * bs,
                })
            })
            .collect()
    }

    /// Data bytes held by the volume, per layer kind and per snapshot.
    pub fn space_used(&self) -> SpaceUsage {
        let tree = self.tree.read();
        let bs = self.geometry.bs();
        let mut usage = SpaceUsage {
            total_bytes: 0,
            head_bytes: 0,
            hidden_bytes: 0,
            snapshots: Vec::new(),
        };
        for l in tree.layers.values() {
            let bytes = l.data_blocks.load(std::sync::atomic::Ordering::Relaxed) * bs;
            usage.total_bytes += bytes;
            match &l.record.role {
                Role::Head => usage.head_bytes += bytes,
                Role::Hidden => usage.hidden_bytes += bytes,
                Role::Snapshot(id) => usage.snapshots.push((id.clone(), bytes)),
            }
        }
        usage
    }

    /// Publishes the tree in a new manifest (same log position); poisons on failure because
    /// the on-disk state is then unknown — except for lack of space, which leaves the old
    /// manifest in place: the caller puts the tree back as it was (or poisons).
    fn publish(&self, tree: &Tree) -> Result<()> {
        let wal = self.wal.lock();
        let manifest = self.manifest_of(tree, wal.epoch, wal.checkpoint_lsn);
        drop(wal);
        manifest.store(self.storage.as_ref()).inspect_err(|e| {
            if !matches!(e, EngineError::NoSpace { .. }) {
                self.poison()
            }
        })
    }

    pub(crate) fn with_wal(
        &self,
        tree: &Tree,
        f: impl FnOnce(&Self, &Tree, &mut crate::commit::WalState) -> Result<()>,
    ) -> Result<()> {
        let mut wal = self.wal.lock();
        f(self, tree, &mut wal).inspect_err(|_| self.poison())
    }

    /// Adds an empty head layer on top of `parent` (files durable first) and makes it the
    /// head; the caller publishes the manifest.
    fn new_head(&self, tree: &mut Tree, parent: LayerId) -> Result<()> {
        let id = LayerId(tree.next_layer_id);
        let (data, meta) = self.create_layer_files(id)?;
        let record = LayerRecord {
            id,
            parent: Some(parent),
            role: Role::Head,
            size: tree.size,
            created: now_secs(),
        };
        tree.layers.insert(
            id,
            Layer::new(record, data, meta, HashMap::new(), self.sealed),
        );
        tree.head = id;
        tree.next_layer_id += 1;
        Ok(())
    }

    /// Creates a layer's two files and makes their names durable.
    fn create_layer_files(&self, id: LayerId) -> Result<(FileHandle, FileHandle)> {
        let create = |name: String| {
            self.storage
                .create_file(&name)
                .map_err(EngineError::io(format!("creating {name}")))
        };
        let data = create(data_file(id.0))?;
        let meta = create(meta_file(id.0))?;
        self.storage
            .sync_dir()
            .map_err(EngineError::io("syncing the volume directory"))?;
        Ok((data, meta))
    }

    /// Frees the blocks of hidden layer `layer` that every child overrides (no layer can read
    /// them any more): the chunk records saying they are absent are made durable first, then
    /// the space is punched. Safe to repeat; recovery runs it for every hidden layer.
    pub(crate) fn prune_blocks(&self, tree: &Tree, layer: LayerId) -> Result<()> {
        let children = tree.children(layer);
        let g = self.geometry;
        let Some(l) = tree.layers.get(&layer) else {
            return Ok(());
        };
        if l.record.role != Role::Hidden || children.is_empty() {
            return Ok(());
        }
        // A linked clone shares this layer's files: neither store may change them (the
        // space comes back once only one store names them).
        let shared = |f: &FileHandle| f.links().map(|n| n > 1);
        if shared(&l.data).map_err(EngineError::io("checking a layer's links"))?
            || shared(&l.meta).map_err(EngineError::io("checking a layer's links"))?
        {
            return Ok(());
        }
        let mut freed = Vec::new();
        let mut changed: Vec<ChunkIndex> = Vec::new();
        let mut chunks: Vec<ChunkIndex> = l.chunks.read().keys().copied().collect();
        chunks.sort_unstable();
        for chunk in chunks {
            for slot in 0..g.chunk_blocks as usize {
                let state = l.state(chunk, slot);
                if state == BlockState::Absent {
                    continue;
                }
                let overridden = children.iter().all(|c| {
                    tree.layers
                        .get(c)
                        .is_some_and(|c| c.state(chunk, slot) != BlockState::Absent)
                });
                if overridden {
                    l.set_state(
                        chunk,
                        slot,
                        BlockState::Absent,
                        (0, &NO_SEAL),
                        g.chunk_blocks,
                    );
                    if matches!(state, BlockState::Data(_)) {
                        freed.push((layer, g.block_at(chunk, slot)));
                    }
                    if changed.last() != Some(&chunk) {
                        changed.push(chunk);
                    }
                }
            }
        }
        if !changed.is_empty() {
            persist_chunks(tree, g, layer, &changed).inspect_err(|_| self.poison())?;
        }
        self.release(tree, freed)
    }

    /// Punches the freed blocks (after the metadata saying they are absent is durable).
    fn release(&self, tree: &Tree, freed: Vec<(LayerId, BlockIndex)>) -> Result<()> {
        let g = self.geometry;
        let mut synced = Vec::new();
        for (layer, block) in freed {
            if let Some(l) = tree.layers.get(&layer) {
                l.data
                    .punch_hole(g.byte_offset(block), g.bs())
                    .map_err(EngineError::io("freeing a snapshot block"))?;
                if !synced.contains(&layer) {
                    synced.push(layer);
                }
            }
        }
        for layer in synced {
            if let Some(l) = tree.layers.get(&layer) {
                l.data
                    .sync_data()
                    .map_err(EngineError::io("syncing a freed layer"))?;
            }
        }
        Ok(())
    }

    fn forget_dirty(&self, removed: &[LayerId]) {
        let mut wal = self.wal.lock();
        wal.dirty_chunks.retain(|(l, _)| !removed.contains(l));
        wal.dirty_data.retain(|l| !removed.contains(l));
    }

    /// Deletes the files of layers no published manifest names any more. A failure only
    /// leaves garbage that the next open removes.
    fn delete_layer_files(&self, removed: &[LayerId]) {
        for id in removed {
            let _ = self.storage.remove_file(&data_file(id.0));
            let _ = self.storage.remove_file(&meta_file(id.0));
        }
        if !removed.is_empty() {
            let _ = self.storage.sync_dir();
        }
    }
}

/// Removes `layer` from the tree if it is hidden and has no children, then its parent the
/// same way, recording removed layers. Returns the first hidden layer left standing on that
/// path (whose garbage blocks may have grown), if any.
fn remove_childless(
    tree: &mut Tree,
    layer: LayerId,
    removed: &mut Vec<LayerId>,
) -> Option<LayerId> {
    let mut at = layer;
    loop {
        if !is_hidden(tree, at) {
            return None;
        }
        if !tree.children(at).is_empty() {
            return Some(at);
        }
        let parent = tree.layers.remove(&at).and_then(|l| l.record.parent);
        removed.push(at);
        at = parent?;
    }
}

fn is_hidden(tree: &Tree, layer: LayerId) -> bool {
    tree.layers
        .get(&layer)
        .is_some_and(|l| l.record.role == Role::Hidden)
}
