//! Bit-rot soak: while writes, zeroings and reads run, random bits flip in the data files of
//! one replica at a time (the next replica only after a heal and a scrub). Every read
//! returns exactly what was written, scrub repairs whatever reads did not meet, and at the
//! end — after a restart that also finds a damaged metadata record — the three copies are
//! identical.
//!
//! `bit_rot_soak` runs `TRIPOD_SOAK_ROUNDS` rounds (40 by default, the CI run); the ignored
//! `bit_rot_soak_long` runs 2000 (`RELIABILITY.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;
use tripod_engine::{FaultPlan, MemStorage, Storage};
use tripod_replication::{ReplicaId, ReplicaSet};

const BLOCKS: u64 = 512;

/// Flips one random bit in a random data file of `mem`; returns whether one was flipped.
fn flip_data(mem: &MemStorage, rng: &mut Rng) -> bool {
    let files: Vec<String> = mem
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .collect();
    let Some(name) = files.get(rng.below(files.len() as u64) as usize) else {
        return false;
    };
    let len = mem.read_file(name).unwrap().len() as u64;
    if len == 0 {
        return false;
    }
    mem.flip_bits(name, rng.below(len), 1 << rng.below(8))
        .unwrap();
    true
}

fn soak(rounds: u64, seed: u64) {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let set = rig.create(BLOCKS * BS);
    let mut model = Model::new(BLOCKS * BS);
    let mut rng = Rng(seed);
    let (mut flips, mut reads, mut scrub_repairs) = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        // One replica rots during a round; the others stay whole until the next scrub.
        let victim = (round % 3) as usize;
        for _ in 0..50 {
            let at = rng.below(BLOCKS * BS);
            let len = (1 + rng.below(8 * BS)).min(BLOCKS * BS - at);
            match rng.below(10) {
                0..5 => {
                    let data = rng.bytes(len as usize);
                    set.write(at, &data).unwrap();
                    model.write(at, &data);
                }
                5 => {
                    set.write_zeroes(at, len).unwrap();
                    model.head[at as usize..(at + len) as usize].fill(0);
                }
                6 => set.flush().unwrap(),
                _ => {
                    let got = set.read(at, len).unwrap();
                    assert!(
                        got[..] == model.head[at as usize..(at + len) as usize],
                        "round {round}: read {at}+{len} differs"
                    );
                    reads += 1;
                }
            }
            if rng.below(4) == 0 && flip_data(&rig.mems[victim], &mut rng) {
                flips += 1;
            }
        }
        // A partial-block write over a rotten block fails on that copy (its old content
        // cannot be read to merge), which takes it out of service: the supervisor would
        // resync it within seconds, and so does the soak.
        let report = set.heal_now();
        assert!(report.still_out.is_empty(), "round {round}: {report:?}");
        // Every block read once (healing on the way), then a scrub for the rest.
        let all = set.read(0, BLOCKS * BS).unwrap();
        assert!(all[..] == model.head[..], "round {round}: content differs");
        let scrub = set.scrub().unwrap();
        assert!(scrub.unrepairable.is_empty(), "{scrub:?}");
        scrub_repairs += scrub.repaired;
        assert_eq!(set.scrub().unwrap().bad, 0, "scrub left bad copies");
    }
    set.flush().unwrap();
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after the soak");
    }
    let read_repairs = set.repairs();
    // A restart after a metadata record of one replica decayed too: that copy cannot be
    // opened, so it is discarded and rebuilt from the other two.
    drop(set);
    let mems = rig.mems.clone();
    drop(rig);
    if let Some(meta) = mems[1]
        .list()
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".meta") && mems[1].read_file(n).is_ok_and(|f| !f.is_empty()))
    {
        mems[1].flip_bits(&meta, 20, 0x08).unwrap();
    }
    let rig = Rig::over(mems, [FaultPlan::default(); 3]);
    let set = ReplicaSet::open(rig.replicas(), config()).unwrap();
    let report = set.heal_now();
    assert!(report.still_out.is_empty(), "{report:?}");
    for id in ReplicaId::ALL {
        assert_replica_matches(&set, id, &model, "after the restart");
    }
    eprintln!(
        "bit-rot soak: {rounds} rounds, {flips} bit flips, {reads} checked reads, \
         {read_repairs} copies repaired by reads, {scrub_repairs} by scrub, copies identical"
    );
}

#[test]
fn bit_rot_soak() {
    let rounds = std::env::var("TRIPOD_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    soak(rounds, 0xb17_0005);
}

/// The documented soak: `cargo test --release -p tripod-replication --test bitrot -- --ignored`.
#[test]
#[ignore = "long soak: run by hand, see RELIABILITY.md"]
fn bit_rot_soak_long() {
    soak(2000, 0xb17_1000);
}
