//! Integrity and bad input: flipped bits are reported as `ChecksumMismatch` naming the block
//! and listed exactly by `verify`; damaged, truncated or future-version metadata gives a
//! clear error on open, never a panic; space is only used for written data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use support::Rng;
use tripod_engine::{
    BlockIndex, EngineError, FileStorage, Geometry, LayerId, MemStorage, SnapshotId, Storage,
    Volume, VolumeOptions,
};

const BS: u64 = 4096;

fn data_file(layer: u64) -> String {
    format!("layer-{layer:016x}.data")
}

fn meta_file(layer: u64) -> String {
    format!("layer-{layer:016x}.meta")
}

fn volume(mem: &MemStorage, blocks: u64) -> Volume {
    Volume::create(
        Arc::new(mem.clone()),
        blocks * BS,
        Geometry {
            block_size: 4096,
            chunk_blocks: 16,
        },
        VolumeOptions::default(),
    )
    .unwrap()
}

#[test]
fn flipped_bits_fail_reads_naming_the_block_and_verify_lists_exactly_them() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 128);
    for b in 0..64 {
        vol.write(b * BS, &[b as u8 + 1; 4096]).unwrap();
    }
    vol.snapshot(&SnapshotId::new("s").unwrap()).unwrap();
    for b in 32..96 {
        vol.write(b * BS, &[b as u8 + 100; 4096]).unwrap();
    }
    // Layer 1 is the snapshot (blocks 0..64), layer 2 the head (blocks 32..96).
    let mut rng = Rng(42);
    let mut flipped = BTreeSet::new();
    while flipped.len() < 12 {
        let (layer, block) = if rng.below(2) == 0 {
            (1u64, rng.below(64))
        } else {
            (2u64, 32 + rng.below(64))
        };
        if flipped.insert((layer, block)) {
            let at = block * BS + rng.below(BS);
            mem.flip_bits(&data_file(layer), at, 1 << rng.below(8))
                .unwrap();
        }
    }
    let report = vol.verify().unwrap();
    let found: BTreeSet<(u64, u64)> = report.bad.iter().map(|b| (b.layer.0, b.block.0)).collect();
    assert_eq!(found, flipped);
    assert_eq!(report.blocks_checked, 128);
    for &(layer, block) in &flipped {
        // Head reads see layer 2 for blocks 32..96 and layer 1 below 32.
        let visible = (block >= 32 && layer == 2) || (block < 32 && layer == 1);
        let r = vol.read(block * BS, BS);
        if visible {
            match r {
                Err(EngineError::ChecksumMismatch {
                    block: b, layer: l, ..
                }) => {
                    assert_eq!((b, l), (BlockIndex(block), LayerId(layer)));
                }
                other => panic!("block {block}: expected a checksum error, got {other:?}"),
            }
        }
    }
    // Blocks nobody flipped still read fine.
    for b in 0..96u64 {
        let damaged = flipped.contains(&(2, b)) || (b < 32 && flipped.contains(&(1, b)));
        if !damaged {
            let want = if b >= 32 { b as u8 + 100 } else { b as u8 + 1 };
            assert_eq!(vol.read(b * BS, BS).unwrap(), vec![want; 4096]);
        }
    }
}

#[test]
fn a_corrupt_block_is_reported_after_reopen_too() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 16);
    vol.write(5 * BS, &[3; 4096]).unwrap();
    drop(vol);
    // Reopening replays the log and checkpoints: the block now lives only in the data file.
    drop(reopen(&mem).unwrap());
    mem.flip_bits(&data_file(1), 5 * BS + 17, 0x80).unwrap();
    let vol = Volume::open(Arc::new(mem), VolumeOptions::default()).unwrap();
    assert!(matches!(
        vol.read(5 * BS, 10),
        Err(EngineError::ChecksumMismatch {
            block: BlockIndex(5),
            ..
        })
    ));
}

fn reopen(mem: &MemStorage) -> Result<Volume, EngineError> {
    Volume::open(Arc::new(mem.clone()), VolumeOptions::default())
}

#[test]
fn damaged_manifests_are_clear_errors() {
    let mem = MemStorage::new();
    drop(volume(&mem, 16));
    let good = mem.read_file("manifest").unwrap();
    for cut in [0, 1, 8, 23, 24, good.len() / 2, good.len() - 1] {
        mem.put_file("manifest", &good[..cut]);
        assert!(
            matches!(reopen(&mem), Err(EngineError::Corrupt { .. })),
            "cut {cut}"
        );
    }
    let mut rng = Rng(1);
    for _ in 0..200 {
        let garbage: Vec<u8> = (0..rng.below(400)).map(|_| rng.next() as u8).collect();
        mem.put_file("manifest", &garbage);
        assert!(reopen(&mem).is_err());
    }
    let mut future = good.clone();
    future[8..12].copy_from_slice(&7u32.to_le_bytes());
    let header_crc = crc32fast::hash(&future[..20]);
    future[20..24].copy_from_slice(&header_crc.to_le_bytes());
    mem.put_file("manifest", &future);
    match reopen(&mem) {
        Err(e @ EngineError::UnsupportedVersion { found: 7, .. }) => {
            assert!(e.to_string().contains("version 7"), "{e}");
        }
        other => panic!("expected UnsupportedVersion, got {:?}", other.err()),
    }
    mem.remove_file("manifest").unwrap();
    assert!(matches!(reopen(&mem), Err(EngineError::NotFound)));
    mem.put_file("manifest", &good);
    reopen(&mem).unwrap();
}

#[test]
fn damaged_chunk_metadata_is_a_clear_error_not_silent_zeros() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 64);
    vol.write(0, &[9; 4096]).unwrap();
    drop(vol);
    drop(reopen(&mem).unwrap()); // the open-time checkpoint writes chunk 0's record
    let meta = meta_file(1);
    let bytes = mem.read_file(&meta).unwrap();
    // Damage every written slot of chunk 0 (slots are 4 KiB for 16-block chunks).
    let mut damaged = 0;
    for at in [0usize, 4096] {
        if bytes
            .get(at..at + 48)
            .is_some_and(|h| h.iter().any(|&b| b != 0))
        {
            mem.flip_bits(&meta, at as u64 + 60, 0xff).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    match reopen(&mem) {
        Err(EngineError::Corrupt { file, .. }) => assert_eq!(file, meta),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}

#[test]
fn future_version_chunk_records_are_refused() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 64);
    vol.write(0, &[9; 4096]).unwrap();
    drop(vol);
    drop(reopen(&mem).unwrap());
    let meta = meta_file(1);
    let mut bytes = mem.read_file(&meta).unwrap();
    let slot = if bytes[..48].iter().any(|&b| b != 0) {
        0
    } else {
        4096
    };
    bytes[slot + 4..slot + 6].copy_from_slice(&9u16.to_le_bytes());
    let crc = crc32fast::hash(&bytes[slot..slot + 44]);
    bytes[slot + 44..slot + 48].copy_from_slice(&crc.to_le_bytes());
    mem.put_file(&meta, &bytes);
    assert!(matches!(
        reopen(&mem),
        Err(EngineError::UnsupportedVersion { found: 9, .. })
    ));
}

#[test]
fn garbage_in_the_log_is_treated_as_its_end() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 64);
    vol.write(0, &[1; 4096]).unwrap();
    vol.write(BS, &[2; 4096]).unwrap();
    drop(vol);
    // Append garbage after the valid records and damage nothing acknowledged.
    let mut wal = mem.read_file("wal").unwrap();
    let mut rng = Rng(3);
    wal.extend((0..10_000).map(|_| rng.next() as u8));
    mem.put_file("wal", &wal);
    let vol = reopen(&mem).unwrap();
    assert_eq!(vol.read(0, 4096).unwrap(), vec![1; 4096]);
    assert_eq!(vol.read(BS, 4096).unwrap(), vec![2; 4096]);
}

#[test]
fn out_of_range_and_overflowing_requests_are_typed_errors() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 16);
    let size = 16 * BS;
    for (off, len) in [(size, 1), (size - 1, 2), (u64::MAX, 1), (1, u64::MAX)] {
        assert!(matches!(
            vol.write_zeroes(off, len),
            Err(EngineError::OutOfRange { .. })
        ));
        assert!(matches!(
            vol.trim(off, len),
            Err(EngineError::OutOfRange { .. })
        ));
        assert!(matches!(
            vol.extents(off, len),
            Err(EngineError::OutOfRange { .. })
        ));
    }
    assert!(matches!(
        vol.read(size, 1),
        Err(EngineError::OutOfRange { .. })
    ));
    assert!(matches!(
        vol.read(0, u64::MAX),
        Err(EngineError::OutOfRange { .. })
    ));
    assert!(matches!(
        vol.write(size - 1, &[1, 2]),
        Err(EngineError::OutOfRange { .. })
    ));
    assert!(vol.read(size, 0).unwrap().is_empty());
    assert!(matches!(
        vol.expand(size - BS),
        Err(EngineError::Shrink { .. })
    ));
    assert!(matches!(
        vol.expand(size + 1),
        Err(EngineError::InvalidSize { .. })
    ));
    let bad = Geometry {
        block_size: 1000,
        chunk_blocks: 16,
    };
    let fresh = Arc::new(MemStorage::new());
    assert!(matches!(
        Volume::create(fresh.clone(), BS, bad, VolumeOptions::default()),
        Err(EngineError::InvalidGeometry(_))
    ));
    assert!(matches!(
        Volume::create(fresh, 0, Geometry::default(), VolumeOptions::default()),
        Err(EngineError::InvalidSize { .. })
    ));
    assert!(matches!(
        Volume::create(
            Arc::new(mem),
            BS,
            Geometry::default(),
            VolumeOptions::default()
        ),
        Err(EngineError::AlreadyExists)
    ));
}

#[test]
fn a_large_sparse_volume_uses_space_only_for_written_data() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
    let vol = Volume::create(
        storage.clone(),
        100 << 30,
        Geometry::default(),
        VolumeOptions::default(),
    )
    .unwrap();
    let mut rng = Rng(5);
    let mb = vec![0xabu8; 1 << 20];
    for _ in 0..16 {
        let at = rng.below(100 << 10) << 20;
        vol.write(at, &mb).unwrap();
    }
    let allocated = |name: &str| storage.open_file(name).unwrap().allocated().unwrap();
    let data = allocated(&data_file(1));
    assert!(
        (16 << 20..=17 << 20).contains(&data),
        "data file uses {data} bytes"
    );
    let meta = allocated(&meta_file(1)) + allocated("wal");
    assert!(meta < 20 << 20, "metadata and log use {meta} bytes");
    // Trimming frees the space again.
    vol.trim(0, 100 << 30).unwrap();
    let after = allocated(&data_file(1));
    assert!(
        after < 1 << 20,
        "after trim the data file still uses {after} bytes"
    );
    assert!(vol.read(0, 1 << 20).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn write_generations_survive_reopen_and_crash() {
    let mem = MemStorage::new();
    let vol = volume(&mem, 16);
    vol.write_generation(0, &[1; 4096], 41).unwrap();
    vol.write_zeroes_generation(BS, BS, 99).unwrap();
    assert_eq!(vol.generation(), 99);
    vol.write(2 * BS, &[2; 4096]).unwrap(); // takes the next generation
    assert_eq!(vol.generation(), 100);
    drop(vol);
    let crashed = mem.crash(tripod_engine::CrashMode::LoseUnsynced);
    let vol = reopen(&crashed).unwrap();
    assert_eq!(vol.generation(), 100);
    drop(vol);
    assert_eq!(reopen(&crashed).unwrap().generation(), 100);
}

#[test]
fn repair_restores_a_damaged_copy_only_with_matching_data() {
    use tripod_engine::View;
    let mem = MemStorage::new();
    let vol = volume(&mem, 32);
    vol.write(3 * BS, &[5; 4096]).unwrap();
    vol.snapshot(&SnapshotId::new("s").unwrap()).unwrap();
    drop(vol);
    drop(reopen(&mem).unwrap());
    mem.flip_bits(&data_file(1), 3 * BS + 9, 0x04).unwrap();
    let vol = reopen(&mem).unwrap();
    let report = vol.verify().unwrap();
    assert_eq!(report.bad.len(), 1);
    let snap = View::Snapshot(SnapshotId::new("s").unwrap());
    assert_eq!(report.bad[0].views, vec![View::Head, snap.clone()]);
    assert!(!vol.repair(&View::Head, BlockIndex(3), &[6; 4096]).unwrap());
    assert!(vol.read(3 * BS, 1).is_err());
    assert!(vol.repair(&snap, BlockIndex(3), &[5; 4096]).unwrap());
    assert_eq!(vol.read(3 * BS, 4096).unwrap(), vec![5; 4096]);
    assert!(vol.verify().unwrap().bad.is_empty());
}

#[test]
fn chunk_summaries_compare_copies_from_metadata() {
    use tripod_engine::{BlockContent, ChunkIndex, View};
    let a = volume(&MemStorage::new(), 32);
    let b = volume(&MemStorage::new(), 32);
    for v in [&a, &b] {
        v.write_generation(0, &[1; 4096], 10).unwrap();
        v.write_zeroes_generation(BS, BS, 11).unwrap();
    }
    b.write_generation(2 * BS, &[2; 4096], 12).unwrap();
    let sa = a.chunk_summary(&View::Head, ChunkIndex(0)).unwrap();
    let sb = b.chunk_summary(&View::Head, ChunkIndex(0)).unwrap();
    assert_eq!(
        sa[0].content,
        BlockContent::Data(crc32fast::hash(&[1; 4096]))
    );
    assert_eq!((sa[1].content, sa[1].generation), (BlockContent::Zero, 11));
    assert_eq!(sa[2].content, BlockContent::Hole);
    let differing: Vec<usize> = (0..16).filter(|&i| !sa[i].same_content(&sb[i])).collect();
    assert_eq!(differing, vec![2]);
    assert_eq!(a.view_chunks(&View::Head).unwrap(), vec![ChunkIndex(0)]);
}

#[test]
fn a_volume_directory_is_opened_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(FileStorage::new(dir.path()).unwrap());
    let vol = Volume::create(
        first,
        1 << 20,
        Geometry::default(),
        VolumeOptions::default(),
    )
    .unwrap();
    // Another opener (a second process would hold its own descriptor) is refused.
    let second = Arc::new(FileStorage::new(dir.path()).unwrap());
    assert!(matches!(
        Volume::open(second.clone(), VolumeOptions::default()),
        Err(EngineError::InUse { .. })
    ));
    drop(vol);
    Volume::open(second, VolumeOptions::default()).unwrap();
}

/// A volume the file system cannot hold is refused at create and expand with a clear error:
/// accepted, its first write past the file system's largest file would fail, and that
/// logged write would then fail every replay, leaving the store unopenable.
#[test]
fn volumes_larger_than_the_file_system_allows_are_refused() {
    let limit = 64 << 20;
    let storage = MemStorage::with_max_file_size(limit);
    let too_big = Volume::create(
        Arc::new(storage.clone()),
        2 * limit,
        Geometry::default(),
        VolumeOptions::default(),
    );
    match too_big {
        Err(EngineError::InvalidSize { reason, .. }) => assert!(reason.contains("file system")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a volume larger than the largest file was created"),
    }
    let vol = Volume::create(
        Arc::new(storage.clone()),
        limit,
        Geometry::default(),
        VolumeOptions::default(),
    )
    .unwrap();
    vol.write(limit - BS, &[7u8; BS as usize]).unwrap();
    let grown = vol.expand(2 * limit);
    assert!(
        matches!(grown, Err(EngineError::InvalidSize { .. })),
        "{grown:?}"
    );
    assert_eq!(vol.size(), limit);
    drop(vol);
    let vol = Volume::open(Arc::new(storage), VolumeOptions::default()).unwrap();
    assert_eq!(vol.size(), limit);
    let mut last = vec![0u8; BS as usize];
    vol.read_at(limit - BS, &mut last).unwrap();
    assert_eq!(last, vec![7u8; BS as usize]);
}

/// On a real file system the largest volume (1 PiB) is either refused at create (ext4 stops
/// at 16 TiB) or really holds a block at its end, durably.
#[test]
fn the_largest_volume_is_refused_or_works_to_its_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let size = tripod_engine::MAX_VOLUME_SIZE;
    let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
    match Volume::create(storage, size, Geometry::default(), VolumeOptions::default()) {
        Err(EngineError::InvalidSize { reason, .. }) => {
            assert!(reason.contains("file system"), "{reason}");
            assert!(!dir.path().join("manifest").exists());
            assert!(!dir.path().join("size-probe").exists());
        }
        Ok(vol) => {
            vol.write(size - BS, &[9u8; BS as usize]).unwrap();
            drop(vol);
            let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
            let vol = Volume::open(storage, VolumeOptions::default()).unwrap();
            let mut last = vec![0u8; BS as usize];
            vol.read_at(size - BS, &mut last).unwrap();
            assert_eq!(last, vec![9u8; BS as usize]);
        }
        Err(e) => panic!("{e}"),
    }
}

/// Opening reads only the metadata a volume wrote: a 1 TiB volume written at both ends
/// has a meta file of hundreds of MiB that is almost all hole, and the open skips the holes
/// (it used to read them: 90 s for a 15 TiB volume written at its end). Both ends read back.
#[test]
fn a_sparse_volume_opens_reading_only_written_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let size = 1u64 << 40;
    let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
    let vol = match Volume::create(storage, size, Geometry::default(), VolumeOptions::default()) {
        Ok(v) => v,
        // A file system that cannot hold 1 TiB files has nothing to show here.
        Err(EngineError::InvalidSize { .. }) => return,
        Err(e) => panic!("{e}"),
    };
    vol.write(0, &[1u8; 4096]).unwrap();
    vol.write(size - 4096, &[2u8; 4096]).unwrap();
    vol.write(size / 2, &[3u8; 4096]).unwrap();
    drop(vol);
    // Applying the log writes the chunk records; open once more to read them from the file.
    let open = || {
        let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
        Volume::open(storage, VolumeOptions::default()).unwrap()
    };
    drop(open());
    let storage = FileStorage::new(dir.path()).unwrap();
    let meta = storage.open_file(&meta_file(1)).unwrap();
    let regions = meta.data_regions().unwrap();
    let covered: u64 = regions.iter().map(|(s, e)| e - s).sum();
    assert!(
        meta.size().unwrap() > 100 << 20,
        "the meta file spans the volume"
    );
    assert!(
        covered < 8 << 20,
        "{covered} bytes of data regions: {regions:?}"
    );
    let vol = open();
    for (at, byte) in [(0, 1u8), (size - 4096, 2), (size / 2, 3)] {
        assert_eq!(vol.read(at, 4096).unwrap(), vec![byte; 4096], "at {at}");
    }
}
