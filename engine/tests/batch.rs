//! `Volume::write_batch` (how a replica's I/O worker commits its queue) must mean exactly the
//! writes applied one after the other, overlapping or not, with bad writes failing alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tripod_engine::{BatchWrite, CrashMode, Geometry, MemStorage, Volume, VolumeOptions};

const GEOMETRY: Geometry = Geometry {
    block_size: 512,
    chunk_blocks: 8,
};
const SIZE: u64 = 64 * 512;
const OPTIONS: VolumeOptions = VolumeOptions {
    wal_limit: 16 << 10,
    direct_write_min: 1024,
    write_back: false,
    write_back_limit: 32 << 20,
};

fn write_strategy() -> impl Strategy<Value = (u64, u64, Option<u8>)> {
    (
        0..SIZE + 600,
        1..3000u64,
        prop::option::weighted(0.8, 1..=255u8),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_equals_its_writes_in_order(
        rounds in prop::collection::vec(prop::collection::vec(write_strategy(), 1..12), 1..4)
    ) {
        let mem = MemStorage::new();
        let vol = Volume::create(Arc::new(mem.clone()), SIZE, GEOMETRY, OPTIONS).unwrap();
        let mut model = vec![0u8; SIZE as usize];
        for round in &rounds {
            let writes: Vec<BatchWrite> = round
                .iter()
                .enumerate()
                .map(|(i, &(offset, len, fill))| BatchWrite {
                    offset,
                    len,
                    data: fill.map(|f| Bytes::from(vec![f.wrapping_add(i as u8); len as usize])),
                    generation: None,
                    seals: Vec::new(),
                })
                .collect();
            let results = vol.write_batch(&writes);
            prop_assert_eq!(results.len(), writes.len());
            for (w, r) in writes.iter().zip(&results) {
                let fits = w.offset + w.len <= SIZE;
                prop_assert_eq!(r.is_ok(), fits, "{:?}", r);
                if fits {
                    let range = w.offset as usize..(w.offset + w.len) as usize;
                    match &w.data {
                        Some(d) => model[range].copy_from_slice(d),
                        None => model[range].fill(0),
                    }
                }
            }
            prop_assert_eq!(vol.read(0, SIZE).unwrap(), model.clone());
        }
        // And it all survives losing every unsynced byte.
        drop(vol);
        let vol = Volume::open(Arc::new(mem.crash(CrashMode::LoseUnsynced)), OPTIONS).unwrap();
        prop_assert_eq!(vol.read(0, SIZE).unwrap(), model);
        prop_assert!(vol.verify().unwrap().bad.is_empty());
    }
}
