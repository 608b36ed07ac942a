//! Faults on the wire. The set decides what to do from a fault's kind (a checksum mismatch
//! triggers a repair, an out-of-range request is the caller's error, an empty replica gets
//! a rebuild), so every kind it looks at crosses the network intact ([`WireFault`]); the
//! rest travel as their message.

use serde::{Deserialize, Serialize};
use tripod_engine::{BlockIndex, EngineError, LayerId, SnapshotId};

use crate::error::ReplicaFault;

/// The reasons the engine gives for an invalid size (its `reason` is a `&'static str`).
const SIZE_REASONS: [&str; 6] = [
    "must not be zero",
    "must be a multiple of the block size",
    "exceeds the 1 PiB limit",
    "larger than the volume",
    "larger than this file system's largest file",
    "smaller than the snapshot",
];

/// An I/O error as it crosses: where, the errno (0: none) and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireIo {
    context: String,
    errno: i32,
    message: String,
}

impl WireIo {
    fn of(context: &str, e: &std::io::Error) -> Self {
        Self {
            context: context.to_owned(),
            errno: e.raw_os_error().unwrap_or(0),
            message: e.to_string(),
        }
    }

    fn error(&self) -> std::io::Error {
        if self.errno > 0 {
            std::io::Error::from_raw_os_error(self.errno)
        } else {
            std::io::Error::other(self.message.clone())
        }
    }
}

/// A replica fault as it crosses the wire. The variants' order is the wire's tag order:
/// append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireFault {
    /// Anything without a kind of its own: its message.
    Remote(String),
    Timeout {
        ms: u64,
    },
    Disconnected,
    Empty,
    BadSetState(String),
    /// An I/O fault of the node outside its store.
    Io(WireIo),
    OutOfRange {
        offset: u64,
        len: u64,
        size: u64,
    },
    Checksum {
        block: u64,
        layer: u64,
        expected: u32,
        actual: u32,
    },
    EngineIo(WireIo),
    Poisoned,
    Corrupt {
        file: String,
        reason: String,
    },
    Version {
        file: String,
        found: u32,
        supported: u32,
    },
    NotFound,
    AlreadyExists,
    Geometry(String),
    Size {
        size: u64,
        reason: String,
    },
    Shrink {
        current: u64,
        requested: u64,
    },
    SnapshotId(String),
    SnapshotExists(SnapshotId),
    SnapshotNotFound(SnapshotId),
    Layers {
        limit: u64,
    },
    NoSpace(WireIo),
    Seals(String),
}

impl From<&ReplicaFault> for WireFault {
    fn from(fault: &ReplicaFault) -> Self {
        match fault {
            ReplicaFault::Timeout(d) => Self::Timeout {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            ReplicaFault::Disconnected => Self::Disconnected,
            ReplicaFault::Empty => Self::Empty,
            ReplicaFault::BadSetState(m) => Self::BadSetState(m.clone()),
            ReplicaFault::Io { context, source } => Self::Io(WireIo::of(context, source)),
            ReplicaFault::Engine(e) => Self::from(e),
            other => Self::Remote(other.to_string()),
        }
    }
}

impl From<&EngineError> for WireFault {
    fn from(e: &EngineError) -> Self {
        match e {
            EngineError::OutOfRange { offset, len, size } => Self::OutOfRange {
                offset: *offset,
                len: *len,
                size: *size,
            },
            EngineError::ChecksumMismatch {
                block,
                layer,
                expected,
                actual,
            } => Self::Checksum {
                block: block.0,
                layer: layer.0,
                expected: *expected,
                actual: *actual,
            },
            EngineError::Io { context, source } => Self::EngineIo(WireIo::of(context, source)),
            EngineError::NoSpace { context, source } => Self::NoSpace(WireIo::of(context, source)),
            EngineError::Poisoned => Self::Poisoned,
            EngineError::Corrupt { file, reason } => Self::Corrupt {
                file: file.clone(),
                reason: reason.clone(),
            },
            EngineError::UnsupportedVersion {
                file,
                found,
                supported,
            } => Self::Version {
                file: file.clone(),
                found: *found,
                supported: *supported,
            },
            EngineError::NotFound => Self::NotFound,
            EngineError::AlreadyExists => Self::AlreadyExists,
            EngineError::InvalidGeometry(m) => Self::Geometry(m.clone()),
            EngineError::InvalidSize { size, reason } => Self::Size {
                size: *size,
                reason: (*reason).to_owned(),
            },
            EngineError::Shrink { current, requested } => Self::Shrink {
                current: *current,
                requested: *requested,
            },
            EngineError::InvalidSnapshotId(s) => Self::SnapshotId(s.clone()),
            EngineError::SnapshotExists(id) => Self::SnapshotExists(id.clone()),
            EngineError::SnapshotNotFound(id) => Self::SnapshotNotFound(id.clone()),
            EngineError::TooManyLayers { limit } => Self::Layers {
                limit: *limit as u64,
            },
            EngineError::Seals(m) => Self::Seals(m.clone()),
            // `InUse` and anything added later: the message is what matters to a reader.
            other => Self::Remote(other.to_string()),
        }
    }
}

impl From<WireFault> for ReplicaFault {
    fn from(f: WireFault) -> Self {
        let engine = ReplicaFault::Engine;
        match f {
            WireFault::Remote(m) => Self::Remote(m),
            WireFault::Timeout { ms } => Self::Timeout(std::time::Duration::from_millis(ms)),
            WireFault::Disconnected => Self::Disconnected,
            WireFault::Empty => Self::Empty,
            WireFault::BadSetState(m) => Self::BadSetState(m),
            // The static context of a node-side I/O fault cannot cross the wire; keep it in
            // the message instead.
            WireFault::Io(io) => {
                Self::Remote(format!("I/O error while {}: {}", io.context, io.error()))
            }
            WireFault::OutOfRange { offset, len, size } => {
                engine(EngineError::OutOfRange { offset, len, size })
            }
            WireFault::Checksum {
                block,
                layer,
                expected,
                actual,
            } => engine(EngineError::ChecksumMismatch {
                block: BlockIndex(block),
                layer: LayerId(layer),
                expected,
                actual,
            }),
            WireFault::EngineIo(io) => engine(EngineError::Io {
                source: io.error(),
                context: io.context,
            }),
            WireFault::NoSpace(io) => engine(EngineError::NoSpace {
                source: io.error(),
                context: io.context,
            }),
            WireFault::Poisoned => engine(EngineError::Poisoned),
            WireFault::Corrupt { file, reason } => engine(EngineError::Corrupt { file, reason }),
            WireFault::Version {
                file,
                found,
                supported,
            } => engine(EngineError::UnsupportedVersion {
                file,
                found,
                supported,
            }),
            WireFault::NotFound => engine(EngineError::NotFound),
            WireFault::AlreadyExists => engine(EngineError::AlreadyExists),
            WireFault::Geometry(m) => engine(EngineError::InvalidGeometry(m)),
            WireFault::Size { size, reason } => engine(EngineError::InvalidSize {
                size,
                reason: SIZE_REASONS
                    .iter()
                    .find(|known| **known == reason)
                    .copied()
                    .unwrap_or("refused by the replica node"),
            }),
            WireFault::Shrink { current, requested } => {
                engine(EngineError::Shrink { current, requested })
            }
            WireFault::SnapshotId(s) => engine(EngineError::InvalidSnapshotId(s)),
            WireFault::SnapshotExists(id) => engine(EngineError::SnapshotExists(id)),
            WireFault::SnapshotNotFound(id) => engine(EngineError::SnapshotNotFound(id)),
            WireFault::Layers { limit } => engine(EngineError::TooManyLayers {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            }),
            WireFault::Seals(m) => engine(EngineError::Seals(m)),
        }
    }
}
