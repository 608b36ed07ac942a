//! Replica sets over real TCP replica nodes: the set's contract holds when its replicas are
//! `ReplicaNode`s reached through `RemoteReplica`s — writes, reads, snapshots, rollback,
//! expansion; a node that dies and comes back is resynced; a node whose disk lost the copy
//! is rebuilt; a peer without the cluster secret gets nothing; an encrypted volume's
//! traffic and node files (captured and searched) hold none of what was written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tripod_engine::{Geometry, SnapshotId, View, VolumeOptions};
use tripod_replication::remote::{ClusterSecret, RemoteNode, ReplicaNode};
use tripod_replication::{Replica, ReplicaHealth, ReplicaId, ReplicaSet, SetConfig};

const SECRET: &[u8] = b"test-cluster-secret-0123456789";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A node serving `dir`, on its own runtime so dropping it kills the node (sockets closed,
/// nothing more answered) like a crashed process.
struct Node {
    rt: Option<Runtime>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Node {
    fn start(dir: &Path, addr: Option<SocketAddr>) -> Node {
        let rt = runtime();
        let node = Arc::new(ReplicaNode::new(
            dir,
            ClusterSecret::new(SECRET.to_vec()).unwrap(),
            VolumeOptions::default(),
        ));
        let listener = rt.block_on(async {
            let at = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
            tokio::net::TcpListener::bind(at).await.unwrap()
        });
        let addr = listener.local_addr().unwrap();
        rt.spawn(node.serve(listener, std::future::pending(), Duration::ZERO));
        Node {
            rt: Some(rt),
            addr,
            dir: dir.to_owned(),
        }
    }

    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }

    fn restart(&mut self) {
        self.kill();
        *self = Node::start(&self.dir, Some(self.addr));
    }
}

struct Cluster {
    _tmp: tempfile::TempDir,
    nodes: Vec<Node>,
    client: Runtime,
}

impl Cluster {
    fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = (0..3)
            .map(|i| Node::start(&tmp.path().join(format!("node{i}")), None))
            .collect();
        Cluster {
            _tmp: tmp,
            nodes,
            client: runtime(),
        }
    }

    fn remote(&self, i: usize, secret: &[u8]) -> RemoteNode {
        RemoteNode::new(
            self.nodes[i].addr.to_string(),
            ClusterSecret::new(secret.to_vec()).unwrap(),
            self.client.handle().clone(),
        )
    }

    fn replicas(&self, volume: &str) -> [Arc<dyn Replica>; 3] {
        [0, 1, 2].map(|i| Arc::new(self.remote(i, SECRET).replica(volume)) as Arc<dyn Replica>)
    }
}

fn config() -> SetConfig {
    SetConfig {
        io_timeout: Duration::from_secs(5),
        long_timeout: Duration::from_secs(30),
        ..SetConfig::default()
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Reads `len` bytes of the head straight from each replica.
fn each_copy(replicas: &[Arc<dyn Replica>; 3], len: u64) -> Vec<Vec<u8>> {
    replicas
        .iter()
        .map(|r| {
            r.read(View::Head, 0, len)
                .wait(Duration::from_secs(10))
                .unwrap()
                .to_vec()
        })
        .collect()
}

#[test]
fn a_set_of_remote_replicas_keeps_the_contract() {
    let c = Cluster::new();
    let size = 8 << 20;
    let set = ReplicaSet::create(c.replicas("vol-a"), size, Geometry::default(), config()).unwrap();
    let a = pattern(1, 300_000);
    set.write(4096 * 3 + 17, &a).unwrap();
    set.flush().unwrap();
    assert_eq!(
        &set.read(4096 * 3 + 17, a.len() as u64).unwrap()[..],
        &a[..]
    );

    let snap = SnapshotId::new("s1").unwrap();
    set.snapshot(&snap).unwrap();
    let b = pattern(2, 70_000);
    set.write(4096 * 3 + 17, &b).unwrap();
    set.write_zeroes(1 << 20, 1 << 20).unwrap();
    set.expand(16 << 20).unwrap();
    set.write((16 << 20) - 4096, &pattern(3, 4096)).unwrap();
    assert_eq!(set.size(), 16 << 20);
    assert_eq!(
        &set.read_view(&View::Snapshot(snap.clone()), 4096 * 3 + 17, a.len() as u64)
            .unwrap()[..],
        &a[..]
    );
    set.rollback(&snap).unwrap();
    assert_eq!(
        &set.read(4096 * 3 + 17, a.len() as u64).unwrap()[..],
        &a[..]
    );
    let scrub = set.scrub().unwrap();
    assert_eq!(scrub.repaired, 0, "{scrub:?}");

    // Reopened through new connections, the set finds the same volume.
    drop(set);
    let set = ReplicaSet::open(c.replicas("vol-a"), config()).unwrap();
    assert_eq!(
        &set.read(4096 * 3 + 17, a.len() as u64).unwrap()[..],
        &a[..]
    );
    assert_eq!(set.list_snapshots().unwrap().len(), 1);
    let copies = each_copy(&c.replicas("vol-a"), set.size());
    assert!(copies.windows(2).all(|w| w[0] == w[1]), "copies differ");

    // The node lists the volume, and destroys it on request.
    let node = c.remote(0, SECRET);
    assert_eq!(node.list(Duration::from_secs(5)).unwrap(), vec!["vol-a"]);
    drop(set);
    node.destroy("vol-a", Duration::from_secs(5)).unwrap();
    assert!(node.list(Duration::from_secs(5)).unwrap().is_empty());
    assert!(!c.nodes[0].dir.join("vol-a").exists());
}

#[test]
fn a_node_that_dies_is_resynced_when_it_returns() {
    let mut c = Cluster::new();
    let size = 8 << 20;
    let set = ReplicaSet::create(c.replicas("vol-b"), size, Geometry::default(), config()).unwrap();
    set.write(0, &pattern(1, 1 << 20)).unwrap();

    c.nodes[2].kill();
    // The health check notices the dead node without a write: it leaves service, to be
    // resynced (not rebuilt) when it is back.
    set.check_health().unwrap();
    let status = set.status();
    assert!(
        matches!(
            status.replicas[ReplicaId::ALL[2]].health,
            ReplicaHealth::Degraded {
                needs_rebuild: false,
                ..
            }
        ),
        "{status:?}"
    );
    // Writes go on with two copies.
    let b = pattern(2, 512 << 10);
    set.write(2 << 20, &b).unwrap();
    set.write(6 << 20, &b).unwrap();
    let status = set.status();
    assert!(
        !matches!(
            status.replicas[ReplicaId::ALL[2]].health,
            ReplicaHealth::InService
        ),
        "{status:?}"
    );
    // While it is away, healing fails and changes nothing.
    assert!(set.heal_now().rejoined.is_empty());
    assert_eq!(&set.read(2 << 20, b.len() as u64).unwrap()[..], &b[..]);

    c.nodes[2].restart();
    let report = set.heal_now();
    assert_eq!(report.rejoined, vec![ReplicaId::ALL[2]], "{report:?}");
    let copies = each_copy(&c.replicas("vol-b"), size);
    assert!(
        copies.windows(2).all(|w| w[0] == w[1]),
        "copies differ after resync"
    );
    assert_eq!(&copies[2][2 << 20..(2 << 20) + b.len()], &b[..]);
}

/// A TCP relay to `to` that records every byte passing either way into `log`.
async fn recording_proxy(to: SocketAddr, log: Arc<parking_lot::Mutex<Vec<u8>>>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(node) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (nr, nw) = node.into_split();
            for (mut from, mut into) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(nw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                ),
                (Box::new(nr), Box::new(cw)),
            ] {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        match from.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().extend_from_slice(&buf[..n]);
                                if into.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = into.shutdown().await;
                });
            }
        }
    });
    addr
}

/// A workload through replicas reached via recording proxies; returns what was captured.
fn captured_workload(c: &mut Cluster, volume: &str, data: &[u8], encrypted: bool) -> Vec<u8> {
    let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let proxies: Vec<SocketAddr> = (0..3)
        .map(|i| {
            c.client
                .block_on(recording_proxy(c.nodes[i].addr, log.clone()))
        })
        .collect();
    let replicas = || {
        [0, 1, 2].map(|i| {
            let node = RemoteNode::new(
                proxies[i].to_string(),
                ClusterSecret::new(SECRET.to_vec()).unwrap(),
                c.client.handle().clone(),
            );
            Arc::new(node.replica(volume)) as Arc<dyn Replica>
        })
    };
    let key = support::test_cipher(9);
    let size = 4 << 20;
    let set = if encrypted {
        ReplicaSet::create_encrypted(replicas(), size, Geometry::default(), config(), key.clone())
    } else {
        ReplicaSet::create(replicas(), size, Geometry::default(), config())
    }
    .unwrap();
    set.write(4096 + 5, data).unwrap();
    set.snapshot(&SnapshotId::new("s").unwrap()).unwrap();
    set.write_zeroes(4096 * 8 + 1, 4096).unwrap();
    set.flush().unwrap();
    assert_eq!(set.scrub().unwrap().repaired, 0);
    // Node 1's disk is replaced; its copy is rebuilt through the relay.
    c.nodes[1].kill();
    std::fs::remove_dir_all(&c.nodes[1].dir).unwrap();
    c.nodes[1].restart();
    set.write(4096 * 16, &data[..4096]).unwrap_or(());
    set.check_health().unwrap_or(());
    let mut rejoined = false;
    for _ in 0..3 {
        if set.heal_now().rejoined.contains(&ReplicaId::ALL[1]) {
            rejoined = true;
            break;
        }
    }
    assert!(rejoined, "{:?}", set.status());
    drop(set);
    let set = if encrypted {
        ReplicaSet::open_encrypted(replicas(), config(), key)
    } else {
        ReplicaSet::open(replicas(), config())
    }
    .unwrap();
    let view = View::Snapshot(SnapshotId::new("s").unwrap());
    assert_eq!(
        &set.read_view(&view, 4096 + 5, data.len() as u64).unwrap()[..],
        data
    );
    assert_eq!(set.is_encrypted(), encrypted);
    drop(set);
    let captured = log.lock().clone();
    captured
}

#[test]
fn an_encrypted_volume_sends_and_stores_no_plaintext() {
    let data = support::random_pattern(77, 200_000);
    let needles = support::Needles::of(&data);
    let mut c = Cluster::new();
    let traffic = captured_workload(&mut c, "vol-enc", &data, true);
    assert!(traffic.len() > 3 * data.len(), "the relay saw the traffic");
    assert!(!needles.found_in(&traffic), "plaintext on the wire");
    for n in &c.nodes {
        assert!(
            !needles.found_under(&n.dir),
            "plaintext in {}",
            n.dir.display()
        );
    }
    // The same through a plain volume: the search finds the data on the wire and on disk.
    let mut c = Cluster::new();
    let traffic = captured_workload(&mut c, "vol-plain", &data, false);
    assert!(needles.found_in(&traffic));
    assert!(needles.found_under(&c.nodes[0].dir));
}

#[test]
fn a_node_that_lost_its_copy_is_rebuilt() {
    let mut c = Cluster::new();
    let size = 4 << 20;
    let set = ReplicaSet::create(c.replicas("vol-c"), size, Geometry::default(), config()).unwrap();
    set.write(0, &pattern(5, 1 << 20)).unwrap();
    set.snapshot(&SnapshotId::new("keep").unwrap()).unwrap();
    set.write(0, &pattern(6, 4096)).unwrap();

    // The node's disk is replaced: it comes back empty.
    c.nodes[1].kill();
    std::fs::remove_dir_all(&c.nodes[1].dir).unwrap();
    c.nodes[1].restart();
    set.write(8192, &pattern(7, 4096)).unwrap_or(());
    set.check_health().unwrap();
    let mut rejoined = false;
    for _ in 0..3 {
        if set.heal_now().rejoined.contains(&ReplicaId::ALL[1]) {
            rejoined = true;
            break;
        }
    }
    assert!(rejoined, "{:?}", set.status());
    let copies = each_copy(&c.replicas("vol-c"), size);
    assert!(
        copies.windows(2).all(|w| w[0] == w[1]),
        "copies differ after rebuild"
    );
    let snap = c.replicas("vol-c")[1]
        .read(View::Snapshot(SnapshotId::new("keep").unwrap()), 0, 4096)
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(&snap[..], &pattern(5, 1 << 20)[..4096]);
}

#[test]
fn a_peer_without_the_secret_gets_nothing() {
    let c = Cluster::new();
    let set =
        ReplicaSet::create(c.replicas("vol-d"), 1 << 20, Geometry::default(), config()).unwrap();
    set.write(0, b"private").unwrap();
    let intruder = c
        .remote(0, b"another-secret-of-enough-length")
        .replica("vol-d");
    let read = intruder
        .read(View::Head, 0, 7)
        .wait(Duration::from_secs(10));
    assert!(read.is_err(), "read without the secret: {read:?}");
    let write = intruder
        .write(0, bytes::Bytes::from_static(b"evil"), 99)
        .wait(Duration::from_secs(10));
    assert!(write.is_err());
    assert!(c
        .remote(0, b"another-secret-of-enough-length")
        .list(Duration::from_secs(10))
        .is_err());
    assert_eq!(&set.read(0, 7).unwrap()[..], b"private");
}

#[test]
fn a_reconnect_fences_older_connections() {
    let c = Cluster::new();
    let replicas = c.replicas("vol-e");
    let set = ReplicaSet::create(replicas.clone(), 1 << 20, Geometry::default(), config()).unwrap();
    set.write(0, b"first").unwrap();
    // A second client of the same copy (a stale connection, as after a network split).
    let stale = c.remote(0, SECRET).replica("vol-e");
    stale.info().wait(Duration::from_secs(5)).unwrap();
    // The set's replica reconnects: the stale connection may no longer write.
    replicas[0].reconnect(Duration::from_secs(5)).unwrap();
    let late = stale
        .write(0, bytes::Bytes::from_static(b"stale"), u64::MAX / 2)
        .wait(Duration::from_secs(5));
    assert!(late.is_err(), "a fenced connection wrote: {late:?}");
    let head = replicas[0]
        .read(View::Head, 0, 5)
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(&head[..], b"first");
}

#[derive(Debug, Clone)]
enum Op {
    /// Write `blocks` blocks of pattern `seed` at block `at`.
    Write {
        at: u64,
        blocks: u64,
        seed: u8,
    },
    /// Zero `blocks` blocks at `at`.
    Zeroes {
        at: u64,
        blocks: u64,
    },
    Snapshot,
    /// Roll back to the newest snapshot, if any.
    Rollback,
    /// Kill node `i` (only while all three are in service: the set keeps its quorum).
    Kill(usize),
    /// Bring the dead node back on its address.
    Restart,
    /// Let the set resync or rebuild whatever is out.
    Heal,
}

const MODEL_BLOCKS: u64 = 256;
const BS: u64 = 4096;

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        5 => (0..MODEL_BLOCKS, 1u64..40, any::<u8>()).prop_map(|(at, blocks, seed)| Op::Write {
            at,
            blocks: blocks.min(MODEL_BLOCKS - at),
            seed
        }),
        1 => (0..MODEL_BLOCKS, 1u64..40).prop_map(|(at, blocks)| Op::Zeroes {
            at,
            blocks: blocks.min(MODEL_BLOCKS - at)
        }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Rollback),
        2 => (0usize..3).prop_map(Op::Kill),
        2 => Just(Op::Restart),
        2 => Just(Op::Heal),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 12,
        .. proptest::prelude::ProptestConfig::default()
    })]

    /// Random workloads on a set of three nodes, with nodes killed and brought back between
    /// operations: every acknowledged write reads back as the model says, at every step;
    /// after the last heal the three copies hold the same head and snapshots.
    #[test]
    fn nodes_die_and_return_without_losing_acknowledged_writes(
        ops in proptest::collection::vec(op(), 1..30)
    ) {
        let mut c = Cluster::new();
        let size = MODEL_BLOCKS * BS;
        let set = ReplicaSet::create(c.replicas("model"), size, Geometry::default(), config())
            .unwrap();
        let mut head = vec![0u8; size as usize];
        let mut snaps: Vec<(SnapshotId, Vec<u8>)> = Vec::new();
        let mut dead: Option<usize> = None;
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Write { at, blocks, seed } => {
                    let data = pattern(*seed, (blocks * BS) as usize);
                    set.write(at * BS, &data).unwrap();
                    head[(at * BS) as usize..((at + blocks) * BS) as usize].copy_from_slice(&data);
                }
                Op::Zeroes { at, blocks } => {
                    set.write_zeroes(at * BS, blocks * BS).unwrap();
                    head[(at * BS) as usize..((at + blocks) * BS) as usize].fill(0);
                }
                Op::Snapshot => {
                    let id = SnapshotId::new(format!("s{step}")).unwrap();
                    set.snapshot(&id).unwrap();
                    snaps.push((id, head.clone()));
                }
                Op::Rollback => {
                    if let Some((id, content)) = snaps.last() {
                        set.rollback(id).unwrap();
                        head = content.clone();
                    }
                }
                Op::Kill(i) => {
                    let all_in = set
                        .status()
                        .replicas
                        .iter()
                        .all(|(_, r)| matches!(r.health, ReplicaHealth::InService));
                    if dead.is_none() && all_in {
                        c.nodes[*i].kill();
                        dead = Some(*i);
                    }
                }
                Op::Restart => {
                    if let Some(i) = dead.take() {
                        c.nodes[i].restart();
                    }
                }
                Op::Heal => {
                    set.heal_now();
                }
            }
            let read = set.read(0, size).unwrap();
            proptest::prop_assert!(read[..] == head[..], "head differs after step {} ({:?})", step, op);
        }
        if let Some(i) = dead.take() {
            c.nodes[i].restart();
        }
        for _ in 0..5 {
            if set.heal_now().still_out.is_empty()
                && set
                    .status()
                    .replicas
                    .iter()
                    .all(|(_, r)| matches!(r.health, ReplicaHealth::InService))
            {
                break;
            }
        }
        let replicas = c.replicas("model");
        let copies = each_copy(&replicas, size);
        for (i, copy) in copies.iter().enumerate() {
            proptest::prop_assert!(copy[..] == head[..], "replica {} head differs", i);
        }
        for (id, content) in &snaps {
            if set.list_snapshots().unwrap().iter().any(|s| &s.id == id) {
                let via_set = set.read_view(&View::Snapshot(id.clone()), 0, size).unwrap();
                proptest::prop_assert!(via_set[..] == content[..], "snapshot {} differs", id);
                for r in &replicas {
                    let copy = r
                        .read(View::Snapshot(id.clone()), 0, size)
                        .wait(Duration::from_secs(10))
                        .unwrap();
                    proptest::prop_assert!(copy[..] == content[..], "a copy of {} differs", id);
                }
            }
        }
    }
}

#[test]
fn writes_and_reads_larger_than_a_frame_go_in_pieces() {
    let c = Cluster::new();
    let size = 160 << 20;
    let set =
        ReplicaSet::create(c.replicas("vol-big"), size, Geometry::default(), config()).unwrap();
    // 96 MiB + 1 block: three full pieces and a short one, more than one frame can hold.
    let big = pattern(9, (96 << 20) + 4096);
    set.write(8 << 20, &big).unwrap();
    assert_eq!(&set.read(8 << 20, big.len() as u64).unwrap()[..], &big[..]);
    let copies = each_copy(&c.replicas("vol-big"), size);
    assert!(copies.windows(2).all(|w| w[0] == w[1]), "copies differ");
    assert_eq!(&copies[0][8 << 20..(8 << 20) + big.len()], &big[..]);
}
