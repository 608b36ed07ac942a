//! Health of a replica set as an operator (or the admin API) sees it.

use std::sync::atomic::Ordering;

use crate::ids::{PerReplica, ReplicaId};
use crate::set::ReplicaSet;
use crate::set_state::Member;

/// The state of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaHealth {
    /// Holds every acknowledged write and takes part in quorum.
    InService,
    /// Out of service; `missing_chunks` written since, or a full rebuild needed.
    Degraded {
        /// Chunks it misses.
        missing_chunks: usize,
        /// It needs a full rebuild.
        needs_rebuild: bool,
    },
    /// Getting its missing chunks back.
    Resyncing {
        /// Chunks done.
        done: u64,
        /// Chunks planned.
        total: u64,
    },
    /// Being filled in full.
    Rebuilding {
        /// Chunks done in the current pass.
        done: u64,
        /// Chunks planned in the current pass.
        total: u64,
    },
}

/// One replica in a [`SetStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// What it is (`dir …`, `tcp://…`).
    pub describe: String,
    /// Its state.
    pub health: ReplicaHealth,
}

/// Health of the whole set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatus {
    /// Per replica.
    pub replicas: PerReplica<ReplicaStatus>,
    /// Blocks repaired from another replica so far.
    pub repairs: u64,
    /// Volume size in bytes.
    pub size: u64,
}

impl ReplicaSet {
    /// The state of every replica, with progress of running syncs.
    pub fn status(&self) -> SetStatus {
        let m = self.membership.lock().clone();
        let replicas = PerReplica::from_fn(|id: ReplicaId| {
            let health = match (&m.state.members[id], &m.syncing[id]) {
                (Member::InService, _) => ReplicaHealth::InService,
                (Member::Out { full, .. }, Some(s)) if !s.aborted => {
                    if *full {
                        ReplicaHealth::Rebuilding {
                            done: s.done,
                            total: s.total,
                        }
                    } else {
                        ReplicaHealth::Resyncing {
                            done: s.done,
                            total: s.total,
                        }
                    }
                }
                (Member::Out { dirty, full }, _) => ReplicaHealth::Degraded {
                    missing_chunks: dirty.len(),
                    needs_rebuild: *full,
                },
            };
            ReplicaStatus {
                describe: self.replica(id).describe(),
                health,
            }
        });
        SetStatus {
            replicas,
            repairs: self.repairs.load(Ordering::Relaxed),
            size: self.size(),
        }
    }
}
