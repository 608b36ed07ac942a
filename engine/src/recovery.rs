//! Creating a volume and opening one, including crash recovery: load the manifest and the
//! chunk records, replay the write-ahead log of the manifest's epoch, rebuild the head index,
//! checkpoint under a new epoch and remove files no manifest names.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::addressing::{ChunkIndex, Geometry, LayerId, Lsn};
use crate::chunk_meta::{self, BlockState};
use crate::commit::{Queue, WalState};
use crate::error::{EngineError, Result};
use crate::format::{
    data_file, meta_file, CURRENT_VERSION, MANIFEST_FILE, MANIFEST_TMP_FILE, MAX_VOLUME_SIZE,
    NO_SEAL, WAL_FILE,
};
use crate::layer::{Layer, Tree};
use crate::locks::BlockLocks;
use crate::manifest::{LayerRecord, Manifest, Role};
use crate::storage::Storage;
use crate::volume::{Volume, VolumeOptions};
use crate::wal::{self, End, RecordKind};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks that the file system under `storage` can hold a data file of `size` bytes (a
/// volume it cannot hold would fail its first write past the limit, and the logged write
/// would then fail every replay).
pub(crate) fn check_capacity(storage: &dyn Storage, size: u64) -> Result<()> {
    if storage
        .can_hold(size)
        .map_err(EngineError::io("probing the largest file size"))?
    {
        Ok(())
    } else {
        Err(EngineError::InvalidSize {
            size,
            reason: "larger than this file system's largest file",
        })
    }
}

/// Checks a requested volume size against the geometry.
pub(crate) fn check_size(size: u64, g: Geometry) -> Result<()> {
    let reason = if size == 0 {
        "must not be zero"
    } else if size % g.bs() != 0 {
        "must be a multiple of the block size"
    } else if size > MAX_VOLUME_SIZE {
        "exceeds the 1 PiB limit"
    } else {
        return Ok(());
    };
    Err(EngineError::InvalidSize { size, reason })
}

impl Volume {
    /// Creates a new, empty volume of `size` bytes in `storage` and opens it.
    pub fn create(
        storage: Arc<dyn Storage>,
        size: u64,
        geometry: Geometry,
        options: VolumeOptions,
    ) -> Result<Self> {
        Self::create_with(storage, size, geometry, options, false)
    }

    /// [`Volume::create`] for a volume whose every data block carries a [`Seal`](crate::Seal)
    /// (format v2): it takes data only as whole blocks, each with its seal
    /// ([`Volume::write_sealed`], [`BatchWrite::seals`](crate::BatchWrite::seals),
    /// [`RawBlock::seal`](crate::RawBlock::seal)), and returns the seals with the blocks'
    /// data ([`Volume::read_sealed_at`], [`BlockSeal`](crate::BlockSeal)). What the layer above
    /// encrypts with: the nonce and tag of each block live beside it, crash-consistent
    /// with it, and the engine checks only its CRC of the stored bytes.
    pub fn create_sealed(
        storage: Arc<dyn Storage>,
        size: u64,
        geometry: Geometry,
        options: VolumeOptions,
    ) -> Result<Self> {
        Self::create_with(storage, size, geometry, options, true)
    }

    fn create_with(
        storage: Arc<dyn Storage>,
        size: u64,
        geometry: Geometry,
        options: VolumeOptions,
        sealed: bool,
    ) -> Result<Self> {
        let g = geometry.validate()?;
        check_size(size, g)?;
        storage
            .lock()
            .map_err(|source| EngineError::InUse { source })?;
        check_capacity(storage.as_ref(), size)?;
        if storage
            .exists(MANIFEST_FILE)
            .map_err(EngineError::io("looking for a manifest"))?
        {
            return Err(EngineError::AlreadyExists);
        }
        let head = LayerId(1);
        for name in [data_file(head.0), meta_file(head.0), WAL_FILE.to_owned()] {
            storage
                .create_file(&name)
                .map_err(EngineError::io(format!("creating {name}")))?;
        }
        storage
            .sync_dir()
            .map_err(EngineError::io("syncing the volume directory"))?;
        let manifest = Manifest {
            size,
            geometry: g,
            epoch: 1,
            checkpoint_lsn: Lsn(0),
            next_layer_id: 2,
            head,
            layers: vec![LayerRecord {
                id: head,
                parent: None,
                role: Role::Head,
                size,
                created: now_secs(),
            }],
            sealed,
        };
        manifest.store(storage.as_ref())?;
        Self::open(storage, options)
    }

    /// Opens the volume in `storage`, recovering from any crash first.
    pub fn open(storage: Arc<dyn Storage>, options: VolumeOptions) -> Result<Self> {
        storage
            .lock()
            .map_err(|source| EngineError::InUse { source })?;
        let manifest = Manifest::load(storage.as_ref())?;
        let g = manifest.geometry;
        let mut layers = BTreeMap::new();
        let mut damaged = Vec::new();
        for record in &manifest.layers {
            let (layer, bad) = load_layer(storage.as_ref(), record.clone(), (g, manifest.sealed))?;
            damaged.extend(bad.into_iter().map(|(c, why)| (record.id, c, why)));
            layers.insert(record.id, layer);
        }
        let wal_file = storage
            .open_file(WAL_FILE)
            .map_err(EngineError::io("opening the write-ahead log"))?;
        let tree = Tree {
            size: manifest.size,
            head: manifest.head,
            next_layer_id: manifest.next_layer_id,
            layers,
            index: RwLock::new(Default::default()),
        };
        let volume = Volume {
            storage,
            geometry: g,
            options,
            tree: RwLock::new(tree),
            wal: Mutex::new(WalState::new(
                wal_file,
                manifest.epoch,
                manifest.checkpoint_lsn,
            )),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            locks: BlockLocks::new(),
            poisoned: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            unapplied: RwLock::new(Default::default()),
            room: Default::default(),
            sealed: manifest.sealed,
        };
        volume.recover(&damaged)?;
        Ok(volume)
    }

    /// Replays the log, checks damaged chunk records against it, checkpoints, cleans up.
    fn recover(&self, damaged: &[(LayerId, ChunkIndex, String)]) -> Result<()> {
        let tree = self.tree.read();
        for layer in tree.layers.values() {
            for meta in layer.chunks.read().values() {
                let max = meta.gens.iter().copied().max().unwrap_or(0);
                self.generation.fetch_max(max, Ordering::SeqCst);
            }
        }
        let mut wal = self.wal.lock();
        let replayed = self.replay(&tree, &mut wal)?;
        for (layer, chunk, why) in damaged {
            // A damaged slot is a checkpoint torn by a crash only if the log still holds
            // changes of that chunk, or a torn space reclamation: pruning rewrites a hidden
            // layer's records outside the log, one slot at a time, so the other slot still
            // holds the record before it (and pruning is redone below). Otherwise the
            // metadata itself was damaged.
            let torn_prune = tree.layers.get(layer).is_some_and(|l| {
                l.record.role == Role::Hidden && l.chunks.read().contains_key(chunk)
            });
            if !replayed.contains(&(*layer, *chunk)) && !torn_prune {
                return Err(EngineError::corrupt(
                    meta_file(layer.0),
                    format!("chunk {} record: {why}", chunk.0),
                ));
            }
        }
        tree.rebuild_index(self.geometry);
        // On a full file system the volume opens without one (the log is kept).
        self.checkpoint_unless_full(&tree, &mut wal)?;
        drop(wal);
        // Finish space reclamation a crash may have interrupted.
        let hidden: Vec<LayerId> = tree
            .layers
            .values()
            .filter(|l| l.record.role == Role::Hidden)
            .map(|l| l.id())
            .collect();
        for layer in hidden {
            self.prune_blocks(&tree, layer)?;
        }
        self.remove_strays(&tree);
        Ok(())
    }

    /// Applies every record of the current epoch; returns the (layer, chunk) pairs touched.
    fn replay(&self, tree: &Tree, wal: &mut WalState) -> Result<HashSet<(LayerId, ChunkIndex)>> {
        let g = self.geometry;
        let blocks = tree.size / g.bs();
        let mut touched = HashSet::new();
        let file = wal.file.clone();
        let epoch = wal.epoch;
        let io_error = |source| EngineError::Io {
            context: "reading the write-ahead log".into(),
            source,
        };
        let position = (epoch, wal.next_lsn, g.block_size);
        // Placed blocks logged before the last `synced` mark were flushed: trusted.
        let mut synced_before = Lsn(0);
        wal::scan(file.as_ref(), position, io_error, |e| {
            if e.kind == RecordKind::Synced {
                synced_before = e.lsn;
            }
            Ok(())
        })?;
        let end = wal::scan(file.as_ref(), position, io_error, |e| {
            if e.kind == RecordKind::Synced {
                return Ok(());
            }
            if e.block
                .0
                .checked_add(e.count)
                .is_none_or(|end| end > blocks)
            {
                return Err(EngineError::corrupt(
                    WAL_FILE,
                    format!("record {} is outside the volume", e.lsn.0),
                ));
            }
            for b in e.block.0..e.block.0 + e.count {
                touched.insert((e.layer, g.locate(crate::addressing::BlockIndex(b)).0));
            }
            // Blocks with data carry a seal exactly when the volume keeps them.
            let holds_data = !matches!(e.kind, RecordKind::Zero | RecordKind::Synced);
            if holds_data && e.seal.is_some() != self.sealed {
                return Err(EngineError::corrupt(
                    WAL_FILE,
                    format!("record {} does not match the volume's seals", e.lsn.0),
                ));
            }
            let stamp = (e.generation, e.seal.unwrap_or(NO_SEAL));
            match e.kind {
                RecordKind::Data(_) => {
                    let data = [Bytes::copy_from_slice(e.payload)];
                    let run = (&data[..], &[stamp][..]);
                    self.apply_data_run(tree, wal, e.layer, e.block, run, false)
                }
                RecordKind::Zero => {
                    self.apply_zero(tree, wal, e.layer, e.block, e.count, e.generation, false)
                }
                RecordKind::Placed(crc) => {
                    let state = (BlockState::Data(crc), stamp);
                    if tree.layers.contains_key(&e.layer) {
                        self.apply_placed(tree, wal, e.layer, e.block, state, false);
                    }
                    Ok(())
                }
                RecordKind::PlacedUnsynced(crc) if e.lsn < synced_before => {
                    // Flushed since: present, whatever the file holds now (a copy that rotted
                    // since fails its checksum when read).
                    let state = (BlockState::Data(crc), stamp);
                    if tree.layers.contains_key(&e.layer) {
                        self.apply_placed(tree, wal, e.layer, e.block, state, false);
                    }
                    Ok(())
                }
                RecordKind::PlacedUnsynced(crc) => {
                    // Written in place without a sync first and never flushed: present only
                    // if the data made it to the file whole.
                    let Some(l) = tree.layers.get(&e.layer) else {
                        return Ok(());
                    };
                    let mut block = vec![0u8; g.block_size as usize];
                    l.data
                        .read_at(&mut block, g.byte_offset(e.block))
                        .map_err(EngineError::io("reading a placed block"))?;
                    if crc32fast::hash(&block) == crc {
                        let state = (BlockState::Data(crc), stamp);
                        self.apply_placed(tree, wal, e.layer, e.block, state, false);
                    }
                    Ok(())
                }
                RecordKind::Synced => Ok(()),
            }
        })?;
        if let End::FutureVersion(found) = end.end {
            return Err(EngineError::UnsupportedVersion {
                file: WAL_FILE.into(),
                found,
                supported: CURRENT_VERSION as u32,
            });
        }
        wal.next_lsn = end.next_lsn;
        wal.offset = end.end_offset;
        Ok(touched)
    }

    /// Removes files left by interrupted operations (a deleted layer, a manifest that was
    /// never renamed). Failures are ignored: the files are garbage either way.
    fn remove_strays(&self, tree: &Tree) {
        let Ok(names) = self.storage.list() else {
            return;
        };
        let mut keep: HashSet<String> = [MANIFEST_FILE, WAL_FILE]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for id in tree.layers.keys() {
            keep.insert(data_file(id.0));
            keep.insert(meta_file(id.0));
        }
        for name in names {
            let ours = name.starts_with("layer-") || name == MANIFEST_TMP_FILE;
            if ours && !keep.contains(&name) {
                let _ = self.storage.remove_file(&name);
            }
        }
    }
}

/// Opens one layer's files and loads its chunk records.
fn load_layer(
    storage: &dyn Storage,
    record: LayerRecord,
    (g, sealed): (Geometry, bool),
) -> Result<(Layer, Vec<(ChunkIndex, String)>)> {
    let id = record.id;
    // A file the manifest names but the directory lacks is a damaged store, not a passing
    // I/O error: the copy cannot serve, and only a rebuild from other copies brings it back.
    let open = |name: String, what: &str| {
        storage.open_file(&name).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EngineError::Corrupt {
                    file: name.clone(),
                    reason: format!("missing, though the manifest names it as the {what} of {id}"),
                }
            } else {
                EngineError::io(format!("opening {what} {name} of {id}"))(e)
            }
        })
    };
    let data = open(data_file(id.0), "data file")?;
    let meta = open(meta_file(id.0), "metadata file")?;
    let loaded = chunk_meta::load(meta.as_ref(), id, (g.chunk_blocks, sealed)).map_err(
        EngineError::io(format!("reading metadata file {} of {id}", meta_file(id.0))),
    )?;
    if let Some(found) = loaded.future_version {
        return Err(EngineError::UnsupportedVersion {
            file: meta_file(id.0),
            found,
            supported: CURRENT_VERSION as u32,
        });
    }
    Ok((
        Layer::new(record, data, meta, loaded.chunks, sealed),
        loaded.damaged,
    ))
}
