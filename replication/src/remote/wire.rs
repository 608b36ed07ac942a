//! The replica-node wire format after the handshake: length-prefixed frames, each one
//! request or one answer.
//!
//! ```text
//! len u32 | id u64 | control_len u32 | control (control_len bytes) | payload (the rest)
//! ```
//!
//! `control` is the message itself ([`Request`] or [`Answer`] without their bulk bytes) in
//! bincode 2 with fixed-width little-endian integers, decoded under a size limit; `payload`
//! carries the bulk bytes (write data, read data, a set state), whose length the control
//! part states, and is handed on as a slice of the frame, never copied. Decoding is total:
//! any byte string yields a value or a [`WireError`], never a panic, and no allocation is
//! larger than the frame it came from. `replication/FORMAT.md` has the messages.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tripod_engine::{
    BlockIndex, BlockInfo, BlockSeal, ChunkIndex, CloneReport, Geometry, RawBlock, Seal,
    SnapshotId, VerifyReport, View,
};

use super::fault::WireFault;
use crate::error::ReplicaFault;
use crate::replica::{ReplicaInfo, SealedRead};

/// Largest frame either side accepts: the largest write the set sends (32 MiB for NBD, a
/// chunk for resync) or set state (64 MiB) plus headers.
pub const MAX_FRAME: usize = (64 << 20) + 4096;

/// Largest read a request may ask for (the answer must fit in a frame).
pub const MAX_READ: u64 = 64 << 20;

/// `id u64` and `control_len u32`.
const HEADER: usize = 12;

/// The control parts' encoding: fixed-width little-endian integers (so every value has one
/// encoding and a frame re-encodes to itself), never reading or allocating past a frame.
const CONFIG: Configuration<LittleEndian, Fixint, Limit<MAX_FRAME>> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_limit::<MAX_FRAME>();

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ended before a field did.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes were left over after the last field.
    #[error("{0} trailing bytes in the frame")]
    Trailing(usize),
    /// A field's value is not allowed (bad UTF-8, bad snapshot id, oversized read, an
    /// unknown message).
    #[error("invalid {0}")]
    Invalid(String),
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
        /// Blocks carry seals (an encrypted volume's copy).
        sealed: bool,
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
    /// Makes this connection's (empty) copy a linked clone of snapshot `snapshot` of the
    /// node's copy of volume `source`, `size` bytes long (the engine's linked clone).
    LinkFrom {
        /// The source volume's name on this node.
        source: String,
        /// The snapshot.
        snapshot: SnapshotId,
        /// The new volume's size.
        size: u64,
    },
    /// `Replica::write_sealed`.
    WriteSealed {
        /// Byte offset.
        offset: u64,
        /// Write generation.
        generation: u64,
        /// Payload (whole blocks).
        data: Bytes,
        /// One seal per block.
        seals: Vec<Seal>,
    },
    /// `Replica::read_sealed`.
    ReadSealed {
        /// Which view.
        view: View,
        /// Byte offset.
        offset: u64,
        /// Length (at most [`MAX_READ`]).
        len: u64,
    },
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
    /// `LinkFrom`: files shared and files copied.
    Linked(CloneReport),
    /// `ReadSealed`.
    Sealed(SealedRead),
}

/// A decoded answer frame.
pub type AnswerFrame = (u64, Result<Answer, ReplicaFault>);

/// A request's control part; `len` fields say how many payload bytes belong to it. The
/// variants' order is the wire's tag order: append only.
#[derive(Debug, Serialize, Deserialize)]
enum RequestMsg {
    Format {
        size: u64,
        geometry: Geometry,
        sealed: bool,
    },
    Info,
    Write {
        offset: u64,
        generation: u64,
        len: u32,
    },
    WriteZeroes {
        offset: u64,
        len: u64,
        generation: u64,
    },
    WriteRaw {
        first: BlockIndex,
        blocks: Vec<RawHeader>,
    },
    Read {
        view: View,
        offset: u64,
        len: u64,
    },
    Flush,
    Snapshot {
        id: SnapshotId,
        size: Option<u64>,
    },
    DeleteSnapshot(SnapshotId),
    Rollback(SnapshotId),
    Expand(u64),
    Verify,
    ViewChunks(View),
    ChunkSummary {
        view: View,
        chunk: ChunkIndex,
    },
    Repair {
        view: View,
        block: BlockIndex,
        len: u32,
    },
    LoadSetState,
    StoreSetState {
        len: u32,
    },
    Reconnect {
        timeout_ms: u64,
    },
    Health,
    Destroy,
    List,
    LinkFrom {
        source: String,
        snapshot: SnapshotId,
        size: u64,
    },
    WriteSealed {
        offset: u64,
        generation: u64,
        len: u32,
        seals: Vec<Seal>,
    },
    ReadSealed {
        view: View,
        offset: u64,
        len: u64,
    },
}

/// One block of a raw write: its generation, its seal (zeros for unsealed copies) and, when
/// it holds data, the data's length in the payload (blocks' data follow each other there).
#[derive(Debug, Serialize, Deserialize)]
struct RawHeader {
    generation: u64,
    seal: Seal,
    len: Option<u32>,
}

/// An answer's control part (same rules as [`RequestMsg`]).
#[derive(Debug, Serialize, Deserialize)]
enum AnswerMsg {
    Done,
    Info(ReplicaInfo),
    Data {
        len: u32,
    },
    NoData,
    Verify(VerifyReport),
    Chunks(Vec<ChunkIndex>),
    Summary(Vec<BlockInfo>),
    Repaired(bool),
    Names(Vec<String>),
    Fault(WireFault),
    Linked {
        linked: u64,
        copied: u64,
    },
    Sealed {
        len: u32,
        seals: Vec<Option<BlockSeal>>,
    },
}

/// A payload length as the control part states it (payloads are at most a frame).
fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------
// Writing

/// A frame: the length prefix, `id`, the control part and the payload pieces.
fn frame(id: u64, control: &impl Serialize, payload: &[&[u8]]) -> Bytes {
    // Every message here encodes (no maps, no failing serializers); an empty control part
    // would be refused by the reader rather than misread.
    let control = bincode::serde::encode_to_vec(control, CONFIG).unwrap_or_default();
    let body: usize = payload.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(4 + HEADER + control.len() + body);
    out.put_u32_le(0);
    out.put_u64_le(id);
    out.put_u32_le(len32(&control));
    out.put_slice(&control);
    for p in payload {
        out.put_slice(p);
    }
    seal(out)
}

/// Fills in the length prefix of a frame built after a 4-byte placeholder.
pub(crate) fn seal(mut out: BytesMut) -> Bytes {
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    if let Some(prefix) = out.get_mut(..4) {
        prefix.copy_from_slice(&len.to_le_bytes());
    }
    out.freeze()
}

/// Encodes request `req` as a frame (with its length prefix).
pub fn encode_request(id: u64, req: &Request) -> Bytes {
    let one = |msg: RequestMsg| frame(id, &msg, &[]);
    match req {
        Request::Format {
            size,
            geometry,
            sealed,
        } => one(RequestMsg::Format {
            size: *size,
            geometry: *geometry,
            sealed: *sealed,
        }),
        Request::Info => one(RequestMsg::Info),
        Request::Write {
            offset,
            generation,
            data,
        } => frame(
            id,
            &RequestMsg::Write {
                offset: *offset,
                generation: *generation,
                len: len32(data),
            },
            &[data],
        ),
        Request::WriteZeroes {
            offset,
            len,
            generation,
        } => one(RequestMsg::WriteZeroes {
            offset: *offset,
            len: *len,
            generation: *generation,
        }),
        Request::WriteRaw { first, blocks } => {
            let headers = blocks
                .iter()
                .map(|b| RawHeader {
                    generation: b.generation,
                    seal: b.seal,
                    len: b.data.as_deref().map(len32),
                })
                .collect();
            let data: Vec<&[u8]> = blocks.iter().filter_map(|b| b.data.as_deref()).collect();
            frame(
                id,
                &RequestMsg::WriteRaw {
                    first: *first,
                    blocks: headers,
                },
                &data,
            )
        }
        Request::Read { view, offset, len } => one(RequestMsg::Read {
            view: view.clone(),
            offset: *offset,
            len: *len,
        }),
        Request::Flush => one(RequestMsg::Flush),
        Request::Snapshot { id: snap, size } => one(RequestMsg::Snapshot {
            id: snap.clone(),
            size: *size,
        }),
        Request::DeleteSnapshot(s) => one(RequestMsg::DeleteSnapshot(s.clone())),
        Request::Rollback(s) => one(RequestMsg::Rollback(s.clone())),
        Request::Expand(size) => one(RequestMsg::Expand(*size)),
        Request::Verify => one(RequestMsg::Verify),
        Request::ViewChunks(view) => one(RequestMsg::ViewChunks(view.clone())),
        Request::ChunkSummary { view, chunk } => one(RequestMsg::ChunkSummary {
            view: view.clone(),
            chunk: *chunk,
        }),
        Request::Repair { view, block, data } => frame(
            id,
            &RequestMsg::Repair {
                view: view.clone(),
                block: *block,
                len: len32(data),
            },
            &[data],
        ),
        Request::LoadSetState => one(RequestMsg::LoadSetState),
        Request::StoreSetState(state) => frame(
            id,
            &RequestMsg::StoreSetState { len: len32(state) },
            &[state],
        ),
        Request::Reconnect { timeout_ms } => one(RequestMsg::Reconnect {
            timeout_ms: *timeout_ms,
        }),
        Request::Health => one(RequestMsg::Health),
        Request::Destroy => one(RequestMsg::Destroy),
        Request::List => one(RequestMsg::List),
        Request::LinkFrom {
            source,
            snapshot,
            size,
        } => one(RequestMsg::LinkFrom {
            source: source.clone(),
            snapshot: snapshot.clone(),
            size: *size,
        }),
        Request::WriteSealed {
            offset,
            generation,
            data,
            seals,
        } => frame(
            id,
            &RequestMsg::WriteSealed {
                offset: *offset,
                generation: *generation,
                len: len32(data),
                seals: seals.clone(),
            },
            &[data],
        ),
        Request::ReadSealed { view, offset, len } => one(RequestMsg::ReadSealed {
            view: view.clone(),
            offset: *offset,
            len: *len,
        }),
    }
}

/// Encodes an answer (or a fault) to request `id` as a frame.
pub fn encode_answer(id: u64, answer: &Result<Answer, ReplicaFault>) -> Bytes {
    let one = |msg: AnswerMsg| frame(id, &msg, &[]);
    match answer {
        Err(fault) => one(AnswerMsg::Fault(WireFault::from(fault))),
        Ok(Answer::Done) => one(AnswerMsg::Done),
        Ok(Answer::Info(info)) => one(AnswerMsg::Info(info.clone())),
        Ok(Answer::Data(data)) => frame(id, &AnswerMsg::Data { len: len32(data) }, &[data]),
        Ok(Answer::NoData) => one(AnswerMsg::NoData),
        Ok(Answer::Verify(report)) => one(AnswerMsg::Verify(report.clone())),
        Ok(Answer::Chunks(chunks)) => one(AnswerMsg::Chunks(chunks.clone())),
        Ok(Answer::Summary(blocks)) => one(AnswerMsg::Summary(blocks.clone())),
        Ok(Answer::Repaired(done)) => one(AnswerMsg::Repaired(*done)),
        Ok(Answer::Names(names)) => one(AnswerMsg::Names(names.clone())),
        Ok(Answer::Linked(r)) => one(AnswerMsg::Linked {
            linked: r.linked,
            copied: r.copied,
        }),
        Ok(Answer::Sealed(read)) => frame(
            id,
            &AnswerMsg::Sealed {
                len: len32(&read.data),
                seals: read.seals.clone(),
            },
            &[&read.data],
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// A frame (without its length prefix) split into id, decoded control part and payload.
fn open<T: DeserializeOwned>(frame: Bytes) -> Result<(u64, T, Payload), WireError> {
    if frame.len() > MAX_FRAME {
        return Err(WireError::TooLarge(frame.len() as u64));
    }
    let header = frame.get(..HEADER).ok_or(WireError::Truncated("header"))?;
    let (id, control_len) = header.split_at(8);
    let id = u64::from_le_bytes(id.try_into().map_err(|_| WireError::Truncated("id"))?);
    let control_len = u32::from_le_bytes(
        control_len
            .try_into()
            .map_err(|_| WireError::Truncated("control length"))?,
    ) as usize;
    let end = HEADER
        .checked_add(control_len)
        .filter(|end| *end <= frame.len())
        .ok_or(WireError::Truncated("control"))?;
    let control = frame.slice(HEADER..end);
    let (msg, used) = bincode::serde::decode_from_slice::<T, _>(&control, CONFIG)
        .map_err(|e| decode_error(&e))?;
    if used != control.len() {
        return Err(WireError::Trailing(control.len() - used));
    }
    Ok((id, msg, Payload(frame.slice(end..))))
}

fn decode_error(e: &bincode::error::DecodeError) -> WireError {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { .. } => WireError::Truncated("message"),
        E::LimitExceeded => WireError::TooLarge(MAX_FRAME as u64 + 1),
        other => WireError::Invalid(other.to_string()),
    }
}

/// The bulk bytes after a control part, taken by the lengths the control part states.
struct Payload(Bytes);

impl Payload {
    fn take(&mut self, len: u32) -> Result<Bytes, WireError> {
        let len = len as usize;
        if len > self.0.len() {
            return Err(WireError::Truncated("payload"));
        }
        Ok(self.0.split_to(len))
    }

    fn finish(self) -> Result<(), WireError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// Decodes a request frame (without its length prefix).
pub fn decode_request(frame: Bytes) -> Result<(u64, Request), WireError> {
    let (id, msg, mut payload) = open::<RequestMsg>(frame)?;
    let req = match msg {
        RequestMsg::Format {
            size,
            geometry,
            sealed,
        } => Request::Format {
            size,
            geometry,
            sealed,
        },
        RequestMsg::Info => Request::Info,
        RequestMsg::Write {
            offset,
            generation,
            len,
        } => Request::Write {
            offset,
            generation,
            data: payload.take(len)?,
        },
        RequestMsg::WriteZeroes {
            offset,
            len,
            generation,
        } => Request::WriteZeroes {
            offset,
            len,
            generation,
        },
        RequestMsg::WriteRaw { first, blocks } => Request::WriteRaw {
            first,
            blocks: blocks
                .into_iter()
                .map(|b| {
                    Ok(RawBlock {
                        data: b.len.map(|n| payload.take(n)).transpose()?,
                        generation: b.generation,
                        seal: b.seal,
                    })
                })
                .collect::<Result<_, WireError>>()?,
        },
        RequestMsg::Read { view, offset, len } => {
            if len > MAX_READ {
                return Err(WireError::Invalid("read length".into()));
            }
            Request::Read { view, offset, len }
        }
        RequestMsg::Flush => Request::Flush,
        RequestMsg::Snapshot { id, size } => Request::Snapshot { id, size },
        RequestMsg::DeleteSnapshot(s) => Request::DeleteSnapshot(s),
        RequestMsg::Rollback(s) => Request::Rollback(s),
        RequestMsg::Expand(size) => Request::Expand(size),
        RequestMsg::Verify => Request::Verify,
        RequestMsg::ViewChunks(view) => Request::ViewChunks(view),
        RequestMsg::ChunkSummary { view, chunk } => Request::ChunkSummary { view, chunk },
        RequestMsg::Repair { view, block, len } => Request::Repair {
            view,
            block,
            data: payload.take(len)?,
        },
        RequestMsg::LoadSetState => Request::LoadSetState,
        RequestMsg::StoreSetState { len } => Request::StoreSetState(payload.take(len)?),
        RequestMsg::Reconnect { timeout_ms } => Request::Reconnect { timeout_ms },
        RequestMsg::Health => Request::Health,
        RequestMsg::Destroy => Request::Destroy,
        RequestMsg::List => Request::List,
        RequestMsg::LinkFrom {
            source,
            snapshot,
            size,
        } => Request::LinkFrom {
            source,
            snapshot,
            size,
        },
        RequestMsg::WriteSealed {
            offset,
            generation,
            len,
            seals,
        } => Request::WriteSealed {
            offset,
            generation,
            data: payload.take(len)?,
            seals,
        },
        RequestMsg::ReadSealed { view, offset, len } => {
            if len > MAX_READ {
                return Err(WireError::Invalid("read length".into()));
            }
            Request::ReadSealed { view, offset, len }
        }
    };
    payload.finish()?;
    Ok((id, req))
}

/// Decodes an answer frame (without its length prefix).
pub fn decode_answer(frame: Bytes) -> Result<AnswerFrame, WireError> {
    let (id, msg, mut payload) = open::<AnswerMsg>(frame)?;
    let answer = match msg {
        AnswerMsg::Fault(f) => Err(ReplicaFault::from(f)),
        AnswerMsg::Done => Ok(Answer::Done),
        AnswerMsg::Info(info) => Ok(Answer::Info(info)),
        AnswerMsg::Data { len } => Ok(Answer::Data(payload.take(len)?)),
        AnswerMsg::NoData => Ok(Answer::NoData),
        AnswerMsg::Verify(report) => Ok(Answer::Verify(report)),
        AnswerMsg::Chunks(chunks) => Ok(Answer::Chunks(chunks)),
        AnswerMsg::Summary(blocks) => Ok(Answer::Summary(blocks)),
        AnswerMsg::Repaired(done) => Ok(Answer::Repaired(done)),
        AnswerMsg::Names(names) => Ok(Answer::Names(names)),
        AnswerMsg::Linked { linked, copied } => Ok(Answer::Linked(CloneReport { linked, copied })),
        AnswerMsg::Sealed { len, seals } => Ok(Answer::Sealed(SealedRead {
            data: payload.take(len)?,
            seals,
        })),
    };
    payload.finish()?;
    Ok((id, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tripod_engine::{BadBlock, BlockContent, EngineError, LayerId, SnapshotInfo};

    fn sid(s: &str) -> SnapshotId {
        SnapshotId::new(s).unwrap()
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Format {
                size: 1 << 30,
                geometry: Geometry::default(),
                sealed: true,
            },
            Request::WriteSealed {
                offset: 8192,
                generation: 11,
                data: Bytes::from(vec![6u8; 8192]),
                seals: vec![[1; 16], [2; 16]],
            },
            Request::ReadSealed {
                view: View::Head,
                offset: 0,
                len: 8192,
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
                        seal: [7; 16],
                    },
                    RawBlock {
                        data: None,
                        generation: 5,
                        seal: tripod_engine::NO_SEAL,
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
            Request::LinkFrom {
                source: "vol-a".into(),
                snapshot: sid("s"),
                size: 1 << 30,
            },
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
                sealed: true,
            })),
            Ok(Answer::Sealed(SealedRead {
                data: Bytes::from(vec![3u8; 8192]),
                seals: vec![
                    None,
                    Some(BlockSeal {
                        generation: 4,
                        seal: [9; 16],
                    }),
                ],
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
            Ok(Answer::Linked(CloneReport {
                linked: 4,
                copied: 0,
            })),
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
        let mut control = Vec::new();
        control.extend_from_slice(&5u32.to_le_bytes()); // Chunks
        control.extend_from_slice(&u64::MAX.to_le_bytes()); // its count
        let mut b = vec![0u8; 8];
        b.extend_from_slice(&(control.len() as u32).to_le_bytes());
        b.extend_from_slice(&control);
        assert!(decode_answer(Bytes::from(b)).is_err());
        // A payload shorter or longer than its control part says is refused.
        let write = encode_request(
            1,
            &Request::Write {
                offset: 0,
                generation: 1,
                data: Bytes::from_static(b"abcd"),
            },
        );
        assert_eq!(
            decode_request(write.slice(4..write.len() - 1)),
            Err(WireError::Truncated("payload"))
        );
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
            Err(WireError::Invalid("read length".into()))
        );
    }
}
