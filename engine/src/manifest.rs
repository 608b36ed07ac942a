//! The manifest: one small file per volume that names its size, geometry, layer tree and the
//! write-ahead log position. It is replaced atomically (write new, sync, rename, sync dir), so
//! a crash leaves either the old or the new one.

use std::collections::{HashMap, HashSet};

use crate::addressing::{Geometry, LayerId, Lsn, SnapshotId};
use crate::codec::{crc, PutLe, Reader, Short};
use crate::error::{EngineError, Result};
use crate::format::{
    version_for, FormatVersion, CURRENT_VERSION, MANIFEST_FILE, MANIFEST_MAGIC, MANIFEST_TMP_FILE,
    MAX_LAYERS, MAX_MANIFEST_BODY, MAX_VOLUME_SIZE,
};
use crate::storage::Storage;

/// Size of the manifest header: magic(8) version(4) body_len(4) body_crc(4) header_crc(4).
const HEADER_LEN: usize = 24;

/// What a layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The live head: the only layer that takes writes.
    Head,
    /// A frozen, named snapshot.
    Snapshot(SnapshotId),
    /// A deleted snapshot whose blocks other layers still read.
    Hidden,
}

/// One layer as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerRecord {
    pub id: LayerId,
    pub parent: Option<LayerId>,
    pub role: Role,
    /// Volume size when the layer was frozen (the head records the current size).
    pub size: u64,
    /// Seconds since the Unix epoch when the layer was frozen or created.
    pub created: u64,
}

/// The decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub size: u64,
    pub geometry: Geometry,
    /// Epoch of the write-ahead log: only records stamped with it are replayed.
    pub epoch: u64,
    /// Every WAL record up to this one is applied and durable in the layer files.
    pub checkpoint_lsn: Lsn,
    pub next_layer_id: u64,
    pub head: LayerId,
    pub layers: Vec<LayerRecord>,
    /// Every data block carries a [`Seal`](crate::Seal) (format v2; fixed at creation).
    pub sealed: bool,
}

/// Manifest flag (v2 bodies): the volume's blocks carry seals.
const FLAG_SEALED: u32 = 1;

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.layers.len() * 128);
        body.put_u64(self.size);
        body.put_u32(self.geometry.block_size);
        body.put_u32(self.geometry.chunk_blocks);
        body.put_u64(self.epoch);
        body.put_u64(self.checkpoint_lsn.0);
        body.put_u64(self.next_layer_id);
        body.put_u64(self.head.0);
        body.put_u32(self.layers.len() as u32);
        for l in &self.layers {
            body.put_u64(l.id.0);
            body.put_u64(l.parent.map_or(0, |p| p.0));
            let (role, name) = match &l.role {
                Role::Head => (0, ""),
                Role::Snapshot(id) => (1, id.as_str()),
                Role::Hidden => (2, ""),
            };
            body.put_u8(role);
            body.put_u64(l.size);
            body.put_u64(l.created);
            body.put_u8(name.len() as u8);
            body.extend_from_slice(name.as_bytes());
        }
        let version = version_for(self.sealed);
        if version != FormatVersion::V1 {
            body.put_u32(if self.sealed { FLAG_SEALED } else { 0 });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.put_u32(version as u32);
        out.put_u32(body.len() as u32);
        out.put_u32(crc(&body));
        let header_crc = crc(&out);
        out.put_u32(header_crc);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and validates a manifest; every damage is a typed error.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| EngineError::corrupt(MANIFEST_FILE, reason);
        let short = |s: Short| bad(format!("truncated at {}", s.what));
        let mut r = Reader::new(bytes);
        let magic = r.take(8, "magic").map_err(short)?;
        if magic != MANIFEST_MAGIC {
            return Err(bad("bad magic".into()));
        }
        let version = r.u32("version").map_err(short)?;
        let body_len = r.u32("body length").map_err(short)?;
        let body_crc = r.u32("body checksum").map_err(short)?;
        let header_crc = r.u32("header checksum").map_err(short)?;
        if crc(&bytes[..HEADER_LEN - 4]) != header_crc {
            return Err(bad("header checksum mismatch".into()));
        }
        if version > CURRENT_VERSION as u32 || version == 0 {
            return Err(EngineError::UnsupportedVersion {
                file: MANIFEST_FILE.into(),
                found: version,
                supported: CURRENT_VERSION as u32,
            });
        }
        if body_len > MAX_MANIFEST_BODY || body_len as usize != r.remaining() {
            return Err(bad(format!(
                "body length {body_len} but {} bytes follow",
                r.remaining()
            )));
        }
        let body = r.take(body_len as usize, "body").map_err(short)?;
        if crc(body) != body_crc {
            return Err(bad("body checksum mismatch".into()));
        }
        let manifest = Self::decode_body(body, version)
            .map_err(short)?
            .map_err(bad)?;
        manifest.validate().map_err(bad)?;
        Ok(manifest)
    }

    fn decode_body(body: &[u8], version: u32) -> Result<Result<Self, String>, Short> {
        let mut r = Reader::new(body);
        let size = r.u64("size")?;
        let geometry = Geometry {
            block_size: r.u32("block size")?,
            chunk_blocks: r.u32("chunk blocks")?,
        };
        let epoch = r.u64("epoch")?;
        let checkpoint_lsn = Lsn(r.u64("checkpoint lsn")?);
        let next_layer_id = r.u64("next layer id")?;
        let head = LayerId(r.u64("head")?);
        let count = r.u32("layer count")? as usize;
        if count > MAX_LAYERS {
            return Ok(Err(format!("{count} layers (limit {MAX_LAYERS})")));
        }
        let mut layers = Vec::with_capacity(count);
        for _ in 0..count {
            let id = LayerId(r.u64("layer id")?);
            let parent = r.u64("layer parent")?;
            let role_tag = r.u8("layer role")?;
            let size = r.u64("layer size")?;
            let created = r.u64("layer created")?;
            let name_len = r.u8("snapshot id length")? as usize;
            let name = r.take(name_len, "snapshot id")?;
            let role = match role_tag {
                0 => Role::Head,
                1 => {
                    let text = String::from_utf8_lossy(name).into_owned();
                    match SnapshotId::new(text) {
                        Ok(id) => Role::Snapshot(id),
                        Err(e) => return Ok(Err(e.to_string())),
                    }
                }
                2 => Role::Hidden,
                other => return Ok(Err(format!("unknown layer role {other}"))),
            };
            let parent = (parent != 0).then_some(LayerId(parent));
            layers.push(LayerRecord {
                id,
                parent,
                role,
                size,
                created,
            });
        }
        let flags = if version >= FormatVersion::V2 as u32 {
            r.u32("flags")?
        } else {
            0
        };
        if flags & !FLAG_SEALED != 0 {
            return Ok(Err(format!("unknown flags {flags:#x}")));
        }
        let sealed = flags & FLAG_SEALED != 0;
        if version_for(sealed) as u32 != version {
            return Ok(Err(format!("version {version} with flags {flags:#x}")));
        }
        if r.remaining() != 0 {
            return Ok(Err(format!("{} trailing bytes", r.remaining())));
        }
        Ok(Ok(Self {
            size,
            geometry,
            epoch,
            checkpoint_lsn,
            next_layer_id,
            head,
            layers,
            sealed,
        }))
    }

    /// Checks the invariants every manifest must hold.
    fn validate(&self) -> Result<(), String> {
        self.geometry.validate().map_err(|e| e.to_string())?;
        let bs = self.geometry.bs();
        if self.size == 0 || self.size % bs != 0 || self.size > MAX_VOLUME_SIZE {
            return Err(format!("bad volume size {}", self.size));
        }
        let mut ids = HashMap::new();
        let mut names = HashSet::new();
        for l in &self.layers {
            if l.id.0 == 0 || l.id.0 >= self.next_layer_id {
                return Err(format!("bad layer id {}", l.id.0));
            }
            if ids.insert(l.id, l).is_some() {
                return Err(format!("duplicate layer id {}", l.id.0));
            }
            if let Role::Snapshot(name) = &l.role {
                if !names.insert(name.clone()) {
                    return Err(format!("duplicate snapshot id {name}"));
                }
            }
        }
        for l in &self.layers {
            if let Some(p) = l.parent {
                // Parents are always created before children, so ids only grow down the
                // tree; this also rules out cycles.
                if p >= l.id || !ids.contains_key(&p) {
                    return Err(format!("layer {} has bad parent {}", l.id.0, p.0));
                }
                if ids.get(&p).is_some_and(|p| p.role == Role::Head) {
                    return Err(format!("layer {} has the head as parent", l.id.0));
                }
            }
        }
        let heads = self.layers.iter().filter(|l| l.role == Role::Head).count();
        let head_ok = ids.get(&self.head).is_some_and(|l| l.role == Role::Head);
        if heads != 1 || !head_ok {
            return Err("the head layer is missing or not unique".into());
        }
        Ok(())
    }

    /// Reads the manifest of a volume.
    pub(crate) fn load(storage: &dyn Storage) -> Result<Self> {
        if !storage
            .exists(MANIFEST_FILE)
            .map_err(EngineError::io("looking for the manifest"))?
        {
            return Err(EngineError::NotFound);
        }
        let file = storage
            .open_file(MANIFEST_FILE)
            .map_err(EngineError::io("opening the manifest"))?;
        let len = file
            .size()
            .map_err(EngineError::io("sizing the manifest"))?;
        if len > u64::from(MAX_MANIFEST_BODY) + HEADER_LEN as u64 {
            return Err(EngineError::corrupt(
                MANIFEST_FILE,
                format!("{len} bytes is too large"),
            ));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_at(&mut bytes, 0)
            .map_err(EngineError::io("reading the manifest"))?;
        Self::decode(&bytes)
    }

    /// Durably replaces the manifest: write a temporary file, sync it, rename it over the
    /// old one, sync the directory.
    pub(crate) fn store(&self, storage: &dyn Storage) -> Result<()> {
        let bytes = self.encode();
        let tmp = storage
            .create_file(MANIFEST_TMP_FILE)
            .map_err(EngineError::io("creating the new manifest"))?;
        tmp.write_at(&bytes, 0)
            .map_err(EngineError::io("writing the new manifest"))?;
        tmp.sync_data()
            .map_err(EngineError::io("syncing the new manifest"))?;
        storage
            .rename(MANIFEST_TMP_FILE, MANIFEST_FILE)
            .map_err(EngineError::io("renaming the new manifest"))?;
        // After the rename the new manifest is in place: a failure now is never "nothing
        // changed", whatever its errno (callers put the tree back only on `NoSpace`).
        storage.sync_dir().map_err(|source| EngineError::Io {
            context: "syncing the volume directory".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            size: 1 << 30,
            geometry: Geometry::default(),
            epoch: 3,
            checkpoint_lsn: Lsn(77),
            next_layer_id: 4,
            head: LayerId(3),
            layers: vec![
                LayerRecord {
                    id: LayerId(1),
                    parent: None,
                    role: Role::Snapshot(SnapshotId::new("s1").unwrap()),
                    size: 1 << 30,
                    created: 5,
                },
                LayerRecord {
                    id: LayerId(3),
                    parent: Some(LayerId(1)),
                    role: Role::Head,
                    size: 1 << 30,
                    created: 6,
                },
            ],
            sealed: false,
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        let sealed = Manifest {
            sealed: true,
            ..sample()
        };
        let bytes = sealed.encode();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
        assert_eq!(Manifest::decode(&bytes).unwrap(), sealed);
        // Unsealed volumes stay v1, which builds without seals read.
        assert_eq!(u32::from_le_bytes(m.encode()[8..12].try_into().unwrap()), 1);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Manifest::decode(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn future_version_is_refused_clearly() {
        let mut bytes = sample().encode();
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        let hcrc = crc(&bytes[..20]);
        bytes[20..24].copy_from_slice(&hcrc.to_le_bytes());
        match Manifest::decode(&bytes) {
            Err(EngineError::UnsupportedVersion {
                found: 3,
                supported: 2,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // A v1 manifest relabelled v2 lacks its flags: damage, not a volume without seals.
        let mut v1 = sample().encode();
        v1[8..12].copy_from_slice(&2u32.to_le_bytes());
        let hcrc = crc(&v1[..20]);
        v1[20..24].copy_from_slice(&hcrc.to_le_bytes());
        assert!(matches!(
            Manifest::decode(&v1),
            Err(EngineError::Corrupt { .. })
        ));
    }
}
