//! What a backup target holds, byte for byte (`docs/backups.md` has the layout): block
//! objects named by the SHA-256 of their content and compressed with LZ4, one manifest per
//! backup naming every block that holds data, and one index per volume. Everything read
//! back is untrusted: the decoders check every length, count and hash and answer an error,
//! never a panic.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of volume per block object (one 4 MiB chunk of the default geometry).
pub const BLOCK_SIZE: u64 = 4 << 20;
/// The largest volume a manifest may describe (64 TiB).
pub const MAX_VOLUME_BYTES: u64 = 64 << 40;
/// The largest manifest or index accepted: a 64 TiB volume full of data has 16 Mi entries of
/// ~90 bytes each.
pub const MAX_DOCUMENT_BYTES: usize = 2 << 30;
/// The manifest format this code writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// First bytes of every block object.
const BLOCK_MAGIC: &[u8; 8] = b"TRPBAK01";
/// Magic, codec (1), reserved (3), content length (4), SHA-256 (32).
const BLOCK_HEADER: usize = 8 + 1 + 3 + 4 + 32;
/// Codec byte: the content as is (LZ4 would not make it smaller).
const CODEC_RAW: u8 = 0;
/// Codec byte: LZ4 block format.
const CODEC_LZ4: u8 = 1;

/// What is wrong with an object read from a backup target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The block object is damaged or is not the block it is named after.
    #[error("block object {hash}: {why}")]
    BadBlock {
        /// The block's name (its expected hash).
        hash: String,
        /// What is wrong.
        why: String,
    },
    /// A manifest or index cannot be used.
    #[error("{what}: {why}")]
    BadDocument {
        /// Which document.
        what: String,
        /// What is wrong.
        why: String,
    },
}

/// The SHA-256 of a block's content: its object's name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub [u8; 32]);

impl BlockHash {
    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Parses 64 lower- or upper-case hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

impl Serialize for BlockHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for BlockHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex SHA-256"))
    }
}

/// The object bytes of a block with content `data` (at most [`BLOCK_SIZE`] bytes), and its
/// hash.
pub fn encode_block(data: &[u8]) -> (BlockHash, Vec<u8>) {
    let hash = BlockHash::of(data);
    let bytes = encode_hashed_block(&hash, data);
    (hash, bytes)
}

/// The object bytes of a block with content `data` whose hash, already computed, is `hash`.
pub fn encode_hashed_block(hash: &BlockHash, data: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::block::compress(data);
    let (codec, payload) = if packed.len() < data.len() {
        (CODEC_LZ4, packed.as_slice())
    } else {
        (CODEC_RAW, data)
    };
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(BLOCK_HEADER + payload.len());
    out.extend_from_slice(BLOCK_MAGIC);
    out.push(codec);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(payload);
    out
}

/// The content of block object `bytes`, which must be the block named `expected`: the
/// header, the length, the decompression and the content's SHA-256 are all checked.
pub fn decode_block(expected: &BlockHash, bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    let bad = |why: &str| FormatError::BadBlock {
        hash: expected.to_string(),
        why: why.to_owned(),
    };
    let (header, payload) = bytes
        .split_at_checked(BLOCK_HEADER)
        .ok_or_else(|| bad("shorter than its header"))?;
    let (magic, rest) = header.split_at(8);
    if magic != BLOCK_MAGIC {
        return Err(bad("not a Tripod backup block (bad magic)"));
    }
    let (codec, rest) = rest.split_at(4);
    if codec.get(1..) != Some(&[0u8; 3][..]) {
        return Err(bad("reserved header bytes are not zero"));
    }
    let (len, stored) = rest.split_at(4);
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(len);
    let len = u32::from_le_bytes(len4) as usize;
    if len as u64 > BLOCK_SIZE || len == 0 {
        return Err(bad("content length out of range"));
    }
    if stored != expected.0 {
        return Err(bad("it names another block"));
    }
    let data = match codec.first() {
        Some(&CODEC_RAW) if payload.len() == len => payload.to_vec(),
        Some(&CODEC_RAW) => return Err(bad("payload length differs from the header's")),
        Some(&CODEC_LZ4) => lz4_flex::block::decompress(payload, len)
            .map_err(|e| bad(&format!("does not decompress: {e}")))?,
        _ => return Err(bad("unknown codec")),
    };
    if data.len() != len {
        return Err(bad("decompressed length differs from the header's"));
    }
    if BlockHash::of(&data) != *expected {
        return Err(bad("content does not match its hash (damaged)"));
    }
    Ok(data)
}

/// One block of a backup: which [`BLOCK_SIZE`] range of the volume, and its content's hash.
/// The last block of a volume whose size is not a multiple of the block size is shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// Range index: bytes `index*BLOCK_SIZE..`.
    pub index: u64,
    /// The block object.
    pub hash: BlockHash,
}

/// Everything needed to restore one backup, stored in the target as
/// `backups/<id>.json`: the volume's size and the block object of every range holding data
/// (ranges not named read as zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The backup's id.
    pub backup_id: String,
    /// The volume it was taken from.
    pub volume_id: String,
    /// The backup it is incremental to, if any (for the API; the manifest is complete).
    pub parent_id: Option<String>,
    /// The volume's size in bytes when it was taken.
    pub size: u64,
    /// [`BLOCK_SIZE`].
    pub block_size: u64,
    /// When the data was taken (seconds since the Unix epoch).
    pub data_timestamp: u64,
    /// The backup's name when it was taken.
    pub name: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Every range holding data, by increasing index.
    pub blocks: Vec<BlockRef>,
}

impl Manifest {
    /// The manifest as stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a stored manifest: known format and block size, a size in range,
    /// blocks strictly increasing and inside the size.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let bad = |why: String| FormatError::BadDocument {
            what: "backup manifest".into(),
            why,
        };
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(bad("too large".into()));
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "format {} (this Tripod reads {MANIFEST_FORMAT})",
                m.format
            )));
        }
        if m.block_size != BLOCK_SIZE {
            return Err(bad(format!(
                "block size {} is not {BLOCK_SIZE}",
                m.block_size
            )));
        }
        if m.size > MAX_VOLUME_BYTES {
            return Err(bad(format!("volume size {} out of range", m.size)));
        }
        let ranges = m.size.div_ceil(BLOCK_SIZE);
        let mut last: Option<u64> = None;
        for b in &m.blocks {
            if b.index >= ranges {
                return Err(bad(format!("block {} is past the volume's end", b.index)));
            }
            if last.is_some_and(|l| l >= b.index) {
                return Err(bad(format!("block {} is out of order", b.index)));
            }
            last = Some(b.index);
        }
        Ok(m)
    }

    /// Bytes of range `index` (the last range may be short); 0 past the end.
    pub fn range_len(&self, index: u64) -> u64 {
        let start = index.saturating_mul(BLOCK_SIZE);
        self.size.saturating_sub(start).min(BLOCK_SIZE)
    }
}

/// One backup in a volume's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The backup.
    pub backup_id: String,
    /// The backup it is incremental to.
    pub parent_id: Option<String>,
    /// When its data was taken.
    pub data_timestamp: u64,
    /// The volume's size then, in bytes.
    pub size: u64,
}

/// A volume's backups in the target (`volumes/<id>.json`), oldest first: what a fresh
/// Tripod lists to restore a volume it has never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeIndex {
    /// The volume.
    pub volume_id: String,
    /// Its backups.
    pub backups: Vec<IndexEntry>,
}

impl VolumeIndex {
    /// The index as stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored index.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(FormatError::BadDocument {
                what: "volume index".into(),
                why: "too large".into(),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| FormatError::BadDocument {
            what: "volume index".into(),
            why: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_block_round_trips_compressed_or_raw_and_any_damage_is_named() {
        let text = vec![7u8; 1 << 20];
        let mut noise = vec![0u8; 4096];
        let mut x = 1u32;
        for b in &mut noise {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
        for data in [&text[..], &noise[..]] {
            let (hash, bytes) = encode_block(data);
            assert_eq!(hash, BlockHash::of(data));
            assert_eq!(decode_block(&hash, &bytes).unwrap(), data);
            // Every single-byte flip is caught (header, payload, anywhere).
            for at in [0, 9, 12, 20, BLOCK_HEADER, bytes.len() - 1] {
                let mut bad = bytes.clone();
                bad[at] ^= 0x40;
                let e = decode_block(&hash, &bad).unwrap_err();
                assert!(e.to_string().contains(&hash.to_string()), "{e}");
            }
            // Truncated, and asked for under another name.
            assert!(decode_block(&hash, &bytes[..bytes.len() / 2]).is_err());
            assert!(decode_block(&BlockHash::of(b"x"), &bytes).is_err());
        }
        assert!(
            encode_block(&text).1.len() < 10_000,
            "zeros-like data compresses"
        );
    }

    fn manifest(size: u64, blocks: &[u64]) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            backup_id: "b".into(),
            volume_id: "v".into(),
            parent_id: None,
            size,
            block_size: BLOCK_SIZE,
            data_timestamp: 1,
            name: None,
            description: None,
            blocks: blocks
                .iter()
                .map(|&index| BlockRef {
                    index,
                    hash: BlockHash::of(&index.to_le_bytes()),
                })
                .collect(),
        }
    }

    #[test]
    fn manifests_round_trip_and_inconsistent_ones_are_refused() {
        let m = manifest(3 * BLOCK_SIZE + 5, &[0, 3]);
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.range_len(3), 5);
        assert_eq!(m.range_len(4), 0);
        for bad in [
            manifest(BLOCK_SIZE, &[1]),
            manifest(4 * BLOCK_SIZE, &[2, 1]),
            manifest(4 * BLOCK_SIZE, &[2, 2]),
            manifest(MAX_VOLUME_BYTES + 1, &[]),
            Manifest {
                format: 9,
                ..manifest(BLOCK_SIZE, &[])
            },
            Manifest {
                block_size: 512,
                ..manifest(BLOCK_SIZE, &[])
            },
        ] {
            assert!(Manifest::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        assert!(Manifest::decode(b"{").is_err());
        let idx = VolumeIndex {
            volume_id: "v".into(),
            backups: vec![],
        };
        assert_eq!(VolumeIndex::decode(&idx.encode()).unwrap(), idx);
    }
}
