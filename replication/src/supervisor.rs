//! A background thread that keeps sets healthy: every interval it checks that each watched
//! set's in-service replicas are still there and brings back (resync or rebuild) the ones
//! out of service. One thread serves every set it watches, so threads do not grow with
//! volumes; a set is watched until it is dropped (the supervisor holds it weakly).

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::set::ReplicaSet;

#[derive(Default)]
struct Shared {
    stopped: bool,
    sets: Vec<Weak<ReplicaSet>>,
}

/// Handle of the supervisor thread; stopping (or dropping) it ends the thread.
pub struct Supervisor {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts a supervisor that visits its sets every `interval`.
    pub fn new(interval: Duration) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("replica-supervisor".into())
            .spawn(move || loop {
                let sets: Vec<Arc<ReplicaSet>> = {
                    let mut s = inner.0.lock();
                    if !s.stopped {
                        inner.1.wait_for(&mut s, interval);
                    }
                    if s.stopped {
                        return;
                    }
                    s.sets.retain(|w| w.strong_count() > 0);
                    s.sets.iter().filter_map(Weak::upgrade).collect()
                };
                for set in sets {
                    visit(&set);
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts a supervisor watching one set every `interval`.
    pub fn start(set: Arc<ReplicaSet>, interval: Duration) -> std::io::Result<Self> {
        let s = Self::new(interval)?;
        s.watch(&set);
        Ok(s)
    }

    /// Adds `set` to the sets visited (until it is dropped).
    pub fn watch(&self, set: &Arc<ReplicaSet>) {
        self.shared.0.lock().sets.push(Arc::downgrade(set));
    }

    /// Stops visiting `set` (a pass already under way may still finish with it).
    pub fn unwatch(&self, set: &Arc<ReplicaSet>) {
        let target = Arc::downgrade(set);
        self.shared.0.lock().sets.retain(|w| !w.ptr_eq(&target));
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.0.lock().stopped = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One health check and one healing pass of `set`.
fn visit(set: &ReplicaSet) {
    if let Err(e) = set.check_health() {
        tracing::warn!("health check: {e}");
    }
    let report = set.heal_now();
    for (id, why) in report.still_out {
        tracing::debug!(replica = %id, "still out of service: {why}");
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
