//! Criterion benchmarks of the replica set against its parts, in one run: 4 KiB random
//! durable writes at 1 and 32 concurrent writers on (a) three raw files with
//! `pwrite` + `fdatasync`, (b) one engine store, (c) a three-replica set of local
//! directories, (d) a three-replica set of loopback replica nodes (TCP, in this process);
//! and block-device semantics (a flush every 32 writes per writer): three raw files written
//! with `pwrite` (and `fdatasync` at each flush) beside the write-back replica set on one
//! shared executor, which is the daemon's data path without NBD. The `encryption` group
//! runs that write-back set plain and encrypted side by side (4 KiB random writes and
//! reads, 1 MiB sequential writes and reads), and the per-block cipher alone.
//! Run: `cargo bench --bench replication` (set `TRIPOD_BENCH_DIR` to a
//! directory on the disk to measure).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tripod_engine::{FileStorage, Geometry, Volume, VolumeOptions};
use tripod_replication::remote::{ClusterSecret, RemoteNode, ReplicaNode};
use tripod_replication::{
    Executor, LocalReplica, Replica, ReplicaSet, SetConfig, DEFAULT_POOL_THREADS,
};

mod common;

use common::{bench_dir, block_at, spread, BLOCK, VOLUME};

fn bench_writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("randwrite_4k_durable");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    let data = vec![0x5au8; BLOCK as usize];
    for threads in [1u64, 32] {
        // (a) three raw files, each write pwrite + fdatasync on all three in parallel.
        let dir = bench_dir();
        let files: Vec<File> = (0..3)
            .map(|i| {
                let f = File::create(dir.path().join(format!("raw{i}"))).unwrap();
                f.set_len(VOLUME).unwrap();
                f
            })
            .collect();
        let mut salt = 0u64;
        g.bench_with_input(
            BenchmarkId::new("raw_3_files", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    salt += 1;
                    spread(t, iters, &|i| {
                        let at = block_at(i, salt << 32) * BLOCK;
                        std::thread::scope(|s| {
                            for f in &files {
                                let data = &data;
                                s.spawn(move || {
                                    f.write_all_at(data, at).unwrap();
                                    f.sync_data().unwrap();
                                });
                            }
                        });
                    })
                })
            },
        );
        // (b) one engine store.
        let dir = bench_dir();
        let storage = Arc::new(FileStorage::new(dir.path()).unwrap());
        let vol = Volume::create(
            storage,
            VOLUME,
            Geometry::default(),
            VolumeOptions::default(),
        )
        .unwrap();
        g.bench_with_input(
            BenchmarkId::new("engine_1_store", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    salt += 1;
                    spread(t, iters, &|i| {
                        vol.write(block_at(i, salt << 32) * BLOCK, &data).unwrap()
                    })
                })
            },
        );
        // (c) a replica set of three local directories.
        let dir = bench_dir();
        let replicas = [0, 1, 2].map(|i| {
            let path = dir.path().join(format!("r{i}"));
            let storage = Arc::new(FileStorage::new(&path).unwrap());
            Arc::new(LocalReplica::new(
                path.display().to_string(),
                storage,
                VolumeOptions::default(),
            )) as Arc<dyn Replica>
        });
        let set = ReplicaSet::create(replicas, VOLUME, Geometry::default(), SetConfig::default())
            .unwrap();
        bench_set(&mut g, "replica_set_3", threads, &set, &data, &mut salt);
        // (d) a replica set of three replica nodes on loopback.
        let dir = bench_dir();
        let net = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let secret = ClusterSecret::new(b"bench-cluster-secret-0123456789".to_vec()).unwrap();
        let replicas = [0, 1, 2].map(|i| {
            let node = Arc::new(ReplicaNode::new(
                dir.path().join(format!("node{i}")),
                secret.clone(),
                VolumeOptions::default(),
            ));
            let listener = net
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            net.spawn(node.serve(listener, std::future::pending(), Duration::ZERO));
            let remote = RemoteNode::new(addr, secret.clone(), net.handle().clone());
            Arc::new(remote.replica("bench")) as Arc<dyn Replica>
        });
        let set = ReplicaSet::create(replicas, VOLUME, Geometry::default(), SetConfig::default())
            .unwrap();
        bench_set(
            &mut g,
            "replica_set_3_nodes",
            threads,
            &set,
            &data,
            &mut salt,
        );
        drop(set);
        net.shutdown_timeout(Duration::from_secs(5));
    }
    g.finish();
}

/// Random durable 4 KiB writes to `set` from `threads` writers.
fn bench_set(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: u64,
    set: &ReplicaSet,
    data: &[u8],
    salt: &mut u64,
) {
    g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &t| {
        b.iter_custom(|iters| {
            *salt += 1;
            let salt = *salt;
            spread(t, iters, &|i| {
                set.write(block_at(i, salt << 32) * BLOCK, data).unwrap()
            })
        })
    });
}

/// Writes per flush in the write-back group (fio's `fsync=32`, as the NBD harness runs it).
const PER_FLUSH: u64 = 32;

fn bench_write_back(c: &mut Criterion) {
    let mut g = c.benchmark_group("randwrite_4k_flush_every_32");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    let data = vec![0x5au8; BLOCK as usize];
    let mut salt = 0u64;
    for threads in [1u64, 32] {
        // (a) raw: each write a pwrite on three files, every 32nd also fdatasync on all three.
        let dir = bench_dir();
        let files: Vec<File> = (0..3)
            .map(|i| {
                let f = File::create(dir.path().join(format!("raw{i}"))).unwrap();
                f.set_len(VOLUME).unwrap();
                f
            })
            .collect();
        g.bench_with_input(
            BenchmarkId::new("raw_3_files", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    salt += 1;
                    spread(t, iters, &|i| {
                        let at = block_at(i, salt << 32) * BLOCK;
                        for f in &files {
                            f.write_all_at(&data, at).unwrap();
                        }
                        if (i / t) % PER_FLUSH == PER_FLUSH - 1 {
                            files.iter().for_each(|f| f.sync_data().unwrap());
                        }
                    })
                })
            },
        );
        // (b) the write-back replica set, its three directories on one executor.
        let dir = bench_dir();
        let executor = Executor::new("bench-disk", DEFAULT_POOL_THREADS).unwrap();
        let replicas = [0, 1, 2].map(|i| {
            let path = dir.path().join(format!("r{i}"));
            let storage = Arc::new(FileStorage::new(&path).unwrap());
            Arc::new(LocalReplica::with_executor(
                path.display().to_string(),
                storage,
                VolumeOptions::write_back(),
                executor.clone(),
            )) as Arc<dyn Replica>
        });
        let set = ReplicaSet::create(replicas, VOLUME, Geometry::default(), SetConfig::default())
            .unwrap();
        g.bench_with_input(
            BenchmarkId::new("replica_set_write_back", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    salt += 1;
                    spread(t, iters, &|i| {
                        set.write(block_at(i, salt << 32) * BLOCK, &data).unwrap();
                        if (i / t) % PER_FLUSH == PER_FLUSH - 1 {
                            set.flush().unwrap();
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

/// A write-back replica set of three local directories on one executor (as the daemon
/// runs them), encrypted when `cipher` is given.
fn write_back_set(
    dir: &std::path::Path,
    cipher: Option<Arc<tripod_replication::cipher::VolumeCipher>>,
) -> ReplicaSet {
    let executor = Executor::new("bench-disk", DEFAULT_POOL_THREADS).unwrap();
    let replicas = [0, 1, 2].map(|i| {
        let path = dir.join(format!("r{i}"));
        let storage = Arc::new(FileStorage::new(&path).unwrap());
        Arc::new(LocalReplica::with_executor(
            path.display().to_string(),
            storage,
            VolumeOptions::write_back(),
            executor.clone(),
        )) as Arc<dyn Replica>
    });
    let (geometry, config) = (Geometry::default(), SetConfig::default());
    match cipher {
        Some(c) => ReplicaSet::create_encrypted(replicas, VOLUME, geometry, config, c).unwrap(),
        None => ReplicaSet::create(replicas, VOLUME, geometry, config).unwrap(),
    }
}

/// Bytes of the region the read benches prefill and read back.
const READ_REGION: u64 = 64 << 20;

fn bench_encryption(c: &mut Criterion) {
    use tripod_replication::cipher::VolumeCipher;
    let cipher = || {
        let key = zeroize::Zeroizing::new([0x42u8; 32]);
        Arc::new(VolumeCipher::new(&key, [7; 16]))
    };
    let mut g = c.benchmark_group("encryption");
    g.measurement_time(Duration::from_secs(6));
    // The cipher alone: one 4 KiB block sealed, then opened.
    let alone = cipher();
    let mut block = vec![0x5au8; BLOCK as usize];
    g.throughput(Throughput::Bytes(BLOCK));
    g.bench_function("seal_4k", |b| {
        let mut gen = 0u64;
        b.iter(|| {
            gen += 1;
            alone.seal_block(9, gen, &mut block)
        })
    });
    let seal = alone.seal_block(9, 1, &mut block);
    g.bench_function("open_4k", |b| {
        b.iter(|| {
            let mut copy = block.clone();
            alone.open_block(9, 1, &mut copy, &seal).unwrap();
            copy
        })
    });
    let small = vec![0x5au8; BLOCK as usize];
    let big = vec![0x5au8; 1 << 20];
    let mut salt = 0u64;
    for (name, key) in [("plain", None), ("encrypted", Some(cipher()))] {
        let dir = bench_dir();
        let set = write_back_set(dir.path(), key);
        for at in (0..READ_REGION).step_by(big.len()) {
            set.write(at, &big).unwrap();
        }
        set.flush().unwrap();
        g.throughput(Throughput::Bytes(BLOCK));
        g.bench_function(BenchmarkId::new("randwrite_4k", name), |b| {
            b.iter_custom(|iters| {
                salt += 1;
                spread(1, iters, &|i| {
                    set.write(block_at(i, salt << 32) * BLOCK, &small).unwrap()
                })
            })
        });
        g.bench_function(BenchmarkId::new("randread_4k", name), |b| {
            b.iter_custom(|iters| {
                salt += 1;
                spread(1, iters, &|i| {
                    let at = block_at(i, salt << 32) % (READ_REGION / BLOCK) * BLOCK;
                    set.read(at, BLOCK).unwrap();
                })
            })
        });
        g.throughput(Throughput::Bytes(big.len() as u64));
        g.bench_function(BenchmarkId::new("seqwrite_1m", name), |b| {
            b.iter_custom(|iters| {
                spread(1, iters, &|i| set.write((i << 20) % VOLUME, &big).unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("seqread_1m", name), |b| {
            b.iter_custom(|iters| {
                spread(1, iters, &|i| {
                    set.read((i << 20) % READ_REGION, 1 << 20).unwrap();
                })
            })
        });
        set.flush().unwrap();
    }
    g.finish();
}

criterion_group!(benches, bench_writes, bench_write_back, bench_encryption);
criterion_main!(benches);
