//! `tripod-engine`: one replica's store for Tripod volumes.
//!
//! A [`Volume`] is a virtual disk kept as a tree of layers (the live head on top of frozen
//! snapshots) in one directory. Every stored block carries a CRC32 checked on every read;
//! every write is durable when it returns (a write-ahead log synced once per batch of
//! concurrent writers); a crash at any instant loses nothing acknowledged and never leaves a
//! block that is neither its old nor its new content. Snapshots, rollback and expansion are
//! O(metadata). The on-disk format is documented in `engine/FORMAT.md`.
//!
//! ```
//! use std::sync::Arc;
//! use tripod_engine::{Geometry, MemStorage, SnapshotId, Volume, VolumeOptions};
//!
//! # fn main() -> Result<(), tripod_engine::EngineError> {
//! let storage = Arc::new(MemStorage::new()); // or FileStorage::new("/srv/vol1")?
//! let vol = Volume::create(storage, 64 << 20, Geometry::default(), VolumeOptions::default())?;
//! vol.write(4096, b"hello")?;
//! let snap = SnapshotId::new("before")?;
//! vol.snapshot(&snap)?;
//! vol.write(4096, b"HELLO")?;
//! vol.rollback(&snap)?;
//! assert_eq!(vol.read(4096, 5)?, b"hello");
//! # Ok(()) }
//! ```
//!
//! What it is not: it keeps one copy. Three copies, repair from a good copy and quorum are
//! `tripod-replication`'s job; networks, NBD and HTTP live above that.

mod addressing;
mod chunk_meta;
pub mod codec;
mod commit;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod layer;
mod linked_clone;
mod locks;
mod manifest;
mod recovery;
mod scrub;
mod seals;
mod snapshot_io;
mod space;
pub mod storage;
mod structure;
mod view;
mod volume;
mod wal;

pub use addressing::{BlockIndex, ChunkIndex, Geometry, LayerId, Lsn, SnapshotId};
pub use error::{EngineError, Result};
pub use format::{
    FormatVersion, Seal, CURRENT_VERSION, MAX_LAYERS, MAX_VOLUME_SIZE, NO_SEAL, SEAL_LEN,
};
pub use linked_clone::CloneReport;
pub use locks::{BlockLocks, OwnedRangeGuard, RangeGuard};
pub use scrub::{BadBlock, UnrecordedData, VerifyReport};
pub use seals::BlockSeal;
pub use storage::{
    CrashMode, FaultPlan, FaultyStorage, FileStorage, MemStorage, OverlayStorage, Storage,
    StorageFile,
};
pub use structure::{SnapshotInfo, SpaceUsage};
pub use view::{BlockContent, BlockInfo, View};
pub use volume::{BatchWrite, Extent, RawBlock, Volume, VolumeOptions, MAX_READ_ALLOC};
