//! Linked clones: a volume made from another's snapshot in O(metadata), sharing the
//! snapshot's files. Unit tests for what is shared and what is not, crash tests for the
//! clone itself, and a model test over families of volumes (clones of clones) under writes,
//! snapshots, deletions, rollbacks, reopens, power losses and whole-volume deletion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use tripod_engine::{
    CrashMode, FaultPlan, FaultyStorage, Geometry, MemStorage, SnapshotId, Storage, Volume,
    VolumeOptions,
};

const BS: u64 = 4096;
const GEOMETRY: Geometry = Geometry {
    block_size: 4096,
    chunk_blocks: 16,
};

fn id(s: &str) -> SnapshotId {
    SnapshotId::new(s).unwrap()
}

fn create(storage: &MemStorage, blocks: u64) -> Volume {
    Volume::create(
        Arc::new(storage.clone()),
        blocks * BS,
        GEOMETRY,
        VolumeOptions::default(),
    )
    .unwrap()
}

fn open(storage: &MemStorage) -> Volume {
    Volume::open(Arc::new(storage.clone()), VolumeOptions::default()).unwrap()
}

#[test]
fn a_clone_shares_the_snapshot_and_diverges_from_it() {
    let ps = MemStorage::new();
    let parent = create(&ps, 64);
    parent.write(0, &vec![1; 32 * 4096]).unwrap();
    parent.snapshot(&id("s")).unwrap();
    parent.write(0, &vec![2; 4096]).unwrap();

    let cs = MemStorage::new();
    let report = parent.link_snapshot_into(&id("s"), &cs, 128 * BS).unwrap();
    assert_eq!((report.linked, report.copied), (2, 0));
    let child = open(&cs);
    assert_eq!(child.size(), 128 * BS);
    assert_eq!(child.read(0, 4096).unwrap(), vec![1; 4096]);
    assert_eq!(child.read(64 * BS, 4096).unwrap(), vec![0; 4096]);
    assert!(child.list_snapshots().is_empty());
    // Writes on either side stay there.
    child.write(4096, &vec![3; 4096]).unwrap();
    assert_eq!(parent.read(4096, 4096).unwrap(), vec![1; 4096]);
    assert_eq!(parent.read(0, 4096).unwrap(), vec![2; 4096]);
    assert_eq!(child.read(0, 4096).unwrap(), vec![1; 4096]);
    // The snapshot's files have two names now.
    let shared = ps.open_file("layer-0000000000000001.data").unwrap();
    assert_eq!(shared.links().unwrap(), 2);
    // A clone of a snapshot smaller than the snapshot is refused; so is a used target.
    assert!(parent.link_snapshot_into(&id("s"), &cs, 128 * BS).is_err());
    assert!(parent
        .link_snapshot_into(&id("s"), &MemStorage::new(), 32 * BS)
        .is_err());
}

#[test]
fn the_source_can_lose_its_snapshot_and_itself_without_the_clone_noticing() {
    let ps = MemStorage::new();
    let parent = create(&ps, 64);
    parent.write(0, &vec![7; 64 * 4096]).unwrap();
    parent.snapshot(&id("a")).unwrap();
    parent.write(0, &vec![8; 64 * 4096]).unwrap();
    parent.snapshot(&id("b")).unwrap();
    let cs = MemStorage::new();
    parent.link_snapshot_into(&id("a"), &cs, 64 * BS).unwrap();
    // Deleting the snapshot would prune the blocks the later layers override: not while
    // the clone shares them.
    parent.delete_snapshot(&id("a")).unwrap();
    parent.delete_snapshot(&id("b")).unwrap();
    let child = open(&cs);
    assert_eq!(child.read(0, 64 * 4096).unwrap(), vec![7; 64 * 4096]);
    drop(child);
    // The source volume goes away entirely (every name removed).
    drop(parent);
    for name in ps.list().unwrap() {
        ps.remove_file(&name).unwrap();
    }
    ps.sync_dir().unwrap();
    // The clone is now the files' only owner: it opens (pruning what it may) and reads.
    let child = open(&cs);
    assert_eq!(child.read(0, 64 * 4096).unwrap(), vec![7; 64 * 4096]);
    assert!(child.verify().unwrap().bad.is_empty());
    child.write(0, &vec![9; 4096]).unwrap();
    child.snapshot(&id("c")).unwrap();
    child.delete_snapshot(&id("c")).unwrap();
    assert_eq!(child.read(0, 4096).unwrap(), vec![9; 4096]);
    assert_eq!(child.read(4096, 4096).unwrap(), vec![7; 4096]);
}

#[test]
fn a_storage_that_cannot_link_gets_a_copy() {
    let ps = MemStorage::new();
    let parent = create(&ps, 32);
    parent.write(8 * BS, &vec![5; 4096]).unwrap();
    parent.snapshot(&id("s")).unwrap();
    // A backend that cannot link (as between two file systems): the chain is copied.
    let inner = MemStorage::new();
    struct NoLinks(MemStorage);
    impl Storage for NoLinks {
        fn open_file(&self, n: &str) -> std::io::Result<Arc<dyn tripod_engine::StorageFile>> {
            self.0.open_file(n)
        }
        fn create_file(&self, n: &str) -> std::io::Result<Arc<dyn tripod_engine::StorageFile>> {
            self.0.create_file(n)
        }
        fn exists(&self, n: &str) -> std::io::Result<bool> {
            self.0.exists(n)
        }
        fn remove_file(&self, n: &str) -> std::io::Result<()> {
            self.0.remove_file(n)
        }
        fn rename(&self, a: &str, b: &str) -> std::io::Result<()> {
            self.0.rename(a, b)
        }
        fn sync_dir(&self) -> std::io::Result<()> {
            self.0.sync_dir()
        }
        fn list(&self) -> std::io::Result<Vec<String>> {
            self.0.list()
        }
    }
    let report = parent
        .link_snapshot_into(&id("s"), &NoLinks(inner.clone()), 32 * BS)
        .unwrap();
    assert_eq!((report.linked, report.copied), (0, 2));
    let child = open(&inner);
    assert_eq!(child.read(8 * BS, 4096).unwrap(), vec![5; 4096]);
    assert_eq!(
        ps.open_file("layer-0000000000000001.data")
            .unwrap()
            .links()
            .unwrap(),
        1
    );
}

#[test]
fn a_clone_cut_short_by_a_crash_either_opens_whole_or_not_at_all() {
    let (mut cut, mut whole) = (0, 0);
    for fail_at in 0..40 {
        let ps = MemStorage::new();
        let parent = create(&ps, 32);
        parent.write(0, &vec![4; 8 * 4096]).unwrap();
        parent.snapshot(&id("s")).unwrap();
        let inner = MemStorage::new();
        let target = FaultyStorage::new(
            Arc::new(inner.clone()),
            FaultPlan {
                die_at_op: Some(fail_at),
                ..FaultPlan::default()
            },
        );
        let done = parent
            .link_snapshot_into(&id("s"), &target, 32 * BS)
            .is_ok();
        if done {
            whole += 1;
        } else {
            cut += 1;
        }
        let after = inner.crash(CrashMode::LoseUnsynced);
        match Volume::open(Arc::new(after), VolumeOptions::default()) {
            Ok(child) => assert_eq!(child.read(0, 8 * 4096).unwrap(), vec![4; 8 * 4096]),
            Err(e) => assert!(!done, "a finished clone must open: {e}"),
        }
        // The source is untouched either way.
        assert_eq!(parent.read(0, 8 * 4096).unwrap(), vec![4; 8 * 4096]);
    }
    // Both outcomes were tried: cut at every step of the clone, and past its end.
    assert!(cut > 5 && whole > 5, "cut {cut}, whole {whole}");
}

// ---- model ----------------------------------------------------------------------------

const BLOCKS: u64 = 48;
const MAX_VOLUMES: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    Write {
        v: usize,
        block: u64,
        len: u64,
        byte: u8,
    },
    Snapshot {
        v: usize,
    },
    DeleteSnapshot {
        v: usize,
        k: usize,
    },
    Rollback {
        v: usize,
        k: usize,
    },
    Clone {
        v: usize,
        k: usize,
        grow: u64,
    },
    Reopen {
        v: usize,
    },
    PowerLoss {
        v: usize,
    },
    DeleteVolume {
        v: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8usize, 0..BLOCKS, 1..4u64, 1..255u8)
            .prop_map(|(v, block, len, byte)| Op::Write { v, block, len, byte }),
        3 => (0..8usize).prop_map(|v| Op::Snapshot { v }),
        2 => (0..8usize, 0..4usize).prop_map(|(v, k)| Op::DeleteSnapshot { v, k }),
        1 => (0..8usize, 0..4usize).prop_map(|(v, k)| Op::Rollback { v, k }),
        3 => (0..8usize, 0..4usize, 0..2u64).prop_map(|(v, k, grow)| Op::Clone { v, k, grow }),
        1 => (0..8usize).prop_map(|v| Op::Reopen { v }),
        1 => (0..8usize).prop_map(|v| Op::PowerLoss { v }),
        1 => (0..8usize).prop_map(|v| Op::DeleteVolume { v }),
    ]
}

struct Member {
    storage: MemStorage,
    vol: Option<Volume>,
    content: Vec<u8>,
    snaps: BTreeMap<String, Vec<u8>>,
}

struct Family {
    members: Vec<Member>,
    next_snap: u64,
    clones: u64,
}

impl Family {
    /// One blank volume of [`BLOCKS`] blocks.
    fn new() -> Self {
        let storage = MemStorage::new();
        let vol = create(&storage, BLOCKS);
        Family {
            members: vec![Member {
                storage,
                vol: Some(vol),
                content: vec![0; (BLOCKS * BS) as usize],
                snaps: BTreeMap::new(),
            }],
            next_snap: 0,
            clones: 0,
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].vol.is_some())
            .collect()
    }

    fn pick(&self, v: usize) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[v % live.len()])
    }

    fn apply(&mut self, op: &Op) {
        let Some(i) = self.pick(match op {
            Op::Write { v, .. }
            | Op::Snapshot { v }
            | Op::DeleteSnapshot { v, .. }
            | Op::Rollback { v, .. }
            | Op::Clone { v, .. }
            | Op::Reopen { v }
            | Op::PowerLoss { v }
            | Op::DeleteVolume { v } => *v,
        }) else {
            return;
        };
        let snap_at = |m: &Member, k: usize| m.snaps.keys().nth(k % m.snaps.len().max(1)).cloned();
        match op {
            Op::Write {
                block, len, byte, ..
            } => {
                let m = &mut self.members[i];
                let blocks = m.content.len() as u64 / BS;
                let block = block % blocks;
                let len = (*len).min(blocks - block);
                let data = vec![*byte; (len * BS) as usize];
                m.vol.as_ref().unwrap().write(block * BS, &data).unwrap();
                let at = (block * BS) as usize;
                m.content[at..at + data.len()].copy_from_slice(&data);
            }
            Op::Snapshot { .. } => {
                let name = format!("s{}", self.next_snap);
                self.next_snap += 1;
                let m = &mut self.members[i];
                m.vol.as_ref().unwrap().snapshot(&id(&name)).unwrap();
                m.snaps.insert(name, m.content.clone());
            }
            Op::DeleteSnapshot { k, .. } => {
                let m = &mut self.members[i];
                if let Some(name) = snap_at(m, *k) {
                    m.vol.as_ref().unwrap().delete_snapshot(&id(&name)).unwrap();
                    m.snaps.remove(&name);
                }
            }
            Op::Rollback { k, .. } => {
                let m = &mut self.members[i];
                if let Some(name) = snap_at(m, *k) {
                    m.vol.as_ref().unwrap().rollback(&id(&name)).unwrap();
                    let mut content = m.snaps[&name].clone();
                    content.resize(m.content.len(), 0);
                    m.content = content;
                }
            }
            Op::Clone { k, grow, .. } => {
                if self.members.len() >= MAX_VOLUMES {
                    return;
                }
                if self.members[i].snaps.is_empty() {
                    return;
                }
                let m = &self.members[i];
                let Some(name) = snap_at(m, *k) else { return };
                let mut content = m.snaps[&name].clone();
                content.resize(content.len() + (*grow * 16 * BS) as usize, 0);
                let storage = MemStorage::new();
                m.vol
                    .as_ref()
                    .unwrap()
                    .link_snapshot_into(&id(&name), &storage, content.len() as u64)
                    .unwrap();
                let vol = open(&storage);
                self.clones += 1;
                self.members.push(Member {
                    storage,
                    vol: Some(vol),
                    content,
                    snaps: BTreeMap::new(),
                });
            }
            Op::Reopen { .. } => {
                let m = &mut self.members[i];
                m.vol = None;
                m.vol = Some(open(&m.storage));
            }
            Op::PowerLoss { .. } => {
                // Everything acknowledged is durable (sync volumes): the copy that survives
                // holds it all.
                let m = &mut self.members[i];
                m.vol = None;
                m.storage = m.storage.crash(CrashMode::LoseUnsynced);
                m.vol = Some(open(&m.storage));
            }
            Op::DeleteVolume { .. } => {
                let m = &mut self.members[i];
                m.vol = None;
                for name in m.storage.list().unwrap() {
                    m.storage.remove_file(&name).unwrap();
                }
                m.storage.sync_dir().unwrap();
            }
        }
    }

    fn check(&self) {
        for m in self.members.iter().filter(|m| m.vol.is_some()) {
            let vol = m.vol.as_ref().unwrap();
            assert_eq!(vol.size(), m.content.len() as u64);
            assert!(
                vol.read(0, vol.size()).unwrap() == m.content,
                "head differs"
            );
            for (name, content) in &m.snaps {
                let mut buf = vec![0; content.len()];
                vol.read_snapshot_at(&id(name), 0, &mut buf).unwrap();
                assert!(buf == *content, "snapshot {name} differs");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn families_of_linked_clones_match_the_model(ops in prop::collection::vec(op(), 1..50)) {
        let mut f = Family::new();
        for op in &ops {
            f.apply(op);
            f.check();
        }
        for m in f.members.iter().filter(|m| m.vol.is_some()) {
            prop_assert!(m.vol.as_ref().unwrap().verify().unwrap().bad.is_empty());
        }
    }
}

#[test]
fn the_model_makes_clones_of_clones() {
    // A fixed history through the model: clone, clone the clone, then lose the ancestors.
    let ops = [
        Op::Write {
            v: 0,
            block: 0,
            len: 3,
            byte: 1,
        },
        Op::Snapshot { v: 0 },
        Op::Clone {
            v: 0,
            k: 0,
            grow: 1,
        },
        Op::Write {
            v: 1,
            block: 1,
            len: 1,
            byte: 2,
        },
        Op::Snapshot { v: 1 },
        Op::Clone {
            v: 1,
            k: 0,
            grow: 0,
        },
        Op::DeleteVolume { v: 0 },
        Op::PowerLoss { v: 1 },
        Op::Write {
            v: 1,
            block: 2,
            len: 1,
            byte: 3,
        },
        Op::DeleteSnapshot { v: 0, k: 0 },
        Op::Reopen { v: 1 },
    ];
    let mut f = Family::new();
    for op in &ops {
        f.apply(op);
        f.check();
    }
    assert_eq!(f.clones, 2);
    assert_eq!(f.live().len(), 2);
}
