//! `tripod serve` as a process, driven by real clients: openstacksdk (from PyPI) for the
//! volume lifecycle with qemu-io checking the data over NBD, curl for the rest; and a
//! `kill -9` restart that must lose nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::client::{qemu_io, qemu_io_with, Http};
use support::{Daemon, ADMIN_PASSWORD};

/// The Python with openstacksdk: `TRIPOD_OPENSTACK_PYTHON` (set by `scripts/test`), else the
/// venv `scripts/test` makes as root.
fn openstack_python() -> Option<PathBuf> {
    let p = std::env::var_os("TRIPOD_OPENSTACK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tripod-venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import openstack"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Some(p)
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "openstacksdk is not installed for {} (.ci/run installs it)",
            p.display()
        );
    } else {
        eprintln!("skipping: no Python with openstacksdk at {}", p.display());
        None
    }
}

#[test]
fn openstacksdk_drives_the_volume_lifecycle() {
    let Some(python) = openstack_python() else {
        return;
    };
    let d = Daemon::start();
    for version in ["3", "2"] {
        let out = Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/openstacksdk_e2e.py"
            ))
            .arg(d.api())
            .arg(format!("127.0.0.1:{}", d.port))
            .arg(ADMIN_PASSWORD)
            .arg(version)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "block storage v{version}: {text}");
        assert!(text.trim_end().ends_with("ok"), "{text}");
    }
}

#[test]
fn kill_9_and_restart_keeps_everything() {
    let d = Daemon::start();
    let h = Http::login(&d.api());
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"size": 1, "name": "keep"}})),
    );
    assert_eq!(s, 202, "{v}");
    let keep = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{keep}"), "volume", "available");
    let (ok, text) = qemu_io(
        &d.uri(&keep),
        &["write -P 0x61 0 64k", "write -P 0x62 512M 64k"],
    );
    assert!(ok, "{text}");
    let (s, v) = h.call(
        "POST",
        "snapshots",
        Some(json!({"snapshot": {"volume_id": keep, "name": "snap"}})),
    );
    assert_eq!(s, 202, "{v}");
    let snap = v["snapshot"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("snapshots/{snap}"), "snapshot", "available");
    let (ok, text) = qemu_io(&d.uri(&keep), &["write -P 0x63 0 64k"]);
    assert!(ok, "{text}");
    let (s, _) = h.call(
        "POST",
        &format!("volumes/{keep}/action"),
        Some(json!({"os-update_readonly_flag": {"readonly": true}})),
    );
    assert_eq!(s, 202);
    // The NBD export honours the flag.
    let (ok, text) = qemu_io(&d.uri(&keep), &["write -P 0x64 0 4k"]);
    assert!(!ok, "write to a read-only volume succeeded: {text}");
    // Operations in flight at the kill: creating and extending.
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"size": 2, "name": "late"}})),
    );
    assert_eq!(s, 202);
    let late = v["volume"]["id"].as_str().unwrap().to_owned();
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"size": 1, "name": "grow"}})),
    );
    assert_eq!(s, 202);
    let grow = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{grow}"), "volume", "available");
    let (s, _) = h.call(
        "POST",
        &format!("volumes/{grow}/action"),
        Some(json!({"os-extend": {"new_size": 3}})),
    );
    assert_eq!(s, 202);

    let dir = d.kill9();
    let d = Daemon::start_in(dir);
    let h2 = Http::login(&d.api());
    assert_eq!(h2.project, h.project, "same admin project after restart");
    // The old token still works: tokens are in the catalog.
    let h_old = Http {
        base: d.api(),
        token: h.token.clone(),
        project: h.project.clone(),
    };
    let (s, list) = h_old.call("GET", "volumes/detail", None);
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["volumes"].as_array().unwrap().len(), 3);
    let v = h2.wait(&format!("volumes/{keep}"), "volume", "available");
    assert_eq!(v["metadata"]["readonly"], "True");
    let late_v = h2.wait(&format!("volumes/{late}"), "volume", "available");
    assert_eq!(late_v["size"], 2);
    let grow_v = h2.wait(&format!("volumes/{grow}"), "volume", "available");
    assert_eq!(grow_v["size"], 3, "the interrupted extension was finished");
    let s = h2.wait(&format!("snapshots/{snap}"), "snapshot", "available");
    assert_eq!(s["volume_id"], keep.as_str());
    // Data and the read-only flag survived; the snapshot still holds the old content.
    let (ok, text) = qemu_io_with(
        &d.uri(&keep),
        &["read -P 0x63 0 64k", "read -P 0x62 512M 64k"],
        true,
    );
    assert!(ok, "{text}");
    let (ok, _) = qemu_io(&d.uri(&keep), &["write -P 0x64 0 4k"]);
    assert!(!ok, "read-only flag lost on restart");
    let (ok, text) = qemu_io(&d.uri(&grow), &["read -P 0 3071M 1M"]);
    assert!(ok, "{text}");
    let (s, v) = h2.call(
        "POST",
        &format!("volumes/{keep}/action"),
        Some(json!({"os-update_readonly_flag": {"readonly": false}})),
    );
    assert_eq!(s, 202, "{v}");
    let (s, v) = h2.call(
        "POST",
        &format!("cloudsnapshots/{snap}/rollback"),
        Some(json!({"rollback": {"volume_id": keep}})),
    );
    assert_eq!(s, 202, "{v}");
    h2.wait(&format!("volumes/{keep}"), "volume", "available");
    let (ok, text) = qemu_io(&d.uri(&keep), &["read -P 0x61 0 64k"]);
    assert!(ok, "{text}");
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}
