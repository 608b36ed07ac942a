//! `tripod fsck` on a data directory a daemon wrote: clean, then with a rotten block on one
//! replica (found, named, repaired with `--repair`), on every replica (found, not
//! repairable), and while a daemon holds the volume (not checked). It never changes a byte
//! unless asked to repair.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::client::qemu_io;
use support::*;

fn fsck(dir: &Path, args: &[&str]) -> Output {
    tripod()
        .args(["fsck", "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file under `dir` with its length and a hash of its bytes.
fn snapshot_of(dir: &Path) -> BTreeMap<PathBuf, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(p.clone(), (bytes.len(), h.finish()));
            }
        }
    }
    out
}

/// The head layer's data file of `replica` of volume `id`: the largest `layer-*.data`.
fn data_file(dir: &Path, replica: usize, id: &str) -> PathBuf {
    let vol = dir.join("replicas").join(replica.to_string()).join(id);
    std::fs::read_dir(&vol)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn fsck_finds_names_and_repairs_damage_without_touching_a_clean_directory() {
    let d = Daemon::start();
    let id = d.create_volume("8M");
    let (ok, out) = qemu_io(
        &d.uri(&id),
        &["write -P 0x5a 0 1M", "write -P 0x33 4M 64k", "flush"],
    );
    assert!(ok, "{out}");
    // Killed: the replicas' logs hold records an open replays.
    let dir = d.kill9();
    let root = dir.path();

    // Clean: exit 0, and not a byte changed (the logs replay in memory only).
    let before = snapshot_of(root);
    let out = fsck(root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("volume {id}: clean")),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot_of(root), before, "fsck changed the data directory");

    // One rotten block on replica 1: damage, named by block; the others hold good copies.
    flip(&data_file(root, 1, &id), 3 * 4096 + 100);
    let before = snapshot_of(root);
    let out = fsck(root, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vol = &report["volumes"][0];
    assert_eq!(vol["id"], id.as_str());
    assert_eq!(vol["verdict"], "damaged");
    assert_eq!(
        vol["replicas"][1]["state"]["bad_blocks"],
        serde_json::json!([3])
    );
    assert_eq!(vol["replicas"][0]["state"]["bad_count"], 0);
    assert_eq!(vol["replicas"][0]["state"]["in_service"], true);
    let problems = vol["problems"].to_string();
    assert!(
        problems.contains("replica 1 has 1 block(s) failing"),
        "{problems}"
    );
    assert!(!problems.contains("no in-service replica"), "{problems}");
    assert_eq!(
        snapshot_of(root),
        before,
        "fsck without --repair changed files"
    );

    // --repair rewrites the bad copy from a good one; a second check is clean.
    let out = fsck(root, &["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("repaired 1 of 1 bad"), "{}", text(&out));
    let out = fsck(root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The data is what the client wrote.
    let d = Daemon::start_in(dir);
    let (ok, out) = qemu_io(&d.uri(&id), &["read -P 0x5a 0 1M", "read -P 0x33 4M 64k"]);
    assert!(ok, "{out}");

    // A volume the daemon holds open is not checked: exit 2.
    let out = fsck(d.data_dir(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("in use by a running daemon"),
        "{}",
        text(&out)
    );
    let dir = d.stop_keeping_data();
    let root = dir.path();

    // The same block rotten on every replica: no good copy anywhere; --repair cannot help.
    for r in 0..3 {
        flip(&data_file(root, r, &id), 5 * 4096 + 7);
    }
    let out = fsck(root, &["--repair"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no in-service replica holds a good copy of block(s) 5"),
        "{}",
        text(&out)
    );
}

#[test]
fn replicas_that_disagree_behind_the_sets_back_are_found() {
    use std::sync::Arc;
    use tripod::data_dir::DataDir;
    use tripod_engine::{FileStorage, SnapshotId, Volume, VolumeOptions};

    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let dir = DataDir::new(tmp.path(), None);
        let (id, set) = dir.create(8 << 20).unwrap();
        set.write(0, &[1u8; 8192]).unwrap();
        set.snapshot(&SnapshotId::new("before").unwrap()).unwrap();
        set.write(0, &[2u8; 4096]).unwrap();
        set.flush().unwrap();
        id.hyphenated().to_string()
    };
    // Replica 2's store changed without the set: its copy of block 3 now differs while the
    // set state still counts it in service.
    {
        let store = tmp.path().join("replicas/2").join(&id);
        let storage = Arc::new(FileStorage::new(&store).unwrap());
        let vol = Volume::open(storage, VolumeOptions::write_back()).unwrap();
        vol.write(3 * 4096, &[7u8; 4096]).unwrap();
        vol.flush().unwrap();
    }
    let out = fsck(tmp.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["volumes"][0]["problems"].to_string();
    assert!(
        problems.contains("the in-service replicas differ in 1 block(s) of the volume (blocks 3)"),
        "{problems}"
    );
    // The snapshot is the same on all three: no difference reported for it.
    assert!(!problems.contains("snapshot before"), "{problems}");
    for r in 0..3 {
        assert_eq!(report["volumes"][0]["replicas"][r]["state"]["bad_count"], 0);
    }

    // --repair opens the set as the daemon does: it reconciles the block as one a crash
    // left half-written (the newest generation wins, on every replica), and it is clean.
    let out = fsck(tmp.path(), &["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = DataDir::new(tmp.path(), None);
    let set = dir.open(&id).unwrap();
    assert_eq!(&set.read(3 * 4096, 4096).unwrap()[..], &[7u8; 4096][..]);
    assert_eq!(&set.read(0, 4096).unwrap()[..], &[2u8; 4096][..]);
}

/// The head layer's metadata file of `replica` of volume `id`.
fn meta_file(dir: &Path, replica: usize, id: &str) -> PathBuf {
    data_file(dir, replica, id).with_extension("meta")
}

#[test]
fn a_truncated_metadata_file_and_a_missing_layer_file_are_named_and_repaired() {
    use tripod::data_dir::DataDir;
    use tripod_engine::VolumeOptions;

    // Written with a small log, so the chunk records are checkpointed into the metadata
    // files (with the default log they would still be replayed from it).
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let options = VolumeOptions {
            wal_limit: 4 << 10,
            ..VolumeOptions::write_back()
        };
        let dir = DataDir::new(tmp.path(), None).with_options(options);
        let (id, set) = dir.create(8 << 20).unwrap();
        for i in 0..8u64 {
            set.write(i << 18, &[0x61u8; 256 << 10]).unwrap();
            set.flush().unwrap();
        }
        id.hyphenated().to_string()
    };
    let root = tmp.path();

    // Each damage alone (a repair needs two good copies that agree), found by name and
    // repaired from the other two.
    let check_and_repair = |expect: &str| {
        let out = fsck(root, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(expect), "{expect:?} not in: {said}");
        let out = fsck(root, &["--repair"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let out = fsck(root, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    let cut = |path: PathBuf, len: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap()
    };
    let meta = meta_file(root, 0, &id);
    let name = meta.file_name().unwrap().to_str().unwrap().to_owned();

    // Replica 0's chunk metadata cut short inside the first chunk's record.
    cut(meta, 16);
    check_and_repair(&format!("corrupt {name}"));

    // Replica 2's layer data file gone.
    let data = data_file(root, 2, &id);
    let data_name = data.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::remove_file(&data).unwrap();
    check_and_repair(&data_name);

    // Replica 1's metadata file emptied (cut at a record boundary: nothing left to decode,
    // while its data file still holds what the other replicas record).
    cut(meta_file(root, 1, &id), 0);
    check_and_repair(&format!("replica 1: {name} has no record of chunk(s) 0"));

    let d = Daemon::start_in(tmp);
    let (ok, out) = qemu_io(&d.uri(&id), &["read -P 0x61 0 2M", "read -P 0 2M 6M"]);
    assert!(ok, "{out}");
}

#[test]
fn fsck_repairs_an_encrypted_volume_without_its_key() {
    let d = Daemon::start();
    let h = support::client::Http::login(&d.api());
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(serde_json::json!({"volume": {"size": 1, "metadata": {"__system__encrypted": "1"}}})),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{id}"), "volume", "available");
    let (ok, out) = qemu_io(&d.uri(&id), &["write -P 0x6b 0 1M", "flush"]);
    assert!(ok, "{out}");
    let dir = d.stop_keeping_data();
    let root = dir.path();
    // The key store is not what fsck uses: move it away for the repair.
    std::fs::rename(root.join("keys"), root.join("keys.away")).unwrap();
    flip(&data_file(root, 2, &id), 7 * 4096 + 9);
    let out = fsck(root, &["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("repaired 1 of 1 bad"), "{}", text(&out));
    assert_eq!(fsck(root, &[]).status.code(), Some(0));
    std::fs::rename(root.join("keys.away"), root.join("keys")).unwrap();
    let d = Daemon::start_in(dir);
    let (ok, out) = qemu_io(&d.uri(&id), &["read -P 0x6b 0 1M"]);
    assert!(ok, "{out}");
}
