//! `ReplicaSet::changed_ranges`: what an incremental backup must read, from metadata alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Rig, BS};
use tripod_engine::{FaultPlan, SnapshotId, View};

fn snap(name: &str) -> View {
    View::Snapshot(SnapshotId::new(name).unwrap())
}

#[test]
fn changed_ranges_name_exactly_the_units_written_zeroed_or_trimmed_since_the_base() {
    let rig = Rig::new([FaultPlan::default(); 3]);
    let unit = 4 * BS;
    let set = rig.create(64 * unit);
    set.write(0, &[1; 512]).unwrap();
    set.write(10 * unit + 3 * BS, &[2; 1024]).unwrap();
    set.write_zeroes(20 * unit, unit).unwrap();
    set.snapshot(&SnapshotId::new("a").unwrap()).unwrap();

    // Without a base: the units holding data (zeroed ones read as zeros and are left out).
    let full = set.changed_ranges(None, &snap("a"), unit).unwrap();
    assert_eq!(full, vec![0, 10, 11]);

    // Rewriting the same bytes is a new write (a new generation): changed. Zeroing a unit
    // that held data, trimming one, writing one that was a hole: changed. Untouched: not.
    set.write(0, &[1; 512]).unwrap();
    set.trim(10 * unit, 2 * unit).unwrap();
    set.write(33 * unit, &[3; 512]).unwrap();
    set.write_zeroes(40 * unit, unit).unwrap(); // a hole zeroed still reads as zeros
    set.snapshot(&SnapshotId::new("b").unwrap()).unwrap();
    let inc = set
        .changed_ranges(Some(&snap("a")), &snap("b"), unit)
        .unwrap();
    assert_eq!(inc, vec![0, 10, 11, 33]);
    // Nothing changed between a view and itself; the head after "b" equals "b".
    assert!(set
        .changed_ranges(Some(&snap("b")), &snap("b"), unit)
        .unwrap()
        .is_empty());
    assert!(set
        .changed_ranges(Some(&snap("b")), &View::Head, unit)
        .unwrap()
        .is_empty());

    // Growing the volume: the new space is zeros, so only what is written there changes.
    set.expand(80 * unit).unwrap();
    set.write(70 * unit, &[4; 512]).unwrap();
    assert_eq!(
        set.changed_ranges(Some(&snap("b")), &View::Head, unit)
            .unwrap(),
        vec![70]
    );

    // A unit that is not a whole number of blocks, and an unknown snapshot, are refused.
    assert!(set.changed_ranges(None, &View::Head, BS + 1).is_err());
    assert!(set.changed_ranges(None, &snap("nope"), unit).is_err());
}
