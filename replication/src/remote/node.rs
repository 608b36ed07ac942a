//! The replica node: `tripod replica --dir DIR --listen HOST:PORT` serves the copies in
//! `DIR/<volume>/` to the replica sets of other machines.
//!
//! Each connection authenticates (see [`super::auth`]), binds to one volume (or to none, for
//! node-level requests) and then carries pipelined requests answered out of order. Every
//! copy is one [`LocalReplica`] shared by all connections of its volume, so a node holds a
//! volume's engine store open once. A `Reconnect` request fences the volume: connections
//! opened before it are refused from then on, and the node waits for everything they had
//! submitted, so nothing stale lands after the set resynced the copy. Requests of one
//! connection run concurrently on blocking threads (the set orders what must be ordered by
//! waiting for answers), so the async threads only move bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tripod_engine::{CloneReport, FileStorage, SnapshotId, View, VolumeOptions};

use super::auth::{self, AuthError, Challenge, ClusterSecret, Hello};
use super::wire::{self, Answer, Request, MAX_FRAME};
use crate::error::ReplicaFault;
use crate::executor::{Executor, DEFAULT_POOL_THREADS};
use crate::local::LocalReplica;
use crate::replica::{Pending, Replica};

/// How long a peer has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the node waits for its store to go idle before closing it (destroy).
const OP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Bytes of requests one connection may have in flight (back-pressure on the socket).
const IN_FLIGHT_BYTES: usize = 256 << 20;
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 1024;

/// Bytes read from a replica connection at once, on both ends (frames are length-prefixed;
/// small ones arrive several to a `recv`).
pub(crate) const FRAME_READ_BUFFER: usize = 64 << 10;

/// Why a connection or the node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer failed the handshake.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The peer broke the framing.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// One volume's copy on this node.
struct NodeVolume {
    replica: LocalReplica,
    /// Fence: connections bound before the last `Reconnect` (or `Destroy`) carry an older
    /// epoch and are refused. Held while submitting so a fence orders against submissions.
    epoch: Mutex<u64>,
}

/// A replica node over one directory.
pub struct ReplicaNode {
    dir: PathBuf,
    secret: ClusterSecret,
    options: VolumeOptions,
    volumes: Mutex<HashMap<String, Arc<NodeVolume>>>,
    connections: Arc<Semaphore>,
    /// The disk's threads, shared by every volume on the node (started on first use).
    executor: Mutex<Option<Arc<Executor>>>,
}

/// The epoch of a destroyed volume: no connection carries it, so every one is refused.
const FENCED: u64 = u64::MAX;

impl ReplicaNode {
    /// A node serving the copies under `dir` to peers holding `secret`.
    pub fn new(dir: impl Into<PathBuf>, secret: ClusterSecret, options: VolumeOptions) -> Self {
        Self {
            dir: dir.into(),
            secret,
            options,
            volumes: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            executor: Mutex::new(None),
        }
    }

    fn executor(&self) -> Result<Arc<Executor>, NodeError> {
        let mut slot = self.executor.lock();
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = Executor::new("node-disk", DEFAULT_POOL_THREADS)?;
        *slot = Some(e.clone());
        Ok(e)
    }

    /// Serves connections from `listener` until `shutdown` resolves; then stops accepting
    /// and waits up to `drain` for connections to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many connections; closing");
                        continue;
                    };
                    let node = self.clone();
                    let stopping = stopping.clone();
                    tokio::spawn(async move {
                        match node.connection(stream, stopping).await {
                            Ok(()) => tracing::debug!(%peer, "connection closed"),
                            Err(e) => tracing::info!(%peer, "connection ended: {e}"),
                        }
                        drop(permit);
                    });
                }
            }
        }
        // Connections stop reading requests and finish the ones in flight.
        let _ = stop.send(true);
        let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(drain, self.connections.acquire_many(all)).await;
        Ok(())
    }

    fn volume(&self, name: &str) -> Result<Arc<NodeVolume>, NodeError> {
        let mut volumes = self.volumes.lock();
        if let Some(v) = volumes.get(name) {
            return Ok(v.clone());
        }
        let dir = self.dir.join(name);
        let storage = FileStorage::new(&dir)?;
        let replica = LocalReplica::with_executor(
            dir.display().to_string(),
            Arc::new(storage),
            self.options,
            self.executor()?,
        );
        let v = Arc::new(NodeVolume {
            replica,
            epoch: Mutex::new(0),
        });
        volumes.insert(name.to_owned(), v.clone());
        Ok(v)
    }

    /// Makes `target` (volume `own`'s empty copy) a linked clone of snapshot `snapshot` of
    /// this node's copy of volume `source`.
    fn link_from(
        &self,
        source: &str,
        own: &str,
        target: &NodeVolume,
        snapshot: &SnapshotId,
        size: u64,
    ) -> Result<CloneReport, ReplicaFault> {
        if source.is_empty() || source == own || !super::auth::valid_volume_name(source) {
            return Err(ReplicaFault::Remote(format!(
                "cannot link from volume {source:?}"
            )));
        }
        let src = self
            .volume(source)
            .map_err(|e| ReplicaFault::Remote(format!("opening {source}: {e}")))?;
        let dest = target
            .replica
            .local_storage()
            .ok_or(ReplicaFault::Unsupported("a copy without a directory"))?;
        Ok(src
            .replica
            .volume()?
            .link_snapshot_into(snapshot, dest.as_ref(), size)?)
    }

    /// Names of the volumes with a copy here (a directory holding a set state or manifest).
    fn list(&self) -> Result<Vec<String>, ReplicaFault> {
        let io = |source| ReplicaFault::Io {
            context: "listing the node's volumes",
            source,
        };
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            if auth::valid_volume_name(&name)
                && !name.is_empty()
                && (path.join("set-state").exists() || path.join("manifest").exists())
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes volume `name`: fences its connections, waits for what they submitted,
    /// closes the store and deletes the directory.
    fn destroy(&self, name: &str, vol: &NodeVolume) -> Result<(), ReplicaFault> {
        *vol.epoch.lock() = FENCED;
        if !vol.replica.close(OP_TIMEOUT) {
            return Err(ReplicaFault::Timeout(OP_TIMEOUT));
        }
        self.volumes.lock().remove(name);
        remove_dir(&self.dir.join(name))
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        // Pipelined requests arrive several to a `recv`.
        let mut rd = BufReader::with_capacity(FRAME_READ_BUFFER, rd);
        let mut wr = BufWriter::with_capacity(256 << 10, wr);
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut rd, &mut wr))
            .await
            .map_err(|_| NodeError::Protocol("handshake timed out".into()))??;
        let bound = if hello.volume.is_empty() {
            None
        } else {
            Some(self.volume(&hello.volume)?)
        };
        let mut my_epoch = bound.as_ref().map_or(0, |v| *v.epoch.lock());

        let (tx, mut rx) = mpsc::unbounded_channel::<(Bytes, tokio::sync::OwnedSemaphorePermit)>();
        let writer = tokio::spawn(async move {
            while let Some((frame, permit)) = rx.recv().await {
                wr.write_all(&frame).await?;
                drop(permit);
                while let Ok((frame, permit)) = rx.try_recv() {
                    wr.write_all(&frame).await?;
                    drop(permit);
                }
                wr.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        });
        let budget = Arc::new(Semaphore::new(IN_FLIGHT_BYTES >> 10));
        let result = loop {
            let header = tokio::select! {
                biased;
                _ = stopping.wait_for(|stop| *stop) => break Ok(()),
                header = rd.read_u32_le() => header,
            };
            let len = match header {
                Ok(n) => n as usize,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                Err(e) => break Err(e.into()),
            };
            if len > MAX_FRAME {
                break Err(NodeError::Protocol(format!("frame of {len} bytes")));
            }
            let kib = |n: usize| u32::try_from(n >> 10).unwrap_or(u32::MAX);
            let cost = kib(len).clamp(1, kib(IN_FLIGHT_BYTES));
            let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
                break Ok(());
            };
            let mut buf = BytesMut::zeroed(len);
            if let Err(e) = rd.read_exact(&mut buf).await {
                break Err(e.into());
            }
            let frame = buf.freeze();
            let (id, request) = match wire::decode_request(frame.clone()) {
                Ok(r) => r,
                Err(e) if frame.len() >= 8 => {
                    // The framing is intact: answer this request with the error and go on.
                    tracing::warn!("bad request: {e}");
                    let mut raw = [0u8; 8];
                    if let Some(head) = frame.get(..8) {
                        raw.copy_from_slice(head);
                    }
                    let fault = Err(ReplicaFault::Remote(format!("bad request: {e}")));
                    let answer = wire::encode_answer(u64::from_le_bytes(raw), &fault);
                    if tx.send((answer, permit)).is_err() {
                        break Ok(());
                    }
                    continue;
                }
                Err(e) => break Err(NodeError::Protocol(e.to_string())),
            };
            let node = self.clone();
            let bound = bound.clone();
            let quick = !matches!(request, Request::Format { .. })
                && bound.as_ref().is_some_and(|v| v.replica.is_open());
            let reply: Reply = {
                let tx = tx.clone();
                Box::new(move |result| {
                    let _ = tx.send((wire::encode_answer(id, &result), permit));
                })
            };
            match (&request, bound) {
                (Request::List, _) => blocking(reply, move || node.list().map(Answer::Names)),
                (_, None) => reply(Err(ReplicaFault::Remote(
                    "this connection is bound to no volume".into(),
                ))),
                (Request::Reconnect { timeout_ms }, Some(vol)) => {
                    {
                        let mut epoch = vol.epoch.lock();
                        if *epoch == FENCED {
                            break Err(NodeError::Protocol("volume destroyed".into()));
                        }
                        *epoch += 1;
                        my_epoch = *epoch;
                    }
                    let timeout = Duration::from_millis(*timeout_ms);
                    blocking(reply, move || {
                        vol.replica.reconnect(timeout).map(|()| Answer::Done)
                    });
                }
                (Request::Destroy, Some(vol)) => {
                    let name = hello.volume.clone();
                    blocking(reply, move || {
                        node.destroy(&name, &vol).map(|()| Answer::Done)
                    });
                }
                (Request::Health, Some(vol)) => blocking(reply, move || {
                    vol.replica.check_health().map(|()| Answer::Done)
                }),
                (
                    Request::LinkFrom {
                        source,
                        snapshot,
                        size,
                    },
                    Some(vol),
                ) => {
                    if *vol.epoch.lock() != my_epoch {
                        break Err(NodeError::Protocol("fenced by a newer connection".into()));
                    }
                    let (source, snapshot, size) = (source.clone(), snapshot.clone(), *size);
                    let own = hello.volume.clone();
                    blocking(reply, move || {
                        node.link_from(&source, &own, &vol, &snapshot, size)
                            .map(Answer::Linked)
                    });
                }
                (_, Some(vol)) => {
                    if *vol.epoch.lock() != my_epoch {
                        // A newer connection of this volume fenced us: its client gave up on
                        // this one. Nothing more from it may reach the store.
                        break Err(NodeError::Protocol("fenced by a newer connection".into()));
                    }
                    // Submitted under the fence lock: a `Reconnect` either sees this
                    // operation in flight and waits for it, or this sees the new epoch.
                    // An open store takes operations without blocking (they queue for its
                    // threads and answer through `reply`); opening or creating one may take
                    // long, so that happens on a blocking thread.
                    let epoch = my_epoch;
                    let fenced_submit = move || {
                        let fence = vol.epoch.lock();
                        if *fence != epoch {
                            drop(fence);
                            return reply(Err(ReplicaFault::Remote(
                                "fenced by a newer connection of this volume".into(),
                            )));
                        }
                        submit(&vol.replica, request, reply);
                    };
                    if quick {
                        fenced_submit();
                    } else {
                        tokio::task::spawn_blocking(fenced_submit);
                    }
                }
            }
        };
        drop(tx);
        // Let answers already computed go out (the writer ends when every sender is gone).
        let _ = writer.await;
        result
    }

    async fn handshake(
        &self,
        rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    ) -> Result<Hello, NodeError> {
        let hello = Hello::decode(read_small_frame(rd).await?)?;
        let challenge = Challenge::answer(&self.secret, &hello)?;
        wr.write_all(&challenge.encode()).await?;
        wr.flush().await?;
        let proof = read_small_frame(rd).await?;
        if !auth::check_client_proof(&self.secret, &hello, &challenge, &proof) {
            tracing::warn!(volume = %hello.volume, "peer failed authentication");
            wr.write_all(&auth::verdict(Some("authentication failed")))
                .await?;
            wr.flush().await?;
            return Err(AuthError::BadProof.into());
        }
        wr.write_all(&auth::verdict(None)).await?;
        wr.flush().await?;
        Ok(hello)
    }
}

/// Reads one handshake frame (at most 1 KiB).
pub(crate) async fn read_small_frame<R: AsyncReadExt + Unpin>(
    rd: &mut R,
) -> Result<Bytes, NodeError> {
    let len = rd.read_u32_le().await? as usize;
    if len > 1024 {
        return Err(NodeError::Protocol(format!(
            "handshake frame of {len} bytes"
        )));
    }
    let mut buf = BytesMut::zeroed(len);
    rd.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

fn remove_dir(dir: &Path) -> Result<(), ReplicaFault> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ReplicaFault::Io {
            context: "removing the volume's copy",
            source,
        }),
    }
}

/// Sends the answer to one request back to its connection.
type Reply = Box<dyn FnOnce(Result<Answer, ReplicaFault>) + Send>;

/// Runs `f` on a blocking thread and replies with its result.
fn blocking(reply: Reply, f: impl FnOnce() -> Result<Answer, ReplicaFault> + Send + 'static) {
    tokio::task::spawn_blocking(move || reply(f()));
}

/// Replies when `p` is answered (on the store's thread: encoding and queueing the frame).
fn answer<T: Send + 'static>(p: Pending<T>, reply: Reply, to_answer: fn(T) -> Answer) {
    p.then(move |result| reply(result.map(to_answer)));
}

/// Submits a store operation; `reply` gets its answer.
fn submit(r: &LocalReplica, request: Request, reply: Reply) {
    let done = |()| Answer::Done;
    match request {
        Request::Format {
            size,
            geometry,
            sealed,
        } => answer(r.format(size, geometry, sealed), reply, done),
        Request::WriteSealed {
            offset,
            generation,
            data,
            seals,
        } => answer(
            r.write_sealed(offset, data, generation, seals.into()),
            reply,
            done,
        ),
        Request::ReadSealed { view, offset, len } => {
            answer(r.read_sealed(view, offset, len), reply, Answer::Sealed)
        }
        Request::Info => answer(r.info(), reply, Answer::Info),
        Request::Write {
            offset,
            generation,
            data,
        } => answer(r.write(offset, data, generation), reply, done),
        Request::WriteZeroes {
            offset,
            len,
            generation,
        } => answer(r.write_zeroes(offset, len, generation), reply, done),
        Request::WriteRaw { first, blocks } => answer(r.write_raw(first, blocks), reply, done),
        Request::Read { view, offset, len } => {
            // Cached data of the head is answered here, on the connection's task, without
            // a hand-off to the store's threads (as a local replica serves it).
            if matches!(view, View::Head) {
                if let Some(data) = r.read_now(offset, len) {
                    return reply(Ok(Answer::Data(data)));
                }
            }
            answer(r.read(view, offset, len), reply, Answer::Data)
        }
        Request::Flush => answer(r.flush(), reply, done),
        Request::Snapshot { id, size } => answer(r.snapshot(id, size), reply, done),
        Request::DeleteSnapshot(id) => answer(r.delete_snapshot(id), reply, done),
        Request::Rollback(id) => answer(r.rollback(id), reply, done),
        Request::Expand(size) => answer(r.expand(size), reply, done),
        Request::Verify => answer(r.verify(), reply, Answer::Verify),
        Request::ViewChunks(view) => answer(r.view_chunks(view), reply, Answer::Chunks),
        Request::ChunkSummary { view, chunk } => {
            answer(r.chunk_summary(view, chunk), reply, Answer::Summary)
        }
        Request::Repair { view, block, data } => {
            answer(r.repair(view, block, data), reply, Answer::Repaired)
        }
        Request::LoadSetState => answer(r.load_set_state(), reply, |s| match s {
            Some(b) => Answer::Data(b),
            None => Answer::NoData,
        }),
        Request::StoreSetState(state) => answer(r.store_set_state(state), reply, done),
        Request::Reconnect { .. }
        | Request::Health
        | Request::Destroy
        | Request::List
        | Request::LinkFrom { .. } => {
            reply(Err(ReplicaFault::Remote("not a store operation".into())))
        }
    }
}
