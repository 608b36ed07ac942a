//! `RemoteReplica`: a replica held by a `tripod replica` node, reached over TCP.
//!
//! One connection per volume carries pipelined requests; answers complete the set's
//! [`Pending`]s by request id in whatever order they come. The network runs on a tokio
//! runtime the caller provides; the [`Replica`] calls themselves never block.
//!
//! A broken connection fails everything in flight with [`ReplicaFault::Disconnected`] (the
//! set takes the replica out of service and records what it misses); the next call opens a
//! new connection. A health check of an unreachable node fails the same way, so an idle
//! volume notices a dead node too. [`Replica::reconnect`] opens one that fences every older connection on
//! the node and waits for what they had submitted, so nothing stale lands after a resync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tripod_engine::{
    BlockIndex, BlockInfo, ChunkIndex, CloneReport, Geometry, RawBlock, Seal, SnapshotId,
    VerifyReport, View,
};

use super::auth::{self, AuthError, Challenge, ClusterSecret, Hello};
use super::node::read_small_frame;
use super::wire::{self, Answer, Request, MAX_FRAME};
use crate::error::ReplicaFault;
use crate::replica::{join, SealedRead};
use crate::replica::{Pending, Replica, ReplicaInfo};

/// How long connecting plus the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a node may take to answer a health check. A stopped node (SIGSTOP: the socket
/// open, nobody answering) is noticed in this much plus the supervisor's period.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest payload one request carries; longer reads and writes go as several requests
/// (a frame holds at most [`wire::MAX_FRAME`] bytes).
const PIECE: usize = 32 << 20;

/// A replica node: its address, the cluster secret and the runtime the connections use.
#[derive(Clone)]
pub struct RemoteNode {
    inner: Arc<NodeAddr>,
}

struct NodeAddr {
    addr: String,
    secret: ClusterSecret,
    runtime: Handle,
}

impl std::fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteNode(tcp://{})", self.inner.addr)
    }
}

impl RemoteNode {
    /// The node at `addr` (`host:port`), authenticated with `secret`; connections run on
    /// `runtime`.
    pub fn new(addr: impl Into<String>, secret: ClusterSecret, runtime: Handle) -> Self {
        Self {
            inner: Arc::new(NodeAddr {
                addr: addr.into(),
                secret,
                runtime,
            }),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The copy of `volume` on this node (connected on first use).
    pub fn replica(&self, volume: &str) -> RemoteReplica {
        RemoteReplica {
            node: self.inner.clone(),
            volume: volume.to_owned(),
            conn: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// Names of the volumes the node holds a copy of.
    pub fn list(&self, timeout: Duration) -> Result<Vec<String>, ReplicaFault> {
        let r = self.replica("");
        r.call(Request::List, |a| match a {
            Answer::Names(n) => Some(n),
            _ => None,
        })
        .wait(timeout)
    }

    /// Removes the node's copy of `volume` (absent is fine).
    pub fn destroy(&self, volume: &str, timeout: Duration) -> Result<(), ReplicaFault> {
        self.replica(volume)
            .call(Request::Destroy, done)
            .wait(timeout)
    }
}

type Completion = Box<dyn FnOnce(Result<Answer, ReplicaFault>) + Send>;

/// One connection: frames to send, and the completions of requests in flight.
struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    state: Mutex<ConnState>,
    /// Wakes the connection's task to drop the socket.
    stop: tokio::sync::Notify,
}

struct ConnState {
    closed: bool,
    waiting: HashMap<u64, Completion>,
}

impl Conn {
    /// Registers `done` under `id` and queues `frame`; fails at once if closed.
    fn send(&self, id: u64, frame: Bytes, done: Completion) {
        let mut state = self.state.lock();
        if state.closed {
            drop(state);
            done(Err(ReplicaFault::Disconnected));
            return;
        }
        state.waiting.insert(id, done);
        drop(state);
        if self.tx.send(frame).is_err() {
            self.close();
        }
    }

    fn complete(&self, id: u64, answer: Result<Answer, ReplicaFault>) {
        let done = self.state.lock().waiting.remove(&id);
        if let Some(done) = done {
            done(answer);
        }
    }

    /// Marks the connection dead and fails everything in flight.
    fn close(&self) {
        let waiting = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.waiting)
        };
        self.stop.notify_one();
        for (_, done) in waiting {
            done(Err(ReplicaFault::Disconnected));
        }
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

/// A volume's copy on a replica node.
pub struct RemoteReplica {
    node: Arc<NodeAddr>,
    volume: String,
    conn: Mutex<Option<Arc<Conn>>>,
    next_id: AtomicU64,
}

fn done(a: Answer) -> Option<()> {
    matches!(a, Answer::Done).then_some(())
}

impl RemoteReplica {
    /// The open connection, or a new one (connecting in the background; requests queue).
    fn conn(&self) -> Arc<Conn> {
        let mut slot = self.conn.lock();
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() {
                return c.clone();
            }
        }
        let c = self.open();
        *slot = Some(c.clone());
        c
    }

    fn open(&self) -> Arc<Conn> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            tx,
            state: Mutex::new(ConnState {
                closed: false,
                waiting: HashMap::new(),
            }),
            stop: tokio::sync::Notify::new(),
        });
        let node = self.node.clone();
        let volume = self.volume.clone();
        let task_conn = conn.clone();
        self.node.runtime.spawn(async move {
            if let Err(e) = run(&node, &volume, &task_conn, rx).await {
                tracing::debug!(node = %node.addr, volume, "connection ended: {e}");
            }
            task_conn.close();
        });
        conn
    }

    fn call<T: Send + 'static>(
        &self,
        request: Request,
        answer: fn(Answer) -> Option<T>,
    ) -> Pending<T> {
        self.call_on(&self.conn(), request, answer)
    }

    fn call_on<T: Send + 'static>(
        &self,
        conn: &Conn,
        request: Request,
        answer: fn(Answer) -> Option<T>,
    ) -> Pending<T> {
        let (completer, pending) = Pending::new();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode_request(id, &request);
        conn.send(
            id,
            frame,
            Box::new(move |result| {
                completer.complete(result.and_then(|a| {
                    answer(a).ok_or_else(|| ReplicaFault::Remote("unexpected answer".into()))
                }))
            }),
        );
        pending
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Node(#[from] super::node::NodeError),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Connects, authenticates, then pumps frames both ways until either side stops.
async fn run(
    node: &NodeAddr,
    volume: &str,
    conn: &Conn,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) -> Result<(), ConnError> {
    let stream = tokio::select! {
        s = tokio::time::timeout(CONNECT_TIMEOUT, connect(node, volume)) => {
            s.map_err(|_| ConnError::Protocol("connect timed out".into()))??
        }
        () = conn.stop.notified() => return Ok(()),
    };
    let (rd, wr) = stream.into_split();
    // Answers of pipelined requests arrive several to a `recv`.
    let mut rd = BufReader::with_capacity(super::node::FRAME_READ_BUFFER, rd);
    let mut wr = BufWriter::with_capacity(256 << 10, wr);
    let writer = async {
        while let Some(frame) = rx.recv().await {
            wr.write_all(&frame).await?;
            while let Ok(frame) = rx.try_recv() {
                wr.write_all(&frame).await?;
            }
            wr.flush().await?;
        }
        Ok::<_, ConnError>(())
    };
    let reader = async {
        loop {
            let len = rd.read_u32_le().await? as usize;
            if len > MAX_FRAME {
                return Err(ConnError::Protocol(format!("answer of {len} bytes")));
            }
            let mut buf = bytes::BytesMut::zeroed(len);
            rd.read_exact(&mut buf).await?;
            let (id, answer) = wire::decode_answer(buf.freeze())
                .map_err(|e| ConnError::Protocol(e.to_string()))?;
            conn.complete(id, answer);
        }
    };
    tokio::select! {
        r = writer => r,
        r = reader => r,
        () = conn.stop.notified() => Ok(()),
    }
}

async fn connect(node: &NodeAddr, volume: &str) -> Result<TcpStream, ConnError> {
    let mut stream = TcpStream::connect(&node.addr).await?;
    stream.set_nodelay(true)?;
    let hello = Hello {
        nonce: auth::nonce()?,
        volume: volume.to_owned(),
    };
    stream.write_all(&hello.encode()).await?;
    let challenge = Challenge::decode(read_small_frame(&mut stream).await?)?;
    if !challenge.check(&node.secret, &hello) {
        return Err(AuthError::BadProof.into());
    }
    stream
        .write_all(&auth::client_proof(&node.secret, &hello, &challenge))
        .await?;
    auth::decode_verdict(read_small_frame(&mut stream).await?)?;
    Ok(stream)
}

impl Drop for RemoteReplica {
    fn drop(&mut self) {
        // The connection's task holds the connection; tell it to hang up.
        if let Some(conn) = self.conn.lock().take() {
            conn.close();
        }
    }
}

impl Replica for RemoteReplica {
    fn describe(&self) -> String {
        format!("tcp://{}/{}", self.node.addr, self.volume)
    }

    fn node_address(&self) -> Option<String> {
        Some(self.node.addr.clone())
    }

    fn can_link_to(&self, target: &dyn Replica) -> bool {
        target.node_address().as_deref() == Some(self.node.addr.as_str())
    }

    fn link_snapshot(
        &self,
        id: SnapshotId,
        size: u64,
        target: Arc<dyn Replica>,
    ) -> Pending<CloneReport> {
        if !self.can_link_to(target.as_ref()) {
            return Pending::ready(Err(ReplicaFault::Unsupported(
                "a linked clone onto another machine",
            )));
        }
        target.link_from_node_volume(&self.volume, id, size)
    }

    fn link_from_node_volume(
        &self,
        source: &str,
        id: SnapshotId,
        size: u64,
    ) -> Pending<CloneReport> {
        self.call(
            Request::LinkFrom {
                source: source.to_owned(),
                snapshot: id,
                size,
            },
            |a| match a {
                Answer::Linked(r) => Some(r),
                _ => None,
            },
        )
    }

    fn format(&self, size: u64, geometry: Geometry, sealed: bool) -> Pending<()> {
        self.call(
            Request::Format {
                size,
                geometry,
                sealed,
            },
            done,
        )
    }

    fn info(&self) -> Pending<ReplicaInfo> {
        self.call(Request::Info, |a| match a {
            Answer::Info(i) => Some(i),
            _ => None,
        })
    }

    fn write(&self, offset: u64, data: Bytes, generation: u64) -> Pending<()> {
        // Pieces that fit a frame; each block is still old-or-new on its own, which is all
        // a write promises until it is acknowledged.
        let pieces = (0..data.len())
            .step_by(PIECE)
            .map(|at| {
                let piece = data.slice(at..data.len().min(at + PIECE));
                self.call(
                    Request::Write {
                        offset: offset + at as u64,
                        generation,
                        data: piece,
                    },
                    done,
                )
            })
            .collect();
        join(pieces, |_| ())
    }

    fn write_zeroes(&self, offset: u64, len: u64, generation: u64) -> Pending<()> {
        self.call(
            Request::WriteZeroes {
                offset,
                len,
                generation,
            },
            done,
        )
    }

    fn write_raw(&self, first: BlockIndex, blocks: Vec<RawBlock>) -> Pending<()> {
        let block_len = blocks
            .iter()
            .find_map(|b| b.data.as_ref().map(|d| d.len()))
            .unwrap_or(1)
            .max(1);
        let per_piece = (PIECE / block_len).max(1);
        let mut pieces = Vec::new();
        let mut at = first.0;
        let mut blocks = blocks.into_iter().peekable();
        while blocks.peek().is_some() {
            let piece: Vec<RawBlock> = blocks.by_ref().take(per_piece).collect();
            let n = piece.len() as u64;
            pieces.push(self.call(
                Request::WriteRaw {
                    first: BlockIndex(at),
                    blocks: piece,
                },
                done,
            ));
            at += n;
        }
        join(pieces, |_| ())
    }

    fn read(&self, view: View, offset: u64, len: u64) -> Pending<Bytes> {
        if len > tripod_engine::MAX_READ_ALLOC {
            // The same refusal a local replica gives (it knows the size; 0 stands for
            // "not asked"): the caller's mistake, not this replica's fault.
            return Pending::ready(Err(ReplicaFault::Engine(
                tripod_engine::EngineError::OutOfRange {
                    offset,
                    len,
                    size: 0,
                },
            )));
        }
        let piece = PIECE as u64;
        let pieces: Vec<Pending<Bytes>> = (0..len.max(1))
            .step_by(PIECE)
            .map(|at| {
                self.call(
                    Request::Read {
                        view: view.clone(),
                        offset: offset + at,
                        len: len.min(at + piece) - at,
                    },
                    |a| match a {
                        Answer::Data(d) => Some(d),
                        _ => None,
                    },
                )
            })
            .collect();
        join(pieces, |parts| match <[Bytes; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => Bytes::from(parts.concat()),
        })
    }

    fn write_sealed(
        &self,
        offset: u64,
        data: Bytes,
        generation: u64,
        seals: Arc<[Seal]>,
    ) -> Pending<()> {
        // Pieces of whole blocks, each with its blocks' seals (a count the node's store
        // checks against the data).
        let bs = if seals.is_empty() {
            data.len().max(1)
        } else {
            (data.len() / seals.len()).max(1)
        };
        let per_piece = (PIECE / bs).max(1);
        let pieces = seals
            .chunks(per_piece)
            .enumerate()
            .map(|(i, piece_seals)| {
                let at = i * per_piece * bs;
                let end = data.len().min(at + piece_seals.len() * bs);
                self.call(
                    Request::WriteSealed {
                        offset: offset + at as u64,
                        generation,
                        data: data.slice(at.min(end)..end),
                        seals: piece_seals.to_vec(),
                    },
                    done,
                )
            })
            .collect();
        join(pieces, |_| ())
    }

    fn read_sealed(&self, view: View, offset: u64, len: u64) -> Pending<SealedRead> {
        if len > tripod_engine::MAX_READ_ALLOC {
            return Pending::ready(Err(ReplicaFault::Engine(
                tripod_engine::EngineError::OutOfRange {
                    offset,
                    len,
                    size: 0,
                },
            )));
        }
        // PIECE is a multiple of every block size, so pieces start on block boundaries.
        let piece = PIECE as u64;
        let pieces: Vec<Pending<SealedRead>> = (0..len.max(1))
            .step_by(PIECE)
            .map(|at| {
                self.call(
                    Request::ReadSealed {
                        view: view.clone(),
                        offset: offset + at,
                        len: len.min(at + piece) - at,
                    },
                    |a| match a {
                        Answer::Sealed(r) => Some(r),
                        _ => None,
                    },
                )
            })
            .collect();
        join(pieces, |parts| match <[SealedRead; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => {
                let data: Vec<&[u8]> = parts.iter().map(|p| &p.data[..]).collect();
                SealedRead {
                    data: Bytes::from(data.concat()),
                    seals: parts.iter().flat_map(|p| p.seals.clone()).collect(),
                }
            }
        })
    }

    fn flush(&self) -> Pending<()> {
        self.call(Request::Flush, done)
    }

    fn snapshot(&self, id: SnapshotId, size: Option<u64>) -> Pending<()> {
        self.call(Request::Snapshot { id, size }, done)
    }

    fn delete_snapshot(&self, id: SnapshotId) -> Pending<()> {
        self.call(Request::DeleteSnapshot(id), done)
    }

    fn rollback(&self, id: SnapshotId) -> Pending<()> {
        self.call(Request::Rollback(id), done)
    }

    fn expand(&self, size: u64) -> Pending<()> {
        self.call(Request::Expand(size), done)
    }

    fn verify(&self) -> Pending<VerifyReport> {
        self.call(Request::Verify, |a| match a {
            Answer::Verify(r) => Some(r),
            _ => None,
        })
    }

    fn view_chunks(&self, view: View) -> Pending<Vec<ChunkIndex>> {
        self.call(Request::ViewChunks(view), |a| match a {
            Answer::Chunks(c) => Some(c),
            _ => None,
        })
    }

    fn chunk_summary(&self, view: View, chunk: ChunkIndex) -> Pending<Vec<BlockInfo>> {
        self.call(Request::ChunkSummary { view, chunk }, |a| match a {
            Answer::Summary(s) => Some(s),
            _ => None,
        })
    }

    fn repair(&self, view: View, block: BlockIndex, data: Bytes) -> Pending<bool> {
        self.call(Request::Repair { view, block, data }, |a| match a {
            Answer::Repaired(r) => Some(r),
            _ => None,
        })
    }

    fn load_set_state(&self) -> Pending<Option<Bytes>> {
        self.call(Request::LoadSetState, |a| match a {
            Answer::Data(d) => Some(Some(d)),
            Answer::NoData => Some(None),
            _ => None,
        })
    }

    fn store_set_state(&self, state: Bytes) -> Pending<()> {
        self.call(Request::StoreSetState(state), done)
    }

    fn reconnect(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        // A fresh connection whose first request fences the older ones on the node.
        let fresh = self.open();
        let old = self.conn.lock().replace(fresh.clone());
        if let Some(old) = old {
            old.close();
        }
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.call_on(&fresh, Request::Reconnect { timeout_ms }, done)
            .wait(timeout + CONNECT_TIMEOUT)
    }

    fn discard(&self, timeout: Duration) -> Result<(), ReplicaFault> {
        // The node removes the copy and forgets it; a fresh connection finds it empty.
        self.call(Request::Destroy, done).wait(timeout)?;
        self.reconnect(timeout)
    }

    fn check_health(&self) -> Result<(), ReplicaFault> {
        // Unreachable answers `Disconnected` or `Timeout` (the set resyncs the replica when it
        // is back); a node saying the copy is gone answers that (the set rebuilds it).
        self.call(Request::Health, done).wait(HEALTH_TIMEOUT)
    }
}
