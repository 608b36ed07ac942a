//! Faults a user meets, on the running daemon with real clients (qemu-io over NBD):
//!
//! - a block whose three copies all fail their checksum: after a restart the volume is still
//!   exported, that block reads as an I/O error, every other block is served;
//! - every replica's disk full (each replica directory on its own small loop-mounted ext4, or
//!   tmpfs): writes get ENOSPC, reads go on, `/metrics` says so, a restart opens the volume,
//!   and writes work again once space is freed;
//! - one replica's file system frozen (`fsfreeze`, a hung disk): writes go on with two after
//!   one short delay, the replica leaves service, and it is resynced after it is thawed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/small_fs.rs"]
mod small_fs;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use small_fs::SmallFs;
use support::client::{qemu_io, Http};
use support::{flip, metric, wait_until, Daemon};

/// Creates a `gib`-GiB volume through the admin API; returns its id.
fn create(d: &Daemon, gib: u64) -> String {
    Http::login(&d.api()).create_volume(gib)
}

/// `--replica DIR` ×3 for replica directories on `disks`.
fn replica_args(disks: &[SmallFs]) -> Vec<String> {
    disks
        .iter()
        .flat_map(|fs| ["--replica".to_owned(), fs.path().display().to_string()])
        .collect()
}

fn start(dir: tempfile::TempDir, args: &[String]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_with(dir, &args, &[("TRIPOD_SUPERVISE_SECS", "1")])
}

/// Flips one bit of the byte at `at` in `file`.

#[test]
fn a_block_bad_on_every_copy_fails_alone_after_a_restart() {
    let d = Daemon::start();
    let id = create(&d, 1);
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0xab 1M 64k", "flush"]);
    assert!(ok, "{text}");
    let dir = d.stop_keeping_data();
    // The same byte of block 256 decays on all three disks.
    for i in 0..3 {
        let data = dir
            .path()
            .join("replicas")
            .join(i.to_string())
            .join(&id)
            .join("layer-0000000000000001.data");
        flip(&data, (1 << 20) + 100);
    }
    let d = start(dir, &[]);
    let (ok, text) = qemu_io(&d.uri(&id), &["read -P 0xab 1M 4k"]);
    assert!(!ok && text.contains("Input/output error"), "{text}");
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &[
            "read -P 0xab 1052672 60k",
            "read -P 0 0 1M",
            "write -P 0xcd 2M 4k",
        ],
    );
    assert!(ok, "the rest of the volume is served: {text}");
    // Overwriting the block makes it good again.
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0xee 1M 4k", "read -P 0xee 1M 4k"]);
    assert!(ok, "{text}");
}

#[test]
fn every_replica_disk_full_answers_enospc_keeps_reads_and_recovers() {
    let mut disks = Vec::new();
    for _ in 0..3 {
        let Some(fs) = SmallFs::new(32) else {
            return;
        };
        std::fs::write(fs.path().join("ballast"), vec![0xbb; 8 << 20]).unwrap();
        disks.push(fs);
    }
    let args = replica_args(&disks);
    let d = start(tempfile::tempdir().unwrap(), &args);
    let id = create(&d, 1);
    // 1 MiB writes until the disks are full.
    let writes: Vec<String> = (0..40).map(|i| format!("write -P 0x11 {i}M 1M")).collect();
    let cmds: Vec<&str> = writes.iter().map(String::as_str).collect();
    let (_, text) = qemu_io(&d.uri(&id), &cmds);
    assert!(text.contains("No space left on device"), "{text}");
    let done = text.matches("wrote 1048576/1048576").count() as u64;
    assert!(done >= 4, "{text}");
    // Top the disks up, then: writes refused with ENOSPC, reads fine.
    for fs in &disks {
        fs.fill();
    }
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x22 39M 1M"]);
    assert!(!ok && text.contains("No space left on device"), "{text}");
    let check = format!("read -P 0x11 0 {done}M");
    let (ok, text) = qemu_io(&d.uri(&id), &[check.as_str()]);
    assert!(ok, "reads while full: {text}");
    let api = d.api();
    assert_eq!(metric(&api, "tripod_volumes_out_of_space"), Some(1));
    assert!(metric(&api, "tripod_space_refusals_total").unwrap_or(0) >= 2);
    assert!(metric(&api, "tripod_replicas{health=\"in_service\"}").unwrap_or(0) >= 2);
    // A restart in that state opens the volume.
    let dir = d.kill9();
    let d = start(dir, &args);
    let (ok, text) = qemu_io(&d.uri(&id), &[check.as_str()]);
    assert!(ok, "reads after a restart while full: {text}");
    // Space freed: writes work again, and every copy catches up.
    for fs in &disks {
        fs.free();
        std::fs::remove_file(fs.path().join("ballast")).unwrap();
    }
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x33 39M 1M", "flush"]);
    assert!(ok, "writes after space came back: {text}");
    let api = d.api();
    wait_until("every replica back in service", || {
        metric(&api, "tripod_replicas{health=\"in_service\"}") == Some(3)
    });
    assert_eq!(metric(&api, "tripod_volumes_out_of_space"), Some(0));
    let (ok, text) = qemu_io(&d.uri(&id), &[check.as_str(), "read -P 0x33 39M 1M"]);
    assert!(ok, "{text}");
}

#[test]
fn a_frozen_replica_disk_delays_one_write_briefly_and_is_resynced_after_the_thaw() {
    let mut disks = Vec::new();
    for _ in 0..3 {
        let Some(fs) = SmallFs::new(64) else {
            return;
        };
        disks.push(fs);
    }
    let args = replica_args(&disks);
    let d = start(tempfile::tempdir().unwrap(), &args);
    let id = create(&d, 1);
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x41 0 1M", "flush"]);
    assert!(ok, "{text}");
    let frozen = disks[2].path();
    let froze = Command::new("fsfreeze")
        .arg("--freeze")
        .arg(frozen)
        .status();
    if !froze.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: fsfreeze not supported on {}", disks[2].kind);
        return;
    }
    let thaw = || {
        let _ = Command::new("fsfreeze")
            .arg("--unfreeze")
            .arg(frozen)
            .status();
    };
    let began = Instant::now();
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x42 1M 1M", "flush"]);
    let took = began.elapsed();
    if !ok || took > Duration::from_secs(15) {
        thaw();
        panic!("a frozen disk held the write {took:?} (the I/O timeout is 30 s): {text}");
    }
    eprintln!("write + flush with one replica frozen took {took:?}");
    let api = d.api();
    let out = metric(&api, "tripod_replicas{health=\"degraded\"}").unwrap_or(0)
        + metric(&api, "tripod_replicas{health=\"resyncing\"}").unwrap_or(0);
    thaw();
    assert_eq!(out, 1, "the frozen replica left service");
    // Later writes do not wait for it; after the thaw it is resynced.
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x43 2M 1M"]);
    assert!(ok, "{text}");
    wait_until("the thawed replica to rejoin", || {
        metric(&api, "tripod_replicas{health=\"in_service\"}") == Some(3)
    });
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &[
            "read -P 0x41 0 1M",
            "read -P 0x42 1M 1M",
            "read -P 0x43 2M 1M",
        ],
    );
    assert!(ok, "{text}");
}
