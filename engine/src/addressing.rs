//! Newtypes for the quantities the engine passes around, so a block number can never be
//! mistaken for a byte offset or a layer id.

use std::fmt;

use crate::error::EngineError;

/// Index of one block in a volume (byte offset / block size).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct BlockIndex(pub u64);

/// Index of one chunk in a volume (block index / blocks per chunk).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ChunkIndex(pub u64);

/// Identifier of one layer inside one replica. Never reused: the manifest keeps a counter.
/// `0` is reserved for "no layer".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LayerId(pub u64);

/// Log sequence number of one write-ahead-log record; strictly increasing per volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for BlockIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.0)
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {}", self.0)
    }
}

/// Longest snapshot id accepted, in bytes (a UUID is 36).
pub const MAX_SNAPSHOT_ID_LEN: usize = 64;

/// Name of a snapshot, chosen by the caller: 1 to 64 bytes of `[A-Za-z0-9._-]`, so ids such
/// as UUIDs fit and every id is safe in file names and logs.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl TryFrom<String> for SnapshotId {
    type Error = EngineError;
    fn try_from(id: String) -> Result<Self, EngineError> {
        Self::new(id)
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

impl SnapshotId {
    /// Validates and wraps a snapshot id.
    pub fn new(id: impl Into<String>) -> Result<Self, EngineError> {
        let id = id.into();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if id.is_empty() || id.len() > MAX_SNAPSHOT_ID_LEN || !id.chars().all(valid_char) {
            return Err(EngineError::InvalidSnapshotId(id));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for SnapshotId {
    type Error = EngineError;
    fn try_from(s: &str) -> Result<Self, EngineError> {
        Self::new(s)
    }
}

/// Block size and chunk size of one volume, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    /// Bytes per block: 4096 (default) or 512.
    pub block_size: u32,
    /// Blocks per chunk: a power of two from 8 to 4096 (default 1024).
    pub chunk_blocks: u32,
}

impl Geometry {
    /// Checks that the block and chunk sizes are ones the engine supports.
    pub fn validate(self) -> Result<Self, EngineError> {
        if !matches!(self.block_size, 512 | 4096) {
            return Err(EngineError::InvalidGeometry(format!(
                "block size {} (must be 512 or 4096)",
                self.block_size
            )));
        }
        if !self.chunk_blocks.is_power_of_two() || !(8..=4096).contains(&self.chunk_blocks) {
            return Err(EngineError::InvalidGeometry(format!(
                "chunk of {} blocks (must be a power of two from 8 to 4096)",
                self.chunk_blocks
            )));
        }
        Ok(self)
    }

    /// Block size as a `u64` for offset arithmetic.
    pub fn bs(self) -> u64 {
        u64::from(self.block_size)
    }

    /// The chunk holding `block` and the block's position inside it.
    pub fn locate(self, block: BlockIndex) -> (ChunkIndex, usize) {
        let cb = u64::from(self.chunk_blocks);
        // The remainder is below chunk_blocks (at most 4096), so it fits in usize.
        (ChunkIndex(block.0 / cb), (block.0 % cb) as usize)
    }

    /// The block at position `slot` of `chunk`.
    pub fn block_at(self, chunk: ChunkIndex, slot: usize) -> BlockIndex {
        BlockIndex(chunk.0 * u64::from(self.chunk_blocks) + slot as u64)
    }

    /// Byte offset of `block` in a layer's data file.
    pub fn byte_offset(self, block: BlockIndex) -> u64 {
        block.0 * self.bs()
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Self {
            block_size: 4096,
            chunk_blocks: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_are_validated() {
        assert!(SnapshotId::new("3f2a-uuid_like.1").is_ok());
        assert!(SnapshotId::new("").is_err());
        assert!(SnapshotId::new("a/b").is_err());
        assert!(SnapshotId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn geometry_rejects_odd_sizes() {
        let g = |block_size, chunk_blocks| {
            Geometry {
                block_size,
                chunk_blocks,
            }
            .validate()
        };
        assert!(g(4096, 1024).is_ok());
        assert!(g(512, 8).is_ok());
        assert!(g(1024, 1024).is_err());
        assert!(g(4096, 1000).is_err());
        assert!(g(4096, 4).is_err());
    }
}
