//! The status page at `/ui` in a real browser (headless Chromium driven by Selenium,
//! `tests/clients/ui_browser.py`): it logs in, lists a volume made through the API, shows a
//! replica degraded after its directory is removed and rebuilding (with progress and an ETA)
//! after an empty one returns, then in service again, and runs a scrub from its button.
//! Screenshots land in `target/status-page/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::client::{curl, qemu_io, Http};
use support::{Daemon, ADMIN_PASSWORD};

/// The browser pieces, or `None` (with a note) outside CI when they are missing.
fn browser() -> Option<PathBuf> {
    let python = PathBuf::from("/usr/bin/python3");
    let ok = Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
        && Command::new(&python)
            .args(["-c", "import selenium"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else if std::env::var_os("CI").is_some() {
        panic!("chromium, chromium-driver and python3-selenium are needed (.ci/run installs them)");
    } else {
        eprintln!("skipping: chromium, chromium-driver or python3-selenium missing");
        None
    }
}

#[test]
fn the_status_page_shows_health_rebuild_progress_and_runs_a_scrub() {
    let Some(python) = browser() else {
        return;
    };
    // A rebuild paced at 4 MiB/s: 48 MiB of data keep it visible for seconds.
    let d = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &[],
        &[("TRIPOD_SUPERVISE_SECS", "1"), ("TRIPOD_SYNC_MIBPS", "4")],
    );
    let http = Http::login(&d.api());
    let (s, v) = http.call(
        "POST",
        "volumes",
        Some(serde_json::json!({"volume": {"size": 1, "name": "ui-volume", "volume_type": "SSD"}})),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    http.wait(&format!("volumes/{id}"), "volume", "available");
    let (ok, out) = qemu_io(&d.uri(&id), &["write -P 0x33 0 48M", "flush"]);
    assert!(ok, "{out}");

    // The page and its script come with a policy that allows this origin only.
    let (code, _, headers) = curl(&[&format!("{}/ui", d.api())]);
    assert_eq!(code, 200);
    assert!(
        headers
            .to_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{headers}"
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    let replica_dir = d.data_dir().join("replicas/1").join(&id);
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/ui_browser.py"
        ))
        .arg(d.api())
        .arg(ADMIN_PASSWORD)
        .arg(&id)
        .arg(&replica_dir)
        .arg(&shots)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(shots.join("3-rebuilding.png").exists());
    eprintln!("screenshots in {}", shots.display());
    // Whatever the page did, the data is whole on every replica.
    let (ok, out) = qemu_io(&d.uri(&id), &["read -P 0x33 0 48M"]);
    assert!(ok, "{out}");
}
