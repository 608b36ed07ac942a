//! `tripod-replication`: a volume kept in three replicas.
//!
//! A [`ReplicaSet`] drives three [`Replica`]s (local directories or remote nodes):
//! every write goes to all three in parallel and is acknowledged when durable on every
//! in-service replica and on at least two; a replica that fails or times out leaves service
//! and the set records, durably, which chunks it misses; [`ReplicaSet::heal_now`] resyncs
//! those chunks (or rebuilds a new replica in full) online; reads fall back to another copy
//! when one fails its checksum and repair the bad copy; opening after a crash reconciles the
//! replicas before serving.
//!
//! ```
//! use std::sync::Arc;
//! use tripod_engine::{Geometry, MemStorage, VolumeOptions};
//! use tripod_replication::{LocalReplica, Replica, ReplicaSet, SetConfig};
//!
//! # fn main() -> Result<(), tripod_replication::ReplicationError> {
//! let replica = |n: usize| -> Arc<dyn Replica> {
//!     Arc::new(LocalReplica::new(format!("mem {n}"), Arc::new(MemStorage::new()), VolumeOptions::default()))
//! };
//! let set = ReplicaSet::create([replica(0), replica(1), replica(2)], 64 << 20, Geometry::default(), SetConfig::default())?;
//! set.write(0, b"three copies")?;
//! assert_eq!(&set.read(0, 12)?[..], b"three copies");
//! # Ok(()) }
//! ```
//!
//! Replicas on other machines are [`remote::RemoteReplica`]s served by a
//! [`remote::ReplicaNode`] (`tripod replica`); the crate holds no HTTP and no NBD.

// What replicas send is untrusted input: no index or narrowing cast that could panic or
// wrap unnoticed outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::cast_possible_truncation)
)]

mod catch_up;
pub mod cipher;
mod client_io;
mod diff;
mod error;
mod executor;
mod fanout;
mod ids;
mod linked_clone;
mod local;
mod membership;
mod open;
pub mod remote;
mod replica;
mod scrub;
mod set;
mod set_state;
mod status;
mod supervisor;

pub use catch_up::HealReport;
pub use error::{ReplicaFault, ReplicationError, Result};
pub use executor::{Executor, DEFAULT_POOL_THREADS};
pub use ids::{PerReplica, ReplicaId, REPLICAS};
pub use local::{stored_set_state, LocalReplica};
pub use membership::{Membership, SyncProgress, WriteVerdict};
pub use replica::{Completer, Pending, Replica, ReplicaInfo, SealedRead};
pub use scrub::ScrubReport;
pub use set::{Durability, ReplicaSet, SetConfig};
pub use set_state::{Member, SetState};
pub use status::{ReplicaHealth, ReplicaStatus, SetStatus};
pub use supervisor::Supervisor;
