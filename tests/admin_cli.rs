//! `tripod status` against a running daemon, logged in with the openstack CLI's `OS_*`
//! variables: the table, the JSON, and exit codes a script can rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Output;

use serde_json::Value;
use support::client::{qemu_io, Http};
use support::*;

fn status(d: &Daemon, user: &str, password: &str, args: &[&str]) -> Output {
    tripod()
        .arg("status")
        .args(args)
        .env("OS_AUTH_URL", format!("{}/identity/v3", d.api()))
        .env("OS_USERNAME", user)
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", "admin")
        .output()
        .unwrap()
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
    tripod()
        .args(["scrub", volume, "--format", format])
        .env("OS_AUTH_URL", format!("{}/identity/v3", d.api()))
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", ADMIN_PASSWORD)
        .env("OS_PROJECT_NAME", "admin")
        .output()
        .unwrap()
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
