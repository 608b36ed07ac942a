//! Snapshot scale, space accounting and clones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use tripod_engine::{Geometry, MemStorage, SnapshotId, Volume, VolumeOptions};

const BS: u64 = 4096;

fn volume(blocks: u64) -> Volume {
    Volume::create(
        Arc::new(MemStorage::new()),
        blocks * BS,
        Geometry {
            block_size: 4096,
            chunk_blocks: 64,
        },
        VolumeOptions::default(),
    )
    .unwrap()
}

fn id(s: &str) -> SnapshotId {
    SnapshotId::new(s).unwrap()
}

#[test]
fn three_hundred_snapshots_each_keep_their_own_content() {
    let vol = volume(512);
    for i in 0..300u64 {
        vol.write((i % 512) * BS, &[(i % 250) as u8 + 1; 4096])
            .unwrap();
        vol.snapshot(&id(&format!("s{i}"))).unwrap();
    }
    assert_eq!(vol.list_snapshots().len(), 300);
    for i in [0u64, 1, 150, 299] {
        let mut buf = vec![0; 4096];
        vol.read_snapshot_at(&id(&format!("s{i}")), (i % 512) * BS, &mut buf)
            .unwrap();
        assert_eq!(buf, vec![(i % 250) as u8 + 1; 4096]);
    }
    // The head sees every write through the whole chain.
    for i in 0..300u64 {
        assert_eq!(
            vol.read((i % 512) * BS, 1).unwrap(),
            vec![(i % 250) as u8 + 1]
        );
    }
    vol.rollback(&id("s10")).unwrap();
    assert_eq!(vol.read(11 * BS, 1).unwrap(), vec![0]);
    assert_eq!(vol.read(10 * BS, 1).unwrap(), vec![11]);
    assert_eq!(vol.list_snapshots().len(), 300);
}

#[test]
fn space_is_counted_per_layer_and_freed_by_delete() {
    let vol = volume(256);
    vol.write(0, &vec![1; 64 * 4096]).unwrap();
    vol.snapshot(&id("a")).unwrap();
    vol.write(0, &vec![2; 16 * 4096]).unwrap();
    let usage = vol.space_used();
    assert_eq!(usage.head_bytes, 16 * BS);
    assert_eq!(usage.snapshots, vec![(id("a"), 64 * BS)]);
    assert_eq!(usage.total_bytes, 80 * BS);
    // Deleting the snapshot frees the 16 blocks the head overwrote; 48 stay, still read.
    vol.delete_snapshot(&id("a")).unwrap();
    let usage = vol.space_used();
    assert_eq!((usage.hidden_bytes, usage.total_bytes), (48 * BS, 64 * BS));
    assert_eq!(vol.read(20 * BS, 1).unwrap(), vec![1]);
    assert_eq!(vol.read(0, 1).unwrap(), vec![2]);
    assert!(vol.list_snapshots().is_empty());
}

#[test]
fn a_clone_holds_the_snapshot_and_is_independent() {
    let vol = volume(300);
    vol.write(5 * BS, &[7; 4096]).unwrap();
    vol.write(200 * BS + 100, &[8; 1000]).unwrap();
    vol.snapshot(&id("base")).unwrap();
    vol.write(5 * BS, &[9; 4096]).unwrap();
    let target = MemStorage::new();
    let mut calls = Vec::new();
    let clone = vol
        .clone_snapshot(
            &id("base"),
            Arc::new(target.clone()),
            VolumeOptions::default(),
            &mut |d, t| calls.push((d, t)),
        )
        .unwrap();
    assert_eq!(clone.size(), vol.size());
    assert_eq!(clone.read(5 * BS, 4096).unwrap(), vec![7; 4096]);
    assert_eq!(clone.read(200 * BS + 100, 1000).unwrap(), vec![8; 1000]);
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(calls.last(), Some(&(300 * BS, 300 * BS)));
    clone.write(5 * BS, &[1; 4096]).unwrap();
    assert_eq!(vol.read(5 * BS, 1).unwrap(), vec![9]);
    let mut buf = [0u8; 1];
    vol.read_snapshot_at(&id("base"), 5 * BS, &mut buf).unwrap();
    assert_eq!(buf, [7]);
    drop(clone);
    let reopened = Volume::open(Arc::new(target), VolumeOptions::default()).unwrap();
    assert_eq!(reopened.read(5 * BS, 1).unwrap(), vec![1]);
    // Holes stay holes in the clone.
    let ext = reopened.extents(0, 300 * BS).unwrap();
    let data: u64 = ext.iter().filter(|e| e.data).map(|e| e.len).sum();
    assert_eq!(data, 2 * BS);
}

#[test]
fn expansion_is_online_and_new_space_reads_zeros() {
    let vol = Arc::new(volume(64));
    std::thread::scope(|s| {
        let v = vol.clone();
        s.spawn(move || {
            for i in 0..200u64 {
                v.write((i % 64) * BS, &[3; 4096]).unwrap();
            }
        });
        for n in 1..=8u64 {
            vol.expand((64 + n * 16) * BS).unwrap();
        }
    });
    assert_eq!(vol.size(), 192 * BS);
    assert!(vol.read(64 * BS, 128 * BS).unwrap().iter().all(|&b| b == 0));
    vol.write(191 * BS, &[4; 4096]).unwrap();
    assert_eq!(vol.read(191 * BS, 1).unwrap(), vec![4]);
}
