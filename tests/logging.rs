//! `tripod serve --log-format json` writes one JSON object per stderr line, and every API
//! request lands in the data dir's audit file with its request id, method, path, caller and
//! status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::*;

#[test]
fn json_logs_and_the_audit_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let (port, api_port) = (free_port(), free_port());
    let mut child = tripod()
        .args(["serve", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .args(["--nbd-listen", &format!("127.0.0.1:{port}")])
        .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
        .env("TRIPOD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    wait_for_ports(&mut child, &[port, api_port]).unwrap();
    let api = format!("http://127.0.0.1:{api_port}");
    // One refused call (no token) and one that works, through curl.
    let (code, _, head) = support::client::curl(&[&format!("{api}/v2/p/volumes")]);
    assert_eq!(code, 401);
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-openstack-request-id: "))
        .unwrap()
        .trim()
        .to_owned();
    let http = support::client::Http::login(&api);
    let (code, _) = http.call("GET", "volumes", None);
    assert_eq!(code, 200);
    // SIGTERM: a clean stop flushes the audit writer.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    let text = std::fs::read_to_string(err.path()).unwrap();
    assert!(!text.trim().is_empty());
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let audit_dir = dir.path().join("audit");
    // One file a day (two if the test ran across midnight UTC).
    let mut lines: Vec<Value> = Vec::new();
    for f in std::fs::read_dir(&audit_dir).unwrap() {
        let path = f.unwrap().path();
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("audit.log."));
        let text = std::fs::read_to_string(&path).unwrap();
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    let refused = lines
        .iter()
        .find(|l| l["fields"]["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("{request_id} not in {lines:?}"));
    assert_eq!(refused["fields"]["status"], 401);
    assert_eq!(refused["fields"]["method"], "GET");
    assert_eq!(refused["fields"]["path"], "/v2/p/volumes");
    let listed = lines
        .iter()
        .find(|l| l["fields"]["status"] == 200 && l["fields"]["method"] == "GET")
        .unwrap();
    assert_eq!(listed["fields"]["project"], http.project.as_str());
    assert!(lines.iter().all(|l| l["target"] == "tripod::audit"));
}
