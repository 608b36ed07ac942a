//! Every status through every operation (tables), then each rule's edges.

use std::collections::BTreeMap;

use super::*;
use crate::catalog::{
    Attachment, PendingOp, SnapshotRecord, SnapshotStatus, Timestamp, VolumeRecord, VolumeSource,
    VolumeStatus,
};

use VolumeStatus::*;

const ALL: [VolumeStatus; 18] = [
    Creating,
    Available,
    InUse,
    Error,
    Attaching,
    Detaching,
    Uploading,
    Extending,
    ErrorExtending,
    Deleting,
    ErrorDeleting,
    Rollbacking,
    ErrorRollbacking,
    AwaitingTransfer,
    ErrorRestoring,
    Maintenance,
    BackingUp,
    RestoringBackup,
];

fn volume(status: VolumeStatus) -> VolumeRecord {
    let attached = matches!(status, InUse | Detaching);
    VolumeRecord {
        id: "v1".into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        name: Some("disk".into()),
        description: None,
        status,
        size: 10,
        availability_zone: "nova".into(),
        volume_type: "SSD".into(),
        snapshot_id: None,
        source_volid: None,
        metadata: BTreeMap::new(),
        readonly: false,
        readonly_shown: false,
        bootable: false,
        multiattach: false,
        tags: BTreeMap::new(),
        attachments: if attached {
            vec![attachment("a1", "rw")]
        } else {
            Vec::new()
        },
        pending: None,
        created_at: Timestamp::now(),
        updated_at: None,
        encryption: None,
    }
}

fn attachment(id: &str, mode: &str) -> Attachment {
    Attachment {
        id: id.into(),
        server_id: Some("00000000-0000-0000-0000-000000000001".into()),
        host_name: None,
        device: "/dev/vdb".into(),
        mode: mode.into(),
        attached_at: Timestamp::now(),
    }
}

fn snapshot(id: &str, status: SnapshotStatus) -> SnapshotRecord {
    SnapshotRecord {
        id: id.into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        volume_id: "v1".into(),
        name: None,
        description: None,
        status,
        size: 10,
        metadata: BTreeMap::new(),
        created_at: Timestamp::now(),
        updated_at: None,
    }
}

type Op = fn(&mut VolumeRecord) -> Result<(), Refusal>;

/// An operation, the statuses it is allowed from, and the status it leaves (`None`: the
/// one it found).
struct Row {
    name: &'static str,
    op: Op,
    allowed: &'static [VolumeStatus],
    to: Option<VolumeStatus>,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "os-reserve",
            op: reserve,
            allowed: &[Available],
            to: Some(Attaching),
        },
        Row {
            name: "os-attach rw",
            op: |v| attach(v, attachment("new", "rw")),
            allowed: &[Available, Attaching],
            to: Some(InUse),
        },
        Row {
            name: "os-detach",
            op: |v| detach(v, None),
            allowed: &[InUse, Detaching],
            to: Some(Available),
        },
        Row {
            name: "os-update_readonly_flag",
            op: |v| set_readonly(v, true),
            allowed: &[Available],
            to: None,
        },
        Row {
            name: "os-extend",
            op: |v| begin_extend(v, 20).map(|_| ()),
            allowed: &[Available, InUse],
            to: Some(Extending),
        },
        Row {
            name: "os-volume_upload_image",
            op: |v| begin_upload(v, false, "img"),
            allowed: &[Available],
            to: Some(Uploading),
        },
        Row {
            name: "os-volume_upload_image force",
            op: |v| begin_upload(v, true, "img"),
            allowed: &[Available, InUse],
            to: Some(Uploading),
        },
        Row {
            name: "delete",
            op: |v| begin_delete(v, &[], false, &[]),
            // In-use is refused by its attachment as well as its status.
            allowed: &[
                Available,
                Error,
                ErrorRestoring,
                ErrorExtending,
                ErrorRollbacking,
                ErrorDeleting,
            ],
            to: Some(Deleting),
        },
        Row {
            name: "snapshot",
            op: |v| may_snapshot(v, false),
            allowed: &[Available],
            to: None,
        },
        Row {
            name: "snapshot force",
            op: |v| may_snapshot(v, true),
            allowed: &[Available, InUse],
            to: None,
        },
        Row {
            name: "rollback",
            op: |v| begin_rollback(&mut snapshot("s1", SnapshotStatus::Available), v, None),
            allowed: &[Available, ErrorRollbacking],
            to: Some(Rollbacking),
        },
        Row {
            name: "transfer offer",
            op: |v| offer_transfer(v, false),
            allowed: &[Available],
            to: Some(AwaitingTransfer),
        },
        Row {
            name: "transfer accept",
            op: |v| accept_transfer(v, "p2", "u2"),
            allowed: &[AwaitingTransfer],
            to: Some(Available),
        },
    ]
}

#[test]
fn every_operation_from_every_status() {
    for row in rows() {
        for status in ALL {
            let mut v = volume(status);
            let before = v.clone();
            let r = (row.op)(&mut v);
            if row.allowed.contains(&status) {
                assert!(r.is_ok(), "{} from {}: {r:?}", row.name, status.as_str());
                let want = row.to.unwrap_or(status);
                assert_eq!(v.status, want, "{} from {}", row.name, status.as_str());
            } else {
                let e = r.expect_err(&format!("{} from {} allowed", row.name, status.as_str()));
                assert!(!e.to_string().is_empty());
                assert_eq!(v, before, "{} refused but changed the record", row.name);
            }
        }
    }
}

#[test]
fn status_only_operations_never_refuse_except_in_maintenance() {
    for status in ALL {
        let mut v = volume(status);
        let r = set_bootable(&mut v, true);
        assert_eq!(r.is_ok(), status != Maintenance, "{}", status.as_str());
        let mut v = volume(status);
        assert_eq!(unreserve(&mut v).is_ok(), status != Maintenance);
        assert_eq!(may_change(&v).is_ok(), status != Maintenance);
    }
}

#[test]
fn unreserve_goes_back_to_what_the_attachments_say() {
    let mut v = volume(Attaching);
    unreserve(&mut v).unwrap();
    assert_eq!(v.status, Available);
    let mut v = volume(Attaching);
    v.multiattach = true;
    v.attachments.push(attachment("a1", "rw"));
    unreserve(&mut v).unwrap();
    assert_eq!(v.status, InUse);
    let mut v = volume(InUse);
    unreserve(&mut v).unwrap();
    assert_eq!(v.status, InUse);
}

#[test]
fn a_shareable_volume_takes_more_attachments_but_does_not_extend_in_use() {
    let mut v = volume(InUse);
    v.multiattach = true;
    reserve(&mut v).unwrap();
    assert_eq!(v.status, Attaching);
    attach(&mut v, attachment("a2", "rw")).unwrap();
    assert_eq!((v.status, v.attachments.len()), (InUse, 2));
    let e = begin_extend(&mut v, 20).unwrap_err();
    assert_eq!(e.code(), "EVS.1065");
    // Two attachments: detach must say which; the other keeps it in use.
    assert!(detach(&mut v, None).is_err());
    assert!(detach(&mut v, Some("nope")).is_err());
    detach(&mut v, Some("a1")).unwrap();
    assert_eq!((v.status, v.attachments.len()), (InUse, 1));
    detach(&mut v, Some("a2")).unwrap();
    assert_eq!(v.status, Available);
}

#[test]
fn a_read_only_volume_attaches_only_read_only() {
    let mut v = volume(Available);
    set_readonly(&mut v, true).unwrap();
    assert!(v.readonly && v.readonly_shown);
    assert!(attach(&mut v, attachment("a", "rw")).is_err());
    attach(&mut v, attachment("a", "ro")).unwrap();
    let mut v = volume(Available);
    set_readonly(&mut v, true).unwrap();
    set_readonly(&mut v, false).unwrap();
    assert!(
        !v.readonly && v.readonly_shown,
        "the key stays shown once set"
    );
}

#[test]
fn extend_rules_and_codes() {
    let mut v = volume(Available);
    assert_eq!(begin_extend(&mut v, 10).unwrap_err().code(), "EVS.1015");
    assert_eq!(begin_extend(&mut v, 9).unwrap_err().code(), "EVS.1015");
    assert_eq!(begin_extend(&mut v, 0).unwrap_err().code(), "EVS.1010");
    let too_big = MAX_SIZE_GIB + 1;
    assert_eq!(
        begin_extend(&mut v, too_big).unwrap_err().code(),
        "EVS.1010"
    );
    assert_eq!(
        begin_extend(&mut volume(Error), 20).unwrap_err().code(),
        "EVS.1048"
    );
    assert_eq!(begin_extend(&mut v, 25).unwrap(), 15);
    assert_eq!(
        v.pending,
        Some(PendingOp::Extend {
            new_size: 25,
            previous: Available
        })
    );
}

#[test]
fn delete_refuses_attachments_snapshots_and_copies_in_progress() {
    let mut v = volume(InUse);
    assert_eq!(
        begin_delete(&mut v, &[], false, &[]).unwrap_err().code(),
        "EVS.1046"
    );
    let snaps = [snapshot("s1", SnapshotStatus::Available)];
    let mut v = volume(Available);
    assert!(begin_delete(&mut v, &snaps, false, &[]).is_err());
    begin_delete(&mut v, &snaps, true, &[]).unwrap();
    assert_eq!(
        (v.status, v.pending.clone()),
        (Deleting, Some(PendingOp::Delete))
    );
    // Cascade needs every snapshot settled.
    let busy = [snapshot("s1", SnapshotStatus::Creating)];
    assert!(begin_delete(&mut volume(Available), &busy, true, &[]).is_err());
    // A volume being cloned from this one, or from one of its snapshots.
    let mut clone = volume(Creating);
    clone.id = "v2".into();
    clone.pending = Some(PendingOp::Create(VolumeSource::Volume("v1".into())));
    assert!(begin_delete(&mut volume(Available), &[], false, &[clone.clone()]).is_err());
    clone.pending = Some(PendingOp::Create(VolumeSource::Snapshot("s1".into())));
    assert!(begin_delete(&mut volume(Available), &snaps, true, &[clone]).is_err());
}

#[test]
fn create_takes_size_and_type_from_its_source() {
    let (size, t, from) = check_create_source(CreateSource::Blank, None, None, "SATA").unwrap();
    assert_eq!((size, t.as_str(), from), (1, "SATA", VolumeSource::Blank));
    let (size, t, _) =
        check_create_source(CreateSource::Blank, Some(40), Some("SSD"), "SATA").unwrap();
    assert_eq!((size, t.as_str()), (40, "SSD"));

    let snap = snapshot("s1", SnapshotStatus::Available);
    let (size, t, from) =
        check_create_source(CreateSource::Snapshot(&snap, "GPSSD"), None, None, "SATA").unwrap();
    assert_eq!((size, t.as_str()), (10, "GPSSD"));
    assert_eq!(from, VolumeSource::Snapshot("s1".into()));
    let smaller = check_create_source(CreateSource::Snapshot(&snap, "GPSSD"), Some(5), None, "x");
    assert_eq!(smaller.unwrap_err().code(), "EVS.1010");
    let other_type = check_create_source(
        CreateSource::Snapshot(&snap, "GPSSD"),
        None,
        Some("SAS"),
        "x",
    );
    assert_eq!(other_type.unwrap_err().code(), "EVS.2096");
    let creating = snapshot("s1", SnapshotStatus::Creating);
    let r = check_create_source(CreateSource::Snapshot(&creating, "GPSSD"), None, None, "x");
    assert_eq!(r.unwrap_err().code(), "EVS.2043");

    for status in ALL {
        let src = volume(status);
        let r = check_create_source(CreateSource::Volume(&src), Some(12), Some("SAS"), "x");
        assert_eq!(
            r.is_ok(),
            matches!(status, Available | InUse),
            "{}",
            status.as_str()
        );
        if let Ok((size, t, from)) = r {
            // A clone may change type, unlike a volume from a snapshot.
            assert_eq!((size, t.as_str()), (12, "SAS"));
            assert_eq!(from, VolumeSource::Volume("v1".into()));
        }
    }
}

#[test]
fn finishing_each_operation_ok_or_failed() {
    let cases: Vec<(PendingOp, VolumeStatus, VolumeStatus, VolumeStatus)> = vec![
        // op, status while pending, after success, after failure
        (
            PendingOp::Create(VolumeSource::Blank),
            Creating,
            Available,
            Error,
        ),
        (
            PendingOp::Extend {
                new_size: 30,
                previous: InUse,
            },
            Extending,
            InUse,
            ErrorExtending,
        ),
        (PendingOp::Delete, Deleting, Deleting, ErrorDeleting),
        (
            PendingOp::Rollback("s1".into()),
            Rollbacking,
            Available,
            ErrorRollbacking,
        ),
        (
            PendingOp::Upload {
                image_id: "i1".into(),
                previous: InUse,
            },
            Uploading,
            InUse,
            InUse,
        ),
    ];
    for (op, during, ok_to, fail_to) in cases {
        for (ok, want) in [(true, ok_to), (false, fail_to)] {
            let mut v = volume(during);
            v.pending = Some(op.clone());
            let after = finish(&mut v, ok);
            assert_eq!(v.status, want, "{op:?} ok={ok}");
            assert_eq!(v.pending, None);
            let grown = matches!(op, PendingOp::Extend { .. }) && ok;
            assert_eq!(v.size, if grown { 30 } else { 10 });
            assert_eq!(after.remove_volume, op == PendingOp::Delete && ok);
            match &op {
                PendingOp::Upload { image_id, .. } => assert_eq!(
                    after.image,
                    Some((image_id.clone(), if ok { "active" } else { "killed" }))
                ),
                PendingOp::Rollback(s) => assert_eq!(after.snapshot_available, Some(s.clone())),
                _ => assert_eq!((after.image, after.snapshot_available), (None, None)),
            }
        }
    }
    let mut v = volume(Available);
    assert_eq!(finish(&mut v, false), Aftermath::default());
    assert_eq!(v.status, Available);
}

#[test]
fn snapshot_rules() {
    use SnapshotStatus as S;
    for (status, deletable) in [
        (S::Creating, false),
        (S::Available, true),
        (S::Error, true),
        (S::Deleting, false),
        (S::ErrorDeleting, false),
        (S::Rollbacking, false),
    ] {
        let mut x = snapshot("s1", status);
        let r = begin_snapshot_delete(&mut x, &[]);
        assert_eq!(r.is_ok(), deletable, "{}", status.as_str());
        if let Err(e) = r {
            assert_eq!(e.code(), "EVS.1047");
        }
        let mut v = volume(Available);
        let r = begin_rollback(&mut snapshot("s1", status), &mut v, None);
        assert_eq!(r.is_ok(), status == S::Available);
    }
    // Not while a volume is rolled back to it or created from it.
    let mut rolling = volume(Rollbacking);
    rolling.pending = Some(PendingOp::Rollback("s1".into()));
    let mut x = snapshot("s1", S::Available);
    assert!(begin_snapshot_delete(&mut x, &[rolling]).is_err());
    let mut x = snapshot("s1", S::Available);
    let mut v = volume(Available);
    begin_rollback(&mut x, &mut v, Some(Some("renamed".into()))).unwrap();
    assert_eq!(
        (x.status, v.name.as_deref()),
        (S::Rollbacking, Some("renamed"))
    );
    // Only to its own volume.
    let mut other = volume(Available);
    other.id = "v2".into();
    assert!(begin_rollback(&mut snapshot("s1", S::Available), &mut other, None).is_err());

    assert_eq!(
        snapshot_finished(S::Creating, true),
        SnapshotOutcome::Becomes(S::Available)
    );
    assert_eq!(
        snapshot_finished(S::Creating, false),
        SnapshotOutcome::Becomes(S::Error)
    );
    assert_eq!(
        snapshot_finished(S::Deleting, true),
        SnapshotOutcome::Removed
    );
    assert_eq!(
        snapshot_finished(S::Deleting, false),
        SnapshotOutcome::Becomes(S::ErrorDeleting)
    );
    assert_eq!(
        snapshot_finished(S::Available, false),
        SnapshotOutcome::Unchanged
    );
}

#[test]
fn transfers_move_ownership_and_withdraw() {
    let mut v = volume(Available);
    assert!(
        offer_transfer(&mut v, true).is_err(),
        "snapshots stay behind: refused"
    );
    offer_transfer(&mut v, false).unwrap();
    accept_transfer(&mut v, "p2", "u2").unwrap();
    assert_eq!((v.project_id.as_str(), v.user_id.as_str()), ("p2", "u2"));
    assert!(accept_transfer(&mut v, "p3", "u3").is_err(), "only once");
    let mut v = volume(AwaitingTransfer);
    assert!(withdraw_transfer(&mut v));
    assert_eq!(v.status, Available);
    assert!(!withdraw_transfer(&mut v));
}

#[test]
fn usage_counts_live_volumes_and_snapshots_per_type() {
    let mut a = volume(Available);
    a.size = 5;
    let mut b = volume(InUse);
    b.id = "v2".into();
    b.volume_type = "SAS".into();
    let mut gone = volume(Deleting);
    gone.id = "v3".into();
    let mut theirs = volume(Available);
    theirs.id = "v4".into();
    theirs.project_id = "p2".into();
    let snaps = [snapshot("s1", SnapshotStatus::Available)];
    let used = usage(["backups".to_owned()], &[a, b, gone, theirs], &snaps, "p1");
    assert_eq!(used["volumes"], 2);
    assert_eq!(used["gigabytes"], 5 + 10 + 10);
    assert_eq!(used["volumes_SSD"], 1);
    assert_eq!(used["gigabytes_SSD"], 5 + 10);
    assert_eq!(used["snapshots_SSD"], 1);
    assert_eq!(used["volumes_SAS"], 1);
    assert_eq!(used["backups"], 0);
}

#[test]
fn limits_refuse_over_quota_and_minus_one_is_unlimited() {
    let limits: BTreeMap<String, i64> = [
        ("volumes".to_owned(), 2),
        ("gigabytes".to_owned(), -1),
        ("per_volume_gigabytes".to_owned(), 100),
    ]
    .into();
    let used: BTreeMap<String, i64> = [("volumes".to_owned(), 1)].into();
    assert!(within_limits(&limits, &used, &volume_deltas(50, "SSD"), Some(50)).is_ok());
    let e = within_limits(
        &limits,
        &[("volumes".to_owned(), 2)].into(),
        &volume_deltas(1, "SSD"),
        Some(1),
    )
    .unwrap_err();
    assert!(matches!(e, Refusal::OverQuota(_)));
    assert_eq!(e.code(), "EVS.5413");
    let e = within_limits(&limits, &used, &volume_deltas(101, "SSD"), Some(101)).unwrap_err();
    assert!(e.to_string().contains("VolumeSizeExceedsLimit"));
    assert_eq!(
        extend_deltas(3, "SAS"),
        vec![("gigabytes".to_owned(), 3), ("gigabytes_SAS".to_owned(), 3)]
    );
    assert_eq!(snapshot_deltas(4, "SAS")[0], ("snapshots".to_owned(), 1));
}

#[test]
fn tags_follow_evs_limits_and_match_filters() {
    assert!(check_tag("环境", "生产").is_ok());
    assert_eq!(
        check_tag(" k ", " v.1 ").unwrap(),
        ("k".into(), "v.1".into())
    );
    assert!(check_tag("k.dot", "v").is_err(), "no '.' in keys");
    assert!(check_tag(&"k".repeat(36), &"v".repeat(43)).is_ok());
    assert!(check_tag(&"k".repeat(37), "v").is_err());
    assert!(check_tag("k", &"v".repeat(44)).is_err());
    let mut v = volume(Available);
    let ten: Vec<(String, String)> = (0..MAX_TAGS)
        .map(|i| (format!("k{i}"), "x".into()))
        .collect();
    add_tags(&mut v, &ten).unwrap();
    // Replacing a key keeps the count; an eleventh key is refused and nothing changes.
    add_tags(&mut v, &[("k0".into(), "y".into())]).unwrap();
    let before = v.tags.clone();
    assert!(add_tags(
        &mut v,
        &[("k1".into(), "z".into()), ("new".into(), "".into())]
    )
    .is_err());
    assert_eq!(v.tags, before);
    assert!(tags_match(&v, &[("k0".into(), vec![])]));
    assert!(tags_match(
        &v,
        &[("k0".into(), vec!["a".into(), "y".into()])]
    ));
    assert!(!tags_match(&v, &[("k0".into(), vec!["x".into()])]));
    assert!(!tags_match(
        &v,
        &[("k0".into(), vec![]), ("none".into(), vec![])]
    ));
    remove_tags(&mut v, &["k0".into(), "absent".into()]);
    assert_eq!(v.tags.len(), MAX_TAGS - 1);
}

fn backup(
    id: &str,
    status: crate::catalog::BackupStatus,
    parent: Option<&str>,
) -> crate::catalog::BackupRecord {
    crate::catalog::BackupRecord {
        id: id.into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        volume_id: "v1".into(),
        snapshot_id: None,
        name: None,
        description: None,
        container: None,
        status,
        size: 10,
        object_count: 0,
        uploaded_objects: 0,
        uploaded_bytes: 0,
        read_bytes: 0,
        parent_id: parent.map(Into::into),
        fail_reason: None,
        base_snapshot: None,
        restore_volume_id: None,
        availability_zone: "nova".into(),
        metadata: BTreeMap::new(),
        data_timestamp: Timestamp::now(),
        created_at: Timestamp::now(),
        updated_at: None,
        source_cmk: None,
    }
}

#[test]
fn a_backup_starts_from_available_or_in_use_with_force_and_returns_the_volume_to_it() {
    for status in ALL {
        for (force, from_snapshot) in [(false, false), (true, false), (false, true)] {
            let mut v = volume(status);
            let r = begin_backup(&mut v, force, from_snapshot, "b1");
            let allowed = status == Available || (status == InUse && (force || from_snapshot));
            assert_eq!(
                r.is_ok(),
                allowed,
                "{status:?} force={force} snap={from_snapshot}"
            );
            if allowed {
                assert_eq!(v.status, BackingUp);
                for ok in [true, false] {
                    let mut w = v.clone();
                    let after = finish(&mut w, ok);
                    assert_eq!(w.status, status, "back to what it was, ok or not");
                    assert_eq!(after.backup, Some(("b1".into(), ok)));
                }
            } else {
                assert_eq!(v.status, status, "a refusal changes nothing");
            }
        }
    }
}

#[test]
fn a_restore_needs_an_available_backup_and_an_available_volume_large_enough() {
    use crate::catalog::BackupStatus as B;
    for status in ALL {
        let mut v = volume(status);
        let mut b = backup("b1", B::Available, None);
        let r = begin_restore(&mut b, &mut v);
        assert_eq!(r.is_ok(), status == Available, "{status:?}");
        if r.is_ok() {
            assert_eq!((v.status, b.status), (RestoringBackup, B::Restoring));
            let mut failed = v.clone();
            finish(&mut failed, false);
            assert_eq!(failed.status, ErrorRestoring);
            let after = finish(&mut v, true);
            assert_eq!(v.status, Available);
            let (id, ok) = after.backup.unwrap();
            assert_eq!((id.as_str(), ok), ("b1", true));
            backup_finished(&mut b, true);
            assert_eq!(b.status, B::Available);
            assert_eq!(b.restore_volume_id, None);
        }
    }
    let mut small = volume(Available);
    small.size = 5;
    let mut b = backup("b1", B::Available, None);
    assert!(begin_restore(&mut b, &mut small).is_err());
    for s in [
        B::Creating,
        B::Error,
        B::Deleting,
        B::ErrorDeleting,
        B::Restoring,
    ] {
        let mut b = backup("b1", s, None);
        assert!(
            begin_restore(&mut b, &mut volume(Available)).is_err(),
            "{s:?}"
        );
    }
    // A new volume restored from a backup reports the backup's outcome too.
    let mut v = volume(Creating);
    v.pending = Some(PendingOp::Create(VolumeSource::Backup("b1".into())));
    let after = finish(&mut v, false);
    assert_eq!(
        (v.status, after.backup),
        (Error, Some(("b1".into(), false)))
    );
}

#[test]
fn a_backup_with_an_incremental_after_it_is_deleted_only_by_force() {
    use crate::catalog::BackupStatus as B;
    let full = backup("b1", B::Available, None);
    let inc = backup("b2", B::Available, Some("b1"));
    let all = vec![full.clone(), inc.clone()];
    assert!(has_dependents(&full, &all));
    assert!(!has_dependents(&inc, &all));
    let mut x = full.clone();
    assert!(begin_backup_delete(&mut x, &all, false).is_err());
    assert_eq!(x.status, B::Available);
    assert!(begin_backup_delete(&mut x, &all, true).is_ok());
    assert_eq!(x.status, B::Deleting);
    let mut y = inc.clone();
    assert!(begin_backup_delete(&mut y, &all, false).is_ok());
    for s in [B::Creating, B::Deleting, B::ErrorDeleting, B::Restoring] {
        let mut z = backup("b3", s, None);
        assert!(begin_backup_delete(&mut z, &all, false).is_err(), "{s:?}");
    }
    for s in [B::Creating, B::Restoring] {
        let mut z = backup("b3", s, None);
        assert!(
            begin_backup_delete(&mut z, &all, true).is_err(),
            "{s:?} even forced"
        );
    }
    // Taking one ends available or error; a failed restore leaves the backup available.
    let mut c = backup("b4", B::Creating, None);
    backup_finished(&mut c, false);
    assert_eq!(c.status, B::Error);
    let mut r = backup("b5", B::Restoring, None);
    backup_finished(&mut r, false);
    assert_eq!(r.status, B::Available);
}

fn encrypted(status: VolumeStatus) -> VolumeRecord {
    VolumeRecord {
        encryption: Some(crate::keys::VolumeKeyRecord {
            cmk_id: "cmk-1".into(),
            key_id: "00".repeat(16),
            wrapped: String::new(),
        }),
        ..volume(status)
    }
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn encryption_is_chosen_at_creation_and_follows_the_source() {
    let plain = volume(Available);
    let enc = encrypted(Available);
    let none = BTreeMap::new();
    // Blank volumes: by type or by EVS metadata, with or without a named master key.
    assert_eq!(
        encryption_for_create(None, false, &none, "p1"),
        Ok(NewEncryption::Plain)
    );
    assert_eq!(
        encryption_for_create(None, true, &none, "p1"),
        Ok(NewEncryption::Fresh { cmk: None })
    );
    let asked = meta(&[(ENCRYPTED_KEY, "1"), (CMK_KEY, "k")]);
    assert_eq!(
        encryption_for_create(None, false, &asked, "p1"),
        Ok(NewEncryption::Fresh {
            cmk: Some("k".into())
        })
    );
    for bad in [meta(&[(CMK_KEY, "k")]), meta(&[(ENCRYPTED_KEY, "true")])] {
        assert!(encryption_for_create(None, false, &bad, "p1").is_err());
    }
    assert!(encryption_for_create(None, true, &meta(&[(ENCRYPTED_KEY, "0")]), "p1").is_err());
    // Copies follow their source, whatever the type says.
    assert_eq!(
        encryption_for_create(Some(&enc), false, &none, "p1"),
        Ok(NewEncryption::Shared(&enc))
    );
    assert_eq!(
        encryption_for_create(Some(&plain), true, &none, "p1"),
        Ok(NewEncryption::Plain)
    );
    assert!(
        encryption_for_create(Some(&plain), false, &meta(&[(ENCRYPTED_KEY, "1")]), "p1").is_err()
    );
    let other_cmk = meta(&[(ENCRYPTED_KEY, "1"), (CMK_KEY, "cmk-2")]);
    assert!(encryption_for_create(Some(&enc), false, &other_cmk, "p1").is_err());
    assert!(encryption_for_create(Some(&enc), false, &none, "p2").is_err());
    // Never changed later: not by retype, not by transfer.
    assert!(check_retype_encryption(&enc, false).is_err());
    assert!(check_retype_encryption(&plain, true).is_err());
    assert!(check_retype_encryption(&enc, true).is_ok());
    let mut e = encrypted(Available);
    assert!(offer_transfer(&mut e, false).is_err());
    assert_eq!(e.status, Available);
}
