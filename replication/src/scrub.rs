//! Scrub: every replica verifies every stored block; each bad copy that some view reads is
//! rewritten from a good copy on another replica.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tripod_engine::BlockIndex;

use crate::error::{ReplicaFault, Result};
use crate::ids::ReplicaId;
use crate::set::ReplicaSet;

/// What a scrub found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Stored data blocks checked, over all replicas.
    pub blocks_checked: u64,
    /// Bad copies found.
    pub bad: u64,
    /// Bad copies rewritten from a good one.
    pub repaired: u64,
    /// Bad copies no replica could supply a good copy for.
    pub unrepairable: Vec<(ReplicaId, BlockIndex)>,
}

impl ReplicaSet {
    /// Verifies every block of every in-service replica and repairs bad copies from good
    /// ones. Client I/O continues meanwhile.
    pub fn scrub(&self) -> Result<ScrubReport> {
        self.scrub_with(&|_, _| {})
    }

    /// [`ReplicaSet::scrub`], calling `progress(done, total)` in replicas as each one's
    /// verification and repairs end.
    pub fn scrub_with(&self, progress: &dyn Fn(u64, u64)) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let bs = self.geometry.bs();
        let in_service = self.membership.lock().in_service();
        let total = in_service.len() as u64;
        progress(0, total);
        for (done, id) in in_service.into_iter().enumerate() {
            self.scrub_replica(id, bs, &mut report)?;
            progress(done as u64 + 1, total);
        }
        Ok(report)
    }

    /// Verifies replica `id` and repairs its bad copies, adding to `report`.
    fn scrub_replica(&self, id: ReplicaId, bs: u64, report: &mut ScrubReport) -> Result<()> {
        let replica = self.replica(id);
        let verified = match replica.verify().wait(self.config.long_timeout) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(replica = %id, "verify failed, taking it out of service: {e}");
                if self.membership.lock().take_out(id, &[], true) {
                    self.persist()?;
                }
                return Ok(());
            }
        };
        report.blocks_checked += verified.blocks_checked;
        for bad in verified.bad {
            report.bad += 1;
            let mut fixed = bad.views.is_empty(); // nobody reads it: nothing to restore
            for view in &bad.views {
                let _structure = self.structure.read();
                let good = match self.read_healing(view, bad.block.0 * bs, bs, Some(id)) {
                    Ok(good) => good,
                    Err(e) => {
                        tracing::warn!(replica = %id, block = %bad.block, "no good copy: {e}");
                        continue;
                    }
                };
                let repaired = replica
                    .repair(view.clone(), bad.block, Bytes::clone(&good))
                    .wait(self.config.io_timeout);
                match repaired {
                    Ok(true) => {
                        fixed = true;
                        report.repaired += 1;
                        self.repairs.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(replica = %id, block = %bad.block, "scrub repaired a bad copy");
                    }
                    Ok(false) => fixed = true, // rewritten meanwhile
                    Err(ReplicaFault::Engine(e)) => {
                        tracing::warn!(replica = %id, block = %bad.block, "repair failed: {e}")
                    }
                    Err(e) => tracing::warn!(replica = %id, "repair failed: {e}"),
                }
            }
            if !fixed {
                report.unrepairable.push((id, bad.block));
            }
        }
        Ok(())
    }
}
