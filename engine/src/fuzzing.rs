//! Entry points for the fuzz targets in `fuzz/`: each feeds untrusted bytes to one decoder.
//! Not part of the stable API.

use crate::addressing::{ChunkIndex, LayerId, Lsn};
use crate::chunk_meta;
use crate::manifest::Manifest;
use crate::storage::{MemStorage, Storage};
use crate::wal;

/// Decodes `bytes` as a manifest; if it decodes, it must re-encode to the same bytes.
pub fn manifest(bytes: &[u8]) {
    if let Ok(m) = Manifest::decode(bytes) {
        assert_eq!(
            m.encode(),
            bytes,
            "a decoded manifest must re-encode identically"
        );
    }
}

/// Decodes `bytes` as a chunk-metadata slot of a 16-block chunk.
pub fn chunk_record(bytes: &[u8]) {
    let _ = chunk_meta::decode(bytes, LayerId(1), ChunkIndex(0), (16, false));
    let _ = chunk_meta::decode(bytes, LayerId(1), ChunkIndex(0), (16, true));
}

/// Scans `bytes` as a write-ahead log of 512-byte blocks.
pub fn wal(bytes: &[u8]) {
    let storage = MemStorage::new();
    let Ok(file) = storage.create_file("wal") else {
        return;
    };
    if file.write_at(bytes, 0).is_err() {
        return;
    }
    let _ = wal::scan(
        file.as_ref(),
        (1, Lsn(1), 512),
        |e| e,
        |e| {
            assert!(e.payload.len() <= 512);
            Ok(())
        },
    );
}
