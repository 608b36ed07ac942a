//! `LocalReplica`: a replica in a local directory (any engine [`Storage`]). Its blocking
//! engine calls run on its disk's [`Executor`] (shared by every volume there), so one slow
//! disk never stalls the caller or the other replicas. Writes go to the executor's writer,
//! which commits everything queued for a volume with one engine call; reads, flushes and the
//! rest run on its pool.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tripod_engine::{
    BatchWrite, BlockIndex, BlockInfo, ChunkIndex, CloneReport, EngineError, Geometry, RawBlock,
    Seal, SnapshotId, Storage, VerifyReport, View, Volume, VolumeOptions,
};

use crate::error::ReplicaFault;
use crate::executor::{Executor, InFlight, WriteJob, DEFAULT_POOL_THREADS};
use crate::replica::{Pending, Replica, ReplicaInfo, SealedRead};
use crate::set_state::SetState;

/// Largest set-state file accepted (a damaged length must not become an allocation).
const MAX_SET_STATE: u64 = 64 << 20;

const SET_STATE_FILE: &str = "set-state";
const SET_STATE_TMP: &str = "set-state.tmp";

/// A replica whose copy lives in a local directory.
pub struct LocalReplica {
    name: String,
    storage: Arc<dyn Storage>,
    options: VolumeOptions,
    volume: RwLock<Option<Arc<Volume>>>,
    executor: Option<Arc<Executor>>,
    /// This replica's writer in the executor (its writes stay in submission order).
    writer: usize,
    in_flight: Arc<InFlight>,
}

impl LocalReplica {
    /// A replica over `storage` (opened lazily; an empty storage is a new replica) with an
    /// executor of its own. Many volumes on one disk should share one
    /// ([`LocalReplica::with_executor`]).
    pub fn new(name: impl Into<String>, storage: Arc<dyn Storage>, options: VolumeOptions) -> Self {
        let executor = Executor::new("replica", DEFAULT_POOL_THREADS)
            .inspect_err(|e| tracing::error!("cannot start replica threads: {e}"))
            .ok();
        Self::build(name.into(), storage, options, executor)
    }

    /// A replica over `storage` whose blocking work runs on `executor` (the one of the disk
    /// `storage` lives on).
    pub fn with_executor(
        name: impl Into<String>,
        storage: Arc<dyn Storage>,
        options: VolumeOptions,
        executor: Arc<Executor>,
    ) -> Self {
        Self::build(name.into(), storage, options, Some(executor))
    }

    fn build(
        name: String,
        storage: Arc<dyn Storage>,
        options: VolumeOptions,
        executor: Option<Arc<Executor>>,
    ) -> Self {
        let writer = executor.as_ref().map_or(0, |e| e.bind_writer());
        Self {
            name,
            storage,
            options,
            volume: RwLock::new(None),
            executor,
            writer,
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// The open engine volume, opening it on first use.
    pub fn volume(&self) -> Result<Arc<Volume>, ReplicaFault> {
        if let Some(v) = self.volume.read().as_ref() {
            return Ok(v.clone());
        }
        let mut slot = self.volume.write();
        if let Some(v) = slot.as_ref() {
            return Ok(v.clone());
        }
        match Volume::open(self.storage.clone(), self.options) {
            Ok(v) => {
                let v = Arc::new(v);
                *slot = Some(v.clone());
                Ok(v)
            }
            Err(EngineError::NotFound) => Err(ReplicaFault::Empty),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the store is open (operations on it then only queue work, never block).
    pub fn is_open(&self) -> bool {
        self.volume.read().is_some()
    }

    /// Waits up to `timeout` for running operations, then closes the store (the next
    /// operation opens it again). `false` if operations were still running.
    pub fn close(&self, timeout: Duration) -> bool {
        if !self.in_flight.wait_idle(timeout) {
            return false;
        }
        self.volume.write().take();
        true
    }

    /// Runs `f` on a worker with the open volume.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Volume) -> Result<T, EngineError> + Send + 'static,
    ) -> Pending<T> {
        let vol = match self.volume() {
            Ok(v) => v,
            Err(e) => return Pending::ready(Err(e)),
        };
        self.run_plain(move || f(&vol).map_err(ReplicaFault::from))
    }

    /// Queues `write` for the I/O worker.
    fn queue_write(&self, write: BatchWrite) -> Pending<()> {
        let vol = match self.volume() {
            Ok(v) => v,
            Err(e) => return Pending::ready(Err(e)),
        };
        let (done, pending) = Pending::new();
        let Some(executor) = &self.executor else {
            return Pending::ready(Err(ReplicaFault::Disconnected));
        };
        self.in_flight.enter();
        let job = WriteJob {
            vol,
            write,
            done,
            in_flight: self.in_flight.clone(),
        };
        if let Err(job) = executor.queue_write(self.writer, job) {
            self.in_flight.leave();
            job.done.complete(Err(ReplicaFault::Disconnected));
        }
        pending
    }

    /// Runs `f` on a worker.
    fn run_plain<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ReplicaFault> + Send + 'static,
    ) -> Pending<T> {
        let (done, pending) = Pending::new();
        let in_flight = self.in_flight.clone();
        in_flight.enter();
        let queued = self.executor.as_ref().is_some_and(|e| {
            e.spawn(Box::new(move || {
                let result = f();
                in_flight.leave();
                done.complete(result);
            }))
        });
        if !queued {
            self.in_flight.leave();
            return Pending::ready(Err(ReplicaFault::Disconnected));
        }
        pending
    }
}

/// Space kept claimed in the next set-state file, so that the set can still record who is
/// in service when the disk is full (the one moment it must not fail to).
const SET_STATE_SPARE: u64 = 64 << 10;

fn store_file(storage: &dyn Storage, bytes: &[u8]) -> std::io::Result<()> {
    // The spare file left by the last store already holds its space; an older one may be
    // longer than `bytes` (its header says where the state ends).
    let tmp = if storage.exists(SET_STATE_TMP)? {
        storage.open_file(SET_STATE_TMP)?
    } else {
        storage.create_file(SET_STATE_TMP)?
    };
    tmp.write_at(bytes, 0)?;
    tmp.sync_data()?;
    storage.rename(SET_STATE_TMP, SET_STATE_FILE)?;
    storage.sync_dir()?;
    // Claim the next one's space now, while the old state's blocks have just been freed.
    if let Ok(next) = storage.create_file(SET_STATE_TMP) {
        let _ = next.reserve(0, SET_STATE_SPARE.max(bytes.len() as u64));
    }
    Ok(())
}

/// The set state stored in a replica directory, and the replica it says it belongs to
/// (`None`: none stored), read and checked as the set reads it (size bounded, a reused
/// spare file's tail ignored): what an offline checker needs.
pub fn stored_set_state(
    storage: &dyn Storage,
) -> Result<Option<(SetState, crate::ReplicaId)>, ReplicaFault> {
    match load_file(storage)? {
        None => Ok(None),
        Some(bytes) => SetState::decode(&bytes)
            .map(Some)
            .map_err(ReplicaFault::BadSetState),
    }
}

fn load_file(storage: &dyn Storage) -> Result<Option<Bytes>, ReplicaFault> {
    let io = |source| ReplicaFault::Io {
        context: "reading the set state",
        source,
    };
    if !storage.exists(SET_STATE_FILE).map_err(io)? {
        return Ok(None);
    }
    let file = storage.open_file(SET_STATE_FILE).map_err(io)?;
    let len = file.size().map_err(io)?;
    if len > MAX_SET_STATE {
        return Err(ReplicaFault::BadSetState(format!(
            "{len} bytes is too large"
        )));
    }
    let len = usize::try_from(len).map_err(|_| ReplicaFault::BadSetState("too large".into()))?;
    let mut buf = vec![0u8; len];
    file.read_at(&mut buf, 0).map_err(io)?;
    // A reused spare file may be longer than the state written into it.
    if let Some(n) = SetState::stored_len(&buf) {
        buf.truncate(n);
    }
    Ok(Some(Bytes::from(buf)))
}

impl Replica for LocalReplica {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn local_storage(&self) -> Option<Arc<dyn Storage>> {
        Some(self.storage.clone())
    }

    fn can_link_to(&self, target: &dyn Replica) -> bool {
        target.local_storage().is_some()
    }

    fn link_snapshot(
        &self,
        id: SnapshotId,
        size: u64,
        target: Arc<dyn Replica>,
    ) -> Pending<CloneReport> {
        let Some(dest) = target.local_storage() else {
            return Pending::ready(Err(ReplicaFault::Unsupported(
                "a linked clone onto a replica node",
            )));
        };
        self.run(move |v| v.link_snapshot_into(&id, dest.as_ref(), size))
    }

    fn format(&self, size: u64, geometry: Geometry, sealed: bool) -> Pending<()> {
        let mut slot = self.volume.write();
        let result = if sealed {
            Volume::create_sealed(self.storage.clone(), size, geometry, self.options)
        } else {
            Volume::create(self.storage.clone(), size, geometry, self.options)
        };
        Pending::ready(match result {
            Ok(v) => {
                *slot = Some(Arc::new(v));
                Ok(())
            }
            Err(e) => Err(e.into()),
        })
    }

    fn info(&self) -> Pending<ReplicaInfo> {
        self.run(|v| {
            Ok(ReplicaInfo {
                size: v.size(),
                geometry: v.geometry(),
                generation: v.generation(),
                snapshots: v.list_snapshots(),
                sealed: v.is_sealed(),
            })
        })
    }

    fn write(&self, offset: u64, data: Bytes, generation: u64) -> Pending<()> {
        self.queue_write(BatchWrite {
            offset,
            len: data.len() as u64,
            data: Some(data),
            generation: Some(generation),
            seals: Vec::new(),
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64, generation: u64) -> Pending<()> {
        self.queue_write(BatchWrite {
            offset,
            len,
            data: None,
            generation: Some(generation),
            seals: Vec::new(),
        })
    }

    fn write_raw(&self, first: BlockIndex, blocks: Vec<RawBlock>) -> Pending<()> {
        self.run(move |v| v.write_raw(first, &blocks))
    }

    fn write_sealed(
        &self,
        offset: u64,
        data: Bytes,
        generation: u64,
        seals: Arc<[Seal]>,
    ) -> Pending<()> {
        self.queue_write(BatchWrite {
            offset,
            len: data.len() as u64,
            data: Some(data),
            generation: Some(generation),
            seals: seals.to_vec(),
        })
    }

    fn read_sealed(&self, view: View, offset: u64, len: u64) -> Pending<SealedRead> {
        self.run(move |v| {
            let out_of_range = EngineError::OutOfRange {
                offset,
                len,
                size: v.size(),
            };
            if len > tripod_engine::MAX_READ_ALLOC {
                return Err(out_of_range);
            }
            let mut buf = vec![0u8; usize::try_from(len).map_err(|_| out_of_range)?];
            let seals = v.read_sealed_at(&view, offset, &mut buf)?;
            Ok(SealedRead {
                data: Bytes::from(buf),
                seals,
            })
        })
    }

    fn read(&self, view: View, offset: u64, len: u64) -> Pending<Bytes> {
        self.run(move |v| {
            let out_of_range = EngineError::OutOfRange {
                offset,
                len,
                size: v.size(),
            };
            if len > tripod_engine::MAX_READ_ALLOC {
                return Err(out_of_range);
            }
            let mut buf = vec![0u8; usize::try_from(len).map_err(|_| out_of_range)?];
            v.read_view_at(&view, offset, &mut buf)?;
            Ok(Bytes::from(buf))
        })
    }

    fn flush(&self) -> Pending<()> {
        self.run(|v| v.flush())
    }

    fn caches_writes(&self) -> bool {
        self.options.write_back
    }

    fn read_now(&self, offset: u64, len: u64) -> Option<Bytes> {
        let vol = self.volume.read().clone()?;
        if len > tripod_engine::MAX_READ_ALLOC {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        match vol.read_cached(offset, &mut buf) {
            Ok(true) => Some(Bytes::from(buf)),
            _ => None,
        }
    }

    fn snapshot(&self, id: SnapshotId, size: Option<u64>) -> Pending<()> {
        self.run(move |v| v.snapshot_sized(&id, size))
    }

    fn delete_snapshot(&self, id: SnapshotId) -> Pending<()> {
        self.run(move |v| v.delete_snapshot(&id))
    }

    fn rollback(&self, id: SnapshotId) -> Pending<()> {
        self.run(move |v| v.rollback(&id))
    }

    fn expand(&self, size: u64) -> Pending<()> {
        self.run(move |v| v.expand(size))
    }

    fn verify(&self) -> Pending<VerifyReport> {
        self.run(|v| v.verify())
    }

    fn view_chunks(&self, view: View) -> Pending<Vec<ChunkIndex>> {
        self.run(move |v| v.view_chunks(&view))
    }

    fn chunk_summary(&self, view: View, chunk: ChunkIndex) -> Pending<Vec<BlockInfo>> {
        self.run(move |v| v.chunk_summary(&view, chunk))
    }

    fn repair(&self, view: View, block: BlockIndex, data: Bytes) -> Pending<bool> {
        self.run(move |v| v.repair(&view, block, &data))
    }

    fn load_set_state(&self) -> Pending<Option<Bytes>> {
        let storage = self.storage.clone();
        self.run_plain(move || load_file(storage.as_ref()))
    }

    fn store_set_state(&self, state: Bytes) -> Pending<()> {
        let storage = self.storage.clone();
        self.run_plain(move || {
            store_file(storage.as_ref(), &state).map_err(|source| ReplicaFault::Io {
                context: "storing the set state",
                source,
            })
        })
    }

    fn reconnect(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        if !self.in_flight.wait_idle(timeout) {
            return Err(ReplicaFault::Timeout(timeout));
        }
        self.volume.write().take();
        match self.volume() {
            Ok(_) | Err(ReplicaFault::Empty) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn discard(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        if !self.close(timeout) {
            return Err(ReplicaFault::Timeout(timeout));
        }
        let io = |source| ReplicaFault::Io {
            context: "discarding a damaged copy",
            source,
        };
        // Everything but the lock (held by this process for the directory's lifetime).
        for name in self.storage.list().map_err(io)? {
            if name != "lock" {
                self.storage.remove_file(&name).map_err(io)?;
            }
        }
        self.storage.sync_dir().map_err(io)
    }

    fn check_health(&self) -> Result<(), ReplicaFault> {
        let present = self
            .storage
            .exists("manifest")
            .map_err(|source| ReplicaFault::Io {
                context: "checking the replica",
                source,
            })?;
        if present || self.volume.read().is_none() {
            Ok(())
        } else {
            Err(ReplicaFault::Engine(EngineError::NotFound))
        }
    }
}
