//! Following a volume's long work from the admin commands: what is in progress on it
//! (replica resyncs and rebuilds, clones, exports, scrubs), read from `os-tripod-status`, and
//! drawn as progress bars with rate and ETA on a terminal, or as a plain line every few
//! seconds otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

/// One thing in progress on a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Stable name while it runs (`replica 1`, `scrub`, …).
    pub key: String,
    /// What a person reads (`replica 1 rebuilding`).
    pub label: String,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// `chunks`, `bytes` or `replicas`.
    pub unit: String,
}

/// The volume's entry in an `os-tripod-status` answer.
pub fn volume_of<'a>(status: &'a Value, volume: &str) -> Option<&'a Value> {
    status
        .get("volumes")?
        .as_array()?
        .iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some(volume))
}

/// What is in progress on `volume` (its entry in an `os-tripod-status` answer).
pub fn activities(volume: &Value) -> Vec<Activity> {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = Vec::new();
    for r in volume
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let health = r.get("health").and_then(Value::as_str).unwrap_or("");
        if matches!(health, "resyncing" | "rebuilding") {
            let slot = num(r, "slot");
            out.push(Activity {
                key: format!("replica {slot}"),
                label: format!("replica {slot} {health}"),
                done: num(r, "done"),
                total: num(r, "total"),
                unit: "chunks".into(),
            });
        }
    }
    for op in volume
        .get("operations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = op
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("operation");
        out.push(Activity {
            key: kind.to_owned(),
            label: kind.to_owned(),
            done: num(op, "done"),
            total: num(op, "total"),
            unit: op
                .get("unit")
                .and_then(Value::as_str)
                .unwrap_or("units")
                .to_owned(),
        });
    }
    out
}

/// Whether every replica of `volume` is in service (a closed volume counts as settled).
pub fn settled(volume: &Value) -> bool {
    volume
        .get("replicas")
        .and_then(Value::as_array)
        .is_none_or(|rs| {
            rs.iter()
                .all(|r| r.get("health").and_then(Value::as_str) == Some("in_service"))
        })
}

/// Draws activities as they change.
pub struct Follower {
    /// What is followed, for the plain lines.
    name: String,
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    /// Plain lines: when the last one was printed (`None`: none yet, so the first shows at
    /// once).
    said: Option<Instant>,
    quiet: bool,
}

impl Follower {
    /// Bars on a terminal, plain lines on stderr otherwise (or nothing when `quiet`).
    pub fn new(name: &str, quiet: bool) -> Self {
        let tty = !quiet && std::io::stderr().is_terminal();
        Self {
            name: name.to_owned(),
            bars: tty.then(|| (MultiProgress::new(), HashMap::new())),
            said: None,
            quiet,
        }
    }

    /// Shows `now`: new bars for new activities, ended ones finished.
    pub fn update(&mut self, now: &[Activity]) {
        match &mut self.bars {
            Some((multi, bars)) => {
                for a in now {
                    let bar = bars.entry(a.key.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(a.total));
                        let template = if a.unit == "bytes" {
                            "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
                        } else {
                            "{msg:24} [{bar:30}] {pos}/{len} {prefix} {per_sec} ETA {eta}"
                        };
                        let style = ProgressStyle::with_template(template)
                            .unwrap_or_else(|_| ProgressStyle::default_bar());
                        bar.set_style(style.progress_chars("=> "));
                        bar.set_prefix(a.unit.clone());
                        bar
                    });
                    bar.set_message(a.label.clone());
                    bar.set_length(a.total);
                    bar.set_position(a.done);
                }
                bars.retain(|key, bar| {
                    let running = now.iter().any(|a| &a.key == key);
                    if !running {
                        bar.finish();
                    }
                    running
                });
            }
            None if !self.quiet
                && !now.is_empty()
                && self
                    .said
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) =>
            {
                let parts: Vec<String> = now
                    .iter()
                    .map(|a| format!("{} {}/{} {}", a.label, a.done, a.total, a.unit))
                    .collect();
                eprintln!("{}: {}", self.name, parts.join(", "));
                self.said = Some(Instant::now());
            }
            None => {}
        }
    }

    /// Clears the bars.
    pub fn finish(&mut self) {
        if let Some((multi, bars)) = &mut self.bars {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn activities_come_from_syncing_replicas_and_running_operations() {
        let status = serde_json::json!({"volumes": [{"id": "v1",
            "replicas": [
                {"slot": 0, "health": "in_service"},
                {"slot": 1, "health": "rebuilding", "done": 3, "total": 12},
                {"slot": 2, "health": "degraded", "needs_rebuild": true}],
            "operations": [{"kind": "clone", "done": 4096, "total": 8192, "unit": "bytes"}]}]});
        let v = volume_of(&status, "v1").unwrap();
        let got = activities(v);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].label.as_str(), got[0].done, got[0].total),
            ("replica 1 rebuilding", 3, 12)
        );
        assert_eq!(
            (got[1].key.as_str(), got[1].unit.as_str()),
            ("clone", "bytes")
        );
        assert!(!settled(v));
        assert!(volume_of(&status, "v2").is_none());
        assert!(settled(&serde_json::json!({"id": "v3", "open": false})));
    }
}
