//! Backup rules (Cinder's): which volumes may be backed up or restored into, which backups
//! may be deleted or restored, and what a finished backup or restore leaves.
//!
//! ```text
//!  create:   volume available (in-use with force, or from a snapshot) ─► backing-up
//!            backup creating ──ok──► available, fail ─► error; volume back to its status
//!  restore:  backup available ─► restoring ──► available (either way)
//!            volume available ─► restoring-backup ──ok──► available, fail ─► error_restoring
//!  delete:   backup available|error ─► deleting ──ok──► (gone), fail ─► error_deleting
//! ```

use super::refusal::{need_volume, Refusal};
use super::volume::may_change;
use crate::catalog::{BackupRecord, BackupStatus, PendingOp, VolumeRecord, VolumeStatus};

use VolumeStatus::{Available, BackingUp, InUse, RestoringBackup};

/// Starts a backup of `v`: available, or in-use with `force` or when the backup is taken
/// from one of its snapshots (the volume's I/O goes on either way).
pub fn begin_backup(
    v: &mut VolumeRecord,
    force: bool,
    from_snapshot: bool,
    backup_id: &str,
) -> Result<(), Refusal> {
    may_change(v)?;
    let (allowed, wanted): (&[VolumeStatus], _) = if force || from_snapshot {
        (&[Available, InUse], "available or in-use")
    } else {
        (&[Available], "available (or in-use with force)")
    };
    need_volume(v.status, allowed, wanted, "EVS.5400")?;
    v.pending = Some(PendingOp::Backup {
        backup_id: backup_id.to_owned(),
        previous: v.status,
    });
    v.status = BackingUp;
    Ok(())
}

fn need_backup(b: &BackupRecord, allowed: &[BackupStatus], wanted: &str) -> Result<(), Refusal> {
    if allowed.contains(&b.status) {
        Ok(())
    } else {
        Err(Refusal::rule(format!(
            "Invalid backup: backup status must be {wanted} (it is {}).",
            b.status.as_str()
        )))
    }
}

/// Starts restoring backup `b` into `v`: the backup available, the volume available and at
/// least as large.
pub fn begin_restore(b: &mut BackupRecord, v: &mut VolumeRecord) -> Result<(), Refusal> {
    need_backup(b, &[BackupStatus::Available], "available")?;
    may_change(v)?;
    need_volume(v.status, &[Available], "available", "EVS.5400")?;
    if v.size < b.size {
        return Err(Refusal::rule(format!(
            "Invalid volume: volume size {}G is smaller than the backup's {}G.",
            v.size, b.size
        )));
    }
    b.status = BackupStatus::Restoring;
    b.restore_volume_id = Some(v.id.clone());
    v.pending = Some(PendingOp::Restore {
        backup_id: b.id.clone(),
    });
    v.status = RestoringBackup;
    Ok(())
}

/// Starts deleting `b`: available or error, and — unless `force` — no other backup is
/// incremental to it (Cinder's rule; here every manifest is complete, so a forced delete
/// leaves the dependents restorable and re-parents them).
pub fn begin_backup_delete(
    b: &mut BackupRecord,
    all: &[BackupRecord],
    force: bool,
) -> Result<(), Refusal> {
    if !force {
        need_backup(
            b,
            &[BackupStatus::Available, BackupStatus::Error],
            "available or error",
        )?;
        if has_dependents(b, all) {
            return Err(Refusal::rule(
                "Invalid backup: Incremental backups exist for this backup.",
            ));
        }
    } else if matches!(b.status, BackupStatus::Creating | BackupStatus::Restoring) {
        return Err(Refusal::rule(format!(
            "Invalid backup: a backup being {} cannot be deleted.",
            if b.status == BackupStatus::Creating {
                "created"
            } else {
                "restored"
            }
        )));
    }
    b.status = BackupStatus::Deleting;
    Ok(())
}

/// Whether another backup is incremental to `b`.
pub fn has_dependents(b: &BackupRecord, all: &[BackupRecord]) -> bool {
    all.iter()
        .any(|x| x.parent_id.as_deref() == Some(b.id.as_str()) && x.id != b.id)
}

/// The status a backup takes when its taking (`restoring` false) or a restore from it ended.
pub fn backup_finished(b: &mut BackupRecord, ok: bool) {
    b.status = match (b.status, ok) {
        (BackupStatus::Creating, true) => BackupStatus::Available,
        (BackupStatus::Creating, false) => BackupStatus::Error,
        (BackupStatus::Restoring, _) => BackupStatus::Available,
        (other, _) => other,
    };
    if b.status == BackupStatus::Available {
        b.restore_volume_id = None;
    }
}
