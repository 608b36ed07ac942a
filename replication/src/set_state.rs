//! The durable state of a replica set, stored in every replica it trusts: which volume this
//! is, which replicas are in service, and for each replica out of service the chunks it
//! misses (or that it needs a full rebuild). The copy with the highest epoch wins on open.
//!
//! Format v1 (little-endian), see `replication/FORMAT.md`:
//! header `magic "TRIPODSS" | version u32 | body_len u32 | body_crc u32 | header_crc u32`,
//! body `volume_id [16] | self u8 | epoch u64 | block_size u32 | chunk_blocks u32 |
//! 3 × (tag u8 | count u32 | count × chunk u64)`. Format v2, an encrypted volume's, appends
//! `key_check [16]` to the body (a reader of v1 only refuses it by its version).

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};

use tripod_engine::codec::{PutLe, Reader, Short};

use crate::ids::{PerReplica, ReplicaId};

const MAGIC: [u8; 8] = *b"TRIPODSS";
/// A plain volume's state.
const VERSION: u32 = 1;
/// An encrypted volume's state (with its key check).
const VERSION_KEYED: u32 = 2;
const HEADER_LEN: usize = 24;
/// Most dirty chunks recorded per replica (2^24 chunks of 4 MiB = 64 TiB): bounds decoding.
const MAX_DIRTY: u32 = 1 << 24;

/// What the set knows about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// Holds every acknowledged write.
    InService,
    /// Misses the writes to `dirty` chunks; with `full`, it also missed a structural change
    /// (snapshot, rollback, …) or is new, and needs a full rebuild.
    Out {
        /// Chunks written while it was out.
        dirty: BTreeSet<u64>,
        /// Needs a full rebuild rather than a resync of `dirty`.
        full: bool,
    },
}

/// The durable set state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetState {
    /// Random identity of the volume, so a replica of another volume is never mixed in.
    pub volume_id: [u8; 16],
    /// Incremented on every change.
    pub epoch: u64,
    /// Block size of the volume.
    pub block_size: u32,
    /// Blocks per chunk (the granularity of the dirty map).
    pub chunk_blocks: u32,
    /// Per replica.
    pub members: PerReplica<Member>,
    /// An encrypted volume's key check ([`crate::cipher::VolumeCipher::key_check`]): opening
    /// with another key is refused before anything is written.
    pub key_check: Option<[u8; 16]>,
}

/// A fresh random volume id (from the standard library's randomly seeded hasher).
pub fn random_volume_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    for half in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

/// A cut-off field, as the decoder's error text.
fn short(e: Short) -> String {
    e.to_string()
}

impl SetState {
    /// Encodes the state as stored in replica `me`.
    pub fn encode(&self, me: ReplicaId) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.volume_id);
        body.put_u8(u8::try_from(me.index()).unwrap_or(u8::MAX));
        body.put_u64(self.epoch);
        body.put_u32(self.block_size);
        body.put_u32(self.chunk_blocks);
        for (_, m) in self.members.iter() {
            let (tag, dirty): (u8, Option<&BTreeSet<u64>>) = match m {
                Member::InService => (0, None),
                Member::Out { dirty, full: false } => (1, Some(dirty)),
                Member::Out { dirty, full: true } => (2, Some(dirty)),
            };
            body.put_u8(tag);
            // At most MAX_DIRTY (a u32) entries are stored; more than that is a full rebuild
            // in all but name, and the decoder refuses larger counts.
            let count = dirty.map_or(0, |d| {
                u32::try_from(d.len()).unwrap_or(MAX_DIRTY).min(MAX_DIRTY)
            });
            body.put_u32(count);
            for c in dirty.into_iter().flatten().take(count as usize) {
                body.put_u64(*c);
            }
        }
        if let Some(check) = &self.key_check {
            body.extend_from_slice(check);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.put_u32(if self.key_check.is_some() {
            VERSION_KEYED
        } else {
            VERSION
        });
        out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
        out.put_u32(crc32fast::hash(&body));
        let hcrc = crc32fast::hash(&out);
        out.put_u32(hcrc);
        out.extend_from_slice(&body);
        out
    }

    /// How many leading bytes of `bytes` an encoded state takes, by its header (`None` if
    /// the header is cut off or claims more than there is).
    pub(crate) fn stored_len(bytes: &[u8]) -> Option<usize> {
        let body_len = bytes.get(12..16)?;
        let body_len = u32::from_le_bytes(body_len.try_into().ok()?) as usize;
        let n = HEADER_LEN.checked_add(body_len)?;
        (n <= bytes.len()).then_some(n)
    }

    /// Decodes a stored state; returns it and the replica it says it was stored in.
    pub fn decode(bytes: &[u8]) -> Result<(SetState, ReplicaId), String> {
        let mut r = Reader::new(bytes);
        if r.take(8, "magic").map_err(short)? != MAGIC {
            return Err("bad magic".into());
        }
        let version = r.u32("version").map_err(short)?;
        let body_len = r.u32("body length").map_err(short)?;
        let body_crc = r.u32("body checksum").map_err(short)?;
        let hcrc = r.u32("header checksum").map_err(short)?;
        if crc32fast::hash(bytes.get(..HEADER_LEN - 4).ok_or("truncated")?) != hcrc {
            return Err("header checksum mismatch".into());
        }
        if version != VERSION && version != VERSION_KEYED {
            return Err(format!(
                "format version {version}; this build reads {VERSION} and {VERSION_KEYED}"
            ));
        }
        let body_len = usize::try_from(body_len).map_err(|_| "body too large")?;
        let body = r.take(body_len, "body").map_err(short)?;
        if r.remaining() != 0 || crc32fast::hash(body) != body_crc {
            return Err("body damaged".into());
        }
        let mut r = Reader::new(body);
        let mut volume_id = [0u8; 16];
        volume_id.copy_from_slice(r.take(16, "volume id").map_err(short)?);
        let me = ReplicaId::new(usize::from(r.u8("replica").map_err(short)?))
            .ok_or("bad replica index")?;
        let epoch = r.u64("epoch").map_err(short)?;
        let block_size = r.u32("block size").map_err(short)?;
        let chunk_blocks = r.u32("chunk blocks").map_err(short)?;
        let mut members = Vec::with_capacity(3);
        for _ in 0..3 {
            let tag = r.u8("member").map_err(short)?;
            let count = r.u32("dirty count").map_err(short)?;
            if count > MAX_DIRTY || count as usize > r.remaining() / 8 {
                return Err(format!("{count} dirty chunks do not fit"));
            }
            let mut dirty = BTreeSet::new();
            for _ in 0..count {
                let c = r.u64("dirty chunk").map_err(short)?;
                // Canonical form: strictly ascending, so equal states encode identically.
                if dirty.last().is_some_and(|last| *last >= c) {
                    return Err("dirty chunks out of order".into());
                }
                dirty.insert(c);
            }
            members.push(match tag {
                0 if count == 0 => Member::InService,
                1 => Member::Out { dirty, full: false },
                2 => Member::Out { dirty, full: true },
                _ => return Err(format!("bad member tag {tag}")),
            });
        }
        let key_check = if version == VERSION_KEYED {
            let mut check = [0u8; 16];
            check.copy_from_slice(r.take(16, "key check").map_err(short)?);
            Some(check)
        } else {
            None
        };
        if r.remaining() != 0 {
            return Err("trailing bytes".into());
        }
        let mut it = members.into_iter();
        let mut next = || it.next().ok_or_else(|| "missing member".to_string());
        let members = PerReplica([next()?, next()?, next()?]);
        let state = SetState {
            volume_id,
            epoch,
            block_size,
            chunk_blocks,
            members,
            key_check,
        };
        Ok((state, me))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SetState {
        SetState {
            volume_id: random_volume_id(),
            epoch: 9,
            block_size: 4096,
            chunk_blocks: 1024,
            members: PerReplica([
                Member::InService,
                Member::Out {
                    dirty: [3, 7, 1 << 40].into_iter().collect(),
                    full: false,
                },
                Member::Out {
                    dirty: BTreeSet::new(),
                    full: true,
                },
            ]),
            key_check: None,
        }
    }

    fn keyed() -> SetState {
        SetState {
            key_check: Some([0x5a; 16]),
            ..sample()
        }
    }

    #[test]
    fn set_state_round_trips() {
        for s in [sample(), keyed()] {
            let me = ReplicaId::ALL[1];
            assert_eq!(SetState::decode(&s.encode(me)).unwrap(), (s, me));
        }
        // A plain volume's state stays in the format older builds read.
        assert_eq!(
            sample().encode(ReplicaId::ALL[0])[8..12],
            1u32.to_le_bytes()
        );
        assert_eq!(keyed().encode(ReplicaId::ALL[0])[8..12], 2u32.to_le_bytes());
    }

    #[test]
    fn damage_is_detected() {
        let bytes = keyed().encode(ReplicaId::ALL[0]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(SetState::decode(&b).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(SetState::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn volume_ids_differ() {
        assert_ne!(random_volume_id(), random_volume_id());
    }
}
