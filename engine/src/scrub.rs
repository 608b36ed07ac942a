//! `verify`: reads every stored data block of every layer and reports each whose CRC does
//! not match. It repairs nothing (a single replica has no other copy); the replica set uses
//! the report to rewrite bad copies from good ones.

use crate::addressing::{BlockIndex, LayerId, SnapshotId};
use crate::chunk_meta::BlockState;
use crate::error::{EngineError, Result};
use crate::view::View;
use crate::volume::{Access, Volume};

/// One stored block whose content does not match its checksum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// Data blocks read and checked.
    pub blocks_checked: u64,
    /// Blocks whose CRC did not match, in layer then block order.
    pub bad: Vec<BadBlock>,
}

/// A chunk whose data file holds data that no chunk record of its layer accounts for: what a
/// metadata file cut short or lost leaves behind (and, rarely, a crash between placing new
/// data and recording it, for a write never made durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrecordedData {
    /// The layer.
    pub layer: LayerId,
    /// Its metadata file (name inside the volume directory), which lacks the record.
    pub meta_file: String,
    /// The chunk.
    pub chunk: crate::addressing::ChunkIndex,
}

impl Volume {
    /// Every chunk of every layer whose data file holds data but which has no chunk record
    /// (from the file system's map of the data files: holes are skipped).
    pub fn unrecorded_data(&self) -> Result<Vec<UnrecordedData>> {
        self.check_poison()?;
        let tree = self.tree.read();
        let chunk_bytes = u64::from(self.geometry.chunk_blocks) * self.geometry.bs();
        let mut out = Vec::new();
        for layer in tree.layers.values() {
            let regions = layer.data.data_regions().map_err(EngineError::io(format!(
                "mapping the data file of {}",
                layer.id()
            )))?;
            let chunks = layer.chunks.read();
            let mut seen = std::collections::BTreeSet::new();
            for (start, end) in regions {
                for c in start / chunk_bytes..end.div_ceil(chunk_bytes) {
                    let chunk = crate::addressing::ChunkIndex(c);
                    if !chunks.contains_key(&chunk) && seen.insert(c) {
                        out.push(UnrecordedData {
                            layer: layer.id(),
                            meta_file: crate::format::meta_file(layer.id().0),
                            chunk,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

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
