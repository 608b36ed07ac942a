//! The `Replica` interface: one copy of a volume, local or remote, driven by the set.
//!
//! Every call returns at once with a [`Pending`] answer, so the set can issue an operation to
//! all three replicas in parallel and wait for each with a timeout. A replica can be slow,
//! absent or far away; nothing here assumes it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use bytes::Bytes;
use tripod_engine::{
    BlockIndex, BlockInfo, BlockSeal, ChunkIndex, Geometry, RawBlock, Seal, SnapshotId,
    SnapshotInfo, VerifyReport, View,
};

use crate::error::ReplicaFault;

/// An answer that will arrive later (or never): waited for with a timeout, or handed to a
/// callback ([`Pending::then`]) so a network server needs no thread per answer.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

/// The sending half of a [`Pending`]. Dropped without an answer, it answers
/// [`ReplicaFault::Disconnected`].
pub struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

type Answer<T> = Result<T, ReplicaFault>;
type Callback<T> = Box<dyn FnOnce(Answer<T>) + Send>;

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

enum State<T> {
    /// No answer yet, nobody registered a callback.
    Empty,
    /// The answer, not yet taken.
    Done(Answer<T>),
    /// Called with the answer when it comes.
    Then(Callback<T>),
    /// Taken (by `wait` or a callback).
    Taken,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending(..)")
    }
}

impl<T> std::fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completer(..)")
    }
}

impl<T> Pending<T> {
    /// A new pending answer and the handle that completes it.
    pub fn new() -> (Completer<T>, Pending<T>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Empty),
            ready: Condvar::new(),
        });
        (
            Completer {
                slot: Some(slot.clone()),
            },
            Pending { slot },
        )
    }

    /// An answer that is already known.
    pub fn ready(value: Result<T, ReplicaFault>) -> Self {
        let (c, p) = Self::new();
        c.complete(value);
        p
    }

    /// Waits at most `timeout` for the answer.
    pub fn wait(self, timeout: Duration) -> Result<T, ReplicaFault> {
        self.wait_until(Instant::now() + timeout, timeout)
    }

    /// Waits until `deadline` for the answer (one deadline shared by the replicas of one
    /// request); a timeout reports `timeout` as the limit that was passed.
    pub fn wait_until(self, deadline: Instant, timeout: Duration) -> Result<T, ReplicaFault> {
        let mut state = self.slot.state.lock();
        loop {
            if let State::Done(_) = &*state {
                if let State::Done(answer) = std::mem::replace(&mut *state, State::Taken) {
                    return answer;
                }
            }
            if self.slot.ready.wait_until(&mut state, deadline).timed_out()
                && !matches!(&*state, State::Done(_))
            {
                return Err(ReplicaFault::Timeout(timeout));
            }
        }
    }

    /// Calls `f` with the answer when it arrives (at once, on this thread, if it is already
    /// here; otherwise on the thread that completes it, which must not be kept long).
    pub fn then(self, f: impl FnOnce(Result<T, ReplicaFault>) + Send + 'static) {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(answer) => {
                drop(state);
                f(answer);
            }
            State::Empty => *state = State::Then(Box::new(f)),
            // A `Pending` is consumed by `wait` or `then`, so nothing else can be here.
            other => *state = other,
        }
    }
}

impl<T> Completer<T> {
    /// Delivers the answer (dropped if nobody waits any more).
    pub fn complete(mut self, value: Result<T, ReplicaFault>) {
        if let Some(slot) = self.slot.take() {
            deliver(&slot, value);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            deliver(&slot, Err(ReplicaFault::Disconnected));
        }
    }
}

fn deliver<T>(slot: &Slot<T>, value: Answer<T>) {
    let mut state = slot.state.lock();
    match std::mem::replace(&mut *state, State::Taken) {
        State::Then(f) => {
            drop(state);
            f(value);
        }
        State::Empty => {
            *state = State::Done(value);
            slot.ready.notify_all();
        }
        other => *state = other,
    }
}

/// What a replica reports about its copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaInfo {
    /// Volume size in bytes.
    pub size: u64,
    /// Block and chunk size.
    pub geometry: Geometry,
    /// Highest write generation stored.
    pub generation: u64,
    /// Visible snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// The copy keeps a seal beside every data block (an encrypted volume's copy: its blocks
    /// are ciphertext and each seal is the block's authentication tag).
    pub sealed: bool,
}

/// Whole blocks read from a sealed copy ([`Replica::read_sealed`]): the stored bytes and,
/// per block, its generation and seal (`None`: the block reads as zeros, holding no data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRead {
    /// The stored bytes (ciphertext for an encrypted volume; zeros where no data is held).
    pub data: Bytes,
    /// One entry per block.
    pub seals: Vec<Option<BlockSeal>>,
}

/// One copy of a volume. Implementations must be safe to call from many threads at once and
/// must apply operations submitted by one thread in submission order only where the set
/// waits for the answer before submitting the next (the set never relies on more).
pub trait Replica: Send + Sync {
    /// A short description for logs (`dir /srv/a`, `tcp://host:port`).
    fn describe(&self) -> String;

    /// Creates an empty volume in a replica that holds none; `sealed`: one whose blocks
    /// carry seals (an encrypted volume's copy, see `tripod_engine::Volume::create_sealed`).
    fn format(&self, size: u64, geometry: Geometry, sealed: bool) -> Pending<()>;
    /// Size, geometry, generation and snapshots.
    fn info(&self) -> Pending<ReplicaInfo>;

    /// Writes `data` at `offset`, stamped with `generation`; answers once the replica holds
    /// it (durable at the next [`Replica::flush`], or at once if its store syncs writes).
    fn write(&self, offset: u64, data: Bytes, generation: u64) -> Pending<()>;
    /// Makes a range read as zeros, stamped with `generation` (durable as a write).
    fn write_zeroes(&self, offset: u64, len: u64, generation: u64) -> Pending<()>;
    /// Writes whole blocks from `first`, each with its own generation (region copies).
    fn write_raw(&self, first: BlockIndex, blocks: Vec<RawBlock>) -> Pending<()>;
    /// Reads `len` bytes of `view` at `offset`, checked against the block CRCs.
    fn read(&self, view: View, offset: u64, len: u64) -> Pending<Bytes>;
    /// Sealed copies: writes whole blocks from a block boundary, each with its seal in
    /// `seals` (one per block), stamped with `generation`. Others answer `Unsupported`.
    fn write_sealed(
        &self,
        offset: u64,
        data: Bytes,
        generation: u64,
        seals: Arc<[Seal]>,
    ) -> Pending<()> {
        let _ = (offset, data, generation, seals);
        Pending::ready(Err(ReplicaFault::Unsupported("sealed writes")))
    }
    /// Reads whole blocks of `view` with each block's generation and seal, checked against
    /// the block CRCs. Others answer `Unsupported`.
    fn read_sealed(&self, view: View, offset: u64, len: u64) -> Pending<SealedRead> {
        let _ = (view, offset, len);
        Pending::ready(Err(ReplicaFault::Unsupported("sealed reads")))
    }
    /// Makes every write answered before this call durable.
    fn flush(&self) -> Pending<()>;
    /// Whether an answered write may still be lost to a power cut until the next
    /// [`Replica::flush`] (the store caches writes). The set keeps its activity log only for
    /// such replicas. The default assumes it may.
    fn caches_writes(&self) -> bool {
        true
    }
    /// Reads the head on the caller's thread if that needs no waiting (the copy is open and
    /// the bytes are in memory); `None` otherwise (or on any error: [`Replica::read`] then
    /// reports it). The default never does.
    fn read_now(&self, offset: u64, len: u64) -> Option<Bytes> {
        let _ = (offset, len);
        None
    }

    /// Takes snapshot `id` of the head; `size` records a smaller snapshot size (rebuilds).
    fn snapshot(&self, id: SnapshotId, size: Option<u64>) -> Pending<()>;
    /// The store of a copy in a local directory (`None` for a copy on a node).
    fn local_storage(&self) -> Option<Arc<dyn tripod_engine::Storage>> {
        None
    }
    /// Whether [`Replica::link_snapshot`] into `target` can work: both copies in local
    /// directories, or both on one replica node.
    fn can_link_to(&self, target: &dyn Replica) -> bool {
        let _ = target;
        false
    }
    /// The node a copy on a replica node lives on (its address), `None` for a local copy.
    fn node_address(&self) -> Option<String> {
        None
    }
    /// On a copy on a node: makes this (empty) copy a linked clone of snapshot `id` of the
    /// node's copy of volume `source`. Others answer `Unsupported`.
    fn link_from_node_volume(
        &self,
        source: &str,
        id: SnapshotId,
        size: u64,
    ) -> Pending<tripod_engine::CloneReport> {
        let _ = (source, id, size);
        Pending::ready(Err(ReplicaFault::Unsupported("linked clones")))
    }
    /// Makes `target` — an empty copy in the same kind of place (see
    /// [`Replica::can_link_to`]) — hold snapshot `id` of this copy at `size` bytes, sharing
    /// the snapshot's files where the file system allows (the engine's linked clone).
    /// Copies that cannot answer `Unsupported`.
    fn link_snapshot(
        &self,
        id: SnapshotId,
        size: u64,
        target: Arc<dyn Replica>,
    ) -> Pending<tripod_engine::CloneReport> {
        let _ = (id, size, target);
        Pending::ready(Err(ReplicaFault::Unsupported("linked clones")))
    }
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
    /// A cheap check that the copy is still there (its directory, its connection):
    /// `Disconnected`/`Timeout` if it cannot be reached (it keeps what it had), any other
    /// fault if the copy itself is gone or broken.
    fn check_health(&self) -> Result<(), ReplicaFault>;
    /// Removes this copy's store so it can be rebuilt from nothing. The set calls it only for
    /// a copy that cannot be opened at all (its metadata damaged) while two other copies are
    /// in service. Replicas that cannot do it refuse.
    fn discard(&self, _timeout: Duration) -> Result<(), ReplicaFault> {
        Err(ReplicaFault::Remote(
            "this replica cannot discard its copy".into(),
        ))
    }
}

/// One answer for several: `combine` gets every value in order once all arrived, or the
/// first fault is the answer.
pub(crate) fn join<T: Send + 'static, U: Send + 'static>(
    parts: Vec<Pending<T>>,
    combine: fn(Vec<T>) -> U,
) -> Pending<U> {
    let (done, joined) = Pending::new();
    let n = parts.len();
    if n == 0 {
        done.complete(Ok(combine(Vec::new())));
        return joined;
    }
    struct Join<T, U> {
        values: Vec<Option<T>>,
        left: usize,
        done: Option<Completer<U>>,
    }
    let state = Arc::new(Mutex::new(Join {
        values: (0..n).map(|_| None).collect(),
        left: n,
        done: Some(done),
    }));
    for (i, part) in parts.into_iter().enumerate() {
        let state = state.clone();
        part.then(move |result| {
            let mut s = state.lock();
            match result {
                Err(fault) => {
                    if let Some(done) = s.done.take() {
                        drop(s);
                        done.complete(Err(fault));
                    }
                }
                Ok(value) => {
                    if let Some(slot) = s.values.get_mut(i) {
                        *slot = Some(value);
                    }
                    s.left -= 1;
                    if s.left == 0 {
                        if let Some(done) = s.done.take() {
                            let values = s.values.drain(..).flatten().collect();
                            drop(s);
                            done.complete(Ok(combine(values)));
                        }
                    }
                }
            }
        });
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_waiters_and_callbacks_whichever_comes_first() {
        let (c, p) = Pending::new();
        c.complete(Ok(1));
        assert_eq!(p.wait(Duration::ZERO).unwrap(), 1);

        let (c, p) = Pending::<u32>::new();
        let t = std::thread::spawn(move || p.wait(Duration::from_secs(10)));
        c.complete(Ok(2));
        assert_eq!(t.join().unwrap().unwrap(), 2);

        let got = Arc::new(Mutex::new(None));
        let (c, p) = Pending::new();
        let g = got.clone();
        p.then(move |r| *g.lock() = Some(r.unwrap()));
        assert!(got.lock().is_none());
        c.complete(Ok(3));
        assert_eq!(*got.lock(), Some(3));

        let (c, p) = Pending::new();
        c.complete(Ok(4));
        let g = got.clone();
        p.then(move |r| *g.lock() = Some(r.unwrap()));
        assert_eq!(*got.lock(), Some(4));
    }

    #[test]
    fn a_dropped_completer_disconnects_and_silence_times_out() {
        let (c, p) = Pending::<()>::new();
        drop(c);
        assert!(matches!(
            p.wait(Duration::from_secs(1)),
            Err(ReplicaFault::Disconnected)
        ));
        let (c, p) = Pending::<()>::new();
        let seen = Arc::new(Mutex::new(false));
        let s = seen.clone();
        p.then(move |r| *s.lock() = matches!(r, Err(ReplicaFault::Disconnected)));
        drop(c);
        assert!(*seen.lock());
        let (_c, p) = Pending::<()>::new();
        assert!(matches!(
            p.wait(Duration::from_millis(20)),
            Err(ReplicaFault::Timeout(_))
        ));
    }
}
