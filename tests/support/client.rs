//! Clients the daemon tests drive it with: curl for the admin API, qemu-io for data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::{Daemon, ADMIN_PASSWORD};

/// A tiny curl-backed client.
pub struct Http {
    pub base: String,
    pub token: String,
    pub project: String,
}

pub fn curl(args: &[&str]) -> (u16, Value, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        head.to_owned(),
    )
}

impl Http {
    pub fn login(base: &str) -> Self {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
        let (status, v, head) = curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &format!("{base}/identity/v3/auth/tokens"),
        ]);
        assert_eq!(status, 201, "{v}");
        let token = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(": ")?;
                k.eq_ignore_ascii_case("x-subject-token")
                    .then(|| v.trim().to_owned())
            })
            .unwrap();
        Self {
            base: base.to_owned(),
            token,
            project: v["token"]["project"]["id"].as_str().unwrap().to_owned(),
        }
    }

    pub fn call(&self, method: &str, rest: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v2/{}/{rest}", self.base, self.project);
        let auth = format!("X-Auth-Token: {}", self.token);
        let mut args = vec!["-X", method, "-H", &auth];
        let text;
        if let Some(b) = body {
            text = b.to_string();
            args.extend(["-H", "Content-Type: application/json", "-d", &text]);
        }
        args.push(&url);
        let (s, v, _) = curl(&args);
        (s, v)
    }

    /// Creates a `gib`-GiB volume and waits until it is available; returns its id.
    pub fn create_volume(&self, gib: u64) -> String {
        let (s, v) = self.call(
            "POST",
            "volumes",
            Some(serde_json::json!({"volume": {"size": gib}})),
        );
        assert_eq!(s, 202, "{v}");
        let id = v["volume"]["id"].as_str().unwrap().to_owned();
        self.wait(&format!("volumes/{id}"), "volume", "available");
        id
    }

    pub fn wait(&self, rest: &str, key: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (s, v) = self.call("GET", rest, None);
            assert_eq!(s, 200, "{rest}: {v}");
            if v[key]["status"] == status {
                return v[key].clone();
            }
            assert!(std::time::Instant::now() < deadline, "{rest}: {v}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

pub fn qemu_io(uri: &str, cmds: &[&str]) -> (bool, String) {
    qemu_io_with(uri, cmds, false)
}

pub fn qemu_io_with(uri: &str, cmds: &[&str], read_only: bool) -> (bool, String) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    if read_only {
        c.arg("-r");
    }
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(uri).output().expect("qemu-io");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success()
        && !text.to_lowercase().contains("fail")
        && !text.to_lowercase().contains("error");
    (ok, text)
}

/// The venv's `openstack` CLI (python-openstackclient), if installed.
pub fn openstack_cli() -> Option<PathBuf> {
    let py = std::env::var_os("TRIPOD_OPENSTACK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tripod-venv/bin/python"));
    let cli = py.with_file_name("openstack");
    if cli.exists() {
        return Some(cli);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python-openstackclient is not installed at {} (scripts/test installs it)",
        cli.display()
    );
    eprintln!("skipping: no openstack CLI at {}", cli.display());
    None
}

/// The `openstack` CLI logged in to `d` as its admin through the `OS_*` variables.
pub fn openstack(cli: &Path, d: &Daemon) -> Command {
    let mut c = Command::new(cli);
    c.env("OS_AUTH_URL", format!("{}/identity/v3", d.api()))
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", ADMIN_PASSWORD)
        .env("OS_PROJECT_NAME", "admin")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_IDENTITY_API_VERSION", "3");
    c
}

/// Runs the `openstack` CLI against `d`; panics with its output unless it succeeds, else
/// returns its stdout.
pub fn openstack_ok(cli: &Path, d: &Daemon, args: &[&str]) -> String {
    let out = openstack(cli, d).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "openstack {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
