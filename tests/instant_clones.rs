//! Volumes from snapshots and clones of volumes are linked clones: a 100 GiB volume with
//! data is created from its snapshot without copying (the snapshot's files get a second
//! name in each new replica), both sides then diverge, and the new volume outlives its
//! snapshot, its source volume, a `kill -9` and a scrub. Checked with qemu-io over NBD.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use serde_json::json;
use support::client::{qemu_io, Http};
use support::*;

/// The most names any layer data file of volume `id` has, over its three replicas.
fn most_links(data_dir: &Path, id: &str) -> u64 {
    (0..3)
        .flat_map(|r| {
            let dir = data_dir.join("replicas").join(r.to_string()).join(id);
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "data"))
                .map(|p| std::fs::metadata(p).unwrap().nlink())
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}

fn create(h: &Http, body: serde_json::Value) -> String {
    let (s, v) = h.call("POST", "volumes", Some(json!({ "volume": body })));
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{id}"), "volume", "available");
    id
}

fn io_ok(d: &Daemon, id: &str, cmds: &[&str]) {
    let (ok, text) = qemu_io(&d.uri(id), cmds);
    assert!(ok, "{cmds:?}: {text}");
}

#[test]
fn a_100_gib_volume_from_a_snapshot_shares_its_data_and_lives_on_without_it() {
    let d = Daemon::start();
    let h = Http::login(&d.api());
    let parent = create(&h, json!({"size": 100, "name": "big"}));
    io_ok(
        &d,
        &parent,
        &[
            "write -P 0x11 0 4M",
            "write -P 0x22 50G 4M",
            "write -P 0x33 99G 4M",
        ],
    );
    let (s, v) = h.call(
        "POST",
        "snapshots",
        Some(json!({"snapshot": {"volume_id": parent, "name": "s"}})),
    );
    assert_eq!(s, 202, "{v}");
    let snap = v["snapshot"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("snapshots/{snap}"), "snapshot", "available");

    let started = Instant::now();
    let child = create(
        &h,
        json!({"snapshot_id": snap, "size": 120, "name": "child"}),
    );
    eprintln!(
        "a 100 GiB volume with 12 MiB of data created from its snapshot in {:?}",
        started.elapsed()
    );
    // Nothing was copied: the snapshot's data files have a second name in the new copies.
    assert_eq!(most_links(d.data_dir(), &child), 2);

    io_ok(
        &d,
        &child,
        &[
            "read -P 0x11 0 4M",
            "read -P 0x22 50G 4M",
            "read -P 0x33 99G 4M",
            "read -P 0 100G 1M",
            "write -P 0x44 0 1M",
        ],
    );
    io_ok(&d, &parent, &["read -P 0x11 0 1M", "write -P 0x55 50G 1M"]);
    io_ok(&d, &child, &["read -P 0x44 0 1M", "read -P 0x22 50G 1M"]);

    // A clone of the volume itself is linked too (through a temporary snapshot): the
    // oldest layer now has three names (source, child, twin).
    let twin = create(&h, json!({"source_volid": parent}));
    assert_eq!(most_links(d.data_dir(), &twin), 3);
    io_ok(&d, &twin, &["read -P 0x55 50G 1M", "read -P 0x33 99G 4M"]);

    // The snapshot and the source volume go; the new volume keeps every byte.
    let (s, v) = h.call("DELETE", &format!("snapshots/{snap}"), None);
    assert_eq!(s, 202, "{v}");
    wait_until("the snapshot to be gone", || {
        h.call("GET", &format!("snapshots/{snap}"), None).0 == 404
    });
    let (s, v) = h.call("DELETE", &format!("volumes/{parent}"), None);
    assert_eq!(s, 202, "{v}");
    wait_until("the source volume to be gone", || {
        h.call("GET", &format!("volumes/{parent}"), None).0 == 404
    });
    io_ok(&d, &child, &["read -P 0x44 0 1M", "read -P 0x33 99G 4M"]);
    assert_eq!(
        most_links(d.data_dir(), &child),
        2,
        "the child and the twin share layers"
    );

    // A crash and a restart change nothing; a scrub finds every copy of every block good.
    let dir = d.kill9();
    let d = Daemon::start_in(dir);
    let h = Http::login(&d.api());
    io_ok(
        &d,
        &child,
        &[
            "read -P 0x44 0 1M",
            "read -P 0x22 50G 4M",
            "read -P 0x33 99G 4M",
        ],
    );
    io_ok(&d, &twin, &["read -P 0x55 50G 1M"]);
    let (s, v) = h.call("POST", &format!("os-tripod-volumes/{child}/scrub"), None);
    assert_eq!(s, 202, "{v}");
    wait_until("the scrub to finish", || {
        let (_, st) = h.call("GET", "os-tripod-status", None);
        st["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == child.as_str() && x["last_scrub"]["state"] == "done")
    });
    let (_, st) = h.call("GET", "os-tripod-status", None);
    let row = st["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == child.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["last_scrub"]["bad"], 0, "{row}");

    // The offline checker agrees: every copy of both volumes is whole and they match.
    let dir = d.stop_keeping_data();
    let out = tripod()
        .args(["fsck", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
