//! Volume transfer rules: offer, accept, withdraw.

use super::refusal::{need_volume, Refusal};
use crate::catalog::{VolumeRecord, VolumeStatus};

/// Offering `v` to another project: available and without snapshots (they would stay
/// behind in the old project); → awaiting-transfer.
pub fn offer_transfer(v: &mut VolumeRecord, has_snapshots: bool) -> Result<(), Refusal> {
    need_volume(
        v.status,
        &[VolumeStatus::Available],
        "available",
        "EVS.5400",
    )?;
    super::check_transferable(v)?;
    if has_snapshots {
        return Err(Refusal::rule(
            "Invalid volume: a volume with snapshots cannot be transferred.",
        ));
    }
    v.status = VolumeStatus::AwaitingTransfer;
    Ok(())
}

/// Accepting: the offered volume moves to `project` (owned by `user`) and is available.
pub fn accept_transfer(v: &mut VolumeRecord, project: &str, user: &str) -> Result<(), Refusal> {
    need_volume(
        v.status,
        &[VolumeStatus::AwaitingTransfer],
        "awaiting-transfer",
        "EVS.5400",
    )?;
    v.project_id = project.to_owned();
    v.user_id = user.to_owned();
    v.status = VolumeStatus::Available;
    Ok(())
}

/// Withdrawing the offer: the volume is available again (if it still awaited transfer);
/// whether it changed.
pub fn withdraw_transfer(v: &mut VolumeRecord) -> bool {
    if v.status == VolumeStatus::AwaitingTransfer {
        v.status = VolumeStatus::Available;
        return true;
    }
    false
}
