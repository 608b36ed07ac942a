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
    /// Writes and changes refused so far because the replicas' disks were full.
    pub space_refusals: u64,
    /// The latest write was refused for lack of space (the volume reads, but takes no new
    /// data until space is freed on its replicas' disks).
    pub out_of_space: bool,
    /// Volume size in bytes.
    pub size: u64,
    /// Reads that met a block failing authentication on the copy read (encrypted volumes:
    /// a copy altered, moved or rolled back; served from another copy when one holds it).
    pub integrity_errors: u64,
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
            space_refusals: self.space_refusals.load(Ordering::Relaxed),
            out_of_space: self.out_of_space.load(Ordering::Relaxed),
            size: self.size(),
            integrity_errors: self.integrity_errors(),
        }
    }
}

impl ReplicaSet {
    /// The allocation map of `offset..offset+len` of the head (runs holding data and runs
    /// reading as zeros), from one in-service replica's block summaries. For sparse copies
    /// and NBD block status.
    pub fn extents(&self, offset: u64, len: u64) -> crate::Result<Vec<tripod_engine::Extent>> {
        use tripod_engine::{ChunkIndex, Extent, View};
        let size = self.size();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(crate::ReplicationError::Invalid(
                tripod_engine::EngineError::OutOfRange { offset, len, size },
            ));
        }
        let mut out: Vec<Extent> = Vec::new();
        if len == 0 {
            return Ok(out);
        }
        let (id, replica) = self.any_in_service()?;
        let fault = |source| crate::ReplicationError::Replica {
            replica: id,
            source,
        };
        let g = self.geometry;
        let bs = g.bs();
        let chunk_bytes = bs * u64::from(g.chunk_blocks);
        let present: std::collections::BTreeSet<ChunkIndex> = replica
            .view_chunks(View::Head)
            .wait(self.config.io_timeout)
            .map_err(fault)?
            .into_iter()
            .collect();
        let end = offset + len;
        let mut push = |start: u64, stop: u64, data: bool| match out.last_mut() {
            Some(e) if e.data == data => e.len += stop - start,
            _ => out.push(Extent {
                offset: start,
                len: stop - start,
                data,
            }),
        };
        let mut at = offset;
        while at < end {
            let chunk = ChunkIndex(at / chunk_bytes);
            let chunk_end = ((chunk.0 + 1) * chunk_bytes).min(end);
            if !present.contains(&chunk) {
                push(at, chunk_end, false);
                at = chunk_end;
                continue;
            }
            let summary = replica
                .chunk_summary(View::Head, chunk)
                .wait(self.config.io_timeout)
                .map_err(fault)?;
            while at < chunk_end {
                let slot = usize::try_from((at % chunk_bytes) / bs).unwrap_or(usize::MAX);
                let block_end = ((at / bs + 1) * bs).min(chunk_end);
                let data = summary.get(slot).is_some_and(|b| !b.content.is_zero());
                push(at, block_end, data);
                at = block_end;
            }
        }
        Ok(out)
    }
}
