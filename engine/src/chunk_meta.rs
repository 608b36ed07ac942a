//! Per-layer, per-chunk block metadata: for every block of the chunk whether the layer holds
//! it (absent, zero or data) and, for data, its CRC32. In memory one [`ChunkMeta`] per
//! (layer, chunk); on disk two fixed slots per chunk in the layer's `.meta` file, written
//! alternately so a torn write can only damage the slot being replaced, never the last good
//! one. The newest valid slot (highest `seq`) wins on load. Sealed volumes (format v2) keep
//! each block's 16-byte seal in the record too.

use std::collections::HashMap;

use crate::addressing::{ChunkIndex, LayerId};
use crate::codec::{crc, PutLe, Reader};
use crate::format::{version_for, Seal, CHUNK_MAGIC, CURRENT_VERSION, SEAL_LEN};
use crate::storage::StorageFile;

/// Header length of a chunk record.
const HEADER_LEN: usize = 48;

/// What one layer says about one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockState {
    /// Not written in this layer: look in the parent.
    Absent,
    /// Written as zeros (or trimmed) in this layer: reads zeros, holds no data.
    Zero,
    /// Written with data whose CRC32 is this.
    Data(u32),
}

/// The in-memory metadata of one chunk of one layer.
#[derive(Debug, Clone)]
pub(crate) struct ChunkMeta {
    pub states: Vec<BlockState>,
    /// Generation of the write that last set each block (0: never written).
    pub gens: Vec<u64>,
    /// Sealed volumes: each block's seal (zeros for blocks without data); empty otherwise.
    pub seals: Vec<Seal>,
    /// Sequence number of the newest durable record (0: none yet).
    pub seq: u64,
    /// Slot holding that record.
    pub durable_slot: Option<u8>,
}

impl ChunkMeta {
    pub(crate) fn new(chunk_blocks: u32, sealed: bool) -> Self {
        let seals = if sealed { chunk_blocks as usize } else { 0 };
        Self {
            states: vec![BlockState::Absent; chunk_blocks as usize],
            gens: vec![0; chunk_blocks as usize],
            seals: vec![[0; SEAL_LEN]; seals],
            seq: 0,
            durable_slot: None,
        }
    }

    /// Number of blocks holding data.
    pub(crate) fn data_blocks(&self) -> u64 {
        self.states
            .iter()
            .filter(|s| matches!(s, BlockState::Data(_)))
            .count() as u64
    }
}

/// Bytes per block in a record: state (1), CRC (4), generation (8), and in sealed volumes
/// the seal (16).
fn per_block(sealed: bool) -> usize {
    13 + if sealed { SEAL_LEN } else { 0 }
}

/// Bytes of one slot for a chunk of `chunk_blocks` blocks: header plus state, CRC,
/// generation (and seal) per block, rounded up to 4 KiB so slots never share a disk sector.
pub(crate) fn slot_len(chunk_blocks: u32, sealed: bool) -> u64 {
    let raw = (HEADER_LEN + per_block(sealed) * chunk_blocks as usize) as u64;
    raw.div_ceil(4096) * 4096
}

/// Byte offset of `slot` (0 or 1) of `chunk` in the meta file.
pub(crate) fn slot_offset(chunk_blocks: u32, sealed: bool, chunk: ChunkIndex, slot: u8) -> u64 {
    let len = slot_len(chunk_blocks, sealed);
    chunk.0 * 2 * len + u64::from(slot) * len
}

/// Encodes the record for `meta` with sequence number `seq` (sealed when `meta` has seals).
pub(crate) fn encode(layer: LayerId, chunk: ChunkIndex, seq: u64, meta: &ChunkMeta) -> Vec<u8> {
    let cb = meta.states.len();
    let sealed = !meta.seals.is_empty();
    let mut body = Vec::with_capacity(per_block(sealed) * cb);
    for s in &meta.states {
        body.put_u8(match s {
            BlockState::Absent => 0,
            BlockState::Zero => 1,
            BlockState::Data(_) => 2,
        });
    }
    for s in &meta.states {
        body.put_u32(match s {
            BlockState::Data(c) => *c,
            _ => 0,
        });
    }
    for g in &meta.gens {
        body.put_u64(*g);
    }
    for seal in &meta.seals {
        body.extend_from_slice(seal);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.put_u32(CHUNK_MAGIC);
    out.put_u16(version_for(sealed) as u16);
    out.put_u16(0);
    out.put_u64(layer.0);
    out.put_u64(chunk.0);
    out.put_u64(seq);
    out.put_u32(cb as u32);
    out.put_u32(crc(&body));
    out.put_u32(0);
    let header_crc = crc(&out);
    out.put_u32(header_crc);
    out.extend_from_slice(&body);
    out
}

/// What one slot holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Never written (all-zero header).
    Empty,
    /// A valid record: its sequence number, block states, generations and seals (empty
    /// for a volume without seals).
    Valid(u64, Vec<BlockState>, Vec<u64>, Vec<Seal>),
    /// Written but unreadable: torn by a crash, or damaged.
    Damaged(String),
    /// Written by a newer format version.
    Future(u32),
}

/// Decodes one slot, expecting a record of `layer`/`chunk` with `chunk_blocks` blocks, with
/// seals if `sealed`.
pub(crate) fn decode(
    bytes: &[u8],
    layer: LayerId,
    chunk: ChunkIndex,
    (chunk_blocks, sealed): (u32, bool),
) -> Slot {
    if bytes.len() >= HEADER_LEN && bytes[..HEADER_LEN].iter().all(|&b| b == 0) {
        return Slot::Empty;
    }
    match decode_record(bytes, layer, chunk, (chunk_blocks, sealed)) {
        Ok(slot) => slot,
        Err(why) => Slot::Damaged(why),
    }
}

fn decode_record(
    bytes: &[u8],
    layer: LayerId,
    chunk: ChunkIndex,
    (chunk_blocks, sealed): (u32, bool),
) -> Result<Slot, String> {
    let short = |s: crate::codec::Short| format!("truncated at {}", s.what);
    let mut r = Reader::new(bytes);
    if r.u32("magic").map_err(short)? != CHUNK_MAGIC {
        return Err("bad magic".into());
    }
    let version = r.u16("version").map_err(short)?;
    r.u16("reserved").map_err(short)?;
    let rec_layer = r.u64("layer").map_err(short)?;
    let rec_chunk = r.u64("chunk").map_err(short)?;
    let seq = r.u64("seq").map_err(short)?;
    let cb = r.u32("chunk blocks").map_err(short)?;
    let body_crc = r.u32("body crc").map_err(short)?;
    r.u32("reserved").map_err(short)?;
    let header_crc = r.u32("header crc").map_err(short)?;
    if crc(&bytes[..HEADER_LEN - 4]) != header_crc {
        return Err("header checksum mismatch".into());
    }
    if u32::from(version) > CURRENT_VERSION as u32 {
        return Ok(Slot::Future(u32::from(version)));
    }
    if u32::from(version) != version_for(sealed) as u32 {
        return Err(format!(
            "a version {version} record in a volume {} seals",
            if sealed { "with" } else { "without" }
        ));
    }
    if rec_layer != layer.0 || rec_chunk != chunk.0 || cb != chunk_blocks {
        return Err(format!(
            "record of layer {rec_layer} chunk {rec_chunk} ({cb} blocks) in the wrong place"
        ));
    }
    let body = r
        .take(per_block(sealed) * cb as usize, "body")
        .map_err(short)?;
    if crc(body) != body_crc {
        return Err("body checksum mismatch".into());
    }
    let (tags, rest) = body.split_at(cb as usize);
    let (crcs, rest) = rest.split_at(4 * cb as usize);
    let (gen_bytes, seal_bytes) = rest.split_at(8 * cb as usize);
    let seals = seal_bytes
        .chunks_exact(SEAL_LEN)
        .map(|s| {
            let mut b = [0u8; SEAL_LEN];
            b.copy_from_slice(s);
            b
        })
        .collect();
    let gens = gen_bytes
        .chunks_exact(8)
        .map(|g| {
            let mut b = [0u8; 8];
            b.copy_from_slice(g);
            u64::from_le_bytes(b)
        })
        .collect();
    let mut states = Vec::with_capacity(cb as usize);
    for (i, tag) in tags.iter().enumerate() {
        let mut c = [0u8; 4];
        c.copy_from_slice(&crcs[4 * i..4 * i + 4]);
        states.push(match tag {
            0 => BlockState::Absent,
            1 => BlockState::Zero,
            2 => BlockState::Data(u32::from_le_bytes(c)),
            other => return Err(format!("unknown block state {other}")),
        });
    }
    Ok(Slot::Valid(seq, states, gens, seals))
}

/// The chunk metadata of one layer as found on disk.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub chunks: HashMap<ChunkIndex, ChunkMeta>,
    /// Chunks with a damaged slot, and why: acceptable only if the write-ahead log proves a
    /// checkpoint of that chunk was interrupted.
    pub damaged: Vec<(ChunkIndex, String)>,
    /// A slot written by a newer format.
    pub future_version: Option<u32>,
}

/// Bytes read per call while scanning a meta file: large reads make the scan of a sparse
/// file cheap (holes read as zeros without I/O).
const SCAN_READ: u64 = 4 << 20;

/// Reads every chunk record of `layer` from its meta file.
pub(crate) fn load(
    file: &dyn StorageFile,
    layer: LayerId,
    (chunk_blocks, sealed): (u32, bool),
) -> std::io::Result<Loaded> {
    let slot = slot_len(chunk_blocks, sealed);
    let pair = 2 * slot;
    let pairs = file.size()?.div_ceil(pair);
    // Only the pairs the file system holds data for: a hole reads as zeros, i.e. empty
    // slots, so skipping it changes nothing but the time a sparse volume takes to open.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (start, end) in file.data_regions()? {
        let (lo, hi) = (start / pair, end.div_ceil(pair).min(pairs));
        match ranges.last_mut() {
            Some(last) if last.1 >= lo => last.1 = last.1.max(hi),
            _ if lo < hi => ranges.push((lo, hi)),
            _ => {}
        }
    }
    let per_read = (SCAN_READ / pair).max(1);
    let mut out = Loaded::default();
    let mut buf = Vec::new();
    for (mut first, end) in ranges {
        while first < end {
            let n = per_read.min(end - first);
            buf.resize((n * pair) as usize, 0);
            file.read_at(&mut buf, first * pair)?;
            for i in 0..n {
                let chunk = ChunkIndex(first + i);
                let at = (i * pair) as usize;
                let shape = (chunk_blocks, sealed);
                let a = decode(&buf[at..at + slot as usize], layer, chunk, shape);
                let b = decode(
                    &buf[at + slot as usize..at + pair as usize],
                    layer,
                    chunk,
                    shape,
                );
                take_newest(&mut out, chunk, [a, b]);
            }
            first += n;
        }
    }
    Ok(out)
}

fn take_newest(out: &mut Loaded, chunk: ChunkIndex, slots: [Slot; 2]) {
    let mut best: Option<ChunkMeta> = None;
    for (i, s) in slots.into_iter().enumerate() {
        match s {
            Slot::Empty => {}
            Slot::Damaged(why) => out.damaged.push((chunk, why)),
            Slot::Future(v) => out.future_version = Some(v),
            Slot::Valid(seq, states, gens, seals) => {
                if best.as_ref().is_none_or(|b| seq > b.seq) {
                    best = Some(ChunkMeta {
                        states,
                        gens,
                        seals,
                        seq,
                        durable_slot: Some(i as u8),
                    });
                }
            }
        }
    }
    if let Some(meta) = best {
        out.chunks.insert(chunk, meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(sealed: bool) -> ChunkMeta {
        let mut m = ChunkMeta::new(16, sealed);
        m.states[1] = BlockState::Data(0xdead_beef);
        m.states[5] = BlockState::Zero;
        m.gens[1] = 77;
        m.gens[5] = 1 << 40;
        if sealed {
            m.seals[1] = [0xa5; SEAL_LEN];
        }
        m
    }

    #[test]
    fn record_round_trips() {
        for sealed in [false, true] {
            let bytes = encode(LayerId(3), ChunkIndex(9), 42, &meta(sealed));
            match decode(&bytes, LayerId(3), ChunkIndex(9), (16, sealed)) {
                Slot::Valid(42, states, gens, seals) => {
                    assert_eq!(states, meta(sealed).states);
                    assert_eq!(gens, meta(sealed).gens);
                    assert_eq!(seals, meta(sealed).seals);
                }
                other => panic!("{other:?}"),
            }
            // A record of the other kind is never taken for this one.
            assert!(matches!(
                decode(&bytes, LayerId(3), ChunkIndex(9), (16, !sealed)),
                Slot::Damaged(_)
            ));
        }
    }

    #[test]
    fn damage_and_misplacement_are_detected() {
        for sealed in [false, true] {
            let shape = (16, sealed);
            let bytes = encode(LayerId(3), ChunkIndex(9), 42, &meta(sealed));
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x01;
                assert!(matches!(
                    decode(&b, LayerId(3), ChunkIndex(9), shape),
                    Slot::Damaged(_)
                ));
            }
            assert!(matches!(
                decode(&bytes, LayerId(3), ChunkIndex(8), shape),
                Slot::Damaged(_)
            ));
            for n in HEADER_LEN..bytes.len() {
                assert!(matches!(
                    decode(&bytes[..n], LayerId(3), ChunkIndex(9), shape),
                    Slot::Damaged(_)
                ));
            }
        }
    }

    #[test]
    fn slots_do_not_overlap() {
        assert_eq!(slot_len(1024, false), 16384);
        assert_eq!(slot_offset(1024, false, ChunkIndex(1), 1), 3 * 16384);
        // 48 + 29 * 1024 bytes round up to 32 KiB.
        assert_eq!(slot_len(1024, true), 32768);
        assert!(
            encode(LayerId(1), ChunkIndex(0), 1, &meta(true)).len() as u64 <= slot_len(16, true)
        );
    }
}
