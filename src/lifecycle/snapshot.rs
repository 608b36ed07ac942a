//! Snapshot rules: taking, deleting, rolling a volume back to one, and how each ends.

use super::refusal::{need_volume, Refusal};
use crate::catalog::{PendingOp, SnapshotRecord, SnapshotStatus, VolumeRecord, VolumeStatus};

/// Taking a snapshot of `v`: it must be available (or in-use with `force`).
pub fn may_snapshot(v: &VolumeRecord, force: bool) -> Result<(), Refusal> {
    let (allowed, wanted): (&[VolumeStatus], _) = if force {
        (
            &[VolumeStatus::Available, VolumeStatus::InUse],
            "available or in-use",
        )
    } else {
        (&[VolumeStatus::Available], "available")
    };
    need_volume(v.status, allowed, wanted, "EVS.5400")
}

/// Deleting snapshot `x`: available or error, and no volume (of `volumes`) being created or
/// rolled back from it; → deleting.
pub fn begin_snapshot_delete(
    x: &mut SnapshotRecord,
    volumes: &[VolumeRecord],
) -> Result<(), Refusal> {
    if !matches!(x.status, SnapshotStatus::Available | SnapshotStatus::Error) {
        return Err(Refusal::SnapshotStatus {
            wanted: "available or error",
            actual: x.status,
            code: "EVS.1047",
        });
    }
    let rolling_back = volumes
        .iter()
        .any(|v| v.pending == Some(PendingOp::Rollback(x.id.clone())));
    if rolling_back || super::is_copy_source(volumes, None, &[x.id.as_str()]) {
        return Err(Refusal::coded(
            "EVS.1047",
            "Invalid snapshot: a volume is being created or rolled back from it.",
        ));
    }
    x.status = SnapshotStatus::Deleting;
    Ok(())
}

/// Rolling volume `v` back to its snapshot `x` (EVS): the snapshot available, the volume
/// available or `error_rollbacking` (a failed rollback may be retried); both → rollbacking.
/// `name`, when given, renames the volume.
pub fn begin_rollback(
    x: &mut SnapshotRecord,
    v: &mut VolumeRecord,
    name: Option<Option<String>>,
) -> Result<(), Refusal> {
    if x.volume_id != v.id {
        return Err(Refusal::rule(
            "Invalid input: a snapshot can only be rolled back to its own volume.",
        ));
    }
    if x.status != SnapshotStatus::Available {
        return Err(Refusal::SnapshotStatus {
            wanted: "available",
            actual: x.status,
            code: "EVS.2043",
        });
    }
    need_volume(
        v.status,
        &[VolumeStatus::Available, VolumeStatus::ErrorRollbacking],
        "available or error_rollbacking",
        "EVS.5400",
    )?;
    if let Some(n) = name {
        v.name = n;
    }
    v.status = VolumeStatus::Rollbacking;
    v.pending = Some(PendingOp::Rollback(x.id.clone()));
    x.status = SnapshotStatus::Rollbacking;
    Ok(())
}

/// What becomes of a snapshot whose background work (in `status`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// It is now this status.
    Becomes(SnapshotStatus),
    /// It is gone: remove its record.
    Removed,
    /// Nothing was in flight.
    Unchanged,
}

/// How a snapshot's create or delete ended (`ok` or failed).
pub fn snapshot_finished(status: SnapshotStatus, ok: bool) -> SnapshotOutcome {
    use SnapshotStatus::*;
    match (status, ok) {
        (Creating, true) => SnapshotOutcome::Becomes(Available),
        (Creating, false) => SnapshotOutcome::Becomes(Error),
        (Deleting, true) => SnapshotOutcome::Removed,
        (Deleting, false) => SnapshotOutcome::Becomes(ErrorDeleting),
        _ => SnapshotOutcome::Unchanged,
    }
}
