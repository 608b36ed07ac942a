//! Many threads at once: partial-block writers of the same blocks never lose each other's
//! bytes, and readers never see a checksum error while writers run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use tripod_engine::{Geometry, MemStorage, SnapshotId, Volume, VolumeOptions};

#[test]
fn concurrent_partial_writers_of_one_block_lose_nothing() {
    let vol = Volume::create(
        Arc::new(MemStorage::new()),
        1 << 20,
        Geometry::default(),
        VolumeOptions {
            wal_limit: 256 << 10,
            direct_write_min: 8 << 10,
            ..VolumeOptions::default()
        },
    )
    .unwrap();
    // 8 threads each own 512 bytes of every one of the first 4 blocks.
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let vol = &vol;
            s.spawn(move || {
                for round in 1..=25u8 {
                    for block in 0..4u64 {
                        vol.write(block * 4096 + t * 512, &[round ^ t as u8; 512])
                            .unwrap();
                    }
                }
            });
        }
    });
    for block in 0..4u64 {
        let got = vol.read(block * 4096, 4096).unwrap();
        for t in 0..8usize {
            assert_eq!(
                got[t * 512..(t + 1) * 512],
                [25 ^ t as u8; 512],
                "block {block} part {t}"
            );
        }
    }
}

#[test]
fn readers_never_see_checksum_errors_while_writers_and_snapshots_run() {
    let vol = Volume::create(
        Arc::new(MemStorage::new()),
        4 << 20,
        Geometry::default(),
        VolumeOptions {
            wal_limit: 128 << 10,
            direct_write_min: 8 << 10,
            ..VolumeOptions::default()
        },
    )
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let vol = &vol;
            s.spawn(move || {
                for i in 0..200u64 {
                    let block = (i * 7 + t * 13) % 1024;
                    vol.write(block * 4096, &[(i % 251) as u8 + 1; 4096])
                        .unwrap();
                }
            });
        }
        for _ in 0..2 {
            let vol = &vol;
            s.spawn(move || {
                for i in 0..400u64 {
                    let block = (i * 11) % 1024;
                    let got = vol.read(block * 4096, 4096).unwrap();
                    assert!(got.iter().all(|&b| b == got[0]), "a torn block was read");
                }
            });
        }
        let vol = &vol;
        s.spawn(move || {
            for i in 0..10 {
                let id = SnapshotId::new(format!("s{i}")).unwrap();
                vol.snapshot(&id).unwrap();
                if i % 3 == 2 {
                    vol.delete_snapshot(&id).unwrap();
                }
            }
        });
    });
    assert!(vol.verify().unwrap().bad.is_empty());
}
