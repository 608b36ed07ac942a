//! The engine's one error type. Every failure a caller can meet is a variant here; I/O errors
//! keep their `io::Error` as the source.

use std::io;

use crate::addressing::{BlockIndex, LayerId, SnapshotId};

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The byte range does not lie inside the volume (or overflows `u64`).
    #[error("range {offset}+{len} is outside the volume of {size} bytes")]
    OutOfRange {
        /// Requested offset in bytes.
        offset: u64,
        /// Requested length in bytes.
        len: u64,
        /// Volume size in bytes.
        size: u64,
    },
    /// A stored block does not match its checksum: the data must come from another replica.
    #[error(
        "checksum mismatch in {block} of {layer}: stored {expected:#010x}, read {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The volume block whose copy is bad.
        block: BlockIndex,
        /// The layer that holds the bad copy.
        layer: LayerId,
        /// The CRC32 recorded when the block was written.
        expected: u32,
        /// The CRC32 of what was read back.
        actual: u32,
    },
    /// An I/O operation of the storage failed.
    #[error("I/O error while {context}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file system holding the volume is full (or over quota): the request was refused
    /// before anything was recorded, the volume is unchanged and keeps working, and the
    /// same request succeeds once space is freed.
    #[error("no space left on the device while {context}")]
    NoSpace {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A previous write or sync failed: the store refuses everything until it is reopened,
    /// because the state of the failed operation on disk is unknown.
    #[error("the volume is poisoned by an earlier I/O failure; reopen it")]
    Poisoned,
    /// An on-disk structure is damaged.
    #[error("corrupt {file}: {reason}")]
    Corrupt {
        /// The file (name inside the volume directory).
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// An on-disk structure was written by a newer format than this build understands.
    #[error("{file} has format version {found}; this build reads up to version {supported}")]
    UnsupportedVersion {
        /// The file (name inside the volume directory).
        file: String,
        /// Version found in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// Another process has this volume open.
    #[error("the volume is in use by another process")]
    InUse {
        /// What the lock attempt said.
        #[source]
        source: io::Error,
    },
    /// No volume exists in the storage.
    #[error("no volume found (missing manifest)")]
    NotFound,
    /// A volume already exists in the storage.
    #[error("a volume already exists here")]
    AlreadyExists,
    /// Block size or chunk size not supported.
    #[error("invalid geometry: {0}")]
    InvalidGeometry(String),
    /// A volume size that is zero, not a multiple of the block size, or too large.
    #[error("invalid volume size {size}: {reason}")]
    InvalidSize {
        /// The requested size in bytes.
        size: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Asked to make a volume smaller.
    #[error("cannot shrink a volume from {current} to {requested} bytes")]
    Shrink {
        /// Current size in bytes.
        current: u64,
        /// Requested size in bytes.
        requested: u64,
    },
    /// A snapshot id that is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid snapshot id {0:?}")]
    InvalidSnapshotId(String),
    /// A snapshot with this id exists already.
    #[error("snapshot {0} already exists")]
    SnapshotExists(SnapshotId),
    /// No snapshot with this id.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(SnapshotId),
    /// The volume has as many layers as the engine keeps.
    #[error("too many layers (limit {limit}); delete snapshots first")]
    TooManyLayers {
        /// The limit.
        limit: usize,
    },
    /// A write that does not fit how the volume keeps seals: a sealed volume takes data only
    /// as whole blocks, each with its seal (the layer that seals merges partial blocks); a
    /// volume without seals takes none.
    #[error("{0}")]
    Seals(String),
}

impl EngineError {
    /// Whether the error is the caller's mistake — a range, size, snapshot name or shape the
    /// volume refuses the same way on every copy — rather than a fault of this store (I/O,
    /// corruption, space).
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Self::OutOfRange { .. }
                | Self::Shrink { .. }
                | Self::InvalidSize { .. }
                | Self::InvalidSnapshotId(_)
                | Self::SnapshotExists(_)
                | Self::SnapshotNotFound(_)
                | Self::TooManyLayers { .. }
                | Self::InvalidGeometry(_)
                | Self::Seals(_)
        )
    }

    /// Wraps an `io::Error` with what the engine was doing.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| {
            if is_no_space(&source) {
                Self::NoSpace { context, source }
            } else {
                Self::Io { context, source }
            }
        }
    }

    /// A corruption report for `file`.
    pub(crate) fn corrupt(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Whether `e` says the file system is full or the quota exhausted.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}
