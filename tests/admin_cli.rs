//! `tripod status` against a running daemon, logged in with the openstack CLI's `OS_*`
//! variables: the table, the JSON, and exit codes a script can rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Output;

use serde_json::Value;
use support::client::{qemu_io, Http};
use support::*;

/// `tripod ARGS` logged in to `d` as `user` through the openstack CLI's `OS_*` variables.
fn admin_as(d: &Daemon, user: &str, password: &str, args: &[&str]) -> Output {
    tripod()
        .args(args)
        .env("OS_AUTH_URL", format!("{}/identity/v3", d.api()))
        .env("OS_USERNAME", user)
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", "admin")
        .output()
        .unwrap()
}

/// `tripod ARGS` as the test daemon's admin.
fn admin(d: &Daemon, args: &[&str]) -> Output {
    admin_as(d, "admin", ADMIN_PASSWORD, args)
}

fn status(d: &Daemon, user: &str, password: &str, args: &[&str]) -> Output {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    admin_as(d, user, password, &all)
}

#[test]
fn status_lists_volumes_with_replica_health_and_exit_codes() {
    let d = Daemon::start();
    let http = Http::login(&d.api());
    let open = http.create_volume(1);
    let idle = http.create_volume(1);
    // Only volumes in use have live replica health.
    let (ok, text) = qemu_io(&d.uri(&open), &["write -P 7 0 64k", "flush"]);
    assert!(ok, "{text}");

    let out = status(&d, "admin", ADMIN_PASSWORD, &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table.lines().find(|l| l.starts_with(&open)).unwrap();
    assert_eq!(row.matches(" ok").count(), 3, "{table}");
    let row = table.lines().find(|l| l.starts_with(&idle)).unwrap();
    assert!(row.contains("(closed)"), "{table}");
    assert!(table.contains("2 volumes, 1 open, 0 with a replica out of service"));

    let out = status(&d, "admin", ADMIN_PASSWORD, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vol = v["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == open.as_str())
        .unwrap();
    assert_eq!(vol["open"], true);
    for r in vol["replicas"].as_array().unwrap() {
        assert_eq!(r["health"], "in_service", "{vol}");
    }

    // Wrong credentials (or no daemon): exit 2 with the reason on stderr.
    let out = status(&d, "admin", "wrong", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = tripod()
        .arg("status")
        .env_remove("OS_AUTH_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OS_AUTH_URL"));
}

fn scrub(d: &Daemon, volume: &str, format: &str) -> Output {
    admin(d, &["scrub", volume, "--format", format])
}

#[test]
fn scrub_repairs_a_bad_copy_and_reports_a_block_bad_everywhere() {
    let d = Daemon::start();
    let id = Http::login(&d.api()).create_volume(1);
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &["write -P 0xab 1M 64k", "write -P 0xcd 2M 64k", "flush"],
    );
    assert!(ok, "{text}");
    let dir = d.stop_keeping_data();
    let layer = |i: usize| {
        dir.path()
            .join("replicas")
            .join(i.to_string())
            .join(&id)
            .join("layer-0000000000000001.data")
    };
    // Block 256 decays on one disk; block 512 on all three.
    flip(&layer(1), (1 << 20) + 100);
    for i in 0..3 {
        flip(&layer(i), (2 << 20) + 7);
    }
    let d = Daemon::start_in(dir);

    let out = scrub(&d, &id, "json");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["repaired"], 1, "{report}");
    assert_eq!(report["unrepairable"], 3, "one per copy: {report}");
    // The repaired block reads back; the status shows the last scrub.
    let (ok, text) = qemu_io(&d.uri(&id), &["read -P 0xab 1M 64k"]);
    assert!(ok, "{text}");
    let out = status(&d, "admin", ADMIN_PASSWORD, &["--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["volumes"][0]["last_scrub"]["repaired"], 1);

    // Overwrite the block that was bad everywhere: the next scrub finds every copy good.
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0xee 2M 4k", "flush"]);
    assert!(ok, "{text}");
    let out = scrub(&d, &id, "text");
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{line}");
    assert!(line.contains("0 unrepairable"), "{line}");
    // Not a volume of this daemon: exit 2.
    let out = scrub(&d, "7c3d2bd5-d0a4-4a05-9ad3-a1a6e53f4f52", "text");
    assert_eq!(out.status.code(), Some(2));
}

fn replace(d: &Daemon, volume: &str, slot: &str, with: &str, extra: &[&str]) -> Output {
    let mut all = vec![
        "replica",
        "replace",
        volume,
        "--replica",
        slot,
        "--with",
        with,
    ];
    all.extend_from_slice(extra);
    admin(d, &all)
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_replica_moves_to_a_new_disk_online_and_stays_there_after_a_restart() {
    // Rebuilds paced at 2 MiB/s: the 12 MiB written take about six seconds to copy.
    let d = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &[],
        &[("TRIPOD_SYNC_MIBPS", "2")],
    );
    let http = Http::login(&d.api());
    let vol = http.create_volume(1);
    let (ok, text) = qemu_io(
        &d.uri(&vol),
        &["write -P 0x41 0 8M", "write -P 0x42 300M 4M", "flush"],
    );
    assert!(ok, "{text}");
    let new_disk = tempfile::tempdir().unwrap();
    let target = new_disk.path().join("tripod");
    let target = target.to_str().unwrap();

    // Refused, nothing changed: a relative path, a slot that does not exist, a root that
    // already holds one of its replicas.
    let out = replace(&d, &vol, "1", "relative/dir", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("absolute"), "{}", said(&out));
    let out = replace(&d, &vol, "3", target, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let here = d.data_dir().join("replicas/2");
    let out = replace(&d, &vol, "1", here.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(!new_disk.path().join("tripod").exists());

    // Moved and rebuilt while the volume stays usable; the command follows it to the end,
    // a progress line every few seconds (not a terminal here; the rebuild is paced).
    let out = replace(&d, &vol, "1", target, &[]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("{vol}: replica 1 moves from")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{vol}: replica 1 rebuilding")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{vol}: replica 1 in service at {target}")),
        "{text}"
    );
    assert!(new_disk
        .path()
        .join("tripod")
        .join(&vol)
        .join("set-state")
        .exists());
    let (ok, text) = qemu_io(&d.uri(&vol), &["read -P 0x41 0 8M", "read -P 0x42 300M 4M"]);
    assert!(ok, "{text}");

    // After a restart the volume opens with its replica on the new disk (the placement is
    // durable), and that copy, opened on its own, holds the data and verifies.
    let dir = d.stop_keeping_data();
    let d = Daemon::start_in(dir);
    let (ok, text) = qemu_io(&d.uri(&vol), &["read -P 0x41 0 8M"]);
    assert!(ok, "{text}");
    let out = status(&d, "admin", ADMIN_PASSWORD, &["--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = v["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == vol.as_str())
        .unwrap()
        .clone();
    let moved = &entry["replicas"][1];
    assert!(
        moved["location"].as_str().unwrap().starts_with(target),
        "{entry}"
    );
    assert_eq!(moved["health"], "in_service", "{entry}");
    let dir = d.stop_keeping_data();
    let store = new_disk.path().join("tripod").join(&vol);
    let storage = std::sync::Arc::new(tripod_engine::FileStorage::new(&store).unwrap());
    let copy =
        tripod_engine::Volume::open(storage, tripod_engine::VolumeOptions::write_back()).unwrap();
    assert_eq!(
        copy.read(300 << 20, 4 << 20).unwrap(),
        vec![0x42u8; 4 << 20]
    );
    assert!(copy.verify().unwrap().bad.is_empty());
    drop(dir);
}

#[test]
fn tripod_watch_follows_a_rebuild_to_the_end_with_a_progress_stream() {
    // Paced at 4 MiB/s, the rebuild of 40 MiB lasts about ten seconds.
    let d = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &[],
        &[("TRIPOD_SUPERVISE_SECS", "1"), ("TRIPOD_SYNC_MIBPS", "4")],
    );
    let http = Http::login(&d.api());
    let vol = http.create_volume(1);
    let (ok, text) = qemu_io(&d.uri(&vol), &["write -P 0x51 0 40M", "flush"]);
    assert!(ok, "{text}");
    let copy = d.data_dir().join("replicas/0").join(&vol);
    std::fs::remove_dir_all(&copy).unwrap();
    std::fs::create_dir_all(&copy).unwrap();
    // Once the supervisor has noticed (the copy out of service or already rebuilding).
    wait_until("replica 0 out of service", || {
        let (_, st) = http.call("GET", "os-tripod-status", None);
        st["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["id"] == vol.as_str() && v["replicas"][0]["health"] != "in_service")
    });
    let watch = |extra: &[&str]| {
        let mut all = vec!["watch", vol.as_str()];
        all.extend_from_slice(extra);
        admin(&d, &all)
    };
    let out = watch(&[]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // Not a terminal: a line every few seconds while it runs, then the end.
    assert!(
        text.contains(&format!("{vol}: replica 0 rebuilding")),
        "{text}"
    );
    assert!(text.contains("chunks"), "{text}");
    assert!(text.contains("every replica in service"), "{text}");
    let (ok, text) = qemu_io(&d.uri(&vol), &["read -P 0x51 0 40M"]);
    assert!(ok, "{text}");
    // Settled now: JSON of the volume at once; an unknown volume is exit 1.
    let out = watch(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["operations"], serde_json::json!([]));
    let out = admin(&d, &["watch", "00000000-0000-4000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
}
