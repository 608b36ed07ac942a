//! Volume rules: what each action needs and does, and how a background operation ends.

use super::refusal::{need_volume, Refusal};
use crate::catalog::{
    Attachment, PendingOp, SnapshotRecord, SnapshotStatus, VolumeRecord, VolumeSource, VolumeStatus,
};

use VolumeStatus::*;

/// Largest volume, GiB (EVS's data-disk cap).
pub const MAX_SIZE_GIB: u64 = 32768;

/// Refuses every change to a volume an operator locked for maintenance.
pub fn may_change(v: &VolumeRecord) -> Result<(), Refusal> {
    if v.status == Maintenance {
        return Err(Refusal::VolumeStatus {
            wanted: "anything but maintenance",
            actual: v.status,
            code: "EVS.5400",
        });
    }
    Ok(())
}

/// `os-set_bootable`: any status.
pub fn set_bootable(v: &mut VolumeRecord, bootable: bool) -> Result<(), Refusal> {
    may_change(v)?;
    v.bootable = bootable;
    Ok(())
}

/// `os-update_readonly_flag`: only while available. Once set, the `readonly` key stays in the
/// volume's metadata (showing `False` after it is cleared), as Cinder shows it.
pub fn set_readonly(v: &mut VolumeRecord, readonly: bool) -> Result<(), Refusal> {
    may_change(v)?;
    need_volume(v.status, &[Available], "available", "EVS.5400")?;
    v.readonly = readonly;
    v.readonly_shown = true;
    Ok(())
}

/// Whether another attachment is allowed in the volume's current status.
fn attachable(v: &VolumeRecord) -> bool {
    v.status == Available || (v.multiattach && v.status == InUse)
}

/// `os-reserve`: available (or in-use and shareable) → attaching.
pub fn reserve(v: &mut VolumeRecord) -> Result<(), Refusal> {
    may_change(v)?;
    if !attachable(v) {
        return Err(Refusal::VolumeStatus {
            wanted: "available",
            actual: v.status,
            code: "EVS.5400",
        });
    }
    v.status = Attaching;
    Ok(())
}

/// `os-unreserve`: attaching → back to what the attachments say; otherwise nothing.
pub fn unreserve(v: &mut VolumeRecord) -> Result<(), Refusal> {
    may_change(v)?;
    if v.status == Attaching {
        v.status = if v.attachments.is_empty() {
            Available
        } else {
            InUse
        };
    }
    Ok(())
}

/// `os-attach`: records `a` and makes the volume in-use. A read-only volume attaches only
/// with mode `ro`.
pub fn attach(v: &mut VolumeRecord, a: Attachment) -> Result<(), Refusal> {
    may_change(v)?;
    if !(attachable(v) || v.status == Attaching) {
        return Err(Refusal::VolumeStatus {
            wanted: "available or attaching",
            actual: v.status,
            code: "EVS.5400",
        });
    }
    if v.readonly && a.mode == "rw" {
        return Err(Refusal::rule(
            "Invalid volume: the volume is read-only; attach it with mode ro.",
        ));
    }
    v.attachments.push(a);
    v.status = InUse;
    Ok(())
}

/// `os-detach`: removes attachment `attachment_id` (or the only one); the last one makes
/// the volume available.
pub fn detach(v: &mut VolumeRecord, attachment_id: Option<&str>) -> Result<(), Refusal> {
    may_change(v)?;
    need_volume(
        v.status,
        &[InUse, Detaching],
        "in-use or detaching",
        "EVS.5400",
    )?;
    let idx = match attachment_id {
        Some(a) => v
            .attachments
            .iter()
            .position(|x| x.id == a)
            .ok_or_else(|| Refusal::rule(format!("Invalid volume: attachment {a} not found.")))?,
        None if v.attachments.len() == 1 => 0,
        None => {
            return Err(Refusal::rule(
                "Invalid volume: the volume has several attachments; give attachment_id.",
            ))
        }
    };
    v.attachments.remove(idx);
    if v.attachments.is_empty() {
        v.status = Available;
    }
    Ok(())
}

/// Refuses a size outside 1..=[`MAX_SIZE_GIB`].
fn check_size(size: u64, what: &str) -> Result<(), Refusal> {
    if size == 0 || size > MAX_SIZE_GIB {
        return Err(Refusal::coded(
            "EVS.1010",
            format!("{what} must be an integer from 1 to {MAX_SIZE_GIB} GB (got {size})."),
        ));
    }
    Ok(())
}

/// `os-extend`: available, or in-use when not shareable → extending; returns the growth in
/// GiB (for the quota check).
pub fn begin_extend(v: &mut VolumeRecord, new_size: u64) -> Result<u64, Refusal> {
    may_change(v)?;
    check_size(new_size, "new_size")?;
    let ok = v.status == Available || (v.status == InUse && !v.multiattach);
    if !ok {
        return Err(Refusal::VolumeStatus {
            wanted: "available, or in-use if not shared",
            actual: v.status,
            code: if v.multiattach {
                "EVS.1065"
            } else {
                "EVS.1048"
            },
        });
    }
    if new_size <= v.size {
        return Err(Refusal::coded(
            "EVS.1015",
            format!(
                "New size for extend must be greater than current size. (current: {}, extended: {new_size}).",
                v.size
            ),
        ));
    }
    let grow = new_size - v.size;
    v.pending = Some(PendingOp::Extend {
        new_size,
        previous: v.status,
    });
    v.status = Extending;
    Ok(grow)
}

/// `os-retype`'s `migration_policy`: whether the data may move to another back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// The data must stay where it is (Cinder's default).
    Never,
    /// The data may move.
    OnDemand,
}

impl MigrationPolicy {
    /// Parses Cinder's spelling (absent: `never`).
    pub fn parse(s: Option<&str>) -> Result<Self, Refusal> {
        match s {
            None | Some("never") => Ok(Self::Never),
            Some("on-demand") => Ok(Self::OnDemand),
            Some(other) => Err(Refusal::coded(
                "EVS.5400",
                format!("Invalid migration_policy {other}: it must be never or on-demand."),
            )),
        }
    }
}

/// `os-retype` to the type named `new_type`: available or in-use (also shared), to a
/// different type. Every type shares the same replica sets, so no data moves (either
/// migration policy is satisfied) and the change is one catalog transaction: the volume
/// keeps its status (Cinder shows `retyping` only while a driver migrates data). Returns the
/// old type's name.
pub fn retype(
    v: &mut VolumeRecord,
    new_type: &str,
    _policy: MigrationPolicy,
) -> Result<String, Refusal> {
    may_change(v)?;
    if !matches!(v.status, Available | InUse) || v.pending.is_some() {
        return Err(Refusal::VolumeStatus {
            wanted: "available or in-use",
            actual: v.status,
            code: "EVS.5400",
        });
    }
    if v.volume_type == new_type {
        return Err(Refusal::coded(
            "EVS.5400",
            format!("New volume type must be different from the current one ({new_type})."),
        ));
    }
    Ok(std::mem::replace(&mut v.volume_type, new_type.to_owned()))
}

/// `os-volume_upload_image`: available (or in-use with `force`) → uploading into `image_id`.
pub fn begin_upload(v: &mut VolumeRecord, force: bool, image_id: &str) -> Result<(), Refusal> {
    may_change(v)?;
    let (allowed, wanted): (&[VolumeStatus], _) = if force {
        (&[Available, InUse], "available or in-use")
    } else {
        (&[Available], "available")
    };
    need_volume(v.status, allowed, wanted, "EVS.5400")?;
    v.pending = Some(PendingOp::Upload {
        image_id: image_id.to_owned(),
        previous: v.status,
    });
    v.status = Uploading;
    Ok(())
}

/// Whether a volume being created copies from `volume_id` or one of `snapshots` (which
/// then may not go away).
pub fn is_copy_source(
    volumes: &[VolumeRecord],
    volume_id: Option<&str>,
    snapshots: &[&str],
) -> bool {
    volumes.iter().any(|v| match &v.pending {
        Some(PendingOp::Create(VolumeSource::Volume(src))) => Some(src.as_str()) == volume_id,
        Some(PendingOp::Create(VolumeSource::Snapshot(src))) => snapshots.contains(&src.as_str()),
        _ => false,
    })
}

/// Delete: allowed from available and the error statuses (Cinder's list, plus
/// `error_deleting` so a failed delete can be retried), never while attached, with
/// snapshots (unless `cascade` and each is available or error) or while a copy is being made
/// from it; → deleting.
pub fn begin_delete(
    v: &mut VolumeRecord,
    snapshots: &[SnapshotRecord],
    cascade: bool,
    all_volumes: &[VolumeRecord],
) -> Result<(), Refusal> {
    may_change(v)?;
    let status_ok = matches!(
        v.status,
        Available | Error | ErrorRestoring | ErrorExtending | ErrorRollbacking | ErrorDeleting
    );
    let snaps_ok = snapshots.is_empty()
        || (cascade
            && snapshots
                .iter()
                .all(|x| matches!(x.status, SnapshotStatus::Available | SnapshotStatus::Error)));
    let ids: Vec<&str> = snapshots.iter().map(|x| x.id.as_str()).collect();
    let busy = is_copy_source(all_volumes, Some(&v.id), &ids);
    if !status_ok || !v.attachments.is_empty() || !snaps_ok || busy {
        return Err(Refusal::coded(
            "EVS.1046",
            format!(
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_rollbacking or error_deleting and must not be migrating, attached, belong to a group, have snapshots or be the source of a copy in progress (status {}, {} snapshots).",
                v.status.as_str(),
                snapshots.len()
            ),
        ));
    }
    v.status = Deleting;
    v.pending = Some(PendingOp::Delete);
    Ok(())
}

/// Where a new volume's content comes from, with the records the rules look at.
#[derive(Debug, Clone, Copy)]
pub enum CreateSource<'a> {
    /// Zeros.
    Blank,
    /// A snapshot, and its volume's type.
    Snapshot(&'a SnapshotRecord, &'a str),
    /// Another volume.
    Volume(&'a VolumeRecord),
}

/// Create: the source must be ready (a snapshot available, a volume available or in-use),
/// the size at least the source's (1 GiB when blank and not given), and a volume from a
/// snapshot keeps the snapshot's volume's type. Returns the size, the type and the source.
pub fn check_create_source(
    source: CreateSource<'_>,
    size: Option<u64>,
    requested_type: Option<&str>,
    default_type: &str,
) -> Result<(u64, String, VolumeSource), Refusal> {
    let (from, source_size, source_type) = match source {
        CreateSource::Blank => (VolumeSource::Blank, None, None),
        CreateSource::Snapshot(snap, t) => {
            if snap.status != SnapshotStatus::Available {
                return Err(Refusal::coded(
                    "EVS.2043",
                    format!(
                        "Invalid snapshot: snapshot {} status must be available.",
                        snap.id
                    ),
                ));
            }
            if requested_type.is_some_and(|r| r != t) {
                return Err(Refusal::coded(
                    "EVS.2096",
                    "Invalid input received: the volume type must be the snapshot's volume's type.",
                ));
            }
            (
                VolumeSource::Snapshot(snap.id.clone()),
                Some(snap.size),
                Some(t),
            )
        }
        CreateSource::Volume(src) => {
            if !matches!(src.status, Available | InUse) {
                return Err(Refusal::rule(format!(
                    "Invalid volume: source volume {} must be available or in-use.",
                    src.id
                )));
            }
            (
                VolumeSource::Volume(src.id.clone()),
                Some(src.size),
                Some(src.volume_type.as_str()),
            )
        }
    };
    let size = size.or(source_size).unwrap_or(1);
    check_size(size, "Invalid input received: volume size")?;
    if let Some(min) = source_size {
        if size < min {
            return Err(Refusal::coded(
                "EVS.1010",
                format!(
                    "Invalid input received: volume size {size} GB is smaller than its source ({min} GB)."
                ),
            ));
        }
    }
    let volume_type = requested_type.or(source_type).unwrap_or(default_type);
    Ok((size, volume_type.to_owned(), from))
}

/// What a finished volume operation leaves for other records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aftermath {
    /// The volume is gone: remove its record.
    pub remove_volume: bool,
    /// An image to set to this status (`active` or `killed`).
    pub image: Option<(String, &'static str)>,
    /// A snapshot that is available again (a rollback from it ended).
    pub snapshot_available: Option<String>,
    /// A backup whose taking or restoring ended, and whether it went well.
    pub backup: Option<(String, bool)>,
}

/// Records how `v`'s pending operation ended (`ok` or failed): its status, size and pending
/// operation, and what else must change. Nothing pending: nothing to do.
pub fn finish(v: &mut VolumeRecord, ok: bool) -> Aftermath {
    let Some(op) = v.pending.take() else {
        return Aftermath::default();
    };
    let mut after = Aftermath::default();
    v.status = match (&op, ok) {
        (PendingOp::Create(_), true) | (PendingOp::Rollback(_), true) => Available,
        (PendingOp::Create(_), false) => Error,
        (PendingOp::Extend { new_size, previous }, true) => {
            v.size = *new_size;
            *previous
        }
        (PendingOp::Extend { .. }, false) => ErrorExtending,
        (PendingOp::Delete, true) => {
            after.remove_volume = true;
            Deleting
        }
        (PendingOp::Delete, false) => ErrorDeleting,
        (PendingOp::Rollback(_), false) => ErrorRollbacking,
        (PendingOp::Upload { previous, .. }, _) | (PendingOp::Backup { previous, .. }, _) => {
            *previous
        }
        (PendingOp::Restore { .. }, true) => Available,
        (PendingOp::Restore { .. }, false) => ErrorRestoring,
    };
    match op {
        PendingOp::Upload { image_id, .. } => {
            after.image = Some((image_id, if ok { "active" } else { "killed" }));
        }
        PendingOp::Rollback(snap) => after.snapshot_available = Some(snap),
        PendingOp::Backup { backup_id, .. }
        | PendingOp::Restore { backup_id }
        | PendingOp::Create(VolumeSource::Backup(backup_id)) => {
            after.backup = Some((backup_id, ok));
        }
        _ => {}
    }
    after
}
