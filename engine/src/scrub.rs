//! `verify`: reads every stored data block of every layer and reports each whose CRC does
//! not match. It repairs nothing (a single replica has no other copy); the replica set uses
//! the report to rewrite bad copies from good ones.

use crate::addressing::{BlockIndex, LayerId, SnapshotId};
use crate::chunk_meta::BlockState;
use crate::error::{EngineError, Result};
use crate::view::View;
use crate::volume::{Access, Volume};

/// One stored block whose content does not match its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlock {
    /// The layer holding the bad copy.
    pub layer: LayerId,
    /// The snapshot that layer is, if it is a visible snapshot (`None`: head or hidden).
    pub snapshot: Option<SnapshotId>,
    /// The volume block.
    pub block: BlockIndex,
    /// The views that read this copy (empty: no view reads it any more).
    pub views: Vec<View>,
}

/// What [`Volume::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Data blocks read and checked.
    pub blocks_checked: u64,
    /// Blocks whose CRC did not match, in layer then block order.
    pub bad: Vec<BadBlock>,
}

impl Volume {
    /// Checks every stored data block of every layer against its CRC. I/O errors other than
    /// a mismatch end the walk with an error.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(&mut |_| {})
    }

    /// [`Volume::verify`], calling `progress` with the blocks checked so far after every
    /// chunk (the total to expect: [`Volume::space_used`]'s `total_bytes` in blocks).
    pub fn verify_with(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport> {
        self.check_poison()?;
        let tree = self.tree.read();
        let g = self.geometry;
        let mut report = VerifyReport::default();
        let mut buf = vec![0u8; g.block_size as usize];
        for layer in tree.layers.values() {
            let mut chunks: Vec<_> = layer.chunks.read().keys().copied().collect();
            chunks.sort_unstable();
            for chunk in chunks {
                for slot in 0..g.chunk_blocks as usize {
                    let block = g.block_at(chunk, slot);
                    let _guard = self.locks.read(block.0, block.0 + 1);
                    let BlockState::Data(crc) = layer.state(chunk, slot) else {
                        continue;
                    };
                    report.blocks_checked += 1;
                    match self.read_run(&tree, layer.id(), (block.0, &[crc]), &mut buf, Access::Any)
                    {
                        Ok(_) => {}
                        Err(EngineError::ChecksumMismatch { .. }) => report.bad.push(BadBlock {
                            layer: layer.id(),
                            snapshot: layer.snapshot_id().cloned(),
                            block,
                            views: self.views_reading(&tree, layer.id(), block),
                        }),
                        Err(e) => return Err(e),
                    }
                }
                progress(report.blocks_checked);
            }
        }
        Ok(report)
    }
}
