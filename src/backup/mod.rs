//! Backups: permanent-incremental, deduplicated copies of volumes in a backup target (a
//! directory, an S3 bucket), independent of the replicas — what Cinder's backup API and
//! EVS's CBR offer. The first backup of a volume is full; each later one reads only the
//! ranges changed since its parent (from block metadata, [`tripod_replication::ReplicaSet::changed_ranges`])
//! and uploads only block contents the target lacks. Every manifest is complete, so any
//! backup restores alone and deleting one frees only blocks no other names.
//!
//! - [`format`](mod@format): the objects in the target, byte for byte, and their checked decoders;
//! - [`store`]: the target (`object_store`), block dedup and garbage collection;
//! - [`job`]: take, restore and verify.

pub mod format;
pub mod job;
pub mod store;

pub use format::{BlockHash, Manifest, BLOCK_SIZE};
pub use job::{JobError, Source, TakeReport};
pub use store::{BackupStore, StoreError};
