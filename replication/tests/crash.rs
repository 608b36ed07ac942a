//! Crash test: run a random workload on a replica set whose three stores die at random
//! operations (a dying write torn half-way), cut the power (every store loses its unsynced
//! bytes, some unsynced writes torn), reopen the set, and check the contract: every
//! acknowledged write is there, the one unacknowledged operation is old-or-new, snapshots are
//! as acknowledged, nothing returns a checksum error, and the three replicas end identical.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::ops::{apply_model, apply_set, next_op, Op};
use support::*;
use tripod_engine::{CrashMode, FaultPlan, SnapshotId};
use tripod_replication::{ReplicaId, ReplicaSet, ReplicationError};

fn check(set: &ReplicaSet, acked: &Model, pending: Option<&Op>, what: &str) {
    let mut with = acked.clone();
    if let Some(op) = pending {
        apply_model(&mut with, op);
    }
    let size = set.size();
    assert!(
        size == acked.size() || size == with.size(),
        "{what}: size {size}"
    );
    let got = set
        .read(0, size)
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    let pad = |v: &Vec<u8>| {
        let mut v = v.clone();
        v.resize(size as usize, 0);
        v
    };
    let (old, new) = (pad(&acked.head), pad(&with.head));
    if matches!(pending, Some(Op::Rollback(_))) {
        assert!(
            got[..] == old[..] || got[..] == new[..],
            "{what}: rollback half-done"
        );
    } else {
        for (i, ((g, o), n)) in got
            .chunks(BS as usize)
            .zip(old.chunks(BS as usize))
            .zip(new.chunks(BS as usize))
            .enumerate()
        {
            assert!(g == o || g == n, "{what}: block {i} is neither old nor new");
        }
    }
    let listed: Vec<String> = set
        .list_snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    for (name, content) in &acked.snaps {
        if !listed.contains(name) {
            assert!(
                matches!(pending, Some(Op::Delete(d)) if d == name),
                "{what}: lost {name}"
            );
            continue;
        }
        let view = tripod_engine::View::Snapshot(SnapshotId::new(name.as_str()).unwrap());
        let got = set.read_view(&view, 0, content.len() as u64).unwrap();
        assert!(got[..] == content[..], "{what}: snapshot {name} changed");
    }
    for name in &listed {
        let creating = matches!(pending, Some(Op::Snapshot(s)) if s == name);
        assert!(
            acked.snaps.contains_key(name) || creating,
            "{what}: stray snapshot {name}"
        );
    }
}

#[test]
fn power_loss_at_random_points_keeps_the_contract_for_the_set() {
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let blocks = 32 + rng.below(32);
        let plans = [0, 1, 2].map(|_| FaultPlan {
            die_at_op: (rng.below(3) > 0).then(|| 30 + rng.below(1500)),
            tear_dying_write: true,
            ..FaultPlan::default()
        });
        let rig = Rig::new(plans);
        // Odd seeds run on an encrypted volume.
        let key = (seed % 2 == 1).then(|| test_cipher(seed as u8));
        let set = rig.create_with(blocks * BS, key.as_ref());
        let mut acked = Model::new(blocks * BS);
        let mut pending = None;
        let mut n = 0;
        for _ in 0..(10 + rng.below(80)) {
            let op = next_op(&mut rng, &acked, &mut n, false);
            match apply_set(&set, &op) {
                Ok(()) => apply_model(&mut acked, &op),
                Err(ReplicationError::Invalid(e)) => panic!("seed {seed}: {e}"),
                Err(_) => {
                    pending = Some(op);
                    break;
                }
            }
        }
        drop(set);
        // Power cut: every store keeps what it synced, plus a torn choice of the rest.
        let mems = [0, 1, 2].map(|i| {
            rig.mems[i].crash(CrashMode::Torn {
                seed: seed * 7 + i as u64,
            })
        });
        let rig = Rig::over(mems, [FaultPlan::default(); 3]);
        let what = format!(
            "seed {seed} pending {:?}",
            pending.as_ref().map(|p| match p {
                Op::Write(a, d) => format!("write {a}+{}", d.len()),
                other => format!("{other:?}"),
            })
        );
        let set = rig
            .open_with(key.as_ref())
            .unwrap_or_else(|e| panic!("{what}: open: {e}"));
        check(&set, &acked, pending.as_ref(), &what);
        let report = set.heal_now();
        assert!(report.still_out.is_empty(), "{what}: {report:?}");
        // All three agree with what the set serves.
        let mut served = Model::new(set.size());
        served.head = set.read(0, set.size()).unwrap().to_vec();
        for s in set.list_snapshots().unwrap() {
            let view = tripod_engine::View::Snapshot(s.id.clone());
            let content = set.read_view(&view, 0, s.size).unwrap();
            served.snaps.insert(s.id.to_string(), content.to_vec());
        }
        for id in ReplicaId::ALL {
            assert_replica_matches_with(&set, id, &served, &what, key.as_deref());
        }
    }
}
