//! Quota arithmetic: a project's usage from its records and the check of a request against
//! its limits (`-1` = unlimited). Limits themselves come from the configuration and the
//! catalog (the API's quota endpoints).

use std::collections::BTreeMap;

use super::refusal::Refusal;
use crate::catalog::{SnapshotRecord, VolumeRecord, VolumeStatus};

/// Resource name → how much a request adds.
pub type Deltas = Vec<(String, i64)>;

fn gib(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What a new volume of `size` GiB of type `t` adds.
pub fn volume_deltas(size: u64, t: &str) -> Deltas {
    let size = gib(size);
    vec![
        ("volumes".into(), 1),
        ("gigabytes".into(), size),
        (format!("volumes_{t}"), 1),
        (format!("gigabytes_{t}"), size),
    ]
}

/// What a snapshot of a volume of `size` GiB of type `t` adds.
pub fn snapshot_deltas(size: u64, t: &str) -> Deltas {
    let size = gib(size);
    vec![
        ("snapshots".into(), 1),
        ("gigabytes".into(), size),
        (format!("snapshots_{t}"), 1),
        (format!("gigabytes_{t}"), size),
    ]
}

/// What growing a volume of type `t` by `grow` GiB adds.
pub fn extend_deltas(grow: u64, t: &str) -> Deltas {
    let grow = gib(grow);
    vec![("gigabytes".into(), grow), (format!("gigabytes_{t}"), grow)]
}

/// What moving a volume of `size` GiB with `snapshots` (their sizes) to type `t` adds to
/// `t`'s resources (the project's totals do not change; the old type's usage drops by as
/// much once the volume has its new type).
pub fn retype_deltas(size: u64, snapshots: &[u64], t: &str) -> Deltas {
    let snap_gib = snapshots
        .iter()
        .fold(0i64, |acc, s| acc.saturating_add(gib(*s)));
    vec![
        (format!("volumes_{t}"), 1),
        (
            format!("snapshots_{t}"),
            i64::try_from(snapshots.len()).unwrap_or(i64::MAX),
        ),
        (format!("gigabytes_{t}"), gib(size).saturating_add(snap_gib)),
    ]
}

/// `project`'s usage by resource: every volume not being deleted and every snapshot, in
/// total and per volume type. `names` are reported even when unused (as 0).
pub fn usage(
    names: impl IntoIterator<Item = String>,
    volumes: &[VolumeRecord],
    snapshots: &[SnapshotRecord],
    project: &str,
) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = names.into_iter().map(|n| (n, 0)).collect();
    let mut add = |deltas: Deltas| {
        for (k, n) in deltas {
            let e = out.entry(k).or_insert(0);
            *e = e.saturating_add(n);
        }
    };
    let mut type_of = BTreeMap::new();
    for v in volumes {
        type_of.insert(v.id.as_str(), v.volume_type.as_str());
        if v.project_id == project && v.status != VolumeStatus::Deleting {
            add(volume_deltas(v.size, &v.volume_type));
        }
    }
    for s in snapshots.iter().filter(|s| s.project_id == project) {
        match type_of.get(s.volume_id.as_str()) {
            Some(t) => add(snapshot_deltas(s.size, t)),
            None => add(vec![
                ("snapshots".into(), 1),
                ("gigabytes".into(), gib(s.size)),
            ]),
        }
    }
    out
}

/// Refuses if adding `deltas` to `used` exceeds a limit, or if a volume of `volume_size` GiB
/// exceeds `per_volume_gigabytes`.
pub fn within_limits(
    limits: &BTreeMap<String, i64>,
    used: &BTreeMap<String, i64>,
    deltas: &[(String, i64)],
    volume_size: Option<u64>,
) -> Result<(), Refusal> {
    if let Some(size) = volume_size {
        let per = limits.get("per_volume_gigabytes").copied().unwrap_or(-1);
        if per >= 0 && gib(size) > per {
            return Err(Refusal::OverQuota(format!(
                "VolumeSizeExceedsLimit: Requested volume size {size}G is larger than maximum allowed limit {per}G."
            )));
        }
    }
    for (resource, add) in deltas {
        let limit = limits.get(resource).copied().unwrap_or(-1);
        let now = used.get(resource).copied().unwrap_or(0);
        if limit >= 0 && now.saturating_add(*add) > limit {
            return Err(Refusal::OverQuota(format!(
                "Quota exceeded for {resource}: requested {add}, already used {now} of {limit}."
            )));
        }
    }
    Ok(())
}
