//! The replica-node wire format: length-prefixed frames carrying one request or one answer.
//!
//! Every frame is `len: u32 LE` then `len` bytes. After the handshake (see
//! [`super::auth`]) a request frame is `id: u64, op: u8, body` and an answer frame is
//! `id: u64, status: u8 (0 ok, 1 fault), body`; answers may come in any order. Integers are
//! little-endian, strings `u16` length + UTF-8, byte strings `u32` length + bytes. Decoding
//! is pure and total: any byte string yields a value or a [`WireError`], never a panic, and
//! no allocation is larger than the frame it came from. `replication/FORMAT.md` has the
//! table of operations.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tripod_engine::{
    BadBlock, BlockContent, BlockIndex, BlockInfo, ChunkIndex, Geometry, LayerId, RawBlock,
    SnapshotId, SnapshotInfo, VerifyReport, View,
};

use crate::error::ReplicaFault;
use crate::replica::ReplicaInfo;

/// Largest frame either side accepts: the largest write the set sends (32 MiB for NBD, a
/// chunk for resync) or set state (64 MiB) plus headers.
pub const MAX_FRAME: usize = (64 << 20) + 4096;

/// Largest read a request may ask for (the answer must fit in a frame).
pub const MAX_READ: u64 = 64 << 20;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ended before a field did.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes were left over after the last field.
    #[error("{0} trailing bytes in the frame")]
    Trailing(usize),
    /// An unknown operation, status or tag.
    #[error("unknown {what} {value}")]
    Unknown {
        /// Which kind of tag.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A field's value is not allowed (bad UTF-8, bad snapshot id, oversized read).
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A frame longer than [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(u64),
}

/// One request to a replica node: the [`crate::Replica`] operations plus the node's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Replica::format`.
    Format {
        /// Volume size.
        size: u64,
        /// Geometry.
        geometry: Geometry,
    },
    /// `Replica::info`.
    Info,
    /// `Replica::write`.
    Write {
        /// Byte offset.
        offset: u64,
        /// Write generation.
        generation: u64,
        /// Payload.
        data: Bytes,
    },
    /// `Replica::write_zeroes`.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Write generation.
        generation: u64,
    },
    /// `Replica::write_raw`.
    WriteRaw {
        /// First block.
        first: BlockIndex,
        /// Blocks from `first` on.
        blocks: Vec<RawBlock>,
    },
    /// `Replica::read`.
    Read {
        /// Which view.
        view: View,
        /// Byte offset.
        offset: u64,
        /// Length (at most [`MAX_READ`]).
        len: u64,
    },
    /// `Replica::flush`.
    Flush,
    /// `Replica::snapshot`.
    Snapshot {
        /// Snapshot id.
        id: SnapshotId,
        /// Recorded size, if smaller than the volume.
        size: Option<u64>,
    },
    /// `Replica::delete_snapshot`.
    DeleteSnapshot(SnapshotId),
    /// `Replica::rollback`.
    Rollback(SnapshotId),
    /// `Replica::expand`.
    Expand(u64),
    /// `Replica::verify`.
    Verify,
    /// `Replica::view_chunks`.
    ViewChunks(View),
    /// `Replica::chunk_summary`.
    ChunkSummary {
        /// Which view.
        view: View,
        /// Which chunk.
        chunk: ChunkIndex,
    },
    /// `Replica::repair`.
    Repair {
        /// Which view.
        view: View,
        /// Which block.
        block: BlockIndex,
        /// Good content.
        data: Bytes,
    },
    /// `Replica::load_set_state`.
    LoadSetState,
    /// `Replica::store_set_state`.
    StoreSetState(Bytes),
    /// `Replica::reconnect` on the node's copy: waits (at most this many ms) for earlier
    /// operations, from any connection, and fences every older connection of this volume.
    Reconnect {
        /// Wait limit in milliseconds.
        timeout_ms: u64,
    },
    /// `Replica::check_health`.
    Health,
    /// Removes the volume's copy from the node (volume deletion).
    Destroy,
    /// Names of the volumes the node holds.
    List,
}

/// A successful answer; which variant depends on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// No value (writes, flush, snapshot ops, …).
    Done,
    /// `Info`.
    Info(ReplicaInfo),
    /// `Read`, or `LoadSetState` when present.
    Data(Bytes),
    /// `LoadSetState` when absent.
    NoData,
    /// `Verify`.
    Verify(VerifyReport),
    /// `ViewChunks`.
    Chunks(Vec<ChunkIndex>),
    /// `ChunkSummary`.
    Summary(Vec<BlockInfo>),
    /// `Repair`.
    Repaired(bool),
    /// `List`.
    Names(Vec<String>),
}

/// A decoded answer frame.
pub type AnswerFrame = (u64, Result<Answer, ReplicaFault>);

// ---------------------------------------------------------------------------------------
// Reading

/// A cursor over one frame that never reads past its end.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            Err(WireError::Truncated(what))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16_le())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32_le())
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64_le())
    }

    /// `n` bytes, sharing the frame's buffer.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, WireError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Bytes, WireError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, WireError> {
        let n = self.u16(what)? as usize;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| WireError::Invalid(what))
    }

    /// A count of items each at least `min_size` bytes long, checked against what is left
    /// so it can size an allocation.
    fn count(&mut self, min_size: usize, what: &'static str) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.remaining() {
            return Err(WireError::Truncated(what));
        }
        Ok(n)
    }

    fn snapshot_id(&mut self) -> Result<SnapshotId, WireError> {
        let s = self.string("snapshot id")?;
        SnapshotId::new(s).map_err(|_| WireError::Invalid("snapshot id"))
    }

    fn view(&mut self) -> Result<View, WireError> {
        match self.u8("view")? {
            0 => Ok(View::Head),
            1 => Ok(View::Snapshot(self.snapshot_id()?)),
            t => Err(WireError::Unknown {
                what: "view",
                value: t.into(),
            }),
        }
    }

    fn geometry(&mut self) -> Result<Geometry, WireError> {
        Ok(Geometry {
            block_size: self.u32("block size")?,
            chunk_blocks: self.u32("chunk blocks")?,
        })
    }

    fn option_u64(&mut self, what: &'static str) -> Result<Option<u64>, WireError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.u64(what)?)),
            t => Err(WireError::Unknown {
                what,
                value: t.into(),
            }),
        }
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing

pub(crate) fn put_string(out: &mut BytesMut, s: &str) {
    // Every string sent is short (ids, names, messages); longer ones are cut on a char
    // boundary rather than sent with a wrong length.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.get(..end).unwrap_or_default();
    out.put_u16_le(u16::try_from(cut.len()).unwrap_or(0));
    out.put_slice(cut.as_bytes());
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_len(out, b.len());
    out.put_slice(b);
}

fn put_view(out: &mut BytesMut, view: &View) {
    match view {
        View::Head => out.put_u8(0),
        View::Snapshot(id) => {
            out.put_u8(1);
            put_string(out, id.as_str());
        }
    }
}

fn put_option_u64(out: &mut BytesMut, v: Option<u64>) {
    match v {
        None => out.put_u8(0),
        Some(v) => {
            out.put_u8(1);
            out.put_u64_le(v);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests

const OP_FORMAT: u8 = 1;
const OP_INFO: u8 = 2;
const OP_WRITE: u8 = 3;
const OP_WRITE_ZEROES: u8 = 4;
const OP_WRITE_RAW: u8 = 5;
const OP_READ: u8 = 6;
const OP_FLUSH: u8 = 7;
const OP_SNAPSHOT: u8 = 8;
const OP_DELETE_SNAPSHOT: u8 = 9;
const OP_ROLLBACK: u8 = 10;
const OP_EXPAND: u8 = 11;
const OP_VERIFY: u8 = 12;
const OP_VIEW_CHUNKS: u8 = 13;
const OP_CHUNK_SUMMARY: u8 = 14;
const OP_REPAIR: u8 = 15;
const OP_LOAD_SET_STATE: u8 = 16;
const OP_STORE_SET_STATE: u8 = 17;
const OP_RECONNECT: u8 = 18;
const OP_HEALTH: u8 = 19;
const OP_DESTROY: u8 = 20;
const OP_LIST: u8 = 21;

/// Encodes request `id` as one frame (length prefix included).
pub fn encode_request(id: u64, req: &Request) -> Bytes {
    let payload = match req {
        Request::Write { data, .. } | Request::Repair { data, .. } => data.len(),
        Request::StoreSetState(d) => d.len(),
        Request::WriteRaw { blocks, .. } => blocks
            .iter()
            .map(|b| 13 + b.data.as_ref().map_or(0, |d| d.len()))
            .sum(),
        _ => 0,
    };
    let mut out = BytesMut::with_capacity(64 + payload);
    out.put_u32_le(0);
    out.put_u64_le(id);
    match req {
        Request::Format { size, geometry } => {
            out.put_u8(OP_FORMAT);
            out.put_u64_le(*size);
            out.put_u32_le(geometry.block_size);
            out.put_u32_le(geometry.chunk_blocks);
        }
        Request::Info => out.put_u8(OP_INFO),
        Request::Write {
            offset,
            generation,
            data,
        } => {
            out.put_u8(OP_WRITE);
            out.put_u64_le(*offset);
            out.put_u64_le(*generation);
            put_bytes(&mut out, data);
        }
        Request::WriteZeroes {
            offset,
            len,
            generation,
        } => {
            out.put_u8(OP_WRITE_ZEROES);
            out.put_u64_le(*offset);
            out.put_u64_le(*len);
            out.put_u64_le(*generation);
        }
        Request::WriteRaw { first, blocks } => {
            out.put_u8(OP_WRITE_RAW);
            out.put_u64_le(first.0);
            put_len(&mut out, blocks.len());
            for b in blocks {
                out.put_u64_le(b.generation);
                match &b.data {
                    None => out.put_u8(0),
                    Some(d) => {
                        out.put_u8(1);
                        put_bytes(&mut out, d);
                    }
                }
            }
        }
        Request::Read { view, offset, len } => {
            out.put_u8(OP_READ);
            put_view(&mut out, view);
            out.put_u64_le(*offset);
            out.put_u64_le(*len);
        }
        Request::Flush => out.put_u8(OP_FLUSH),
        Request::Snapshot { id, size } => {
            out.put_u8(OP_SNAPSHOT);
            put_string(&mut out, id.as_str());
            put_option_u64(&mut out, *size);
        }
        Request::DeleteSnapshot(id) => {
            out.put_u8(OP_DELETE_SNAPSHOT);
            put_string(&mut out, id.as_str());
        }
        Request::Rollback(id) => {
            out.put_u8(OP_ROLLBACK);
            put_string(&mut out, id.as_str());
        }
        Request::Expand(size) => {
            out.put_u8(OP_EXPAND);
            out.put_u64_le(*size);
        }
        Request::Verify => out.put_u8(OP_VERIFY),
        Request::ViewChunks(view) => {
            out.put_u8(OP_VIEW_CHUNKS);
            put_view(&mut out, view);
        }
        Request::ChunkSummary { view, chunk } => {
            out.put_u8(OP_CHUNK_SUMMARY);
            put_view(&mut out, view);
            out.put_u64_le(chunk.0);
        }
        Request::Repair { view, block, data } => {
            out.put_u8(OP_REPAIR);
            put_view(&mut out, view);
            out.put_u64_le(block.0);
            put_bytes(&mut out, data);
        }
        Request::LoadSetState => out.put_u8(OP_LOAD_SET_STATE),
        Request::StoreSetState(state) => {
            out.put_u8(OP_STORE_SET_STATE);
            put_bytes(&mut out, state);
        }
        Request::Reconnect { timeout_ms } => {
            out.put_u8(OP_RECONNECT);
            out.put_u64_le(*timeout_ms);
        }
        Request::Health => out.put_u8(OP_HEALTH),
        Request::Destroy => out.put_u8(OP_DESTROY),
        Request::List => out.put_u8(OP_LIST),
    }
    seal(out)
}

/// Fills in the length prefix of a frame built after a zero placeholder.
pub(crate) fn seal(mut out: BytesMut) -> Bytes {
    // Frames are far below 4 GiB (`MAX_FRAME`; longer payloads go in pieces).
    let len = u32::try_from(out.len().saturating_sub(4)).unwrap_or(u32::MAX);
    if let Some(prefix) = out.get_mut(..4) {
        prefix.copy_from_slice(&len.to_le_bytes());
    }
    out.freeze()
}

/// Writes a list's length. Lists are bounded by the frame size, far below `u32::MAX`; a
/// longer one would be cut short by the receiver's checks, never read past.
fn put_len(out: &mut BytesMut, n: usize) {
    out.put_u32_le(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Decodes a request frame body (without its length prefix).
pub fn decode_request(frame: Bytes) -> Result<(u64, Request), WireError> {
    let mut r = Reader::new(frame);
    let id = r.u64("request id")?;
    let op = r.u8("operation")?;
    let req = match op {
        OP_FORMAT => Request::Format {
            size: r.u64("size")?,
            geometry: r.geometry()?,
        },
        OP_INFO => Request::Info,
        OP_WRITE => Request::Write {
            offset: r.u64("offset")?,
            generation: r.u64("generation")?,
            data: r.bytes("data")?,
        },
        OP_WRITE_ZEROES => Request::WriteZeroes {
            offset: r.u64("offset")?,
            len: r.u64("length")?,
            generation: r.u64("generation")?,
        },
        OP_WRITE_RAW => {
            let first = BlockIndex(r.u64("first block")?);
            let n = r.count(9, "raw blocks")?;
            let mut blocks = Vec::with_capacity(n);
            for _ in 0..n {
                let generation = r.u64("generation")?;
                let data = match r.u8("raw block")? {
                    0 => None,
                    1 => Some(r.bytes("raw block")?),
                    t => {
                        return Err(WireError::Unknown {
                            what: "raw block",
                            value: t.into(),
                        })
                    }
                };
                blocks.push(RawBlock { data, generation });
            }
            Request::WriteRaw { first, blocks }
        }
        OP_READ => {
            let view = r.view()?;
            let offset = r.u64("offset")?;
            let len = r.u64("length")?;
            if len > MAX_READ {
                return Err(WireError::Invalid("read length"));
            }
            Request::Read { view, offset, len }
        }
        OP_FLUSH => Request::Flush,
        OP_SNAPSHOT => Request::Snapshot {
            id: r.snapshot_id()?,
            size: r.option_u64("snapshot size")?,
        },
        OP_DELETE_SNAPSHOT => Request::DeleteSnapshot(r.snapshot_id()?),
        OP_ROLLBACK => Request::Rollback(r.snapshot_id()?),
        OP_EXPAND => Request::Expand(r.u64("size")?),
        OP_VERIFY => Request::Verify,
        OP_VIEW_CHUNKS => Request::ViewChunks(r.view()?),
        OP_CHUNK_SUMMARY => Request::ChunkSummary {
            view: r.view()?,
            chunk: ChunkIndex(r.u64("chunk")?),
        },
        OP_REPAIR => Request::Repair {
            view: r.view()?,
            block: BlockIndex(r.u64("block")?),
            data: r.bytes("data")?,
        },
        OP_LOAD_SET_STATE => Request::LoadSetState,
        OP_STORE_SET_STATE => Request::StoreSetState(r.bytes("set state")?),
        OP_RECONNECT => Request::Reconnect {
            timeout_ms: r.u64("timeout")?,
        },
        OP_HEALTH => Request::Health,
        OP_DESTROY => Request::Destroy,
        OP_LIST => Request::List,
        op => {
            return Err(WireError::Unknown {
                what: "operation",
                value: op.into(),
            })
        }
    };
    r.finish()?;
    Ok((id, req))
}

// ---------------------------------------------------------------------------------------
// Answers

const ANS_DONE: u8 = 0;
const ANS_INFO: u8 = 1;
const ANS_DATA: u8 = 2;
const ANS_NO_DATA: u8 = 3;
const ANS_VERIFY: u8 = 4;
const ANS_CHUNKS: u8 = 5;
const ANS_SUMMARY: u8 = 6;
const ANS_REPAIRED: u8 = 7;
const ANS_NAMES: u8 = 8;
const ANS_FAULT: u8 = 255;

/// Encodes the answer to request `id` as one frame (length prefix included).
pub fn encode_answer(id: u64, answer: &Result<Answer, ReplicaFault>) -> Bytes {
    let payload = match answer {
        Ok(Answer::Data(d)) => d.len(),
        _ => 0,
    };
    let mut out = BytesMut::with_capacity(64 + payload);
    out.put_u32_le(0);
    out.put_u64_le(id);
    match answer {
        Ok(Answer::Done) => out.put_u8(ANS_DONE),
        Ok(Answer::Info(info)) => {
            out.put_u8(ANS_INFO);
            out.put_u64_le(info.size);
            out.put_u32_le(info.geometry.block_size);
            out.put_u32_le(info.geometry.chunk_blocks);
            out.put_u64_le(info.generation);
            put_len(&mut out, info.snapshots.len());
            for s in &info.snapshots {
                put_string(&mut out, s.id.as_str());
                out.put_u64_le(s.size);
                out.put_u64_le(s.created);
                out.put_u64_le(s.used_bytes);
            }
        }
        Ok(Answer::Data(d)) => {
            out.put_u8(ANS_DATA);
            put_bytes(&mut out, d);
        }
        Ok(Answer::NoData) => out.put_u8(ANS_NO_DATA),
        Ok(Answer::Verify(report)) => {
            out.put_u8(ANS_VERIFY);
            out.put_u64_le(report.blocks_checked);
            put_len(&mut out, report.bad.len());
            for b in &report.bad {
                out.put_u64_le(b.layer.0);
                match &b.snapshot {
                    None => out.put_u8(0),
                    Some(id) => {
                        out.put_u8(1);
                        put_string(&mut out, id.as_str());
                    }
                }
                out.put_u64_le(b.block.0);
                put_len(&mut out, b.views.len());
                for v in &b.views {
                    put_view(&mut out, v);
                }
            }
        }
        Ok(Answer::Chunks(chunks)) => {
            out.put_u8(ANS_CHUNKS);
            put_len(&mut out, chunks.len());
            for c in chunks {
                out.put_u64_le(c.0);
            }
        }
        Ok(Answer::Summary(blocks)) => {
            out.put_u8(ANS_SUMMARY);
            put_len(&mut out, blocks.len());
            for b in blocks {
                match b.content {
                    BlockContent::Hole => out.put_u8(0),
                    BlockContent::Zero => out.put_u8(1),
                    BlockContent::Data(crc) => {
                        out.put_u8(2);
                        out.put_u32_le(crc);
                    }
                }
                out.put_u64_le(b.generation);
            }
        }
        Ok(Answer::Repaired(done)) => {
            out.put_u8(ANS_REPAIRED);
            out.put_u8(u8::from(*done));
        }
        Ok(Answer::Names(names)) => {
            out.put_u8(ANS_NAMES);
            put_len(&mut out, names.len());
            for n in names {
                put_string(&mut out, n);
            }
        }
        Err(fault) => {
            out.put_u8(ANS_FAULT);
            super::fault::put_fault(&mut out, fault);
        }
    }
    seal(out)
}

/// Decodes an answer frame body (without its length prefix).
pub fn decode_answer(frame: Bytes) -> Result<AnswerFrame, WireError> {
    let mut r = Reader::new(frame);
    let id = r.u64("request id")?;
    let answer = match r.u8("answer")? {
        ANS_DONE => Ok(Answer::Done),
        ANS_INFO => {
            let size = r.u64("size")?;
            let geometry = r.geometry()?;
            let generation = r.u64("generation")?;
            let n = r.count(26, "snapshots")?;
            let mut snapshots = Vec::with_capacity(n);
            for _ in 0..n {
                snapshots.push(SnapshotInfo {
                    id: r.snapshot_id()?,
                    size: r.u64("snapshot size")?,
                    created: r.u64("snapshot time")?,
                    used_bytes: r.u64("snapshot usage")?,
                });
            }
            Ok(Answer::Info(ReplicaInfo {
                size,
                geometry,
                generation,
                snapshots,
            }))
        }
        ANS_DATA => Ok(Answer::Data(r.bytes("data")?)),
        ANS_NO_DATA => Ok(Answer::NoData),
        ANS_VERIFY => {
            let blocks_checked = r.u64("blocks checked")?;
            let n = r.count(21, "bad blocks")?;
            let mut bad = Vec::with_capacity(n);
            for _ in 0..n {
                let layer = LayerId(r.u64("layer")?);
                let snapshot = match r.u8("bad block snapshot")? {
                    0 => None,
                    1 => Some(r.snapshot_id()?),
                    t => {
                        return Err(WireError::Unknown {
                            what: "bad block snapshot",
                            value: t.into(),
                        })
                    }
                };
                let block = BlockIndex(r.u64("block")?);
                let nv = r.count(1, "views")?;
                let mut views = Vec::with_capacity(nv);
                for _ in 0..nv {
                    views.push(r.view()?);
                }
                bad.push(BadBlock {
                    layer,
                    snapshot,
                    block,
                    views,
                });
            }
            Ok(Answer::Verify(VerifyReport {
                blocks_checked,
                bad,
            }))
        }
        ANS_CHUNKS => {
            let n = r.count(8, "chunks")?;
            let mut chunks = Vec::with_capacity(n);
            for _ in 0..n {
                chunks.push(ChunkIndex(r.u64("chunk")?));
            }
            Ok(Answer::Chunks(chunks))
        }
        ANS_SUMMARY => {
            let n = r.count(9, "block summaries")?;
            let mut blocks = Vec::with_capacity(n);
            for _ in 0..n {
                let content = match r.u8("block content")? {
                    0 => BlockContent::Hole,
                    1 => BlockContent::Zero,
                    2 => BlockContent::Data(r.u32("crc")?),
                    t => {
                        return Err(WireError::Unknown {
                            what: "block content",
                            value: t.into(),
                        })
                    }
                };
                blocks.push(BlockInfo {
                    content,
                    generation: r.u64("generation")?,
                });
            }
            Ok(Answer::Summary(blocks))
        }
        ANS_REPAIRED => match r.u8("repaired")? {
            0 => Ok(Answer::Repaired(false)),
            1 => Ok(Answer::Repaired(true)),
            t => {
                return Err(WireError::Unknown {
                    what: "repaired flag",
                    value: t.into(),
                })
            }
        },
        ANS_NAMES => {
            let n = r.count(2, "names")?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string("name")?);
            }
            Ok(Answer::Names(names))
        }
        ANS_FAULT => Err(super::fault::read_fault(&mut r)?),
        t => {
            return Err(WireError::Unknown {
                what: "answer",
                value: t.into(),
            })
        }
    };
    r.finish()?;
    Ok((id, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tripod_engine::EngineError;

    fn sid(s: &str) -> SnapshotId {
        SnapshotId::new(s).unwrap()
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Format {
                size: 1 << 30,
                geometry: Geometry::default(),
            },
            Request::Info,
            Request::Write {
                offset: 4096,
                generation: 7,
                data: Bytes::from(vec![5u8; 10_000]),
            },
            Request::WriteZeroes {
                offset: 1,
                len: 2,
                generation: 3,
            },
            Request::WriteRaw {
                first: BlockIndex(9),
                blocks: vec![
                    RawBlock {
                        data: Some(Bytes::from(vec![1u8; 4096])),
                        generation: 4,
                    },
                    RawBlock {
                        data: None,
                        generation: 5,
                    },
                ],
            },
            Request::Read {
                view: View::Snapshot(sid("snap-1")),
                offset: 8192,
                len: 4096,
            },
            Request::Flush,
            Request::Snapshot {
                id: sid("a"),
                size: Some(12),
            },
            Request::Snapshot {
                id: sid("b"),
                size: None,
            },
            Request::DeleteSnapshot(sid("a")),
            Request::Rollback(sid("b")),
            Request::Expand(1 << 40),
            Request::Verify,
            Request::ViewChunks(View::Head),
            Request::ChunkSummary {
                view: View::Head,
                chunk: ChunkIndex(3),
            },
            Request::Repair {
                view: View::Snapshot(sid("x")),
                block: BlockIndex(1),
                data: Bytes::from_static(b"abcd"),
            },
            Request::LoadSetState,
            Request::StoreSetState(Bytes::from_static(b"state")),
            Request::Reconnect { timeout_ms: 5000 },
            Request::Health,
            Request::Destroy,
            Request::List,
        ]
    }

    fn answers() -> Vec<Result<Answer, ReplicaFault>> {
        vec![
            Ok(Answer::Done),
            Ok(Answer::Info(ReplicaInfo {
                size: 1 << 30,
                geometry: Geometry::default(),
                generation: 99,
                snapshots: vec![SnapshotInfo {
                    id: sid("s"),
                    size: 1 << 20,
                    created: 1_700_000_000,
                    used_bytes: 4096,
                }],
            })),
            Ok(Answer::Data(Bytes::from_static(b"data"))),
            Ok(Answer::NoData),
            Ok(Answer::Verify(VerifyReport {
                blocks_checked: 10,
                bad: vec![BadBlock {
                    layer: LayerId(2),
                    snapshot: Some(sid("s")),
                    block: BlockIndex(3),
                    views: vec![View::Head, View::Snapshot(sid("s"))],
                }],
            })),
            Ok(Answer::Chunks(vec![ChunkIndex(0), ChunkIndex(5)])),
            Ok(Answer::Summary(vec![
                BlockInfo {
                    content: BlockContent::Hole,
                    generation: 0,
                },
                BlockInfo {
                    content: BlockContent::Zero,
                    generation: 1,
                },
                BlockInfo {
                    content: BlockContent::Data(0xdead_beef),
                    generation: 2,
                },
            ])),
            Ok(Answer::Repaired(true)),
            Ok(Answer::Names(vec!["a".into(), "b".into()])),
            Err(ReplicaFault::Empty),
            Err(ReplicaFault::Disconnected),
            Err(ReplicaFault::Engine(EngineError::ChecksumMismatch {
                block: BlockIndex(4),
                layer: LayerId(1),
                expected: 1,
                actual: 2,
            })),
            Err(ReplicaFault::Engine(EngineError::OutOfRange {
                offset: 1,
                len: 2,
                size: 3,
            })),
            Err(ReplicaFault::Engine(EngineError::InvalidSize {
                size: 0,
                reason: "must not be zero",
            })),
            Err(ReplicaFault::Engine(EngineError::SnapshotNotFound(sid(
                "gone",
            )))),
            Err(ReplicaFault::Engine(EngineError::Io {
                context: "writing".into(),
                source: std::io::Error::from_raw_os_error(5),
            })),
            Err(ReplicaFault::Engine(EngineError::NoSpace {
                context: "writing".into(),
                source: std::io::Error::from_raw_os_error(28),
            })),
        ]
    }

    #[test]
    fn requests_round_trip() {
        for (i, req) in requests().into_iter().enumerate() {
            let frame = encode_request(i as u64, &req);
            let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4);
            assert_eq!(decode_request(frame.slice(4..)).unwrap(), (i as u64, req));
        }
    }

    #[test]
    fn answers_round_trip() {
        for (i, answer) in answers().into_iter().enumerate() {
            let frame = encode_answer(i as u64, &answer);
            let (id, back) = decode_answer(frame.slice(4..)).unwrap();
            assert_eq!(id, i as u64);
            match (&answer, &back) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                // Faults compare by what a reader sees (and the set matches on).
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                _ => panic!("{answer:?} came back as {back:?}"),
            }
        }
        let enospc = encode_answer(
            1,
            &Err(ReplicaFault::Engine(EngineError::Io {
                context: "x".into(),
                source: std::io::Error::from_raw_os_error(28),
            })),
        );
        match decode_answer(enospc.slice(4..)).unwrap().1 {
            Err(ReplicaFault::Engine(EngineError::Io { source, .. })) => {
                assert_eq!(source.raw_os_error(), Some(28))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_frames_are_errors_not_panics() {
        type Decode = fn(Bytes) -> bool;
        let req: Decode = |b| decode_request(b).is_ok();
        let ans: Decode = |b| decode_answer(b).is_ok();
        let mut frames: Vec<(Bytes, Decode)> = requests()
            .iter()
            .map(|r| (encode_request(1, r).slice(4..), req))
            .collect();
        frames.extend(
            answers()
                .iter()
                .map(|a| (encode_answer(1, a).slice(4..), ans)),
        );
        for (frame, decodes) in frames {
            // Every field is required: no strict prefix and no longer frame decodes.
            for cut in 0..frame.len() {
                assert!(!decodes(frame.slice(..cut)), "prefix of {cut} decoded");
            }
            let mut long = frame.to_vec();
            long.push(0);
            assert!(!decodes(Bytes::from(long)));
            // Flipped bits decode to something or to an error, never to a panic.
            for i in 0..frame.len().min(64) {
                for bit in 0..8 {
                    let mut b = frame.to_vec();
                    b[i] ^= 1 << bit;
                    let _ = decode_request(Bytes::from(b.clone()));
                    let _ = decode_answer(Bytes::from(b));
                }
            }
        }
        // A count that claims more items than the frame holds allocates nothing.
        let mut b = vec![0u8; 8];
        b.push(ANS_CHUNKS);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_answer(Bytes::from(b)),
            Err(WireError::Truncated("chunks"))
        ));
        // Reads larger than a frame can answer are refused at decode.
        let big = encode_request(
            1,
            &Request::Read {
                view: View::Head,
                offset: 0,
                len: MAX_READ + 1,
            },
        );
        assert_eq!(
            decode_request(big.slice(4..)),
            Err(WireError::Invalid("read length"))
        );
    }
}
