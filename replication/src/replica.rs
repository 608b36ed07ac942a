//! The `Replica` interface: one copy of a volume, local or remote, driven by the set.
//!
//! Every call returns at once with a [`Pending`] answer, so the set can issue an operation to
//! all three replicas in parallel and wait for each with a timeout. A replica can be slow,
//! absent or far away; nothing here assumes it answers.

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use tripod_engine::{
    BlockIndex, BlockInfo, ChunkIndex, Geometry, RawBlock, SnapshotId, SnapshotInfo, VerifyReport,
    View,
};

use crate::error::ReplicaFault;

/// An answer that will arrive later (or never).
#[derive(Debug)]
pub struct Pending<T> {
    rx: mpsc::Receiver<Result<T, ReplicaFault>>,
}

/// The sending half of a [`Pending`].
#[derive(Debug)]
pub struct Completer<T> {
    tx: mpsc::SyncSender<Result<T, ReplicaFault>>,
}

impl<T> Pending<T> {
    /// A new pending answer and the handle that completes it.
    pub fn new() -> (Completer<T>, Pending<T>) {
        let (tx, rx) = mpsc::sync_channel(1);
        (Completer { tx }, Pending { rx })
    }

    /// An answer that is already known.
    pub fn ready(value: Result<T, ReplicaFault>) -> Self {
        let (c, p) = Self::new();
        c.complete(value);
        p
    }

    /// Waits at most `timeout` for the answer.
    pub fn wait(self, timeout: Duration) -> Result<T, ReplicaFault> {
        match self.rx.recv_timeout(timeout) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ReplicaFault::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ReplicaFault::Disconnected),
        }
    }
}

impl<T> Completer<T> {
    /// Delivers the answer (dropped if nobody waits any more).
    pub fn complete(self, value: Result<T, ReplicaFault>) {
        let _ = self.tx.send(value);
    }
}

/// What a replica reports about its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Volume size in bytes.
    pub size: u64,
    /// Block and chunk size.
    pub geometry: Geometry,
    /// Highest write generation stored.
    pub generation: u64,
    /// Visible snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
}

/// One copy of a volume. Implementations must be safe to call from many threads at once and
/// must apply operations submitted by one thread in submission order only where the set
/// waits for the answer before submitting the next (the set never relies on more).
pub trait Replica: Send + Sync {
    /// A short description for logs (`dir /srv/a`, `tcp://host:port`).
    fn describe(&self) -> String;

    /// Creates an empty volume in a replica that holds none.
    fn format(&self, size: u64, geometry: Geometry) -> Pending<()>;
    /// Size, geometry, generation and snapshots.
    fn info(&self) -> Pending<ReplicaInfo>;

    /// Writes `data` at `offset`, stamped with `generation`; answers when durable.
    fn write(&self, offset: u64, data: Bytes, generation: u64) -> Pending<()>;
    /// Makes a range read as zeros, stamped with `generation`; answers when durable.
    fn write_zeroes(&self, offset: u64, len: u64, generation: u64) -> Pending<()>;
    /// Writes whole blocks from `first`, each with its own generation (region copies).
    fn write_raw(&self, first: BlockIndex, blocks: Vec<RawBlock>) -> Pending<()>;
    /// Reads `len` bytes of `view` at `offset`, checked against the block CRCs.
    fn read(&self, view: View, offset: u64, len: u64) -> Pending<Bytes>;
    /// Reports an earlier failure; every acknowledged write is already durable.
    fn flush(&self) -> Pending<()>;

    /// Takes snapshot `id` of the head; `size` records a smaller snapshot size (rebuilds).
    fn snapshot(&self, id: SnapshotId, size: Option<u64>) -> Pending<()>;
    /// Deletes snapshot `id`.
    fn delete_snapshot(&self, id: SnapshotId) -> Pending<()>;
    /// Rolls the head back to snapshot `id`.
    fn rollback(&self, id: SnapshotId) -> Pending<()>;
    /// Grows the volume to `size` bytes.
    fn expand(&self, size: u64) -> Pending<()>;
    /// Checks every stored block against its CRC.
    fn verify(&self) -> Pending<VerifyReport>;

    /// Chunks of `view` that hold any block.
    fn view_chunks(&self, view: View) -> Pending<Vec<ChunkIndex>>;
    /// Per-block content kind, CRC and generation of one chunk of `view`.
    fn chunk_summary(&self, view: View, chunk: ChunkIndex) -> Pending<Vec<BlockInfo>>;
    /// Rewrites a damaged block of `view` with `data` if it matches the recorded CRC.
    fn repair(&self, view: View, block: BlockIndex, data: Bytes) -> Pending<bool>;

    /// The set state stored in this replica, if any.
    fn load_set_state(&self) -> Pending<Option<Bytes>>;
    /// Durably replaces the set state stored in this replica.
    fn store_set_state(&self, state: Bytes) -> Pending<()>;

    /// Waits up to `timeout` until no earlier operation is still running, then drops and
    /// reopens the copy (clearing a poisoned store). Used before a returning replica is
    /// resynced, so no stale operation can land after the resync copied a region.
    fn reconnect(&self, timeout: Duration) -> Result<(), ReplicaFault>;
    /// A cheap check that the copy is still there (its directory, its connection).
    fn check_health(&self) -> Result<(), ReplicaFault>;
}
