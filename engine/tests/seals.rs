//! Sealed volumes (format v2): every data block keeps the 16-byte seal its writer gave it,
//! through the log, checkpoints, reopening, snapshots, clones and raw copies; writes that
//! would need the engine to merge sealed blocks are refused; an unsealed volume stays v1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use support::ops::{apply_sealed, check_seals, ops_for, test_seal};
use tripod_engine::{
    BatchWrite, BlockIndex, EngineError, Geometry, MemStorage, RawBlock, SnapshotId, View, Volume,
    VolumeOptions,
};

const BS: u64 = 4096;
const GEOMETRY: Geometry = Geometry {
    block_size: 4096,
    chunk_blocks: 16,
};

fn sealed(mem: &MemStorage, blocks: u64, options: VolumeOptions) -> Volume {
    Volume::create_sealed(Arc::new(mem.clone()), blocks * BS, GEOMETRY, options).unwrap()
}

fn blocks_of(fill: u8, n: u64) -> Bytes {
    Bytes::from(vec![fill; (n * BS) as usize])
}

fn seals_for(first: u64, data: &[u8]) -> Vec<tripod_engine::Seal> {
    data.chunks(BS as usize)
        .enumerate()
        .map(|(i, d)| test_seal(first + i as u64, d))
        .collect()
}

#[test]
fn seals_come_back_with_their_blocks_across_log_checkpoint_and_reopen() {
    for options in [VolumeOptions::default(), VolumeOptions::write_back()] {
        let mem = MemStorage::new();
        let vol = sealed(&mem, 64, options);
        assert!(vol.is_sealed());
        // A log write, a placed (large, fresh) write, an overwrite, zeros.
        let small = blocks_of(1, 1);
        vol.write_sealed(0, small.clone(), 5, &seals_for(0, &small))
            .unwrap();
        let big = blocks_of(2, 32);
        vol.write_sealed(16 * BS, big.clone(), 6, &seals_for(16, &big))
            .unwrap();
        let over = blocks_of(3, 2);
        vol.write_sealed(16 * BS, over.clone(), 7, &seals_for(16, &over))
            .unwrap();
        vol.write_zeroes_generation(20 * BS, 2 * BS, 8).unwrap();
        let mut buf = vec![0u8; (4 * BS) as usize];
        let got = vol.read_sealed_at(&View::Head, 16 * BS, &mut buf).unwrap();
        assert_eq!(got[0].unwrap().generation, 7);
        assert_eq!(got[0].unwrap().seal, test_seal(16, &over[..BS as usize]));
        assert_eq!(got[2].unwrap().generation, 6);
        check_seals(&vol, &View::Head, "before flush");
        vol.flush().unwrap();
        drop(vol);
        // Reopen replays the log; then a checkpoint's chunk records carry the seals.
        let vol = Volume::open(Arc::new(mem.clone()), options).unwrap();
        check_seals(&vol, &View::Head, "after reopen");
        let mut buf = vec![0u8; (6 * BS) as usize];
        let got = vol.read_sealed_at(&View::Head, 16 * BS, &mut buf).unwrap();
        assert!(
            got[4].is_none() && got[5].is_none(),
            "zeroed blocks have none"
        );
        assert_eq!(got[0].unwrap().generation, 7);
        drop(vol);
        let vol = Volume::open(Arc::new(mem), options).unwrap();
        check_seals(&vol, &View::Head, "after checkpoint");
        assert_eq!(vol.read(0, BS).unwrap(), small.to_vec());
    }
}

#[test]
fn writes_a_sealed_volume_cannot_store_whole_are_refused_and_change_nothing() {
    let mem = MemStorage::new();
    let vol = sealed(&mem, 16, VolumeOptions::default());
    let data = blocks_of(4, 2);
    vol.write_sealed(0, data.clone(), 1, &seals_for(0, &data))
        .unwrap();
    let refused = |r: tripod_engine::Result<()>| {
        assert!(matches!(r, Err(EngineError::Seals(_))), "{r:?}");
    };
    refused(vol.write(0, b"partial"));
    refused(vol.write(BS, &[9; 4096])); // whole, but without a seal
    refused(vol.write_sealed(0, data.clone(), 2, &seals_for(0, &data)[..1]));
    refused(vol.write_sealed(512, data.clone(), 2, &seals_for(0, &data)));
    refused(vol.write_zeroes(100, 10));
    let batch = vol.write_batch(&[BatchWrite {
        offset: 0,
        len: 0,
        data: Some(data.clone()),
        generation: Some(3),
        seals: Vec::new(),
    }]);
    refused(batch.into_iter().next().unwrap());
    assert_eq!(vol.read(0, 2 * BS).unwrap(), data.to_vec());
    check_seals(&vol, &View::Head, "after refusals");
    let mut odd = vec![0u8; 100];
    assert!(matches!(
        vol.read_sealed_at(&View::Head, 0, &mut odd),
        Err(EngineError::Seals(_))
    ));
    // An unsealed volume takes no seals.
    let plain = Volume::create(
        Arc::new(MemStorage::new()),
        16 * BS,
        GEOMETRY,
        VolumeOptions::default(),
    )
    .unwrap();
    assert!(!plain.is_sealed());
    refused(plain.write_sealed(0, data.clone(), 1, &seals_for(0, &data)));
}

#[test]
fn batches_raw_copies_snapshots_and_clones_keep_seals() {
    let mem = MemStorage::new();
    let vol = sealed(&mem, 64, VolumeOptions::write_back());
    let a = blocks_of(5, 3);
    let results = vol.write_batch(&[
        BatchWrite {
            offset: 0,
            len: 0,
            data: Some(a.clone()),
            generation: Some(10),
            seals: seals_for(0, &a),
        },
        BatchWrite {
            offset: 8 * BS,
            len: 2 * BS,
            data: None,
            generation: Some(11),
            seals: Vec::new(),
        },
    ]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let raw: Vec<RawBlock> = (0..2u8)
        .map(|i| {
            let d = Bytes::from(vec![20 + i; BS as usize]);
            RawBlock {
                seal: test_seal(30 + u64::from(i), &d),
                data: Some(d),
                generation: 12,
            }
        })
        .collect();
    vol.write_raw(BlockIndex(30), &raw).unwrap();
    let snap = SnapshotId::new("s").unwrap();
    vol.snapshot(&snap).unwrap();
    let b = blocks_of(6, 1);
    vol.write_sealed(0, b.clone(), 13, &seals_for(0, &b))
        .unwrap();
    check_seals(&vol, &View::Head, "head");
    check_seals(&vol, &View::Snapshot(snap.clone()), "snapshot");
    let mut buf = vec![0u8; BS as usize];
    let s = vol
        .read_sealed_at(&View::Snapshot(snap.clone()), 0, &mut buf)
        .unwrap();
    assert_eq!((s[0].unwrap().generation, buf[0]), (10, 5));

    // A full clone and a linked clone of the snapshot are sealed and read as it did.
    let copy = MemStorage::new();
    let clone = vol
        .clone_snapshot(
            &snap,
            Arc::new(copy.clone()),
            VolumeOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
    assert!(clone.is_sealed());
    check_seals(&clone, &View::Head, "full clone");
    assert_eq!(clone.read(0, 64 * BS).unwrap(), {
        let mut want = vec![0u8; (64 * BS) as usize];
        vol.read_snapshot_at(&snap, 0, &mut want).unwrap();
        want
    });
    let linked = MemStorage::new();
    vol.link_snapshot_into(&snap, &linked, 64 * BS).unwrap();
    let linked = Volume::open(Arc::new(linked), VolumeOptions::default()).unwrap();
    assert!(linked.is_sealed());
    check_seals(&linked, &View::Head, "linked clone");
}

#[test]
fn a_sealed_volume_is_format_v2_and_an_unsealed_one_stays_v1() {
    let version = |mem: &MemStorage| {
        let m = mem.read_file("manifest").unwrap();
        u32::from_le_bytes(m[8..12].try_into().unwrap())
    };
    let mem = MemStorage::new();
    drop(sealed(&mem, 16, VolumeOptions::default()));
    assert_eq!(version(&mem), 2);
    let plain = MemStorage::new();
    drop(
        Volume::create(
            Arc::new(plain.clone()),
            16 * BS,
            GEOMETRY,
            VolumeOptions::default(),
        )
        .unwrap(),
    );
    assert_eq!(version(&plain), 1);
}

#[test]
fn random_operations_on_a_sealed_volume_match_the_model_with_every_seal_in_place() {
    for seed in 0..40u64 {
        let blocks = 40;
        let ops = ops_for(seed, blocks, BS, 80, true);
        let mem = MemStorage::new();
        let options = if seed % 2 == 0 {
            VolumeOptions::default()
        } else {
            VolumeOptions {
                wal_limit: 64 << 10,
                direct_write_min: 2 * BS,
                write_back: true,
                write_back_limit: 32 << 10,
            }
        };
        let vol = sealed(&mem, blocks, options);
        let mut model = support::Model::new(blocks * BS);
        for op in &ops {
            apply_sealed(&vol, op).unwrap_or_else(|e| panic!("seed {seed} {op:?}: {e}"));
            support::ops::apply_model(&mut model, op);
        }
        let what = format!("seed {seed}");
        assert_eq!(vol.read(0, vol.size()).unwrap(), model.head, "{what}");
        check_seals(&vol, &View::Head, &what);
        for s in vol.list_snapshots() {
            check_seals(&vol, &View::Snapshot(s.id), &what);
        }
        drop(vol);
        let vol = Volume::open(Arc::new(mem), options).unwrap();
        assert_eq!(
            vol.read(0, vol.size()).unwrap(),
            model.head,
            "{what} reopened"
        );
        check_seals(&vol, &View::Head, &what);
    }
}
