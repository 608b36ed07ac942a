//! What the soaks share: a deterministic generator and block contents that say which write
//! put them there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Block size of the soaks' requests.
pub const BS: u64 = 4096;

/// A small deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The content write `id` puts in `block`: recognisable, different for every pair.
pub fn block_data(id: u64, block: u64) -> Vec<u8> {
    let mut d = vec![((id.wrapping_mul(31) ^ block) as u8) | 1; BS as usize];
    d[..8].copy_from_slice(&id.to_le_bytes());
    d[8..16].copy_from_slice(&block.to_le_bytes());
    d
}

/// Which write's content `data` (one block at `block`) is: `Some(0)` for zeros, `None` for
/// anything no write put there.
pub fn identify(data: &[u8], block: u64) -> Option<u64> {
    if data.iter().all(|b| *b == 0) {
        return Some(0);
    }
    let id = u64::from_le_bytes(data[..8].try_into().ok()?);
    (data == block_data(id, block).as_slice()).then_some(id)
}
