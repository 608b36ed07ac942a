//! Helpers shared by the engine's integration tests: a plain in-memory model of a volume and
//! a deterministic random generator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

pub mod ops;

/// What a volume should contain: the head's bytes and each snapshot's bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub head: Vec<u8>,
    pub snaps: BTreeMap<String, Vec<u8>>,
}

impl Model {
    pub fn new(size: u64) -> Self {
        Self {
            head: vec![0; size as usize],
            snaps: BTreeMap::new(),
        }
    }
    pub fn size(&self) -> u64 {
        self.head.len() as u64
    }
    pub fn write(&mut self, off: u64, data: &[u8]) {
        self.head[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    pub fn zero(&mut self, off: u64, len: u64) {
        self.head[off as usize..(off + len) as usize].fill(0);
    }
    pub fn snapshot(&mut self, id: &str) {
        self.snaps.insert(id.to_owned(), self.head.clone());
    }
    pub fn rollback(&mut self, id: &str) {
        let mut content = self.snaps[id].clone();
        content.resize(self.head.len(), 0);
        self.head = content;
    }
    pub fn expand(&mut self, size: u64) {
        self.head.resize(size as usize, 0);
    }
}

/// SplitMix64, for reproducible test data and choices.
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
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let fill = self.next() as u8 | 1;
        let mut v: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        // Sometimes a constant, sometimes all zeros: both must round-trip.
        match self.below(8) {
            0 => v.fill(0),
            1 => v.fill(fill),
            _ => {}
        }
        v
    }
}
