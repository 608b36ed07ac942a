//! Replicas on small real file systems that fill up (ext4 on loop devices, or tmpfs):
//!
//! - one replica's disk full: it leaves service, the volume goes on with two, nothing
//!   acknowledged is lost, and it is resynced once space is freed;
//! - every disk full: writes are refused with `NoSpace` (nothing of them acknowledged),
//!   reads go on, the set keeps a write quorum of unchanged copies, a restart opens it, and
//!   writes work again once space is freed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/support/small_fs.rs"]
mod small_fs;
mod support;

use std::sync::Arc;

use small_fs::SmallFs;
use support::{assert_replica_matches, Model, Rng};
use tripod_engine::{FileStorage, Geometry, VolumeOptions};
use tripod_replication::{
    LocalReplica, Replica, ReplicaHealth, ReplicaId, ReplicaSet, ReplicationError, SetConfig,
};

const BS: u64 = 4096;
const SIZE: u64 = 64 << 20;

fn options() -> VolumeOptions {
    VolumeOptions {
        wal_limit: 1 << 20,
        write_back: true,
        ..VolumeOptions::default()
    }
}

struct Disks {
    fs: Vec<SmallFs>,
}

impl Disks {
    /// Three small file systems, each with 6 MiB of ballast to give back later.
    fn new() -> Option<Self> {
        let mut fs = Vec::new();
        for _ in 0..3 {
            let f = SmallFs::new(24)?;
            std::fs::write(f.path().join("ballast"), vec![0xbb; 6 << 20]).unwrap();
            fs.push(f);
        }
        Some(Self { fs })
    }

    fn replicas(&self) -> [Arc<dyn Replica>; 3] {
        [0, 1, 2].map(|i| {
            let storage = Arc::new(FileStorage::new(self.fs[i].path().join("vol")).unwrap());
            Arc::new(LocalReplica::new(format!("r{i}"), storage, options())) as Arc<dyn Replica>
        })
    }

    fn create(&self) -> ReplicaSet {
        ReplicaSet::create(
            self.replicas(),
            SIZE,
            Geometry::default(),
            SetConfig::default(),
        )
        .unwrap()
    }

    fn free(&self, i: usize) {
        self.fs[i].free();
        let _ = std::fs::remove_file(self.fs[i].path().join("ballast"));
    }
}

fn in_service(set: &ReplicaSet) -> usize {
    set.status()
        .replicas
        .0
        .iter()
        .filter(|r| r.health == ReplicaHealth::InService)
        .count()
}

/// Writes fresh 16 KiB pieces from `at` until the set refuses one; returns where it stopped.
fn write_until_refused(set: &ReplicaSet, model: &mut Model, rng: &mut Rng, mut at: u64) -> u64 {
    loop {
        assert!(at + 4 * BS <= SIZE, "the disks never filled");
        let data: Vec<u8> = (0..4 * BS).map(|_| (rng.next() | 1) as u8).collect();
        match set.write(at, &data) {
            Ok(()) => model.write(at, &data),
            Err(ReplicationError::NoSpace { .. }) => return at,
            Err(e) => panic!("write at {at}: {e}"),
        }
        at += 4 * BS;
    }
}

#[test]
fn one_full_replica_leaves_service_and_is_resynced_once_space_is_freed() {
    let Some(disks) = Disks::new() else {
        return;
    };
    let set = disks.create();
    let mut model = Model::new(SIZE);
    let mut rng = Rng(3);
    // Replica 1's disk alone fills up.
    let _filler = disks.fs[1].fill();
    let mut at = 0;
    for _ in 0..64 {
        let data: Vec<u8> = (0..4 * BS).map(|_| (rng.next() | 1) as u8).collect();
        set.write(at, &data).unwrap();
        model.write(at, &data);
        at += 4 * BS;
    }
    set.flush().unwrap();
    assert_eq!(in_service(&set), 2);
    assert!(set.read(0, at).unwrap()[..] == model.head[..at as usize]);
    // A heal while it is still full fails and leaves it out.
    assert_eq!(set.heal_now().still_out.len(), 1);
    disks.free(1);
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after resync");
    }
}

#[test]
fn every_disk_full_refuses_writes_keeps_reads_and_recovers_once_space_is_freed() {
    let Some(disks) = Disks::new() else {
        return;
    };
    let set = disks.create();
    let mut model = Model::new(SIZE);
    let mut rng = Rng(4);
    let stopped = write_until_refused(&set, &mut model, &mut rng, 0);
    // Fill what is left on every disk.
    for f in &disks.fs {
        f.fill();
    }
    for _ in 0..4 {
        let r = set.write(stopped, &[7; 4 * BS as usize]);
        assert!(matches!(r, Err(ReplicationError::NoSpace { .. })), "{r:?}");
    }
    // The copies that refused are unchanged and stay in service: reads go on, and a write
    // quorum is kept for when space comes back.
    assert!(in_service(&set) >= 2, "{:?}", set.status());
    let status = set.status();
    assert!(
        status.out_of_space && status.space_refusals >= 4,
        "{status:?}"
    );
    assert!(set.read(0, stopped).unwrap()[..] == model.head[..stopped as usize]);
    set.flush().unwrap();
    // A restart in that state opens everything.
    drop(set);
    let set = ReplicaSet::open(disks.replicas(), SetConfig::default()).unwrap();
    assert!(set.read(0, stopped).unwrap()[..] == model.head[..stopped as usize]);
    assert!(matches!(
        set.write(stopped, &[7; 4 * BS as usize]),
        Err(ReplicationError::NoSpace { .. })
    ));
    // Space freed on every disk: writes work again and every copy catches up.
    for i in 0..3 {
        disks.free(i);
    }
    let data = vec![9u8; 16 * BS as usize];
    set.write(stopped, &data).unwrap();
    model.write(stopped, &data);
    assert!(!set.status().out_of_space);
    set.flush().unwrap();
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after space came back");
    }
}
