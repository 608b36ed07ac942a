//! Little-endian, fixed-width encoding helpers for Tripod's on-disk formats (the engine's
//! records here, the replica set state in `tripod-replication`). The reader checks every
//! length before it touches a byte, so decoding damaged input returns an error, never panics.

/// Appends little-endian integers to a byte vector.
pub trait PutLe {
    /// Appends one byte.
    fn put_u8(&mut self, v: u8);
    /// Appends a little-endian `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a little-endian `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, v: u64);
}

impl PutLe for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// Why a decode stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("truncated: {what}")]
pub struct Short {
    /// What was being read.
    pub what: &'static str,
}

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short { what })?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short { what })?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.array::<1>(what)?[0])
    }
    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// CRC32 (the crc32fast polynomial) of `bytes`.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_to_run_past_the_end() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert_eq!(r.u16("a"), Ok(1));
        assert_eq!(r.u32("b"), Err(Short { what: "b" }));
        assert!(r.take(usize::MAX, "c").is_err());
        assert_eq!(r.u8("d"), Ok(0));
    }
}
