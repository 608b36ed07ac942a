//! Encrypted volumes: the set encrypts above its replicas, so the copies hold only
//! ciphertext and each block's seal. The contract holds as for a plain volume (writes of any
//! alignment, zeroes, snapshots, rollback, expansion, reopen, scrub, resync, rebuild — the
//! last three without the key); a block moved, or replaced by an older version of itself, is
//! an integrity error and never data; opening with no key, another key, or a key for a plain
//! volume fails before anything is changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tripod_engine::{BlockIndex, FaultPlan, FileStorage, MemStorage, RawBlock, SnapshotId, View};
use tripod_replication::cipher::VolumeCipher;
use tripod_replication::{
    LocalReplica, Replica, ReplicaHealth, ReplicaId, ReplicaSet, ReplicationError,
};

const T: Duration = Duration::from_secs(10);

fn file_replicas(root: &Path) -> [Arc<dyn Replica>; 3] {
    [0, 1, 2].map(|i| {
        let dir = root.join(format!("r{i}"));
        let storage = Arc::new(FileStorage::new(&dir).unwrap());
        Arc::new(LocalReplica::new(
            dir.display().to_string(),
            storage,
            options(),
        )) as Arc<dyn Replica>
    })
}

/// A workload of every kind of change, applied to the set and the model alike; `pattern`
/// supplies all data written.
fn workload(set: &ReplicaSet, model: &mut Model, pattern: &[u8]) {
    let mut at_pattern = 0usize;
    let mut take = |len: usize| {
        let piece = pattern[at_pattern..at_pattern + len].to_vec();
        at_pattern += len;
        piece
    };
    let write = |set: &ReplicaSet, model: &mut Model, at: u64, data: Vec<u8>| {
        set.write(at, &data).unwrap();
        model.write(at, &data);
    };
    // Aligned, unaligned, within one block, across blocks.
    write(set, model, 0, take(16 * BS as usize));
    write(set, model, 20 * BS + 123, take(30_000));
    write(set, model, 100 * BS + 7, take(1));
    write(set, model, 120 * BS - 3, take(5000));
    // Zeroes and a trim with partial edges (the edges keep their neighbours' bytes).
    set.write_zeroes(21 * BS + 5, 3 * BS).unwrap();
    model.head[(21 * BS + 5) as usize..(24 * BS + 5) as usize].fill(0);
    set.trim(120 * BS + 1, 2 * BS).unwrap();
    model.head[(120 * BS + 1) as usize..(122 * BS + 1) as usize].fill(0);
    let s1 = SnapshotId::new("s1").unwrap();
    set.snapshot(&s1).unwrap();
    model.snaps.insert("s1".into(), model.head.clone());
    write(set, model, 20 * BS + 400, take(2 * BS as usize));
    let size = model.size() + 64 * BS;
    set.expand(size).unwrap();
    model.head.resize(size as usize, 0);
    write(set, model, size - BS - 9, take(BS as usize));
    check(set, model);
    set.rollback(&s1).unwrap();
    let mut content = model.snaps["s1"].clone();
    content.resize(size as usize, 0);
    model.head = content;
    write(set, model, 3 * BS + 1, take(100));
    set.flush().unwrap();
}

/// The set serves the model: the head and every snapshot.
fn check(set: &ReplicaSet, model: &Model) {
    assert_eq!(set.size(), model.size());
    assert!(set.read(0, model.size()).unwrap()[..] == model.head[..]);
    for (name, content) in &model.snaps {
        let view = View::Snapshot(SnapshotId::new(name.as_str()).unwrap());
        let got = set.read_view(&view, 0, content.len() as u64).unwrap();
        assert!(got[..] == content[..], "snapshot {name}");
    }
}

#[test]
fn an_encrypted_volume_keeps_the_contract_and_its_files_hold_no_plaintext() {
    let pattern = random_pattern(1, 120_000);
    let needles = Needles::of(&pattern);
    let size = 256 * BS;
    let cipher = test_cipher(1);

    let root = tempfile::tempdir().unwrap();
    let set = ReplicaSet::create_encrypted(
        file_replicas(root.path()),
        size,
        GEOMETRY,
        config(),
        cipher.clone(),
    )
    .unwrap();
    assert!(set.is_encrypted());
    let mut model = Model::new(size);
    workload(&set, &mut model, &pattern);
    check(&set, &model);
    assert_eq!(set.scrub().unwrap().repaired, 0);
    drop(set);

    let set =
        ReplicaSet::open_encrypted(file_replicas(root.path()), config(), cipher.clone()).unwrap();
    check(&set, &model);
    for id in ReplicaId::ALL {
        assert_replica_matches_with(&set, id, &model, "reopened", Some(&cipher));
    }
    assert_eq!(set.integrity_errors(), 0);
    drop(set);
    assert!(
        !needles.found_under(root.path()),
        "a replica file holds plaintext"
    );

    // The same workload on a plain volume leaves the pattern in its files: the search works.
    let plain_root = tempfile::tempdir().unwrap();
    let set =
        ReplicaSet::create(file_replicas(plain_root.path()), size, GEOMETRY, config()).unwrap();
    workload(&set, &mut Model::new(size), &pattern);
    drop(set);
    assert!(needles.found_under(plain_root.path()));
}

/// Block `block` as replica `r` stores it: its bytes, generation and seal.
fn stored(r: &dyn Replica, block: u64) -> (Bytes, u64, tripod_engine::Seal) {
    let read = r.read_sealed(View::Head, block * BS, BS).wait(T).unwrap();
    let seal = read.seals[0].expect("the block holds data");
    (read.data, seal.generation, seal.seal)
}

/// Puts `bytes` with `seal` in place of block `block` on replica `r`, under the block's own
/// current generation (what someone with write access to the replica's files could do).
fn plant(r: &dyn Replica, block: u64, (bytes, seal): (Bytes, tripod_engine::Seal)) {
    let (_, generation, _) = stored(r, block);
    r.write_raw(
        BlockIndex(block),
        vec![RawBlock {
            data: Some(bytes),
            generation,
            seal,
        }],
    )
    .wait(T)
    .unwrap();
}

fn block_of(seed: u64) -> Vec<u8> {
    random_pattern(seed, BS as usize)
}

#[test]
fn a_block_moved_or_rolled_back_on_every_copy_is_an_integrity_error_never_data() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = Arc::new(rig.create_encrypted(64 * BS, &test_cipher(2)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    set.write(3 * BS, &block_of(3)).unwrap();
    set.write(9 * BS, &block_of(9)).unwrap();
    set.write(5 * BS, &block_of(50)).unwrap();
    let old5: Vec<_> = ReplicaId::ALL
        .iter()
        .map(|id| stored(set.replica(*id).as_ref(), 5))
        .collect();
    set.write(5 * BS, &block_of(51)).unwrap();
    for (i, id) in ReplicaId::ALL.into_iter().enumerate() {
        let r = set.replica(id);
        // Block 3's ciphertext and seal moved to block 9.
        let (bytes, _, seal) = stored(r.as_ref(), 3);
        plant(r.as_ref(), 9, (bytes, seal));
        // Block 5's older version brought back under its current generation.
        let (bytes, _, seal) = old5[i].clone();
        plant(r.as_ref(), 5, (bytes, seal));
    }
    for block in [9, 5] {
        match set.read(block * BS, BS) {
            Err(ReplicationError::Unauthentic { block: b }) => assert_eq!(b, BlockIndex(block)),
            other => panic!("block {block}: {other:?}"),
        }
        // So is any read that touches it, unaligned or long, blocking or async.
        assert!(set.read(block * BS - 10, 20).is_err());
        assert!(rt.block_on(set.read_async(block * BS + 3, 5)).is_err());
        assert!(set.read(0, 16 * BS).is_err());
    }
    assert!(set.integrity_errors() > 0);
    // The rest is served, and the volume stays in service.
    assert_eq!(&set.read(3 * BS, BS).unwrap()[..], &block_of(3)[..]);
    assert!(set
        .status()
        .replicas
        .0
        .iter()
        .all(|r| r.health == ReplicaHealth::InService));
    // A write of the whole block heals it; a partial write cannot (it needs the old bytes).
    assert!(set.write(9 * BS + 1, &[7]).is_err());
    set.write(9 * BS, &block_of(90)).unwrap();
    assert_eq!(&set.read(9 * BS, BS).unwrap()[..], &block_of(90)[..]);
}

#[test]
fn blocks_altered_on_some_copies_are_served_from_the_others() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = Arc::new(rig.create_encrypted(64 * BS, &test_cipher(3)));
    let mut model = Model::new(64 * BS);
    for block in 0..16 {
        set.write(block * BS, &block_of(block)).unwrap();
        model.write(block * BS, &block_of(block));
    }
    // Two copies of block 9 hold block 3's ciphertext; each copy has a different bad block
    // among 4, 5 and 6.
    for id in [ReplicaId::ALL[0], ReplicaId::ALL[1]] {
        let r = set.replica(id);
        let (bytes, _, seal) = stored(r.as_ref(), 3);
        plant(r.as_ref(), 9, (bytes, seal));
    }
    for (i, id) in ReplicaId::ALL.into_iter().enumerate() {
        let r = set.replica(id);
        let (bytes, _, seal) = stored(r.as_ref(), 12);
        plant(r.as_ref(), 4 + i as u64, (bytes, seal));
    }
    assert_eq!(&set.read(9 * BS, BS).unwrap()[..], &block_of(9)[..]);
    // A range bad on a different block of each copy is served block by block.
    assert!(set.read(0, 16 * BS).unwrap()[..] == model.head[..16 * BS as usize]);
    assert!(set.integrity_errors() >= 2);
    // The same through the async path (what the NBD export uses), aligned or not.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (at, len) in [
        (0, 16 * BS),
        (9 * BS, BS),
        (4 * BS + 7, 3 * BS),
        (12 * BS + 1, 10),
    ] {
        let got = rt.block_on(set.read_async(at, len)).unwrap();
        assert!(
            got[..] == model.head[at as usize..(at + len) as usize],
            "async read {at}+{len}"
        );
    }
    // Partial writes next to the damage merge with the authentic bytes.
    set.write(9 * BS + 100, &[1, 2, 3]).unwrap();
    model.write(9 * BS + 100, &[1, 2, 3]);
    assert!(set.read(0, 64 * BS).unwrap()[..] == model.head[..]);
}

/// Every file of each store, to show that nothing was changed.
fn files(mems: &[MemStorage; 3]) -> Vec<BTreeMap<String, Vec<u8>>> {
    mems.iter()
        .map(|m| {
            tripod_engine::Storage::list(m)
                .unwrap()
                .into_iter()
                .map(|name| {
                    let bytes = m.read_file(&name).unwrap();
                    (name, bytes)
                })
                .collect()
        })
        .collect()
}

fn open_error(r: Result<ReplicaSet, ReplicationError>) -> String {
    match r {
        Err(ReplicationError::Open(msg)) => msg,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn opening_with_no_key_another_key_or_a_key_for_a_plain_volume_fails_and_changes_nothing() {
    let key: Arc<VolumeCipher> = test_cipher(4);
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create_encrypted(64 * BS, &key);
    set.write(BS + 3, &block_of(1)).unwrap();
    set.flush().unwrap();
    drop(set);
    let before = files(&rig.mems);
    let msg = open_error(ReplicaSet::open(rig.replicas(), config()));
    assert!(msg.contains("encrypted") && msg.contains("key"), "{msg}");
    let msg = open_error(ReplicaSet::open_encrypted(
        rig.replicas(),
        config(),
        test_cipher(5),
    ));
    assert!(msg.contains("not this volume's key"), "{msg}");
    assert!(
        files(&rig.mems) == before,
        "a refused open changed a replica"
    );
    // Opened for maintenance, without the key: scrub runs; client I/O is refused.
    let set = ReplicaSet::open_for_maintenance(rig.replicas(), config()).unwrap();
    assert!(set.is_encrypted());
    assert_eq!(set.scrub().unwrap().repaired, 0);
    assert!(matches!(set.read(0, BS), Err(ReplicationError::KeyNeeded)));
    assert!(matches!(
        set.write(0, &[1; 10]),
        Err(ReplicationError::KeyNeeded)
    ));
    assert!(matches!(
        set.write_zeroes(0, BS),
        Err(ReplicationError::KeyNeeded)
    ));
    drop(set);
    let set = ReplicaSet::open_encrypted(rig.replicas(), config(), key.clone()).unwrap();
    assert_eq!(&set.read(BS + 3, BS).unwrap()[..], &block_of(1)[..]);
    drop(set);

    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(64 * BS);
    set.write(0, &block_of(2)).unwrap();
    drop(set);
    let before = files(&rig.mems);
    let msg = open_error(ReplicaSet::open_encrypted(rig.replicas(), config(), key));
    assert!(msg.contains("not encrypted"), "{msg}");
    assert!(
        files(&rig.mems) == before,
        "a refused open changed a replica"
    );
    assert!(!ReplicaSet::open(rig.replicas(), config())
        .unwrap()
        .is_encrypted());
}

#[test]
fn resync_scrub_and_rebuild_of_an_encrypted_volume_keep_every_copy_authentic() {
    let key = test_cipher(6);
    let rig = Rig::new([FaultPlan::default(); 3]);
    let size = 128 * BS;
    let set = rig.create_encrypted(size, &key);
    let mut model = Model::new(size);
    let mut rng = Rng(6);
    let mut write = |set: &ReplicaSet, model: &mut Model| {
        let at = rng.below(size - 3000);
        let data = random_pattern(rng.next(), 1 + rng.below(3000) as usize);
        set.write(at, &data).unwrap();
        model.write(at, &data);
    };
    for _ in 0..40 {
        write(&set, &mut model);
    }
    // Replica 1 misses writes while down and is resynced when it returns.
    rig.flaky[1].set(Mode::Down);
    for _ in 0..40 {
        write(&set, &mut model);
    }
    rig.flaky[1].set(Mode::Up);
    assert!(set.heal_now().still_out.is_empty());
    // Bit flips in replica 2's data are repaired by scrub (by CRC, without the key).
    let data_files: Vec<String> = tripod_engine::Storage::list(&rig.mems[2])
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .collect();
    for name in &data_files {
        let len = rig.mems[2].read_file(name).unwrap().len() as u64;
        for k in 0..4 {
            rig.mems[2]
                .flip_bits(name, (rng.below(len.max(1)) + k) % len.max(1), 0x10)
                .unwrap();
        }
    }
    let scrub = set.scrub().unwrap();
    assert!(scrub.unrepairable.is_empty(), "{scrub:?}");
    // Replica 0 is replaced by an empty store and rebuilt.
    let fresh = Arc::new(Flaky::new(Arc::new(MemStorage::new()), options()));
    set.replace(ReplicaId::ALL[0], fresh).unwrap();
    assert!(set.heal_now().still_out.is_empty());
    for id in ReplicaId::ALL {
        assert_replica_matches_with(&set, id, &model, "healed", Some(&key));
    }
    assert!(set.read(0, size).unwrap()[..] == model.head[..]);
    assert_eq!(set.integrity_errors(), 0);
}
