//! A cluster of real processes: three `tripod replica` nodes and a `tripod serve` whose
//! replicas are `tcp://` nodes. A volume made through the admin API lives on the three
//! nodes; qemu-io writes through NBD; a node killed with SIGKILL leaves the volume writable,
//! and when it comes back the daemon resyncs it; a node with another secret is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::client::{qemu_io, Http};
use support::{free_port, metric, tripod, wait_for_port, wait_until, Daemon};

const SECRET: &str = "integration-cluster-secret-42";

struct Node {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Node {
    fn start(dir: &Path, port: u16, secret: &str) -> Node {
        let child = tripod()
            .args(["replica", "--dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("TRIPOD_CLUSTER_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        Node {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn cluster(tmp: &Path, secrets: [&str; 3]) -> Vec<Node> {
    (0..3)
        .map(|i| Node::start(&tmp.join(format!("node{i}")), free_port(), secrets[i]))
        .collect()
}

fn serve_on(nodes: &[Node]) -> Daemon {
    let mut args = Vec::new();
    for n in nodes {
        args.push("--replica".to_owned());
        args.push(n.url());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &args,
        &[
            ("TRIPOD_CLUSTER_SECRET", SECRET),
            ("TRIPOD_SUPERVISE_SECS", "1"),
        ],
    )
}

#[test]
fn volumes_live_on_replica_nodes_and_survive_a_node_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = cluster(tmp.path(), [SECRET; 3]);
    let d = serve_on(&nodes);
    let h = Http::login(&d.api());
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"size": 1, "name": "clustered"}})),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{id}"), "volume", "available");
    for n in &nodes {
        assert!(
            n.dir.join(&id).join("set-state").exists(),
            "no copy on {}",
            n.url()
        );
    }
    // Nothing of the volume is on the daemon's own disk.
    assert!(!d.data_dir().join("replicas").join("0").join(&id).exists());

    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x61 0 1M"]);
    assert!(ok, "{text}");

    // A node dies: the supervisor's health check takes it out of service before any write;
    // writes go on with two copies, reads see everything.
    nodes[2].kill9();
    let api = d.api();
    wait_until("the dead node to be out of service", || {
        metric(&api, "tripod_replicas{health=\"degraded\"}").unwrap_or(0) == 1
    });
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x62 1M 1M", "read -P 0x61 0 1M"]);
    assert!(ok, "{text}");

    // It comes back on the same address: the daemon resyncs it.
    let (dir, port) = (nodes[2].dir.clone(), nodes[2].port);
    nodes[2] = Node::start(&dir, port, SECRET);
    wait_until("the node to rejoin", || {
        metric(&api, "tripod_replicas{health=\"in_service\"}") == Some(3)
    });

    // Only the returned node and one other left: the data written while it was away is
    // served, so its copy holds it.
    nodes[0].kill9();
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &[
            "read -P 0x61 0 1M",
            "read -P 0x62 1M 1M",
            "write -P 0x63 2M 64k",
        ],
    );
    assert!(ok, "{text}");
    nodes[1].kill9();
    let (ok, text) = qemu_io(&d.uri(&id), &["read -P 0x62 1M 1M", "read -P 0x63 2M 64k"]);
    assert!(ok, "reads from the resynced node alone: {text}");

    // A node stops cleanly on SIGTERM although the daemon keeps its connections open: it
    // stops reading requests rather than waiting out its 30 s drain for idle peers.
    let started = Instant::now();
    let status = nodes[2].terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the node waited for idle peers"
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_node_with_another_secret_is_refused_and_deleting_removes_every_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = cluster(tmp.path(), [SECRET; 3]);
    let d = serve_on(&nodes);
    let h = Http::login(&d.api());
    let id = h.create_volume(1);
    // A volume from a snapshot on nodes: each node links the snapshot's files into the new
    // copy on its own disk (a linked clone, as with local replicas).
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &["write -P 0x71 0 1M", "write -P 0x72 1020M 1M"],
    );
    assert!(ok, "{text}");
    let (s, v) = h.call(
        "POST",
        "snapshots",
        Some(json!({"snapshot": {"volume_id": id, "name": "s"}})),
    );
    assert_eq!(s, 202, "{v}");
    let snap = v["snapshot"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("snapshots/{snap}"), "snapshot", "available");
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"snapshot_id": snap}})),
    );
    assert_eq!(s, 202, "{v}");
    let copy = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{copy}"), "volume", "available");
    let (ok, text) = qemu_io(
        &d.uri(&copy),
        &["read -P 0x71 0 1M", "read -P 0x72 1020M 1M"],
    );
    assert!(ok, "{text}");
    for n in &nodes {
        let most = std::fs::read_dir(n.dir.join(&copy))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "data"))
            .map(|p| std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(p).unwrap()))
            .max();
        assert_eq!(most, Some(2), "no shared layer on {}", n.url());
    }
    let (ok, text) = qemu_io(
        &d.uri(&copy),
        &["write -P 0x73 0 4k", "read -P 0x72 1020M 1M"],
    );
    assert!(ok, "{text}");
    for x in [&copy, &snap] {
        let what = if *x == copy { "volumes" } else { "snapshots" };
        let (s, _) = h.call("DELETE", &format!("{what}/{x}"), None);
        assert_eq!(s, 202);
        wait_until("deleted", || {
            h.call("GET", &format!("{what}/{x}"), None).0 == 404
        });
    }
    let (s, _) = h.call("DELETE", &format!("volumes/{id}"), None);
    assert_eq!(s, 202);
    wait_until("the volume to be deleted", || {
        h.call("GET", &format!("volumes/{id}"), None).0 == 404
    });
    for n in &nodes {
        assert!(!n.dir.join(&id).exists(), "copy left on {}", n.url());
    }
    drop(d);

    // A daemon whose third node holds another secret cannot create volumes there: the
    // volume goes to error, and nothing is written on the impostor.
    let tmp2 = tempfile::tempdir().unwrap();
    let odd = cluster(tmp2.path(), [SECRET, SECRET, "some-other-secret-entirely"]);
    let d = serve_on(&odd);
    let h = Http::login(&d.api());
    let (s, v) = h.call("POST", "volumes", Some(json!({"volume": {"size": 1}})));
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{id}"), "volume", "error");
    assert!(!odd[2].dir.join(&id).join("set-state").exists());
}

#[test]
fn serve_refuses_replica_nodes_without_a_secret() {
    let out = tripod()
        .args(["serve", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .args([
            "--replica",
            "tcp://127.0.0.1:1",
            "--replica",
            "tcp://127.0.0.1:2",
            "--replica",
            "tcp://127.0.0.1:3",
        ])
        .env_remove("TRIPOD_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TRIPOD_CLUSTER_SECRET"), "{err}");
    let out = tripod()
        .args([
            "replica",
            "--dir",
            "/nonexistent-never-created",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("TRIPOD_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!Path::new("/nonexistent-never-created").exists());
}

#[test]
fn a_stopped_node_delays_one_write_briefly_and_is_resynced_when_it_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = cluster(tmp.path(), [SECRET; 3]);
    let d = serve_on(&nodes);
    let h = Http::login(&d.api());
    let id = h.create_volume(1);
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x51 0 1M", "flush"]);
    assert!(ok, "{text}");
    // SIGSTOP: the node's sockets stay open, nobody answers (a hung node).
    let pid = nodes[1].child.id().to_string();
    let signal = |sig: &str| {
        let _ = std::process::Command::new("kill")
            .args([sig, &pid])
            .status();
    };
    signal("-STOP");
    let began = Instant::now();
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x52 1M 1M", "flush"]);
    let took = began.elapsed();
    if !ok || took > Duration::from_secs(15) {
        signal("-CONT");
        panic!("a stopped node held the write {took:?} (the I/O timeout is 30 s): {text}");
    }
    eprintln!("write + flush with one node stopped took {took:?}");
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x53 2M 1M"]);
    signal("-CONT");
    assert!(ok, "{text}");
    let api = d.api();
    wait_until("the resumed node to rejoin", || {
        metric(&api, "tripod_replicas{health=\"in_service\"}") == Some(3)
    });
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &[
            "read -P 0x51 0 1M",
            "read -P 0x52 1M 1M",
            "read -P 0x53 2M 1M",
        ],
    );
    assert!(ok, "{text}");
}

#[test]
fn a_replica_moves_from_one_node_to_another_online() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = cluster(tmp.path(), [SECRET; 3]);
    let spare = Node::start(&tmp.path().join("spare"), free_port(), SECRET);
    let d = serve_on(&nodes);
    let h = Http::login(&d.api());
    let vol = h.create_volume(1);
    let (ok, out) = qemu_io(&d.uri(&vol), &["write -P 0x6b 0 6M", "flush"]);
    assert!(ok, "{out}");

    let (s, v) = h.call(
        "POST",
        &format!("os-tripod-volumes/{vol}/replicas/0/replace"),
        Some(json!({"replace": {"with": spare.url()}})),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["previous_location"], nodes[0].url().as_str(), "{v}");
    // The same move again is refused: the spare holds a replica of it now.
    let (s, v) = h.call(
        "POST",
        &format!("os-tripod-volumes/{vol}/replicas/1/replace"),
        Some(json!({"replace": {"with": spare.url()}})),
    );
    assert_eq!(s, 400, "{v}");
    let in_service = |h: &Http| {
        let (_, st) = h.call("GET", "os-tripod-status", None);
        let v = st["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == vol.as_str())
            .cloned()
            .unwrap();
        let r = v["replicas"][0].clone();
        r["health"] == "in_service"
            && r["location"]
                .as_str()
                .unwrap()
                .contains(&spare.port.to_string())
    };
    wait_until("the spare node in service", || in_service(&h));
    assert!(spare.dir.join(&vol).exists());

    // The old node can go: the volume lives on the spare and the other two.
    nodes[0].kill9();
    let (ok, out) = qemu_io(
        &d.uri(&vol),
        &["read -P 0x6b 0 6M", "write -P 0x6c 1M 1M", "flush"],
    );
    assert!(ok, "{out}");
    let dir = d.stop_keeping_data();
    let mut args = Vec::new();
    for n in &nodes {
        args.push("--replica".to_owned());
        args.push(n.url());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::start_with(
        dir,
        &args,
        &[
            ("TRIPOD_CLUSTER_SECRET", SECRET),
            ("TRIPOD_SUPERVISE_SECS", "1"),
        ],
    );
    let h = Http::login(&d.api());
    let (ok, out) = qemu_io(&d.uri(&vol), &["read -P 0x6c 1M 1M", "read -P 0x6b 2M 4M"]);
    assert!(ok, "{out}");
    wait_until("the spare node in service after a restart", || {
        in_service(&h)
    });
}
