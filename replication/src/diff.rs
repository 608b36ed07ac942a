//! What changed between two views of a volume, from block metadata alone — the way
//! `rbd diff` answers it: incremental backups read only the ranges this names.
//!
//! Two copies of a block are the same content when both read as zeros or both hold data
//! with the same CRC written by the same write (generation); anything else counts as
//! changed. No data is read.

use std::collections::BTreeSet;

use tripod_engine::{BlockInfo, ChunkIndex, View};

use crate::error::{ReplicationError, Result};
use crate::set::ReplicaSet;

impl ReplicaSet {
    /// The indexes of the `unit`-byte ranges of `view` (range `i` is bytes
    /// `i*unit..(i+1)*unit`) that may read differently from `base`, or, without a base, that
    /// hold any data. `unit` must be a positive multiple of the block size. Ranges past
    /// `view`'s end are never named; ranges past `base`'s end count as zeros there.
    pub fn changed_ranges(&self, base: Option<&View>, view: &View, unit: u64) -> Result<Vec<u64>> {
        let g = self.geometry();
        let bs = g.bs();
        if unit == 0 || unit % bs != 0 {
            return Err(ReplicationError::Invalid(
                tripod_engine::EngineError::OutOfRange {
                    offset: 0,
                    len: unit,
                    size: bs,
                },
            ));
        }
        let _structure = self.structure.read();
        let (id, replica) = self.any_in_service()?;
        let fault = |source| ReplicationError::Replica {
            replica: id,
            source,
        };
        let timeout = self.config.io_timeout;
        let mut chunks: BTreeSet<ChunkIndex> = replica
            .view_chunks(view.clone())
            .wait(timeout)
            .map_err(fault)?
            .into_iter()
            .collect();
        if let Some(b) = base {
            chunks.extend(
                replica
                    .view_chunks(b.clone())
                    .wait(timeout)
                    .map_err(fault)?,
            );
        }
        let info = replica.info().wait(timeout).map_err(fault)?;
        let view_size = match view {
            View::Head => info.size,
            View::Snapshot(s) => info
                .snapshots
                .iter()
                .find(|x| &x.id == s)
                .map(|x| x.size)
                .ok_or_else(|| {
                    ReplicationError::Invalid(tripod_engine::EngineError::SnapshotNotFound(
                        s.clone(),
                    ))
                })?,
        };
        let chunk_blocks = u64::from(g.chunk_blocks);
        let mut out = BTreeSet::new();
        for chunk in chunks {
            let now = replica
                .chunk_summary(view.clone(), chunk)
                .wait(timeout)
                .map_err(fault)?;
            let before: Option<Vec<BlockInfo>> = match base {
                Some(b) => Some(
                    replica
                        .chunk_summary(b.clone(), chunk)
                        .wait(timeout)
                        .map_err(fault)?,
                ),
                None => None,
            };
            for (slot, info) in now.iter().enumerate() {
                let changed = match &before {
                    Some(b) => b.get(slot).is_none_or(|old| !old.same_content(info)),
                    None => !info.content.is_zero(),
                };
                let offset = (chunk.0 * chunk_blocks + slot as u64) * bs;
                if changed && offset < view_size {
                    out.insert(offset / unit);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}
