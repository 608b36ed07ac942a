//! NBD wire format (the fixed-newstyle protocol of NetworkBlockDevice/nbd `doc/proto.md`):
//! constants and pure encoders/decoders. No I/O here, so every decoder can be fuzzed and
//! unit-tested on bytes.

/// "NBDMAGIC": first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": newstyle negotiation magic (server greeting and every option request).
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flags (server).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: no 124 zero bytes after NBD_OPT_EXPORT_NAME.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const CLIENT_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: skip the 124 zero bytes.
pub const CLIENT_NO_ZEROES: u32 = 1 << 1;

/// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
/// Abort negotiation.
pub const OPT_ABORT: u32 = 2;
/// List exports.
pub const OPT_LIST: u32 = 3;
/// Describe an export.
pub const OPT_INFO: u32 = 6;
/// Describe an export and enter transmission.
pub const OPT_GO: u32 = 7;
/// Use structured replies.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// List metadata contexts.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// Select metadata contexts.
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply types.
pub const REP_ACK: u32 = 1;
/// An export name in reply to NBD_OPT_LIST.
pub const REP_SERVER: u32 = 2;
/// An information item.
pub const REP_INFO: u32 = 3;
/// A metadata context.
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
/// Option not supported.
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
/// Option refused by policy.
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
/// Option malformed.
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
/// Unknown export.
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
/// Server shutting down.
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR | 7;
/// Request too big.
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;

/// Info types.
pub const INFO_EXPORT: u16 = 0;
/// Export name.
pub const INFO_NAME: u16 = 1;
/// Export description.
pub const INFO_DESCRIPTION: u16 = 2;
/// Block size constraints.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1 << 0;
/// Read-only export.
pub const TF_READ_ONLY: u16 = 1 << 1;
/// FLUSH supported.
pub const TF_SEND_FLUSH: u16 = 1 << 2;
/// FUA supported.
pub const TF_SEND_FUA: u16 = 1 << 3;
/// TRIM supported.
pub const TF_SEND_TRIM: u16 = 1 << 5;
/// WRITE_ZEROES supported.
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// DF (do not fragment) supported: reads are never fragmented anyway.
pub const TF_SEND_DF: u16 = 1 << 7;
/// Several connections see each other's writes.
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;
/// FAST_ZERO supported.
pub const TF_SEND_FAST_ZERO: u16 = 1 << 11;

/// Commands.
pub const CMD_READ: u16 = 0;
/// Write.
pub const CMD_WRITE: u16 = 1;
/// Disconnect.
pub const CMD_DISC: u16 = 2;
/// Flush.
pub const CMD_FLUSH: u16 = 3;
/// Trim.
pub const CMD_TRIM: u16 = 4;
/// Write zeroes.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// Block status.
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// WRITE_ZEROES: do not punch holes.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// READ: do not fragment the reply.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// BLOCK_STATUS: one descriptor only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// WRITE_ZEROES: fail fast unless zeroing is fast.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Structured reply flag: last chunk.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Chunk types.
pub const REPLY_TYPE_NONE: u16 = 0;
/// Data at an offset.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Block status descriptors.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// An error.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

/// base:allocation flags.
pub const STATE_HOLE: u32 = 1 << 0;
/// Reads as zeros.
pub const STATE_ZERO: u32 = 1 << 1;

/// The one metadata context served, and its id.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Id of `base:allocation` on every connection.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// NBD error numbers (the protocol's own values, not the host's errno).
pub mod errno {
    /// Operation not permitted (write to a read-only export).
    pub const EPERM: u32 = 1;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Out of memory.
    pub const ENOMEM: u32 = 12;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space (write past the end).
    pub const ENOSPC: u32 = 28;
    /// Value too large (request over the maximum).
    pub const EOVERFLOW: u32 = 75;
    /// Not supported (FAST_ZERO that would not be fast).
    pub const ENOTSUP: u32 = 95;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// Longest option payload accepted during negotiation: option data is names and queries, a
/// few KiB at most; anything larger is refused without being buffered.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Longest export name or query (the spec's own limit is 4096).
pub const MAX_NAME_LEN: u32 = 4096;

/// A transmission request header (28 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command type.
    pub kind: u16,
    /// Opaque cookie echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes (for WRITE, the payload that follows).
    pub len: u32,
}

/// Size of a request header.
pub const REQUEST_LEN: usize = 28;

impl Request {
    /// Decodes a request header; `None` when the magic is wrong (the connection must close).
    pub fn decode(b: &[u8; REQUEST_LEN]) -> Option<Self> {
        // Fixed offsets into a fixed-size array: split it instead of indexing.
        let (magic, rest) = b.split_first_chunk::<4>()?;
        let (flags, rest) = rest.split_first_chunk::<2>()?;
        let (kind, rest) = rest.split_first_chunk::<2>()?;
        let (handle, rest) = rest.split_first_chunk::<8>()?;
        let (offset, rest) = rest.split_first_chunk::<8>()?;
        let (len, _) = rest.split_first_chunk::<4>()?;
        if u32::from_be_bytes(*magic) != REQUEST_MAGIC {
            return None;
        }
        Some(Self {
            flags: u16::from_be_bytes(*flags),
            kind: u16::from_be_bytes(*kind),
            handle: u64::from_be_bytes(*handle),
            offset: u64::from_be_bytes(*offset),
            len: u32::from_be_bytes(*len),
        })
    }
}

/// A simple reply header.
pub fn simple_reply(handle: u64, error: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&handle.to_be_bytes());
    out
}

/// A structured reply chunk header for a payload of `len` bytes.
pub fn chunk_header(handle: u64, flags: u16, kind: u16, len: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&handle.to_be_bytes());
    out[16..].copy_from_slice(&len.to_be_bytes());
    out
}

/// An option reply header for a payload of `len` bytes.
pub fn option_reply(option: u32, kind: u32, len: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..8].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    out[8..12].copy_from_slice(&option.to_be_bytes());
    out[12..16].copy_from_slice(&kind.to_be_bytes());
    out[16..].copy_from_slice(&len.to_be_bytes());
    out
}

/// A cursor over untrusted option data.
pub struct OptionData<'a> {
    buf: &'a [u8],
}

impl<'a> OptionData<'a> {
    /// Wraps option data.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        let (head, rest) = self.buf.split_first_chunk::<2>()?;
        self.buf = rest;
        Some(u16::from_be_bytes(*head))
    }

    /// The next big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.buf.split_first_chunk::<4>()?;
        self.buf = rest;
        Some(u32::from_be_bytes(*head))
    }

    /// A u32-length-prefixed string of at most [`MAX_NAME_LEN`] bytes.
    pub fn string(&mut self) -> Option<String> {
        let len = self.u32()?;
        if len > MAX_NAME_LEN || len as usize > self.buf.len() {
            return None;
        }
        let (s, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        String::from_utf8(s.to_vec()).ok()
    }

    /// Whether everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// NBD_OPT_GO / NBD_OPT_INFO data: export name and requested info types.
pub fn parse_go(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let mut r = OptionData::new(data);
    let name = r.string()?;
    let n = r.u16()?;
    let mut infos = Vec::with_capacity(usize::from(n).min(16));
    for _ in 0..n {
        infos.push(r.u16()?);
    }
    r.is_empty().then_some((name, infos))
}

/// NBD_OPT_{LIST,SET}_META_CONTEXT data: export name and queries.
pub fn parse_meta_context(data: &[u8]) -> Option<(String, Vec<String>)> {
    let mut r = OptionData::new(data);
    let name = r.string()?;
    let n = r.u32()?;
    let mut queries = Vec::new();
    for _ in 0..n {
        queries.push(r.string()?);
    }
    r.is_empty().then_some((name, queries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_bad_magic() {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        b[6..8].copy_from_slice(&CMD_WRITE.to_be_bytes());
        b[8..16].copy_from_slice(&0xdead_beef_u64.to_be_bytes());
        b[16..24].copy_from_slice(&4096u64.to_be_bytes());
        b[24..].copy_from_slice(&512u32.to_be_bytes());
        let r = Request::decode(&b).unwrap();
        assert_eq!(
            (r.kind, r.flags, r.handle, r.offset, r.len),
            (CMD_WRITE, 1, 0xdead_beef, 4096, 512)
        );
        b[0] ^= 1;
        assert!(Request::decode(&b).is_none());
    }

    #[test]
    fn option_parsers_refuse_truncated_and_oversized_data() {
        let mut go = Vec::new();
        go.extend_from_slice(&3u32.to_be_bytes());
        go.extend_from_slice(b"vol");
        go.extend_from_slice(&1u16.to_be_bytes());
        go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(parse_go(&go), Some(("vol".into(), vec![INFO_BLOCK_SIZE])));
        for n in 0..go.len() {
            assert!(parse_go(&go[..n]).is_none());
        }
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_go(&huge).is_none());
        let mut meta = Vec::new();
        meta.extend_from_slice(&0u32.to_be_bytes());
        meta.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_meta_context(&meta).is_none());
    }
}
