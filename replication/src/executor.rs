//! [`Executor`]: the threads that do one replica root's (one disk's) blocking I/O, shared by
//! every volume kept there. Threads follow disks, not volumes: a daemon with a thousand
//! volumes on three disks runs three executors.
//!
//! An executor has a few writer threads and a small pool. Each replica is bound to one
//! writer (so its writes stay in order); a writer takes every write queued for it (of any
//! volume) and commits each volume's share with one engine call. Three writers let the three
//! copies of a write proceed in parallel when the three replica roots share a disk. The pool
//! runs reads, flushes and everything else, so a read never waits behind a write batch and
//! the syncs of different volumes can overlap.
//!
//! It owns threads and queues only; what the jobs do is [`LocalReplica`](crate::LocalReplica)'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tripod_engine::{BatchWrite, Volume};

use crate::error::ReplicaFault;
use crate::replica::Completer;

/// Pool threads per executor: reads of different blocks proceed in parallel (page cache hits
/// are CPU-bound, misses wait on the disk). Four keeps a 2-core machine busy with the three
/// roots of a set without a thread per request.
pub const DEFAULT_POOL_THREADS: usize = 4;

/// Writer threads per executor: one per copy of a set, so the three copies of a write are
/// applied in parallel when their roots share a disk (the writes are CPU work: in write-back
/// mode nothing waits for the disk).
const WRITERS: usize = 3;

/// Most writes the writer takes into one batch, and most bytes: enough to amortise one
/// hand-off over a full NBD queue, small enough that a batch never holds the writer long.
const MAX_BATCH_WRITES: usize = 256;
const MAX_BATCH_BYTES: u64 = 16 << 20;

/// A job for the pool.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A write waiting for the writer thread, counted in its replica's `in_flight` until answered.
pub(crate) struct WriteJob {
    pub vol: Arc<Volume>,
    pub write: BatchWrite,
    pub done: Completer<()>,
    pub in_flight: Arc<InFlight>,
}

/// Counts a replica's operations still running so a reconnect can wait for them.
#[derive(Default)]
pub(crate) struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    pub(crate) fn enter(&self) {
        *self.count.lock() += 1;
    }
    pub(crate) fn leave(&self) {
        let mut c = self.count.lock();
        *c -= 1;
        if *c == 0 {
            self.idle.notify_all();
        }
    }
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.count.lock();
        while *c > 0 {
            if self.idle.wait_until(&mut c, deadline).timed_out() {
                return *c == 0;
            }
        }
        true
    }
}

/// One disk's threads: a batching writer and a pool.
pub struct Executor {
    pool: Mutex<Option<crossbeam_channel::Sender<Job>>>,
    writers: Mutex<Vec<crossbeam_channel::Sender<WriteJob>>>,
    /// The writer the next bound replica gets.
    next_writer: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Executor(..)")
    }
}

impl Executor {
    /// Starts an executor whose threads are named after `name`, with `pool_threads` pool
    /// threads (at least one).
    pub fn new(name: &str, pool_threads: usize) -> std::io::Result<Arc<Self>> {
        let (pool_tx, pool_rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..pool_threads.max(1) {
            let rx = pool_rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })?;
        }
        let mut writers = Vec::with_capacity(WRITERS);
        for i in 0..WRITERS {
            let (write_tx, write_rx) = crossbeam_channel::unbounded::<WriteJob>();
            std::thread::Builder::new()
                .name(format!("{name}-w{i}"))
                .spawn(move || writer_loop(&write_rx))?;
            writers.push(write_tx);
        }
        Ok(Arc::new(Self {
            pool: Mutex::new(Some(pool_tx)),
            writers: Mutex::new(writers),
            next_writer: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The writer a new replica is bound to (round robin).
    pub(crate) fn bind_writer(&self) -> usize {
        self.next_writer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % WRITERS
    }

    /// Queues `job` on the pool; `false` if the executor is shut down.
    pub(crate) fn spawn(&self, job: Job) -> bool {
        self.pool
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Queues a write for writer `writer`; gives it back if the executor is shut down.
    pub(crate) fn queue_write(&self, writer: usize, job: WriteJob) -> Result<(), WriteJob> {
        match self.writers.lock().get(writer) {
            Some(tx) => tx.send(job).map_err(|e| e.into_inner()),
            None => Err(job),
        }
    }

    /// Stops taking jobs; the threads end once their queues are drained.
    pub fn shutdown(&self) {
        self.pool.lock().take();
        self.writers.lock().clear();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn writer_loop(rx: &crossbeam_channel::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.write.len;
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.write.len;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        run_batch(jobs);
    }
}

/// Commits `jobs`, each volume's share with one engine call (in queue order within a
/// volume), and answers them.
fn run_batch(mut jobs: Vec<WriteJob>) {
    while let Some(first) = jobs.first() {
        let vol = first.vol.clone();
        let (mine, rest): (Vec<WriteJob>, Vec<WriteJob>) =
            jobs.into_iter().partition(|j| Arc::ptr_eq(&j.vol, &vol));
        let writes: Vec<BatchWrite> = mine.iter().map(|j| j.write.clone()).collect();
        let results = vol.write_batch(&writes);
        for (job, result) in mine.into_iter().zip(results) {
            job.in_flight.leave();
            job.done.complete(result.map_err(ReplicaFault::from));
        }
        jobs = rest;
    }
}
