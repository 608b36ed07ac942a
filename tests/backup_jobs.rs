//! The backup work itself, on a replica set in a temporary directory and an in-memory or
//! directory target: incremental backups with and without the parent's snapshot, dedup of
//! equal blocks, garbage collection, and restores that stop at a missing block.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use tripod::backup::format::{Manifest, BLOCK_SIZE, MANIFEST_FORMAT};
use tripod::backup::job::{self, Source};
use tripod::backup::BackupStore;
use tripod_engine::{SnapshotId, View};
use tripod_replication::ReplicaSet;

fn manifest(id: &str, parent: Option<&str>) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        backup_id: id.into(),
        volume_id: "v".into(),
        parent_id: parent.map(Into::into),
        size: 0,
        block_size: BLOCK_SIZE,
        data_timestamp: 0,
        name: None,
        description: None,
        blocks: Vec::new(),
    }
}

fn snap(set: &ReplicaSet, name: &str) -> View {
    let id = SnapshotId::new(name).unwrap();
    set.snapshot(&id).unwrap();
    View::Snapshot(id)
}

/// `len` pseudo-random bytes, different for every seed and never repeating within a block.
fn fill(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed) * 0x9E37_79B9_7F4A_7C15 + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn incremental_backups_read_changes_only_when_the_base_snapshot_is_there() {
    let (_dir, set) = support::temp_set(64 * BLOCK_SIZE);
    let store = BackupStore::open("memory://").unwrap();
    set.write(0, &fill(1, 3 * BLOCK_SIZE as usize)).unwrap();
    // The same content in two places is stored once.
    set.write(10 * BLOCK_SIZE, &fill(1, BLOCK_SIZE as usize))
        .unwrap();
    let v1 = snap(&set, "s1");
    let mut m1 = manifest("b1", None);
    let src = Source {
        set: &set,
        view: v1.clone(),
        parent: None,
    };
    let r1 = job::take(&src, &store, &mut m1, &|_, _| {}).unwrap();
    assert_eq!(m1.blocks.len(), 4);
    assert_eq!(r1.uploaded_objects, 3, "block 10 has block 0's content");
    assert_eq!(r1.read_bytes, 4 * BLOCK_SIZE);

    set.write(BLOCK_SIZE + 7, b"changed").unwrap();
    set.trim(2 * BLOCK_SIZE, BLOCK_SIZE).unwrap();
    let v2 = snap(&set, "s2");
    // With the parent's snapshot: two ranges read (one changed, one trimmed), one upload.
    let mut m2 = manifest("b2", Some("b1"));
    let src = Source {
        set: &set,
        view: v2.clone(),
        parent: Some((&m1, Some(v1.clone()))),
    };
    let r2 = job::take(&src, &store, &mut m2, &|_, _| {}).unwrap();
    assert_eq!((r2.read_bytes, r2.uploaded_objects), (2 * BLOCK_SIZE, 1));
    assert_eq!(
        m2.blocks.len(),
        3,
        "the trimmed range is gone from the manifest"
    );
    // Without it (deleted since): every range with data is read, still one upload.
    let mut m2b = manifest("b2b", Some("b1"));
    let src = Source {
        set: &set,
        view: v2.clone(),
        parent: Some((&m1, None)),
    };
    let r2b = job::take(&src, &store, &mut m2b, &|_, _| {}).unwrap();
    assert_eq!((r2b.read_bytes, r2b.uploaded_objects), (3 * BLOCK_SIZE, 0));
    assert_eq!(m2b.blocks, m2.blocks);
    assert_eq!(store.manifest("b2").unwrap(), Some(m2.clone()));

    // Restores of either are the snapshot, whatever the target held.
    let (_d2, target) = support::temp_set(64 * BLOCK_SIZE);
    target.write(2 * BLOCK_SIZE, &fill(9, 100)).unwrap();
    job::restore(&m2, &store, &target, &|_, _| {}).unwrap();
    let want = set.read_view(&v2, 0, 64 * BLOCK_SIZE).unwrap();
    assert_eq!(target.read(0, 64 * BLOCK_SIZE).unwrap(), want);
    job::restore(&m1, &store, &target, &|_, _| {}).unwrap();
    let want = set.read_view(&v1, 0, 64 * BLOCK_SIZE).unwrap();
    assert_eq!(target.read(0, 64 * BLOCK_SIZE).unwrap(), want);
}

#[test]
fn garbage_collection_frees_only_unnamed_blocks_and_a_missing_one_stops_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::open(dir.path().to_str().unwrap()).unwrap();
    let (_d, set) = support::temp_set(8 * BLOCK_SIZE);
    set.write(0, &fill(3, 2 * BLOCK_SIZE as usize)).unwrap();
    let v1 = snap(&set, "s1");
    let mut m1 = manifest("b1", None);
    let src = Source {
        set: &set,
        view: v1.clone(),
        parent: None,
    };
    job::take(&src, &store, &mut m1, &|_, _| {}).unwrap();
    set.write(0, &fill(4, BLOCK_SIZE as usize)).unwrap();
    let v2 = snap(&set, "s2");
    let mut m2 = manifest("b2", Some("b1"));
    let src = Source {
        set: &set,
        view: v2,
        parent: Some((&m1, Some(v1))),
    };
    job::take(&src, &store, &mut m2, &|_, _| {}).unwrap();
    assert_eq!(store.collect_garbage().unwrap().0, 0, "all three are named");
    store.delete_manifest("b1").unwrap();
    let (freed, bytes) = store.collect_garbage().unwrap();
    assert_eq!(freed, 1, "only b1's first block was b1's alone");
    assert!(bytes > 0);
    job::verify(&m2, &store, &|_, _| {}).unwrap();

    // Remove one of b2's blocks: verify and restore name it; nothing past it is written.
    let victim = m2.blocks[1].hash.to_string();
    let path = dir.path().join("blocks").join(&victim[..2]).join(&victim);
    std::fs::remove_file(&path).unwrap();
    let e = job::verify(&m2, &store, &|_, _| {}).unwrap_err();
    assert!(e.to_string().contains(&victim), "{e}");
    let (_d2, target) = support::temp_set(8 * BLOCK_SIZE);
    target
        .write(BLOCK_SIZE, &fill(7, BLOCK_SIZE as usize))
        .unwrap();
    let e = job::restore(&m2, &store, &target, &|_, _| {}).unwrap_err();
    assert!(e.to_string().contains(&victim), "{e}");
    assert_eq!(
        target.read(BLOCK_SIZE, BLOCK_SIZE).unwrap().to_vec(),
        fill(7, BLOCK_SIZE as usize),
        "the range whose block is missing keeps what it had"
    );
}
