//! Long operations in progress — a clone, an image export, a scrub — with how far each has
//! come, so the status endpoint, the status page and the admin commands can follow them.
//! (Resyncs and rebuilds are the replica set's own and show in its status.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

/// What kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A volume filled from another volume or a snapshot (`done`/`total` in bytes).
    Clone,
    /// A volume written to an image file (`done`/`total` in bytes).
    Export,
    /// Every copy of a volume verified (`done`/`total` in replicas).
    Scrub,
    /// A backup taken (`done`/`total` in changed 4 MiB ranges).
    Backup,
    /// A backup restored into the volume (`done`/`total` in 4 MiB ranges).
    Restore,
}

/// One operation's progress.
#[derive(Debug)]
pub struct Operation {
    /// What it does.
    pub kind: Kind,
    /// The volume it works on.
    pub volume: String,
    /// Seconds since the Unix epoch when it started.
    pub started: u64,
    done: AtomicU64,
    total: AtomicU64,
}

impl Operation {
    /// Records that `done` of `total` units are done.
    pub fn advance(&self, done: u64, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
    }

    /// As JSON: `{"kind", "volume", "started_at", "done", "total", "unit"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let unit = match self.kind {
            Kind::Clone | Kind::Export => "bytes",
            Kind::Scrub => "replicas",
            Kind::Backup | Kind::Restore => "ranges",
        };
        serde_json::json!({
            "kind": self.kind,
            "volume": self.volume,
            "started_at": self.started,
            "done": self.done.load(Ordering::Relaxed),
            "total": self.total.load(Ordering::Relaxed),
            "unit": unit,
        })
    }
}

/// The operations running now.
#[derive(Debug, Default)]
pub struct Operations {
    running: Mutex<Vec<Arc<Operation>>>,
}

/// Keeps an operation listed until dropped.
pub struct Running<'a> {
    ops: &'a Operations,
    op: Arc<Operation>,
}

impl Running<'_> {
    /// The operation, to advance.
    pub fn op(&self) -> &Operation {
        &self.op
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.ops
            .running
            .lock()
            .retain(|o| !Arc::ptr_eq(o, &self.op));
    }
}

impl Operations {
    /// Lists a new operation of `kind` on `volume` until the guard is dropped.
    pub fn start(&self, kind: Kind, volume: &str, total: u64) -> Running<'_> {
        let op = Arc::new(Operation {
            kind,
            volume: volume.to_owned(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
        });
        self.running.lock().push(op.clone());
        Running { ops: self, op }
    }

    /// The operations running on `volume`.
    pub fn of(&self, volume: &str) -> Vec<Arc<Operation>> {
        self.running
            .lock()
            .iter()
            .filter(|o| o.volume == volume)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn an_operation_is_listed_with_its_progress_until_its_guard_goes() {
        let ops = Operations::default();
        {
            let running = ops.start(Kind::Clone, "v1", 100);
            running.op().advance(40, 100);
            let listed = ops.of("v1");
            assert_eq!(listed.len(), 1);
            let j = listed[0].to_json();
            assert_eq!(
                (j["kind"].as_str(), j["done"].as_u64()),
                (Some("clone"), Some(40))
            );
            assert_eq!(j["unit"], "bytes");
            assert!(ops.of("v2").is_empty());
        }
        assert!(ops.of("v1").is_empty());
    }
}
