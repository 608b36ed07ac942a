//! Reading a sealed volume: whole blocks together with what the writer stored beside each —
//! its generation and seal — taken under one lock, so a block's data and its seal always
//! belong to the same write (see [`Volume::create_sealed`]).

use crate::addressing::{BlockIndex, LayerId};
use crate::chunk_meta::BlockState;
use crate::error::{EngineError, Result};
use crate::format::Seal;
use crate::layer::{Layer, Tree};
use crate::view::View;
use crate::volume::{Access, Volume};

/// What a sealed read returns beside one block that holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockSeal {
    /// Generation of the write that stored the block.
    pub generation: u64,
    /// The seal stored with it.
    pub seal: Seal,
}

impl Volume {
    /// Fills `buf` (whole blocks from a block boundary) from byte `offset` of `view` and
    /// returns, per block, its generation and seal — `None` for a block that reads as zeros
    /// without holding data (never written, zeroed, trimmed). Every data block is checked
    /// against its CRC as any read. Works on any volume (seals are zeros without them).
    pub fn read_sealed_at(
        &self,
        view: &View,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Vec<Option<BlockSeal>>> {
        self.check_poison()?;
        let tree = self.tree.read();
        let (size, chain) = self.view_chain(&tree, view)?;
        let g = self.geometry;
        let bs = g.bs();
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(EngineError::OutOfRange { offset, len, size });
        }
        if offset % bs != 0 || len % bs != 0 {
            return Err(EngineError::Seals(
                "a sealed read covers whole blocks only".into(),
            ));
        }
        self.read_sealed_in(&tree, &chain, offset / bs, buf)
    }

    /// [`Volume::read_sealed_at`] of whole blocks from block `first`, as seen from the top
    /// of `chain` (the caller holds the tree and has checked the range).
    pub(crate) fn read_sealed_in(
        &self,
        tree: &Tree,
        chain: &[&Layer],
        first: u64,
        buf: &mut [u8],
    ) -> Result<Vec<Option<BlockSeal>>> {
        let g = self.geometry;
        let bs = g.bs();
        let len = buf.len() as u64;
        let end = first + len / bs;
        let _guard = self.locks.read(first, end);
        // Per block: the layer holding its data (with CRC and stamp), or nothing.
        let mut owners: Vec<Option<(LayerId, u32, BlockSeal)>> =
            Vec::with_capacity((len / bs) as usize);
        let mut b = first;
        while b < end {
            let (chunk, _) = g.locate(BlockIndex(b));
            let chunk_end = ((chunk.0 + 1) * u64::from(g.chunk_blocks)).min(end);
            let resolved = Tree::resolve_chunk(chain, chunk, g.chunk_blocks);
            for block in b..chunk_end {
                let (_, slot) = g.locate(BlockIndex(block));
                let owner = resolved
                    .as_ref()
                    .and_then(|o| o.get(slot).copied())
                    .and_then(|id| tree.layers.get(&LayerId(id)));
                owners.push(owner.and_then(|l| match l.state(chunk, slot) {
                    BlockState::Data(crc) => {
                        let (generation, seal) = l.stamp(chunk, slot);
                        Some((l.id(), crc, BlockSeal { generation, seal }))
                    }
                    _ => None,
                }));
            }
            b = chunk_end;
        }
        // One file read per run of consecutive blocks held by one layer.
        let bsz = bs as usize;
        let mut i = 0;
        while i < owners.len() {
            let Some((layer, ..)) = owners[i] else {
                buf[i * bsz..(i + 1) * bsz].fill(0);
                i += 1;
                continue;
            };
            let mut crcs = Vec::new();
            let mut j = i;
            while let Some(Some((l, crc, _))) = owners.get(j) {
                if *l != layer {
                    break;
                }
                crcs.push(*crc);
                j += 1;
            }
            let run = (first + i as u64, &crcs[..]);
            self.read_run(tree, layer, run, &mut buf[i * bsz..j * bsz], Access::Any)?;
            i = j;
        }
        Ok(owners.into_iter().map(|o| o.map(|(_, _, s)| s)).collect())
    }
}
