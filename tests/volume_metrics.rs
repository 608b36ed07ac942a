//! Per-volume I/O figures on `/metrics` move by exactly the I/O a real client did, read with
//! a Prometheus text parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::client::qemu_io;
use support::*;

/// The samples of `/metrics`.
fn scrape(api: &str) -> prometheus_parse::Scrape {
    let out = Command::new("curl")
        .args(["-s", &format!("{api}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

/// The value of `metric` for `volume` and `op`.
fn value(s: &prometheus_parse::Scrape, metric: &str, volume: &str, op: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| x.labels.get("volume") == Some(volume) && x.labels.get("op") == Some(op))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric}: unexpected {other:?}"),
        })
        .sum()
}

#[test]
fn per_volume_requests_bytes_and_latency_follow_known_io() {
    let d = Daemon::start();
    let a = d.create_volume("64M");
    let b = d.create_volume("64M");
    let (ok, text) = qemu_io(
        &d.uri(&a),
        &[
            "write -P 0x5a 0 64k",
            "write -P 0x5b 1M 64k",
            "write -P 0x5c 2M 64k",
            "flush",
            "read -P 0x5a 0 4k",
            "read -P 0x5b 1M 4k",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = qemu_io(&d.uri(&b), &["write -P 1 0 512"]);
    assert!(ok, "{text}");
    let s = scrape(&d.api());
    let v = |m: &str, vol: &str, op: &str| value(&s, m, vol, op);
    assert_eq!(v("tripod_volume_bytes_total", &a, "write"), 3.0 * 65536.0);
    assert_eq!(v("tripod_volume_requests_total", &a, "write"), 3.0);
    assert!(v("tripod_volume_bytes_total", &a, "read") >= 8192.0);
    assert!(v("tripod_volume_requests_total", &a, "flush") >= 1.0);
    assert_eq!(v("tripod_volume_errors_total", &a, "write"), 0.0);
    assert_eq!(v("tripod_volume_bytes_total", &b, "write"), 512.0);
    // Every write answered has a latency observation.
    let observed = s
        .samples
        .iter()
        .filter(|x| x.metric == "tripod_volume_request_seconds")
        .filter(|x| x.labels.get("volume") == Some(a.as_str()))
        .filter(|x| x.labels.get("op") == Some("write"))
        .find_map(|x| match &x.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map(|b| b.count),
            _ => None,
        });
    assert_eq!(observed, Some(3.0), "{:?}", s.samples.len());
    // Nothing in flight once the clients are gone.
    let depth: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "tripod_volume_in_flight")
        .map(|x| match x.value {
            prometheus_parse::Value::Gauge(g) | prometheus_parse::Value::Untyped(g) => g,
            _ => 0.0,
        })
        .sum();
    assert_eq!(depth, 0.0);
}
