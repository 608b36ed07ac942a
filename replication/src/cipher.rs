//! Encryption of a volume's blocks, done by the set above its replicas: local replica
//! directories and replica nodes store and carry only ciphertext, and each block's 16-byte
//! authentication tag is kept beside it as its seal (`tripod_engine::Volume::create_sealed`).
//! The engine's CRC covers the ciphertext, so scrub, self-heal, resync and rebuild work
//! without the key.
//!
//! The cipher is AES-256-GCM-SIV (RFC 8452) per block:
//! - **nonce** (96 bits): the write's generation (64 bits) and the block number's low 32
//!   bits. Generations only grow while a volume lives, so a (block, generation) pair — and
//!   with it the nonce — is not reused; and GCM-SIV stays safe if one ever were (a repeated
//!   nonce reveals only that two writes of that block at that generation were equal).
//! - **associated data**: the key's id, the block number and the generation. A block moved
//!   to another place, or taken from another volume, fails authentication; so does a block
//!   whose bytes were replaced by an older version of itself while its recorded generation
//!   and tag stayed (an old version brought back *with* its old generation and tag is
//!   caught by the replicas instead: the set compares generations across copies and the
//!   newest wins).
//!
//! Blocks that were never written, zeroed or trimmed hold no data and read as zeros without
//! any decryption.

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use tripod_engine::{Seal, SEAL_LEN};
use zeroize::Zeroizing;

/// Bytes of a data key.
pub const KEY_LEN: usize = 32;

/// Bytes of a data key's id.
pub const KEY_ID_LEN: usize = 16;

/// Domain separation of the associated data (and the format of this scheme).
const AAD_LABEL: &[u8; 12] = b"tripod-blk-1";

/// A volume's data key, ready to encrypt and decrypt its blocks. The key schedule lives
/// only in memory and is wiped when the cipher is dropped (the volume closed).
pub struct VolumeCipher {
    aead: Aes256GcmSiv,
    key_id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for VolumeCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("VolumeCipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A block whose ciphertext does not authenticate under the volume's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("block {0} failed authentication")]
pub struct Unauthentic(pub u64);

impl VolumeCipher {
    /// A cipher for data key `key`, whose id `key_id` is bound into every block (volumes
    /// that share blocks — linked clones — share the key and its id).
    pub fn new(key: &Zeroizing<[u8; KEY_LEN]>, key_id: [u8; KEY_ID_LEN]) -> Self {
        Self {
            aead: Aes256GcmSiv::new(key.as_slice().into()),
            key_id,
        }
    }

    /// The key's id.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    fn nonce(block: u64, generation: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&generation.to_le_bytes());
        // The block's low 32 bits; the whole number is in the associated data.
        let b = block.to_le_bytes();
        n[8..].copy_from_slice(&b[..4]);
        n.into()
    }

    fn aad(&self, block: u64, generation: u64) -> [u8; 44] {
        let mut a = [0u8; 44];
        a[..12].copy_from_slice(AAD_LABEL);
        a[12..28].copy_from_slice(&self.key_id);
        a[28..36].copy_from_slice(&block.to_le_bytes());
        a[36..].copy_from_slice(&generation.to_le_bytes());
        a
    }

    /// Encrypts block `block` in place for the write of `generation`; returns its seal
    /// (the authentication tag).
    pub fn seal_block(&self, block: u64, generation: u64, data: &mut [u8]) -> Seal {
        let aad = self.aad(block, generation);
        match self
            .aead
            .encrypt_in_place_detached(&Self::nonce(block, generation), &aad, data)
        {
            Ok(tag) => {
                let mut seal = [0u8; SEAL_LEN];
                seal.copy_from_slice(tag.as_slice());
                seal
            }
            // Only for inputs over 2^36 bytes; a block is at most 4 KiB.
            Err(_) => [0u8; SEAL_LEN],
        }
    }

    /// A value that tells this key from others without revealing it (the seal of a zero
    /// block at a position and generation no write uses), kept in the set's state so that
    /// opening a volume with another key fails before anything is written.
    pub fn key_check(&self) -> [u8; 16] {
        let mut zeros = [0u8; 16];
        self.seal_block(u64::MAX, u64::MAX, &mut zeros)
    }

    /// Decrypts block `block`, stored by the write of `generation` with `seal`, in place;
    /// fails (leaving `data` unspecified) unless it authenticates.
    pub fn open_block(
        &self,
        block: u64,
        generation: u64,
        data: &mut [u8],
        seal: &Seal,
    ) -> Result<(), Unauthentic> {
        let aad = self.aad(block, generation);
        let tag = Tag::from_slice(seal);
        self.aead
            .decrypt_in_place_detached(&Self::nonce(block, generation), &aad, data, tag)
            .map_err(|_| Unauthentic(block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(fill: u8, id: u8) -> VolumeCipher {
        VolumeCipher::new(&Zeroizing::new([fill; KEY_LEN]), [id; KEY_ID_LEN])
    }

    #[test]
    fn blocks_round_trip_and_bind_place_generation_key_and_volume() {
        let c = cipher(1, 1);
        let plain = vec![0x42u8; 4096];
        let mut data = plain.clone();
        let seal = c.seal_block(7, 3, &mut data);
        assert_ne!(data, plain, "stored bytes are not the plaintext");
        let mut back = data.clone();
        c.open_block(7, 3, &mut back, &seal).unwrap();
        assert_eq!(back, plain);
        let refused = |c: &VolumeCipher, block, generation, bytes: &[u8], seal: &Seal| {
            let mut d = bytes.to_vec();
            c.open_block(block, generation, &mut d, seal).is_err()
        };
        assert!(refused(&c, 8, 3, &data, &seal), "moved");
        assert!(refused(&c, 7, 2, &data, &seal), "other generation");
        assert!(refused(&cipher(2, 1), 7, 3, &data, &seal), "other key");
        assert!(refused(&cipher(1, 2), 7, 3, &data, &seal), "other key id");
        let mut flipped = data.clone();
        flipped[100] ^= 1;
        assert!(refused(&c, 7, 3, &flipped, &seal), "changed byte");
        // The same content written again stores differently (a new generation).
        let mut again = plain.clone();
        let seal2 = c.seal_block(7, 4, &mut again);
        assert_ne!((again.clone(), seal2), (data.clone(), seal));
        // An older version of the block under the current generation and tag is refused.
        assert!(refused(&c, 7, 4, &data, &seal2), "rolled back bytes");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", cipher(0xab, 3));
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, ab"));
    }
}
