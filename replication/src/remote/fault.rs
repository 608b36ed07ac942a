//! Faults on the wire. The set decides what to do from a fault's kind (a checksum mismatch
//! triggers a repair, an out-of-range request is the caller's error, an empty replica gets
//! a rebuild), so every kind it looks at crosses the network intact; the rest travel as
//! their message.

use bytes::{BufMut, BytesMut};
use tripod_engine::{BlockIndex, EngineError, LayerId, SnapshotId};

use super::wire::{put_string, Reader, WireError};
use crate::error::ReplicaFault;

const F_REMOTE: u8 = 0;
const F_TIMEOUT: u8 = 1;
const F_DISCONNECTED: u8 = 2;
const F_EMPTY: u8 = 3;
const F_BAD_SET_STATE: u8 = 4;
const F_IO: u8 = 5;
const E_OUT_OF_RANGE: u8 = 10;
const E_CHECKSUM: u8 = 11;
const E_IO: u8 = 12;
const E_POISONED: u8 = 13;
const E_CORRUPT: u8 = 14;
const E_VERSION: u8 = 15;
const E_NOT_FOUND: u8 = 16;
const E_EXISTS: u8 = 17;
const E_GEOMETRY: u8 = 18;
const E_SIZE: u8 = 19;
const E_SHRINK: u8 = 20;
const E_SNAPSHOT_ID: u8 = 21;
const E_SNAPSHOT_EXISTS: u8 = 22;
const E_SNAPSHOT_NOT_FOUND: u8 = 23;
const E_LAYERS: u8 = 24;
const E_NO_SPACE: u8 = 25;

/// The reasons the engine gives for an invalid size (its `reason` is a `&'static str`).
const SIZE_REASONS: [&str; 5] = [
    "must not be zero",
    "must be a multiple of the block size",
    "exceeds the 1 PiB limit",
    "larger than the volume",
    "larger than this file system's largest file",
];

fn put_io(out: &mut BytesMut, context: &str, e: &std::io::Error) {
    put_string(out, context);
    out.put_i32_le(e.raw_os_error().unwrap_or(0));
    put_string(out, &e.to_string());
}

pub(crate) fn put_fault(out: &mut BytesMut, fault: &ReplicaFault) {
    match fault {
        ReplicaFault::Timeout(d) => {
            out.put_u8(F_TIMEOUT);
            out.put_u64_le(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        ReplicaFault::Disconnected => out.put_u8(F_DISCONNECTED),
        ReplicaFault::Empty => out.put_u8(F_EMPTY),
        ReplicaFault::BadSetState(m) => {
            out.put_u8(F_BAD_SET_STATE);
            put_string(out, m);
        }
        ReplicaFault::Io { context, source } => {
            out.put_u8(F_IO);
            put_io(out, context, source);
        }
        ReplicaFault::Engine(e) => put_engine(out, e),
        other => {
            out.put_u8(F_REMOTE);
            put_string(out, &other.to_string());
        }
    }
}

fn put_engine(out: &mut BytesMut, e: &EngineError) {
    match e {
        EngineError::OutOfRange { offset, len, size } => {
            out.put_u8(E_OUT_OF_RANGE);
            out.put_u64_le(*offset);
            out.put_u64_le(*len);
            out.put_u64_le(*size);
        }
        EngineError::ChecksumMismatch {
            block,
            layer,
            expected,
            actual,
        } => {
            out.put_u8(E_CHECKSUM);
            out.put_u64_le(block.0);
            out.put_u64_le(layer.0);
            out.put_u32_le(*expected);
            out.put_u32_le(*actual);
        }
        EngineError::Io { context, source } => {
            out.put_u8(E_IO);
            put_io(out, context, source);
        }
        EngineError::NoSpace { context, source } => {
            out.put_u8(E_NO_SPACE);
            put_io(out, context, source);
        }
        EngineError::Poisoned => out.put_u8(E_POISONED),
        EngineError::Corrupt { file, reason } => {
            out.put_u8(E_CORRUPT);
            put_string(out, file);
            put_string(out, reason);
        }
        EngineError::UnsupportedVersion {
            file,
            found,
            supported,
        } => {
            out.put_u8(E_VERSION);
            put_string(out, file);
            out.put_u32_le(*found);
            out.put_u32_le(*supported);
        }
        EngineError::NotFound => out.put_u8(E_NOT_FOUND),
        EngineError::AlreadyExists => out.put_u8(E_EXISTS),
        EngineError::InvalidGeometry(m) => {
            out.put_u8(E_GEOMETRY);
            put_string(out, m);
        }
        EngineError::InvalidSize { size, reason } => {
            out.put_u8(E_SIZE);
            out.put_u64_le(*size);
            put_string(out, reason);
        }
        EngineError::Shrink { current, requested } => {
            out.put_u8(E_SHRINK);
            out.put_u64_le(*current);
            out.put_u64_le(*requested);
        }
        EngineError::InvalidSnapshotId(s) => {
            out.put_u8(E_SNAPSHOT_ID);
            put_string(out, s);
        }
        EngineError::SnapshotExists(id) => {
            out.put_u8(E_SNAPSHOT_EXISTS);
            put_string(out, id.as_str());
        }
        EngineError::SnapshotNotFound(id) => {
            out.put_u8(E_SNAPSHOT_NOT_FOUND);
            put_string(out, id.as_str());
        }
        EngineError::TooManyLayers { limit } => {
            out.put_u8(E_LAYERS);
            out.put_u64_le(*limit as u64);
        }
        other => {
            // `InUse` and anything added later: the message is what matters to a reader.
            out.put_u8(F_REMOTE);
            put_string(out, &other.to_string());
        }
    }
}

fn read_io(r: &mut Reader) -> Result<(String, std::io::Error), WireError> {
    let context = r.string("I/O context")?;
    let code = r.u32("errno")? as i32;
    let message = r.string("I/O message")?;
    let error = if code > 0 {
        std::io::Error::from_raw_os_error(code)
    } else {
        std::io::Error::other(message)
    };
    Ok((context, error))
}

fn snapshot_id(r: &mut Reader) -> Result<SnapshotId, WireError> {
    SnapshotId::new(r.string("snapshot id")?).map_err(|_| WireError::Invalid("snapshot id"))
}

pub(crate) fn read_fault(r: &mut Reader) -> Result<ReplicaFault, WireError> {
    let engine = |e: EngineError| Ok(ReplicaFault::Engine(e));
    match r.u8("fault")? {
        F_REMOTE => Ok(ReplicaFault::Remote(r.string("fault message")?)),
        F_TIMEOUT => Ok(ReplicaFault::Timeout(std::time::Duration::from_millis(
            r.u64("timeout")?,
        ))),
        F_DISCONNECTED => Ok(ReplicaFault::Disconnected),
        F_EMPTY => Ok(ReplicaFault::Empty),
        F_BAD_SET_STATE => Ok(ReplicaFault::BadSetState(r.string("fault message")?)),
        F_IO => {
            let (context, source) = read_io(r)?;
            // The static context of a node-side I/O fault cannot cross the wire; keep it in
            // the message instead.
            Ok(ReplicaFault::Remote(format!(
                "I/O error while {context}: {source}"
            )))
        }
        E_OUT_OF_RANGE => engine(EngineError::OutOfRange {
            offset: r.u64("offset")?,
            len: r.u64("length")?,
            size: r.u64("size")?,
        }),
        E_CHECKSUM => engine(EngineError::ChecksumMismatch {
            block: BlockIndex(r.u64("block")?),
            layer: LayerId(r.u64("layer")?),
            expected: r.u32("crc")?,
            actual: r.u32("crc")?,
        }),
        E_IO => {
            let (context, source) = read_io(r)?;
            engine(EngineError::Io { context, source })
        }
        E_NO_SPACE => {
            let (context, source) = read_io(r)?;
            engine(EngineError::NoSpace { context, source })
        }
        E_POISONED => engine(EngineError::Poisoned),
        E_CORRUPT => engine(EngineError::Corrupt {
            file: r.string("file")?,
            reason: r.string("reason")?,
        }),
        E_VERSION => engine(EngineError::UnsupportedVersion {
            file: r.string("file")?,
            found: r.u32("version")?,
            supported: r.u32("version")?,
        }),
        E_NOT_FOUND => engine(EngineError::NotFound),
        E_EXISTS => engine(EngineError::AlreadyExists),
        E_GEOMETRY => engine(EngineError::InvalidGeometry(r.string("geometry")?)),
        E_SIZE => {
            let size = r.u64("size")?;
            let text = r.string("reason")?;
            let reason = SIZE_REASONS
                .iter()
                .find(|known| **known == text)
                .copied()
                .unwrap_or("refused by the replica node");
            engine(EngineError::InvalidSize { size, reason })
        }
        E_SHRINK => engine(EngineError::Shrink {
            current: r.u64("size")?,
            requested: r.u64("size")?,
        }),
        E_SNAPSHOT_ID => engine(EngineError::InvalidSnapshotId(r.string("snapshot id")?)),
        E_SNAPSHOT_EXISTS => engine(EngineError::SnapshotExists(snapshot_id(r)?)),
        E_SNAPSHOT_NOT_FOUND => engine(EngineError::SnapshotNotFound(snapshot_id(r)?)),
        E_LAYERS => engine(EngineError::TooManyLayers {
            limit: usize::try_from(r.u64("limit")?).unwrap_or(usize::MAX),
        }),
        t => Err(WireError::Unknown {
            what: "fault",
            value: t.into(),
        }),
    }
}
