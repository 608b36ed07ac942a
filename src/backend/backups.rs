//! The backend's backup work: taking a backup (a volume's pending `Backup`), restoring one
//! (a volume's pending `Restore`, or a new volume created from a backup), deleting one, and
//! finishing what a crash interrupted. The order is the backend's: the API commits the
//! transient statuses first, the data work runs here, the final status is committed last —
//! and a backup is listed `available` only once its manifest is whole in the target.

use std::sync::Arc;

use tripod_engine::{SnapshotId, View};
use tripod_replication::ReplicaSet;

use super::{Backend, BackendError, Result, GIB};
use crate::backup::format::{IndexEntry, MANIFEST_FORMAT};
use crate::backup::{job, BackupStore, Manifest, Source, BLOCK_SIZE};
use crate::catalog::{
    BackupRecord, BackupStatus, CatalogError, CatalogRead, Timestamp, VolumeRecord,
};
use crate::lifecycle;
use crate::operations::Kind;

/// The engine snapshot that keeps backup `id`'s content on its volume.
pub fn base_snapshot_name(id: &str) -> String {
    format!("backup-{id}")
}

impl Backend {
    /// Uses `store` as the backup target.
    pub fn with_backups(mut self, store: Arc<BackupStore>) -> Self {
        self.backups = Some(store);
        self
    }

    /// The backup target, if one is configured.
    pub fn backup_store(&self) -> Option<&Arc<BackupStore>> {
        self.backups.as_ref()
    }

    fn store(&self) -> Result<&Arc<BackupStore>> {
        self.backups
            .as_ref()
            .ok_or_else(|| BackendError::Backup("no backup target is configured".into()))
    }

    fn load_backup(&self, id: &str) -> Result<BackupRecord> {
        self.catalog
            .read(|r| r.get::<BackupRecord>(id))?
            .ok_or_else(|| BackendError::Gone(format!("backup {id}")))
    }

    fn update_backup(&self, id: &str, f: impl FnOnce(&mut BackupRecord)) {
        let r = self.catalog.write(|w| {
            if let Some(mut b) = w.get::<BackupRecord>(id)? {
                f(&mut b);
                b.updated_at = Some(Timestamp::now());
                w.put(&b)?;
            }
            Ok::<_, CatalogError>(())
        });
        if let Err(e) = r {
            tracing::error!(backup = id, "recording the backup: {e}");
        }
    }

    /// Records how a backup's taking or a restore from it ended (the lifecycle decides).
    pub(super) fn backup_outcome(
        w: &mut crate::catalog::Writer,
        id: &str,
        ok: bool,
    ) -> std::result::Result<(), CatalogError> {
        if let Some(mut b) = w.get::<BackupRecord>(id)? {
            lifecycle::backup_finished(&mut b, ok);
            b.updated_at = Some(Timestamp::now());
            w.put(&b)?;
        }
        Ok(())
    }

    /// Takes backup `backup_id` of volume `rec` (its pending `Backup`).
    pub(super) fn do_backup(&self, rec: &VolumeRecord, backup_id: &str) -> Result<()> {
        let outcome = self.take_backup(rec, backup_id);
        if let Err(e) = &outcome {
            let reason = e.to_string();
            self.update_backup(backup_id, |b| b.fail_reason = Some(reason));
            // The snapshot taken for it is of no use now.
            if let Ok(set) = self.open_set(&rec.id) {
                let _ = delete_snapshot_if_present(&set, &base_snapshot_name(backup_id));
            }
        }
        outcome
    }

    fn take_backup(&self, rec: &VolumeRecord, backup_id: &str) -> Result<()> {
        let store = self.store()?;
        let b = self.load_backup(backup_id)?;
        let set = self.open_set(&rec.id)?;
        let snapshots = set.list_snapshots()?;
        let has = |name: &str| snapshots.iter().any(|s| s.id.as_str() == name);
        // The content: the named Cinder snapshot, or a snapshot taken now (kept afterwards
        // as the base of the next incremental backup). After a crash the one taken before
        // is reused: it holds the content as of the request.
        let (view, base) = match &b.snapshot_id {
            Some(snap) => (View::Snapshot(SnapshotId::new(snap.as_str())?), None),
            None => {
                let name = base_snapshot_name(backup_id);
                let id = SnapshotId::new(name.as_str())?;
                if !has(&name) {
                    set.snapshot(&id)?;
                }
                (View::Snapshot(id), Some(name))
            }
        };
        let parent = match &b.parent_id {
            Some(pid) => {
                let m = store.manifest(pid)?.ok_or_else(|| {
                    BackendError::Backup(format!(
                        "the parent backup {pid} has no manifest in the target"
                    ))
                })?;
                let parent_base = self
                    .catalog
                    .read(|r| r.get::<BackupRecord>(pid))?
                    // Its own base, or the Cinder snapshot it was taken from.
                    .and_then(|p| p.base_snapshot.or(p.snapshot_id))
                    .filter(|name| has(name))
                    .map(|name| SnapshotId::new(name.as_str()).map(View::Snapshot))
                    .transpose()?;
                Some((m, parent_base))
            }
            None => None,
        };
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT,
            backup_id: b.id.clone(),
            volume_id: rec.id.clone(),
            parent_id: b.parent_id.clone(),
            size: 0,
            block_size: BLOCK_SIZE,
            data_timestamp: u64::try_from(b.data_timestamp.0 / 1_000_000).unwrap_or(0),
            name: b.name.clone(),
            description: b.description.clone(),
            blocks: Vec::new(),
        };
        let running = self.operations.start(Kind::Backup, &rec.id, 0);
        let source = Source {
            set: &set,
            view,
            parent: parent.as_ref().map(|(m, v)| (m, v.clone())),
        };
        let report = job::take(&source, store, &mut manifest, &|done, total| {
            running.op().advance(done, total)
        })?;
        drop(running);
        let mut index = store.index(&rec.id)?;
        index.backups.retain(|e| e.backup_id != b.id);
        index.backups.push(IndexEntry {
            backup_id: b.id.clone(),
            parent_id: b.parent_id.clone(),
            data_timestamp: manifest.data_timestamp,
            size: manifest.size,
        });
        store.put_index(&index)?;
        tracing::info!(
            backup = %b.id, volume = %rec.id, incremental = b.parent_id.is_some(),
            read = report.read_bytes, uploaded_objects = report.uploaded_objects,
            uploaded_bytes = report.uploaded_bytes, "backup taken"
        );
        // Only the newest backup's snapshot is kept as a base: the others go.
        if base.is_some() {
            for s in set.list_snapshots()? {
                let name = s.id.as_str();
                if name.starts_with("backup-") && Some(name) != base.as_deref() {
                    set.delete_snapshot(&s.id)?;
                }
            }
        }
        let objects = manifest.blocks.len() as u64;
        self.catalog.write(|w| {
            // The older bases were deleted above (only when this backup keeps its own: one
            // taken from a Cinder snapshot leaves the newest base where it is).
            for mut other in w.all::<BackupRecord>()? {
                if base.is_some()
                    && other.volume_id == rec.id
                    && other.id != b.id
                    && other.base_snapshot.is_some()
                {
                    other.base_snapshot = None;
                    w.put(&other)?;
                }
            }
            if let Some(mut me) = w.get::<BackupRecord>(&b.id)? {
                me.object_count = objects;
                me.uploaded_objects = report.uploaded_objects;
                me.uploaded_bytes = report.uploaded_bytes;
                me.read_bytes = report.read_bytes;
                me.base_snapshot = base.clone();
                me.fail_reason = None;
                w.put(&me)?;
            }
            Ok::<_, CatalogError>(())
        })?;
        Ok(())
    }

    /// Restores backup `backup_id` into volume `rec` (which exists).
    pub(super) fn do_restore(&self, rec: &VolumeRecord, backup_id: &str) -> Result<()> {
        let outcome = self.restore_into(rec, backup_id);
        if let Err(e) = &outcome {
            let reason = format!("restoring into volume {}: {e}", rec.id);
            self.update_backup(backup_id, |b| b.fail_reason = Some(reason));
        }
        outcome
    }

    fn restore_into(&self, rec: &VolumeRecord, backup_id: &str) -> Result<()> {
        let store = self.store()?;
        let m = store.manifest(backup_id)?.ok_or_else(|| {
            BackendError::Backup(format!("backup {backup_id} has no manifest in the target"))
        })?;
        let set = self.open_set(&rec.id)?;
        let running = self.operations.start(Kind::Restore, &rec.id, 0);
        let written = job::restore(&m, store, &set, &|done, total| {
            running.op().advance(done, total)
        })?;
        tracing::info!(backup = backup_id, volume = %rec.id, written, "backup restored");
        Ok(())
    }

    /// Creates volume `rec` (fresh) and restores backup `backup_id` into it.
    pub(super) fn create_from_backup(&self, rec: &VolumeRecord, backup_id: &str) -> Result<()> {
        let uuid = crate::data_dir::parse_id(&rec.id)?;
        self.registry.close(&rec.id);
        let dir = self.registry.data_dir();
        // Redone from scratch after a crash: whatever a first try left is replaced.
        let _ = dir.remove(&uuid);
        dir.create_with_key(&uuid, rec.size.saturating_mul(GIB), self.cipher_for(rec)?)?;
        self.do_restore(rec, backup_id)
    }

    /// Starts deleting backup `id` (status `deleting`) in the background.
    pub fn start_backup_delete(self: &Arc<Self>, id: &str) {
        let id = id.to_owned();
        self.spawn(format!("backup {id}"), move |b| b.finish_backup_delete(&id));
    }

    /// Deletes backup `id` from the target and the catalog: its manifest and index entry,
    /// the base snapshot it kept, then every block no other backup names. Backups
    /// incremental to it are re-parented to its parent (their manifests are complete).
    pub fn finish_backup_delete(&self, id: &str) {
        let outcome = self.delete_backup(id);
        let r = match outcome {
            Ok(()) => self.catalog.write(|w| {
                let gone = w.get::<BackupRecord>(id)?;
                let new_parent = gone.and_then(|g| g.parent_id);
                for mut child in w.all::<BackupRecord>()? {
                    if child.parent_id.as_deref() == Some(id) {
                        child.parent_id = new_parent.clone();
                        w.put(&child)?;
                    }
                }
                w.delete::<BackupRecord>(id).map(|_| ())
            }),
            Err(e) => {
                tracing::error!(backup = id, "deleting the backup failed: {e}");
                let reason = e.to_string();
                self.update_backup(id, |b| {
                    b.status = BackupStatus::ErrorDeleting;
                    b.fail_reason = Some(reason);
                });
                Ok(())
            }
        };
        if let Err(e) = r {
            tracing::error!(backup = id, "recording the deletion: {e}");
        }
    }

    fn delete_backup(&self, id: &str) -> Result<()> {
        let b = self.load_backup(id)?;
        let store = self.store()?;
        store.delete_manifest(id)?;
        let mut index = store.index(&b.volume_id)?;
        if index.backups.iter().any(|e| e.backup_id == id) {
            let parent = index
                .backups
                .iter()
                .find(|e| e.backup_id == id)
                .and_then(|e| e.parent_id.clone());
            index.backups.retain(|e| e.backup_id != id);
            for e in &mut index.backups {
                if e.parent_id.as_deref() == Some(id) {
                    e.parent_id = parent.clone();
                }
            }
            store.put_index(&index)?;
        }
        if let Some(name) = &b.base_snapshot {
            let volume_exists = self
                .catalog
                .read(|r| r.get::<VolumeRecord>(&b.volume_id))?
                .is_some();
            if volume_exists {
                if let Ok(set) = self.open_set(&b.volume_id) {
                    delete_snapshot_if_present(&set, name)?;
                }
            }
        }
        let (objects, bytes) = store.collect_garbage()?;
        tracing::info!(
            backup = id,
            freed_objects = objects,
            freed_bytes = bytes,
            "backup deleted"
        );
        Ok(())
    }

    /// Checks every block of backup `id` in the target without restoring it.
    pub fn verify_backup(&self, id: &str) -> Result<u64> {
        let store = self.store()?;
        let m = store.manifest(id)?.ok_or_else(|| {
            BackendError::Backup(format!("backup {id} has no manifest in the target"))
        })?;
        job::verify(&m, store, &|_, _| {})?;
        Ok(m.blocks.len() as u64)
    }

    /// After a crash: a backup still `creating` or `restoring` whose volume no longer has it
    /// pending ends as the lifecycle says; one `deleting` is deleted again. Runs after the
    /// volumes' own pending operations were finished.
    pub(super) fn reconcile_backups(&self) -> std::result::Result<usize, CatalogError> {
        let backups: Vec<BackupRecord> = self.catalog.read(|r| r.all())?;
        let mut finished = 0;
        for b in backups {
            match b.status {
                BackupStatus::Creating | BackupStatus::Restoring => {
                    tracing::warn!(backup = %b.id, status = b.status.as_str(), "ending an interrupted backup operation");
                    let interrupted = b.status == BackupStatus::Creating;
                    self.catalog.write(|w| {
                        if let Some(mut x) = w.get::<BackupRecord>(&b.id)? {
                            lifecycle::backup_finished(&mut x, !interrupted);
                            if interrupted {
                                x.fail_reason = Some("interrupted by a restart".into());
                            }
                            w.put(&x)?;
                        }
                        Ok::<_, CatalogError>(())
                    })?;
                    finished += 1;
                }
                BackupStatus::Deleting => {
                    tracing::warn!(backup = %b.id, "finishing an interrupted backup deletion");
                    self.finish_backup_delete(&b.id);
                    finished += 1;
                }
                _ => {}
            }
        }
        Ok(finished)
    }
}

fn delete_snapshot_if_present(set: &ReplicaSet, name: &str) -> Result<()> {
    let id = SnapshotId::new(name)?;
    if set.list_snapshots()?.iter().any(|s| s.id == id) {
        set.delete_snapshot(&id)?;
    }
    Ok(())
}
