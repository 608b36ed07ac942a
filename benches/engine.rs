//! Criterion benchmarks of one engine store on real files (the bench directory is under
//! `TRIPOD_BENCH_DIR` or the system temp dir; keep it on a real disk, not tmpfs, or the
//! sync cost vanishes). Run: `cargo bench --bench engine`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tripod_engine::{FileStorage, Geometry, SnapshotId, Volume, VolumeOptions};

mod common;

use common::{bench_dir, block_at, spread, BLOCK, VOLUME};

struct Fixture {
    _dir: tempfile::TempDir,
    vol: Arc<Volume>,
}

fn fixture() -> Fixture {
    fixture_with(VOLUME, VolumeOptions::default())
}

fn fixture_with(size: u64, options: VolumeOptions) -> Fixture {
    let dir = bench_dir();
    let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
    let vol = Volume::create(storage, size, Geometry::default(), options).unwrap();
    Fixture {
        _dir: dir,
        vol: Arc::new(vol),
    }
}

/// Runs `iters` 4 KiB random writes spread over `threads` writers; returns the wall time.
fn random_writes(vol: &Arc<Volume>, threads: u64, iters: u64, salt: u64) -> Duration {
    let data = vec![0x5au8; BLOCK as usize];
    spread(threads, iters, &|i| {
        vol.write(block_at(i, salt) * BLOCK, &data).unwrap()
    })
}

fn bench_random_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_randwrite_4k");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    for threads in [1u64, 32] {
        let f = fixture();
        let mut salt = 0;
        g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &t| {
            b.iter_custom(|iters| {
                salt += 1;
                random_writes(&f.vol, t, iters, salt << 32)
            })
        });
    }
    g.finish();
}

fn bench_write_after_snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_randwrite_4k_after_snapshot");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    let f = fixture();
    // Prefill 64 MiB so the writes below overwrite blocks that a snapshot now holds.
    let mb = vec![0x11u8; 1 << 20];
    for i in 0..64u64 {
        f.vol.write(i << 20, &mb).unwrap();
    }
    let mut n = 0;
    g.bench_function("32", |b| {
        b.iter_custom(|iters| {
            n += 1;
            f.vol
                .snapshot(&SnapshotId::new(format!("s{n}")).unwrap())
                .unwrap();
            let t = random_writes(&f.vol, 32, iters, n << 32);
            f.vol
                .delete_snapshot(&SnapshotId::new(format!("s{n}")).unwrap())
                .unwrap();
            t
        })
    });
    g.finish();
}

fn bench_random_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_randread_4k");
    g.throughput(Throughput::Elements(1));
    let f = fixture();
    let mb = vec![0x22u8; 1 << 20];
    for i in 0..256u64 {
        f.vol.write(i << 20, &mb).unwrap();
    }
    let mut buf = vec![0u8; BLOCK as usize];
    let mut i = 0u64;
    g.bench_function("1", |b| {
        b.iter(|| {
            i += 1;
            let block = block_at(i, 7) % (256 * 256);
            f.vol.read_at(block * BLOCK, &mut buf).unwrap();
        })
    });
    g.finish();
}

fn bench_sequential(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_seq_1m");
    g.throughput(Throughput::Bytes(1 << 20));
    g.measurement_time(Duration::from_secs(8));
    let mb = vec![0x33u8; 1 << 20];
    // Into blocks the volume never held: placed in the data file (the default) or, for
    // comparison, through the log like every overwrite. A fresh volume per sample.
    let logged = VolumeOptions {
        direct_write_min: u64::MAX,
        ..VolumeOptions::default()
    };
    for (name, options) in [
        ("write_new", VolumeOptions::default()),
        ("write_new_logged", logged),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let f = fixture_with(iters.max(1) << 20, options);
                let start = std::time::Instant::now();
                for i in 0..iters {
                    f.vol.write(i << 20, &mb).unwrap();
                }
                start.elapsed()
            })
        });
    }
    let f = fixture();
    for at in (0..VOLUME).step_by(1 << 20) {
        f.vol.write(at, &mb).unwrap();
    }
    let mut at = 0u64;
    g.bench_function("overwrite", |b| {
        b.iter(|| {
            f.vol.write(at, &mb).unwrap();
            at = (at + (1 << 20)) % VOLUME;
        })
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut r = 0u64;
    g.bench_function("read", |b| {
        b.iter(|| {
            f.vol.read_at(r, &mut buf).unwrap();
            r = (r + (1 << 20)) % VOLUME;
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_random_write,
    bench_write_after_snapshot,
    bench_random_read,
    bench_sequential
);
criterion_main!(benches);
