//! QoS per volume type, measured with a real client: fio through NBD on volumes of
//! different types at once, and a retype while fio runs. Bounds are upper limits with wide
//! margins (a slow machine only lowers the figures); that the unthrottled volume is not held
//! back is read from the daemon's own throttle counters, not from timing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::client::Http;
use support::*;

/// Creates a type `name` with a back-end QoS spec of `specs` (none: unlimited).
fn make_type(http: &Http, name: &str, specs: Option<Value>) {
    let (s, t) = http.call(
        "POST",
        "types",
        Some(json!({"volume_type": {"name": name}})),
    );
    assert_eq!(s, 200, "{t}");
    let Some(mut specs) = specs else { return };
    let type_id = t["volume_type"]["id"].as_str().unwrap().to_owned();
    specs["name"] = json!(format!("{name}-qos"));
    let (s, q) = http.call("POST", "qos-specs", Some(json!({ "qos_specs": specs })));
    assert_eq!(s, 200, "{q}");
    let qos_id = q["qos_specs"]["id"].as_str().unwrap();
    let (s, v) = http.call(
        "GET",
        &format!("qos-specs/{qos_id}/associate?vol_type_id={type_id}"),
        None,
    );
    assert_eq!(s, 202, "{v}");
}

fn volume_of_type(http: &Http, t: &str) -> String {
    let (s, v) = http.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"size": 1, "volume_type": t}})),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    http.wait(&format!("volumes/{id}"), "volume", "available");
    id
}

/// Runs fio's NBD engine on `uri` for `secs` seconds of 4 KiB random reads and writes at
/// queue depth 8; returns (I/Os completed, seconds it ran).
fn fio(dir: &std::path::Path, uri: &str, secs: u32) -> (f64, f64) {
    let out = run_ok(Command::new("fio").current_dir(dir).args([
        "--name=qos",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randrw",
        "--bs=4k",
        "--size=64m",
        "--iodepth=8",
        "--time_based",
        &format!("--runtime={secs}"),
        "--output-format=json",
    ]));
    // fio may print notes before the JSON document.
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    let job = &v["jobs"][0];
    let ios =
        job["read"]["total_ios"].as_f64().unwrap() + job["write"]["total_ios"].as_f64().unwrap();
    let ran = job["job_runtime"].as_f64().unwrap() / 1000.0;
    (ios, ran)
}

/// A per-volume counter from `/metrics`, parsed with a Prometheus text parser.
fn counter(api: &str, metric: &str, volume: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", &format!("{api}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|x| x.metric == metric && x.labels.get("volume") == Some(volume))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric}: {other:?}"),
        })
        .sum()
}

#[test]
fn two_types_under_one_load_each_keep_their_own_limits() {
    let d = Daemon::start();
    let http = Http::login(&d.api());
    // 200 IOPS and no burst; the other type has no limits at all.
    make_type(&http, "slow", Some(json!({"total_iops_sec": "200"})));
    make_type(&http, "open", None);
    let slow = volume_of_type(&http, "slow");
    let open = volume_of_type(&http, "open");

    let (slow_uri, open_uri) = (d.uri(&slow), d.uri(&open));
    let dir = d.data_dir().to_path_buf();
    let dir2 = dir.clone();
    let a = std::thread::spawn(move || fio(&dir, &slow_uri, 4));
    let b = std::thread::spawn(move || fio(&dir2, &open_uri, 4));
    let (slow_ios, slow_secs) = a.join().unwrap();
    let (open_ios, _) = b.join().unwrap();

    // The throttled volume: at most its limit (plus its 0.1 s bucket), with a wide margin.
    let slow_iops = slow_ios / slow_secs;
    eprintln!("slow: {slow_iops:.0} IOPS; open: {open_ios} I/Os");
    assert!(slow_iops > 0.0);
    assert!(
        slow_iops <= 200.0 * 1.25 + 20.0,
        "{slow_iops} IOPS on a 200 IOPS type"
    );
    // Its requests waited; the other volume's never did, and it did more than the limit.
    let api = d.api();
    assert!(counter(&api, "tripod_volume_throttled_seconds_total", &slow) > 0.0);
    assert!(counter(&api, "tripod_volume_throttled_requests_total", &slow) > 0.0);
    assert_eq!(
        counter(&api, "tripod_volume_throttled_requests_total", &open),
        0.0
    );
    assert!(open_ios > slow_ios, "{open_ios} vs {slow_ios}");
}

#[test]
fn a_retype_under_io_lifts_the_limit_for_requests_in_flight() {
    let d = Daemon::start();
    let http = Http::login(&d.api());
    make_type(&http, "slow", Some(json!({"total_iops_sec": "50"})));
    make_type(&http, "open", None);
    let v = volume_of_type(&http, "slow");

    let (uri, dir) = (d.uri(&v), d.data_dir().to_path_buf());
    let run = std::thread::spawn(move || fio(&dir, &uri, 6));
    // Let fio queue up behind the 50 IOPS limit, then retype while it runs.
    wait_until("fio is held by the limit", || {
        counter(&d.api(), "tripod_volume_throttled_requests_total", &v) > 20.0
    });
    let (s, body) = http.call(
        "POST",
        &format!("volumes/{v}/action"),
        Some(json!({"os-retype": {"new_type": "open", "migration_policy": "never"}})),
    );
    assert_eq!(s, 202, "{body}");
    let shown = http.wait(&format!("volumes/{v}"), "volume", "available");
    assert_eq!(shown["volume_type"], "open");
    // Requests that were waiting are let go at their next check (within a quarter second);
    // from then on none waits.
    std::thread::sleep(Duration::from_secs(1));
    let after_change = counter(&d.api(), "tripod_volume_throttled_requests_total", &v);
    let (ios, secs) = run.join().unwrap();
    assert_eq!(
        counter(&d.api(), "tripod_volume_throttled_requests_total", &v),
        after_change,
        "requests still waited after the retype"
    );
    eprintln!("{ios} I/Os in {secs} s across the retype");
    // Six seconds at 50 IOPS would be about 300 I/Os: the retype lifted that.
    assert!(ios > 50.0 * secs * 1.5, "{ios} I/Os in {secs} s");
}
