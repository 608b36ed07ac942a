//! A background thread that keeps a set healthy: it checks that in-service replicas are
//! still there and brings back (resync or rebuild) the ones out of service, every interval,
//! until stopped.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::set::ReplicaSet;

/// Handle of the supervisor thread; stopping (or dropping) it ends the thread.
pub struct Supervisor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `set` every `interval`.
    pub fn start(set: Arc<ReplicaSet>, interval: Duration) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("replica-supervisor".into())
            .spawn(move || loop {
                {
                    let mut stopped = flag.0.lock();
                    if !*stopped {
                        flag.1.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                if let Err(e) = set.check_health() {
                    tracing::warn!("health check: {e}");
                }
                let report = set.heal_now();
                for (id, why) in report.still_out {
                    tracing::debug!(replica = %id, "still out of service: {why}");
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
