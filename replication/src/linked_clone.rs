//! A new set made from a snapshot of this one in O(metadata): each slot's new copy is the
//! engine's linked clone of this set's copy in the same slot (sharing the snapshot's files
//! where the file system allows), then the new set records all three as in service. Only
//! when every copy is in service and each new copy sits beside its source (both in local
//! directories, or both on one replica node, which links on its own disk): a stale copy would
//! hand its staleness to the clone, and copies on different machines cannot share files — the
//! caller copies block by block instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tripod_engine::{CloneReport, SnapshotId};

use crate::error::{ReplicationError, Result};
use crate::fanout::Fanout;
use crate::ids::{PerReplica, ReplicaId};
use crate::replica::Replica;
use crate::set::{ReplicaSet, SetConfig};
use crate::set_state::{random_volume_id, Member, SetState};

impl ReplicaSet {
    /// Creates a new set on `targets` (empty copies in local directories) holding snapshot
    /// `id` of this set, `size` bytes long (at least the snapshot's). `NotLinkable` (nothing
    /// created) unless every replica is in service and every copy local. A failure part way
    /// leaves the targets for the caller to remove.
    pub fn clone_linked(
        &self,
        id: &SnapshotId,
        targets: [Arc<dyn Replica>; 3],
        size: u64,
        config: SetConfig,
    ) -> Result<(ReplicaSet, CloneReport)> {
        // No snapshot deletion or rollback while the copies are made.
        let _structure = self.structure.read();
        let out: Vec<ReplicaId> = {
            let m = self.membership.lock();
            ReplicaId::ALL
                .into_iter()
                .filter(|r| !m.is_in_service(*r))
                .collect()
        };
        if let Some(r) = out.first() {
            return Err(ReplicationError::NotLinkable(format!(
                "{r} is not in service"
            )));
        }
        let replicas = self.replicas.read().clone();
        let targets = PerReplica(targets);
        for r in ReplicaId::ALL {
            if !replicas[r].can_link_to(targets[r].as_ref()) {
                return Err(ReplicationError::NotLinkable(format!(
                    "{r}'s new copy is not beside its source (another node, or local and remote)"
                )));
            }
        }
        let pending: Vec<_> = ReplicaId::ALL
            .into_iter()
            .map(|r| {
                (
                    r,
                    replicas[r].link_snapshot(id.clone(), size, targets[r].clone()),
                )
            })
            .collect();
        let mut report = CloneReport::default();
        for (replica, answer) in Fanout::new(pending, config.long_timeout).wait() {
            let r = answer.map_err(|source| match source {
                crate::error::ReplicaFault::Engine(e) if e.is_caller_error() => {
                    ReplicationError::Invalid(e)
                }
                source => ReplicationError::Replica { replica, source },
            })?;
            report.linked += r.linked;
            report.copied += r.copied;
        }
        let state = SetState {
            volume_id: random_volume_id(),
            epoch: 1,
            block_size: self.geometry.block_size,
            chunk_blocks: self.geometry.chunk_blocks,
            members: PerReplica::from_fn(|_| Member::InService),
            key_check: self.cipher.as_ref().map(|c| c.key_check()),
        };
        // An encrypted volume's clone shares its blocks, so it shares their key.
        let set = Self::assemble(
            targets,
            state,
            (size, self.geometry),
            self.next_generation.load(Ordering::SeqCst),
            config,
            self.cipher.clone(),
        );
        set.persist()?;
        Ok((set, report))
    }
}
