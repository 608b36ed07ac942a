//! Constants of the on-disk format (documented with byte diagrams in `engine/FORMAT.md`):
//! magics, versions, file names and sizes. Changing any of these is a format change.

/// The on-disk format versions this build knows, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum FormatVersion {
    /// v1: manifest + write-ahead log + per-layer data and two-slot chunk-metadata files.
    V1 = 1,
    /// v2: v1 plus a 16-byte *seal* per data block (sealed volumes only: the block's nonce
    /// and authentication tag when the layer above encrypts), kept in the chunk records and
    /// carried by the log records. Volumes without seals are still written as v1.
    V2 = 2,
}

/// The newest version this build reads (and writes, for sealed volumes).
pub const CURRENT_VERSION: FormatVersion = FormatVersion::V2;

/// The version of a volume's files: v2 when its blocks carry seals, else v1 (which older
/// builds still read).
pub(crate) fn version_for(sealed: bool) -> FormatVersion {
    if sealed {
        FormatVersion::V2
    } else {
        FormatVersion::V1
    }
}

/// Bytes of one block's seal.
pub const SEAL_LEN: usize = 16;

/// What a sealed volume keeps beside each data block: opaque to the engine, stored and
/// returned with the block, replaced by every write of it (zeros for unsealed volumes and
/// for blocks without data).
pub type Seal = [u8; SEAL_LEN];

/// The seal of a block that has none (unsealed volumes, zero and absent blocks).
pub const NO_SEAL: Seal = [0; SEAL_LEN];

/// Magic of the manifest file.
pub(crate) const MANIFEST_MAGIC: [u8; 8] = *b"TRIPODVM";
/// Magic of a write-ahead-log record.
pub(crate) const WAL_MAGIC: u32 = u32::from_le_bytes(*b"TWAL");
/// Magic of a chunk-metadata record.
pub(crate) const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"TCHK");

/// The manifest file.
pub(crate) const MANIFEST_FILE: &str = "manifest";
/// Where a new manifest is written before it replaces the old one.
pub(crate) const MANIFEST_TMP_FILE: &str = "manifest.tmp";
/// The write-ahead log.
pub(crate) const WAL_FILE: &str = "wal";

/// Data file of a layer: block `b` lives at byte `b * block_size`.
pub(crate) fn data_file(layer: u64) -> String {
    format!("layer-{layer:016x}.data")
}

/// Chunk-metadata file of a layer.
pub(crate) fn meta_file(layer: u64) -> String {
    format!("layer-{layer:016x}.meta")
}

/// Largest manifest body accepted: 1024 layers need about 100 KiB, so 16 MiB only stops an
/// allocation driven by a damaged length field.
pub(crate) const MAX_MANIFEST_BODY: u32 = 16 << 20;

/// Most layers (head, snapshots, hidden snapshots) per volume. Bounded so the manifest and
/// the open-time scan stay small; the product target is 256 snapshots.
pub const MAX_LAYERS: usize = 1024;

/// Largest volume: 2^50 bytes (1 PiB), far above any use and far below where block
/// arithmetic could overflow.
pub const MAX_VOLUME_SIZE: u64 = 1 << 50;
