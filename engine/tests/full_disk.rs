//! A volume on a small real file system that fills up: writes that need space fail with
//! `NoSpace` before anything is recorded, the volume is not poisoned (reads, flushes, a
//! reopen all work, nothing acknowledged is lost), and writes succeed again once space is
//! freed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/support/small_fs.rs"]
mod small_fs;
mod support;

use std::sync::Arc;

use small_fs::SmallFs;
use support::{Model, Rng};
use tripod_engine::{EngineError, FileStorage, Geometry, SnapshotId, Volume, VolumeOptions};

const BS: u64 = 4096;

fn options(write_back: bool) -> VolumeOptions {
    VolumeOptions {
        wal_limit: 1 << 20,
        write_back,
        ..VolumeOptions::default()
    }
}

fn fill_until_full(vol: &Volume, model: &mut Model, rng: &mut Rng, size: u64) -> u64 {
    // Small (logged) and large (placed) writes over fresh blocks until the disk is full.
    let mut at = 0;
    let mut large = true;
    loop {
        // Mixed sizes until the first refusal, then single blocks to the last free one.
        let len = if large && rng.below(2) == 1 {
            16 * BS
        } else {
            BS
        };
        if at + len > size {
            panic!("the volume never filled the file system");
        }
        let data: Vec<u8> = (0..len).map(|_| (rng.next() | 1) as u8).collect();
        match vol.write(at, &data) {
            Ok(()) => model.write(at, &data),
            Err(EngineError::NoSpace { .. }) if len == BS && !large => return at,
            Err(EngineError::NoSpace { .. }) => {
                large = false;
                continue;
            }
            Err(e) => panic!("write at {at}: {e}"),
        }
        at += len;
    }
}

fn check(vol: &Volume, model: &Model, upto: u64) {
    let got = vol.read(0, upto).unwrap();
    assert!(got[..] == model.head[..upto as usize], "content differs");
}

#[test]
fn a_full_file_system_refuses_writes_cleanly_and_they_work_again_once_space_is_freed() {
    for write_back in [true, false] {
        let Some(fs) = SmallFs::new(24) else {
            return;
        };
        let size = 64 << 20;
        let storage = Arc::new(FileStorage::new(fs.path().join("vol")).unwrap());
        let vol = Volume::create(
            storage.clone(),
            size,
            Geometry::default(),
            options(write_back),
        )
        .unwrap();
        // Space that is given back later, as a user deleting files would.
        let ballast = fs.path().join("ballast");
        std::fs::write(&ballast, vec![0xbb; 6 << 20]).unwrap();
        let mut model = Model::new(size);
        let mut rng = Rng(7);
        let full_at = fill_until_full(&vol, &mut model, &mut rng, size);
        // Not poisoned: everything acknowledged reads back, a flush works, and new space
        // is still refused cleanly. (Overwriting a block the volume holds needs no data
        // space, but its log record may: either outcome is fine, a half one is not.)
        check(&vol, &model, full_at);
        match vol.write(0, &[9; BS as usize]) {
            Ok(()) => model.write(0, &[9; BS as usize]),
            Err(EngineError::NoSpace { .. }) => {}
            Err(e) => panic!("overwrite: {e}"),
        }
        check(&vol, &model, full_at);
        vol.flush().unwrap();
        assert!(matches!(
            vol.write(full_at, &[1; BS as usize]),
            Err(EngineError::NoSpace { .. })
        ));
        check(&vol, &model, full_at);
        // Filling the rest of the disk with another file changes nothing either, and
        // structural changes are refused whole or done whole.
        let filler = fs.fill();
        check(&vol, &model, full_at);
        let snap = SnapshotId::new("while-full").unwrap();
        let snapped = match vol.snapshot(&snap) {
            Ok(()) => true,
            Err(EngineError::NoSpace { .. }) => false,
            Err(e) => panic!("snapshot: {e}"),
        };
        assert_eq!(vol.list_snapshots().len(), usize::from(snapped));
        match vol.expand(size + (1 << 20)) {
            Ok(()) => {
                assert_eq!(vol.size(), size + (1 << 20));
                vol.expand(size + (2 << 20)).ok();
            }
            Err(EngineError::NoSpace { .. }) => assert_eq!(vol.size(), size),
            Err(e) => panic!("expand: {e}"),
        }
        check(&vol, &model, full_at);
        vol.flush().unwrap();
        // A restart in that state opens the volume with everything in it.
        drop(vol);
        let vol = Volume::open(storage.clone(), options(write_back)).unwrap();
        check(&vol, &model, full_at);
        // Space freed: writes go on where they stopped.
        std::fs::remove_file(filler).unwrap();
        std::fs::remove_file(ballast).unwrap();
        let data = vec![5u8; 8 * BS as usize];
        vol.write(full_at, &data).unwrap();
        model.write(full_at, &data);
        vol.flush().unwrap();
        drop(vol);
        let vol = Volume::open(storage, options(write_back)).unwrap();
        check(&vol, &model, full_at + 8 * BS);
        // And structural changes work again.
        if !snapped {
            vol.snapshot(&snap).unwrap();
        }
        assert_eq!(vol.list_snapshots().len(), 1);
        assert!(vol.verify().unwrap().bad.is_empty());
        eprintln!(
            "{} (write-back {write_back}): full after {full_at} bytes, snapshot while full: {snapped}",
            fs.kind
        );
    }
}
