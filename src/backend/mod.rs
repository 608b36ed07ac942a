//! The work behind the API's asynchronous operations (create, clone, extend, delete,
//! snapshot, rollback, image upload) on the replica sets; which status each leaves is the
//! lifecycle's rule (`crate::lifecycle`), image files are `crate::images`.
//!
//! Every operation follows one order, so a crash anywhere leaves the catalog knowing what was
//! in flight: (1) the API commits the transient status and a [`PendingOp`] to the catalog,
//! (2) the backend does the engine work — each step idempotent or redone from scratch —
//! (3) the backend commits the final status. On startup [`Backend::reconcile`] finds every
//! record still in flight and finishes it (or marks it `error`), so no volume is silently
//! lost and none stays `creating` forever.

mod backups;

pub use backups::base_snapshot_name;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::task::TaskTracker;
use tripod_engine::{SnapshotId, View};
use tripod_replication::{ReplicaHealth, ReplicaId, ReplicaSet};

use crate::catalog::{
    Catalog, CatalogError, CatalogRead, ImageRecord, PendingOp, SnapshotRecord, SnapshotStatus,
    Timestamp, VolumeRecord, VolumeSource, VolumeStatus,
};
use crate::data_dir::{parse_id, Exposure, VolumeError, VolumeRegistry};
use crate::images;
use crate::keys::KeyProvider;
use crate::lifecycle::{self, SnapshotOutcome};
use crate::operations::{Kind, Operation, Operations};
use crate::volume_types;

/// Bytes per GiB (the API's size unit).
pub const GIB: u64 = 1 << 30;
/// Unit of copies (clone, image): one chunk.
const COPY_STEP: u64 = 4 << 20;

/// Errors of lifecycle work.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The volume store failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The replica set failed.
    #[error(transparent)]
    Replication(#[from] tripod_replication::ReplicationError),
    /// The engine refused (e.g. a bad snapshot id).
    #[error(transparent)]
    Engine(#[from] tripod_engine::EngineError),
    /// Writing an image failed.
    #[error("image: {0}")]
    Image(String),
    /// A record the work needs is gone.
    #[error("{0} is gone")]
    Gone(String),
    /// A backup could not be taken, restored or deleted.
    #[error("backup: {0}")]
    Backup(String),
    /// The backup target or a backup's data failed.
    #[error(transparent)]
    BackupJob(#[from] crate::backup::JobError),
    /// The backup target failed.
    #[error(transparent)]
    BackupStore(#[from] crate::backup::StoreError),
    /// An encrypted volume's key could not be made or opened.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

type Result<T> = std::result::Result<T, BackendError>;

/// Whether a volume in `status` is offered over NBD.
pub fn exposure_of(volume: &VolumeRecord) -> Exposure {
    use VolumeStatus::*;
    match volume.status {
        Available | InUse | Attaching | Detaching | Extending | ErrorExtending | Uploading
        | AwaitingTransfer | Maintenance | BackingUp => Exposure::Exported {
            read_only: volume.readonly,
        },
        Creating | Error | Deleting | ErrorDeleting | Rollbacking | ErrorRollbacking
        | ErrorRestoring | RestoringBackup => Exposure::Hidden,
    }
}

/// Runs the operations the API started, in the background.
pub struct Backend {
    catalog: Arc<Catalog>,
    registry: Arc<VolumeRegistry>,
    images_dir: PathBuf,
    /// The operations running in the background (shutdown waits for them).
    tasks: TaskTracker,
    /// The latest scrub of each volume since the daemon started.
    scrubs: Mutex<HashMap<String, ScrubState>>,
    /// Clones, exports, scrubs, backups and restores running now, with their progress.
    operations: Operations,
    /// Where backups go, if anywhere.
    backups: Option<Arc<crate::backup::BackupStore>>,
    /// Where the master keys of encrypted volumes live, if anywhere.
    keys: Option<Arc<dyn KeyProvider>>,
}

/// Where a volume's latest scrub stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubState {
    /// Running since (seconds since the Unix epoch).
    Running {
        /// When it started.
        started: u64,
    },
    /// Finished.
    Done {
        /// When it started.
        started: u64,
        /// When it ended.
        ended: u64,
        /// Blocks checked over all replicas.
        blocks_checked: u64,
        /// Bad copies found.
        bad: u64,
        /// Bad copies rewritten from a good one.
        repaired: u64,
        /// Bad copies with no good copy anywhere.
        unrepairable: u64,
    },
    /// It could not run to the end.
    Failed {
        /// When it started.
        started: u64,
        /// Why.
        error: String,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Backend {
    /// A backend over `catalog` and the volumes of `registry`; images go to `images_dir`.
    pub fn new(catalog: Arc<Catalog>, registry: Arc<VolumeRegistry>, images_dir: PathBuf) -> Self {
        Self {
            catalog,
            registry,
            images_dir,
            tasks: TaskTracker::new(),
            scrubs: Mutex::new(HashMap::new()),
            operations: Operations::default(),
            backups: None,
            keys: None,
        }
    }

    /// Keeps encrypted volumes' master keys in `keys`; the registry asks it (through the
    /// catalog's wrapped data keys) for a volume's cipher each time it opens one.
    pub fn with_keys(mut self, keys: Arc<dyn KeyProvider>) -> Self {
        let catalog = self.catalog.clone();
        let provider = keys.clone();
        self.registry.set_key_source(Arc::new(move |id: &str| {
            let rec = catalog
                .read(|r| r.get::<VolumeRecord>(id))
                .map_err(|e| VolumeError::Invalid(format!("catalog: {e}")))?;
            let Some((rec, key)) = rec.and_then(|r| r.encryption.clone().map(|k| (r, k))) else {
                return Ok(None);
            };
            crate::keys::cipher_of(provider.as_ref(), &rec.project_id, &rec.id, &key)
                .map(Some)
                .map_err(|e| VolumeError::Invalid(format!("volume {id}: {e}")))
        }));
        self.keys = Some(keys);
        self
    }

    /// The key provider (`None`: encrypted volumes cannot be made here).
    pub fn keys(&self) -> Option<&Arc<dyn KeyProvider>> {
        self.keys.as_ref()
    }

    /// The cipher of volume `rec` if it is encrypted (unwrapping its data key now).
    pub(crate) fn cipher_for(
        &self,
        rec: &VolumeRecord,
    ) -> Result<Option<Arc<tripod_replication::cipher::VolumeCipher>>> {
        let Some(key) = &rec.encryption else {
            return Ok(None);
        };
        let keys = self.keys.as_ref().ok_or_else(|| {
            BackendError::Key(crate::keys::KeyError::Store(
                "no key provider is configured".into(),
            ))
        })?;
        Ok(Some(crate::keys::cipher_of(
            keys.as_ref(),
            &rec.project_id,
            &rec.id,
            key,
        )?))
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The volumes.
    pub fn registry(&self) -> &Arc<VolumeRegistry> {
        &self.registry
    }

    /// The directory images are written to.
    pub fn images_dir(&self) -> &PathBuf {
        &self.images_dir
    }

    /// Offers `volume` over NBD as its status and read-only flag say, with the I/O limits its
    /// type and size give it.
    pub fn expose(&self, volume: &VolumeRecord) {
        self.registry.expose(&volume.id, exposure_of(volume));
        self.apply_limits(volume);
    }

    /// Applies what `volume`'s type and size ask of its I/O: the QoS limits (requests
    /// already waiting included) and whether every write is synced (`durability=sync`).
    pub fn apply_limits(&self, volume: &VolumeRecord) {
        let asked = self.catalog.read(|r| {
            Ok::<_, CatalogError>((
                volume_types::limits_of(r, volume)?,
                volume_types::syncs_writes(r, volume)?,
            ))
        });
        match asked {
            Ok((limits, sync)) => {
                self.registry.set_limits(&volume.id, &limits);
                self.registry.set_sync_writes(&volume.id, sync);
            }
            Err(e) => tracing::error!(volume = %volume.id, "reading the volume's type: {e}"),
        }
    }

    /// Runs `work` on the runtime's blocking pool, tracked so shutdown can wait for it.
    /// Outside a runtime (an embedding without one) it runs at once, in the caller.
    fn spawn(self: &Arc<Self>, what: String, work: impl FnOnce(&Backend) + Send + 'static) {
        let me = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                self.tasks.spawn_blocking_on(move || work(&me), &runtime);
            }
            Err(_) => {
                tracing::debug!("{what}: no runtime; running in the caller");
                work(&me);
            }
        }
    }

    /// Waits until no operation is running (at most `timeout`); true if idle.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        self.tasks.close();
        let idle = tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok();
        self.tasks.reopen();
        idle
    }

    /// Starts a scrub of volume `id` in the background (verify every copy, repair bad ones
    /// from good ones); false if one is already running.
    pub fn start_scrub(self: &Arc<Self>, id: &str) -> bool {
        let started = unix_now();
        {
            let mut scrubs = self.scrubs.lock();
            if matches!(scrubs.get(id), Some(ScrubState::Running { .. })) {
                return false;
            }
            scrubs.insert(id.to_owned(), ScrubState::Running { started });
        }
        let id = id.to_owned();
        self.spawn(format!("scrub {id}"), move |b| {
            let running = b.operations.start(Kind::Scrub, &id, 3);
            let outcome = b.open_set(&id).and_then(|set| {
                Ok(set.scrub_with(&|done, total| running.op().advance(done, total))?)
            });
            drop(running);
            let state = match outcome {
                Ok(r) => {
                    tracing::info!(volume = %id, bad = r.bad, repaired = r.repaired, "scrub done");
                    ScrubState::Done {
                        started,
                        ended: unix_now(),
                        blocks_checked: r.blocks_checked,
                        bad: r.bad,
                        repaired: r.repaired,
                        unrepairable: r.unrepairable.len() as u64,
                    }
                }
                Err(e) => {
                    tracing::error!(volume = %id, "scrub failed: {e}");
                    ScrubState::Failed {
                        started,
                        error: e.to_string(),
                    }
                }
            };
            b.scrubs.lock().insert(id, state);
        });
        true
    }

    /// Moves replica `slot` of volume `id` to the root `location` (an empty directory root or
    /// a replica node) online: the new placement is recorded, the set takes the new, empty
    /// replica in place of the old one (client I/O goes on with the other two) and a rebuild
    /// fills it in the background; its progress shows in the set's status. Refused unless
    /// the other two replicas are in service and none is being synced. Returns the location
    /// it leaves (whatever is there is left alone: a failed disk may not even be readable).
    pub fn replace_replica(
        self: &Arc<Self>,
        id: &str,
        slot: usize,
        location: &str,
    ) -> Result<String> {
        let set = self.open_set(id)?;
        let target = ReplicaId::new(slot)
            .ok_or_else(|| VolumeError::Invalid(format!("no replica {slot}: slots are 0, 1, 2")))?;
        // What the set would refuse, refused before any placement is written.
        let status = set.status();
        let others = status
            .replicas
            .iter()
            .filter(|(r, s)| *r != target && s.health == ReplicaHealth::InService)
            .count();
        if others < 2 {
            return Err(VolumeError::Invalid(format!(
                "replica {slot} can be replaced only while the other two are in service ({others} are)"
            ))
            .into());
        }
        if status.replicas.iter().any(|(_, s)| {
            matches!(
                s.health,
                ReplicaHealth::Resyncing { .. } | ReplicaHealth::Rebuilding { .. }
            )
        }) {
            return Err(VolumeError::Invalid(
                "a replica of this volume is being synced; replace it once that ends".into(),
            )
            .into());
        }
        let dir = self.registry.data_dir();
        let (replica, old, before) = dir.prepare_replacement(id, slot, location)?;
        if let Err(e) = set.replace(target, replica) {
            dir.restore_placement(id, &before)?;
            return Err(e.into());
        }
        tracing::info!(volume = %id, slot, from = %old, to = %location, "replica replaced; rebuilding");
        let id = id.to_owned();
        self.spawn(format!("rebuild {id}"), move |b| match b.open_set(&id) {
            Ok(set) => {
                let report = set.heal_now();
                tracing::info!(volume = %id, ?report, "rebuild pass done");
            }
            Err(e) => tracing::error!(volume = %id, "rebuild: {e}"),
        });
        Ok(old)
    }

    /// The clones, exports and scrubs running on volume `id`, with their progress.
    pub fn operations_of(&self, id: &str) -> Vec<std::sync::Arc<Operation>> {
        self.operations.of(id)
    }

    /// The latest scrub of volume `id` since the daemon started.
    pub fn scrub_state(&self, id: &str) -> Option<ScrubState> {
        self.scrubs.lock().get(id).cloned()
    }

    /// Starts the pending operation of volume `id` in the background.
    pub fn start_volume(self: &Arc<Self>, id: &str) {
        let id = id.to_owned();
        self.spawn(format!("volume {id}"), move |b| b.finish_volume(&id));
    }

    /// Starts the pending work of snapshot `id` (create or delete) in the background.
    pub fn start_snapshot(self: &Arc<Self>, id: &str) {
        let id = id.to_owned();
        self.spawn(format!("snapshot {id}"), move |b| b.finish_snapshot(&id));
    }

    /// Finishes every operation left in flight by a previous run (synchronously).
    pub fn reconcile(&self) -> std::result::Result<usize, CatalogError> {
        let (volumes, snapshots, images) = self.catalog.read(|r| {
            Ok::<_, CatalogError>((
                r.all::<VolumeRecord>()?,
                r.all::<SnapshotRecord>()?,
                r.all::<ImageRecord>()?,
            ))
        })?;
        let mut finished = 0;
        for s in &snapshots {
            if matches!(
                s.status,
                SnapshotStatus::Creating | SnapshotStatus::Deleting
            ) {
                tracing::warn!(snapshot = %s.id, status = s.status.as_str(), "finishing an interrupted snapshot operation");
                self.finish_snapshot(&s.id);
                finished += 1;
            }
        }
        for v in &volumes {
            if v.pending.is_some() {
                tracing::warn!(volume = %v.id, status = v.status.as_str(), "finishing an interrupted volume operation");
                self.finish_volume(&v.id);
                finished += 1;
            }
        }
        // Uploads were redone above; any image still `saving` lost its volume's record.
        for i in images.iter().filter(|i| i.status == "saving") {
            let still_running = self
                .catalog
                .read(|r| r.get::<ImageRecord>(&i.id))?
                .is_some_and(|i| i.status == "saving");
            if still_running {
                self.set_image_status(&i.id, "killed");
            }
        }
        finished += self.reconcile_backups()?;
        let volumes: Vec<VolumeRecord> = self.catalog.read(|r| r.all())?;
        for v in &volumes {
            self.expose(v);
        }
        Ok(finished)
    }

    fn load_volume(&self, id: &str) -> Result<VolumeRecord> {
        self.catalog
            .read(|r| r.get::<VolumeRecord>(id))?
            .ok_or_else(|| BackendError::Gone(format!("volume {id}")))
    }

    fn open_set(&self, id: &str) -> Result<Arc<ReplicaSet>> {
        Ok(self.registry.get(id)?)
    }

    /// Does volume `id`'s pending operation and records the outcome.
    pub fn finish_volume(&self, id: &str) {
        let rec = match self.load_volume(id) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(volume = id, "lifecycle: {e}");
                return;
            }
        };
        let Some(op) = rec.pending.clone() else {
            return;
        };
        let outcome = match &op {
            PendingOp::Create(source) => self.do_create(&rec, source),
            PendingOp::Extend { new_size, .. } => self.do_extend(&rec, *new_size),
            PendingOp::Delete => self.do_delete(&rec),
            PendingOp::Rollback(snap) => self.do_rollback(&rec, snap),
            PendingOp::Upload { image_id, .. } => self.do_upload(&rec, image_id),
            PendingOp::Backup { backup_id, .. } => self.do_backup(&rec, backup_id),
            PendingOp::Restore { backup_id } => self.do_restore(&rec, backup_id),
        };
        match &outcome {
            Ok(()) => tracing::info!(volume = id, op = ?op, "lifecycle: done"),
            Err(e) => tracing::error!(volume = id, op = ?op, "lifecycle: failed: {e}"),
        }
        if let Err(e) = self.record_outcome(id, outcome.is_ok()) {
            tracing::error!(volume = id, "lifecycle: recording the outcome: {e}");
        }
    }

    /// Commits, in one transaction, how volume `id`'s pending operation ended and what
    /// that means for its image, snapshot or records (the lifecycle decides).
    fn record_outcome(&self, id: &str, ok: bool) -> std::result::Result<(), CatalogError> {
        let shown = self.catalog.write(|w| {
            let Some(mut v) = w.get::<VolumeRecord>(id)? else {
                return Ok(None);
            };
            let after = lifecycle::finish(&mut v, ok);
            if let Some((image, status)) = &after.image {
                if let Some(mut i) = w.get::<ImageRecord>(image)? {
                    i.status = (*status).into();
                    w.put(&i)?;
                }
            }
            if let Some((backup, ok)) = &after.backup {
                Self::backup_outcome(w, backup, *ok)?;
            }
            if let Some(snap) = &after.snapshot_available {
                if let Some(mut x) = w.get::<SnapshotRecord>(snap)? {
                    x.status = SnapshotStatus::Available;
                    x.updated_at = Some(Timestamp::now());
                    w.put(&x)?;
                }
            }
            if after.remove_volume {
                for x in w.all::<SnapshotRecord>()? {
                    if x.volume_id == v.id {
                        w.delete::<SnapshotRecord>(&x.id)?;
                    }
                }
                w.delete::<VolumeRecord>(&v.id)?;
                return Ok(None);
            }
            v.updated_at = Some(Timestamp::now());
            w.put(&v)?;
            Ok::<_, CatalogError>(Some(v))
        })?;
        if let Some(v) = shown {
            self.expose(&v);
        }
        Ok(())
    }

    fn do_create(&self, rec: &VolumeRecord, source: &VolumeSource) -> Result<()> {
        let uuid = parse_id(&rec.id)?;
        self.registry.close(&rec.id);
        let size = rec.size.saturating_mul(GIB);
        match source {
            VolumeSource::Backup(backup) => self.create_from_backup(rec, backup),
            VolumeSource::Blank => {
                let cipher = self.cipher_for(rec)?;
                self.registry
                    .data_dir()
                    .create_with_key(&uuid, size, cipher)?;
                Ok(())
            }
            VolumeSource::Snapshot(snap) => {
                let snap_rec = self
                    .catalog
                    .read(|r| r.get::<SnapshotRecord>(snap))?
                    .ok_or_else(|| BackendError::Gone(format!("snapshot {snap}")))?;
                let src = self.open_set(&snap_rec.volume_id)?;
                let id = SnapshotId::new(snap.as_str())?;
                let len = snap_rec.size.saturating_mul(GIB);
                self.clone_from(rec, &uuid, &src, &id, len)
            }
            VolumeSource::Volume(src_id) => {
                let src = self.open_set(src_id)?;
                // A point-in-time copy: from a temporary snapshot of the source.
                let temp = SnapshotId::new(format!("clone-{}", rec.id))?;
                if src.list_snapshots()?.iter().any(|s| s.id == temp) {
                    src.delete_snapshot(&temp)?;
                }
                src.snapshot(&temp)?;
                let cloned = self.clone_from(rec, &uuid, &src, &temp, src.size());
                let deleted = src.delete_snapshot(&temp);
                cloned?;
                Ok(deleted?)
            }
        }
    }

    /// Makes volume `uuid` (record `rec`) hold snapshot `id` of `src` (`len` bytes of it):
    /// a linked clone sharing the snapshot's files in O(metadata) where every replica allows
    /// it, else a block-by-block copy shown in the volume's operations.
    fn clone_from(
        &self,
        rec: &VolumeRecord,
        uuid: &uuid::Uuid,
        src: &ReplicaSet,
        id: &SnapshotId,
        len: u64,
    ) -> Result<()> {
        let dir = self.registry.data_dir();
        let size = rec.size.saturating_mul(GIB);
        if dir.clone_linked(src, id, uuid, size)?.is_some() {
            return Ok(());
        }
        // An encrypted source's copy shares its key (its record holds it wrapped anew).
        let target = dir.create_with_key(uuid, size, self.cipher_for(rec)?)?;
        let running = self.operations.start(Kind::Clone, &rec.id, len);
        copy_view(src, &View::Snapshot(id.clone()), len, &target, running.op())
    }

    fn do_extend(&self, rec: &VolumeRecord, new_size: u64) -> Result<()> {
        let set = self.open_set(&rec.id)?;
        let bytes = new_size.saturating_mul(GIB);
        if set.size() < bytes {
            set.expand(bytes)?;
        }
        Ok(())
    }

    fn do_delete(&self, rec: &VolumeRecord) -> Result<()> {
        self.registry.close(&rec.id);
        self.registry.data_dir().remove(&parse_id(&rec.id)?)?;
        Ok(())
    }

    fn do_rollback(&self, rec: &VolumeRecord, snap: &str) -> Result<()> {
        let set = self.open_set(&rec.id)?;
        set.rollback(&SnapshotId::new(snap)?)?;
        Ok(())
    }

    fn do_upload(&self, rec: &VolumeRecord, image_id: &str) -> Result<()> {
        let image = self
            .catalog
            .read(|r| r.get::<ImageRecord>(image_id))?
            .ok_or_else(|| BackendError::Gone(format!("image {image_id}")))?;
        let set = self.open_set(&rec.id)?;
        let temp = SnapshotId::new(format!("image-{image_id}"))?;
        if set.list_snapshots()?.iter().any(|s| s.id == temp) {
            set.delete_snapshot(&temp)?;
        }
        set.snapshot(&temp)?;
        let running = self.operations.start(Kind::Export, &rec.id, set.size());
        let written = images::write(&set, &temp, &image, &self.images_dir, COPY_STEP, &|done| {
            running.op().advance(done, set.size())
        })
        .map_err(|e| BackendError::Image(e.to_string()));
        drop(running);
        let deleted = set.delete_snapshot(&temp);
        written?;
        deleted?;
        Ok(())
    }

    fn set_image_status(&self, id: &str, status: &str) {
        let r = self.catalog.write(|w| {
            if let Some(mut i) = w.get::<ImageRecord>(id)? {
                i.status = status.into();
                w.put(&i)?;
            }
            Ok::<_, CatalogError>(())
        });
        if let Err(e) = r {
            tracing::error!(image = id, "recording image status: {e}");
        }
    }

    fn set_snapshot_status(&self, id: &str, status: SnapshotStatus) {
        let r = self.catalog.write(|w| {
            if let Some(mut s) = w.get::<SnapshotRecord>(id)? {
                s.status = status;
                s.updated_at = Some(Timestamp::now());
                w.put(&s)?;
            }
            Ok::<_, CatalogError>(())
        });
        if let Err(e) = r {
            tracing::error!(snapshot = id, "recording snapshot status: {e}");
        }
    }

    /// Takes (status `creating`) or deletes (status `deleting`) snapshot `id` in the engine
    /// and records the outcome.
    pub fn finish_snapshot(&self, id: &str) {
        let rec = match self.catalog.read(|r| r.get::<SnapshotRecord>(id)) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(snapshot = id, "lifecycle: {e}");
                return;
            }
        };
        let work = || -> Result<()> {
            let set = self.open_set(&rec.volume_id)?;
            let sid = SnapshotId::new(rec.id.as_str())?;
            let exists = set.list_snapshots()?.iter().any(|s| s.id == sid);
            match rec.status {
                SnapshotStatus::Creating if !exists => Ok(set.snapshot(&sid)?),
                SnapshotStatus::Deleting if exists => Ok(set.delete_snapshot(&sid)?),
                _ => Ok(()),
            }
        };
        let outcome = work();
        if let Err(e) = &outcome {
            tracing::error!(
                snapshot = id,
                "lifecycle: {} failed: {e}",
                rec.status.as_str()
            );
        }
        let r = match lifecycle::snapshot_finished(rec.status, outcome.is_ok()) {
            SnapshotOutcome::Becomes(status) => {
                self.set_snapshot_status(id, status);
                Ok(())
            }
            SnapshotOutcome::Removed => self
                .catalog
                .write(|w| w.delete::<SnapshotRecord>(id).map(|_| ())),
            SnapshotOutcome::Unchanged => Ok(()),
        };
        if let Err(e) = r {
            tracing::error!(snapshot = id, "lifecycle: recording the outcome: {e}");
        }
    }
}

/// Copies `len` bytes of `view` of `src` into `dst`, skipping all-zero chunks (the target is
/// fresh, so they already read as zeros and stay unallocated).
fn copy_view(
    src: &ReplicaSet,
    view: &View,
    len: u64,
    dst: &ReplicaSet,
    progress: &Operation,
) -> Result<()> {
    let len = len.min(dst.size());
    let mut off = 0;
    while off < len {
        let n = COPY_STEP.min(len - off);
        let data = src.read_view(view, off, n)?;
        if data.iter().any(|b| *b != 0) {
            dst.write_bytes(off, data)?;
        }
        off += n;
        progress.advance(off, len);
    }
    Ok(dst.flush()?)
}
