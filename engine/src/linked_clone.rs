//! Linked clones: a new store that starts as snapshot `S` of this one in O(metadata). The
//! new store gets a second name (a hard link) for each file of `S`'s layer chain — the chain
//! is frozen, so both stores read the same bytes — plus an empty head of its own; its
//! manifest lists the chain as hidden layers under that head.
//!
//! A file with more than one name is never changed in place by either store: pruning (the
//! only rewrite of a frozen layer) skips layers whose files are shared, so their space is
//! reclaimed only when the last store that needs them lets go (deleting a snapshot, or the
//! whole source volume, only removes names; the file system frees a file with its last
//! name). Where the two stores cannot share files (another file system, a backend without
//! links) the chain's files are copied instead: the same result, in O(data).

use crate::addressing::SnapshotId;
use crate::error::{EngineError, Result};
use crate::format::{data_file, meta_file, MANIFEST_FILE, WAL_FILE};
use crate::layer::Layer;
use crate::manifest::{LayerRecord, Manifest, Role};
use crate::recovery::{check_capacity, check_size, now_secs};
use crate::storage::Storage;
use crate::volume::Volume;

/// Bytes copied per read when files cannot be linked.
const COPY_STEP: u64 = 1 << 20;

/// What a linked clone shared and what it had to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneReport {
    /// Files shared with the source (hard links).
    pub linked: u64,
    /// Files copied because they could not be shared.
    pub copied: u64,
}

impl Volume {
    /// Makes the empty storage `target` a new volume of `size` bytes (at least the
    /// snapshot's) whose content is snapshot `id`'s, sharing the snapshot's files with this
    /// volume where the storages allow. Writes to either volume never show in the other.
    /// The new volume is durable when this returns; open it with [`Volume::open`].
    pub fn link_snapshot_into(
        &self,
        id: &SnapshotId,
        target: &dyn Storage,
        size: u64,
    ) -> Result<CloneReport> {
        self.check_poison()?;
        // The write lock orders the clone with every write and structural change; the
        // checkpoint puts every chunk record of the chain in its meta file (a new store
        // cannot replay this one's log).
        let tree = self.tree.write();
        let layer = tree
            .snapshot_layer(id)
            .map(Layer::id)
            .ok_or_else(|| EngineError::SnapshotNotFound(id.clone()))?;
        let snapshot_size = tree.layers.get(&layer).map_or(0, |l| l.record.size);
        check_size(size, self.geometry)?;
        if size < snapshot_size {
            return Err(EngineError::InvalidSize {
                size,
                reason: "smaller than the snapshot",
            });
        }
        self.with_wal(&tree, |v, t, w| v.checkpoint(t, w))?;

        target
            .lock()
            .map_err(|source| EngineError::InUse { source })?;
        check_capacity(target, size)?;
        if target
            .exists(MANIFEST_FILE)
            .map_err(EngineError::io("looking for a manifest"))?
        {
            return Err(EngineError::AlreadyExists);
        }
        let mut report = CloneReport::default();
        let mut layers = Vec::new();
        for l in tree.chain(layer) {
            for name in [data_file(l.id().0), meta_file(l.id().0)] {
                if self.link_or_copy(&name, target)? {
                    report.linked += 1;
                } else {
                    report.copied += 1;
                }
            }
            layers.push(LayerRecord {
                role: Role::Hidden,
                ..l.record.clone()
            });
        }
        let head = crate::addressing::LayerId(tree.next_layer_id);
        for name in [data_file(head.0), meta_file(head.0), WAL_FILE.to_owned()] {
            target
                .create_file(&name)
                .map_err(EngineError::io(format!("creating {name}")))?;
        }
        target
            .sync_dir()
            .map_err(EngineError::io("syncing the clone's directory"))?;
        layers.push(LayerRecord {
            id: head,
            parent: Some(layer),
            role: Role::Head,
            size,
            created: now_secs(),
        });
        let manifest = Manifest {
            size,
            geometry: self.geometry,
            epoch: 1,
            checkpoint_lsn: crate::addressing::Lsn(0),
            next_layer_id: head.0 + 1,
            head,
            layers,
            sealed: self.sealed,
        };
        manifest.store(target)?;
        Ok(report)
    }

    /// Gives `target` file `name` of this volume: a second name if the storages can share
    /// it (`true`), else a copy of its data regions, synced (`false`).
    fn link_or_copy(&self, name: &str, target: &dyn Storage) -> Result<bool> {
        let linked = target
            .link_from(self.storage.as_ref(), name, name)
            .map_err(EngineError::io(format!("linking {name}")))?;
        if linked {
            return Ok(true);
        }
        let io = |what: &str| EngineError::io(format!("{what} {name} for a clone"));
        let from = self.storage.open_file(name).map_err(io("opening"))?;
        let to = target.create_file(name).map_err(io("creating"))?;
        let mut buf = Vec::new();
        for (start, end) in from.data_regions().map_err(io("mapping"))? {
            let mut at = start;
            while at < end {
                let n = (end - at).min(COPY_STEP);
                buf.resize(usize::try_from(n).unwrap_or(0), 0);
                from.read_at(&mut buf, at).map_err(io("reading"))?;
                if buf.iter().any(|&b| b != 0) {
                    to.write_at(&buf, at).map_err(io("writing"))?;
                }
                at += n;
            }
        }
        to.sync_data().map_err(io("syncing"))?;
        Ok(false)
    }
}
