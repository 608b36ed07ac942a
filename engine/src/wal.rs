//! The write-ahead log: every mutation of block content is appended here (with its data and
//! CRC), synced once per batch, and only then applied in place to the layer files. Replaying
//! it on open repairs any in-place write a crash tore. After a checkpoint the log restarts at
//! offset 0 under a new epoch, so older records left in the file are never replayed.
//!
//! This module owns the record format and the scan; it does not apply records.

use crate::addressing::{BlockIndex, LayerId, Lsn};
use crate::codec::{crc, PutLe, Reader};
use crate::format::{FormatVersion, Seal, SEAL_LEN, WAL_MAGIC};
use crate::storage::StorageFile;

/// Header length of a WAL record.
pub(crate) const HEADER_LEN: usize = 64;

const KIND_DATA: u8 = 1;
const KIND_ZERO: u8 = 2;
const KIND_PLACED: u8 = 3;
const KIND_PLACED_UNSYNCED: u8 = 4;
const KIND_SYNCED: u8 = 5;

/// Record version of `placed` records (data and zero records stay version 1, so a log
/// without placed records is still read by builds that predate them, and a build that does
/// not know placed records refuses the log instead of stopping at the first one).
pub(crate) const PLACED_VERSION: u16 = 2;

/// Record version of `placed-unsynced` records (write-back volumes); builds that predate them
/// refuse the log rather than stop at the first one.
pub(crate) const UNSYNCED_PLACED_VERSION: u16 = 3;

/// Record version of `synced` marks; builds that predate them refuse the log.
pub(crate) const SYNCED_VERSION: u16 = 4;

/// Record version of sealed records (data and placed records of sealed volumes): the
/// block's seal follows the header, and the header checksum covers it too. Builds that
/// predate seals refuse the log.
pub(crate) const SEALED_VERSION: u16 = 5;

/// Flag (the header's byte 7) of a sealed record.
const FLAG_SEALED: u8 = 1;

/// What a record sets a block to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// Data with this CRC32 (the payload follows the header).
    Data(u32),
    /// Zeros (no payload).
    Zero,
    /// Data with this CRC32 already written in place and synced before the record (no
    /// payload): the record only makes the block present.
    Placed(u32),
    /// Data with this CRC32 written in place *without* a sync before the record (write-back
    /// volumes): replay applies it only if the block in place matches the CRC; otherwise the
    /// write never reached the disk whole, was never flushed, and the slot keeps its old
    /// (absent) state.
    PlacedUnsynced(u32),
    /// Every `PlacedUnsynced` block before this record was synced in place (a flush): replay
    /// trusts those as it trusts `Placed`, so a copy that rots later fails its checksum
    /// instead of silently taking the block back to its old state.
    Synced,
}

/// What a record carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// One block of data, with its CRC32 (computed once by the caller, who needs it too).
    Data(&'a [u8], u32),
    /// A run of this many zero blocks.
    Zero(u64),
    /// One block already in place, with its CRC32.
    Placed(u32),
    /// One block put in place without a sync first, with its CRC32.
    PlacedUnsynced(u32),
    /// The placed blocks logged before are synced (no target block; block 0 is recorded).
    Synced,
}

/// Where a record applies and which write it belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub epoch: u64,
    pub lsn: Lsn,
    pub layer: LayerId,
    pub block: BlockIndex,
    /// Generation of the write (stored per block; tells replicas which copy is newer).
    pub generation: u64,
    /// The block's seal (data and placed records of sealed volumes only).
    pub seal: Option<Seal>,
}

/// Appends one record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, t: Target, body: Body<'_>) {
    let start = out.len();
    let v1 = FormatVersion::V1 as u16;
    let (kind, version, payload, payload_crc, count) = match body {
        Body::Data(p, c) => (KIND_DATA, v1, Some(p), c, 1),
        Body::Zero(count) => (KIND_ZERO, v1, None, 0, count),
        Body::Placed(c) => (KIND_PLACED, PLACED_VERSION, None, c, 1),
        Body::PlacedUnsynced(c) => (KIND_PLACED_UNSYNCED, UNSYNCED_PLACED_VERSION, None, c, 1),
        Body::Synced => (KIND_SYNCED, SYNCED_VERSION, None, 0, 1),
    };
    // Only blocks with data carry seals.
    let seal = t.seal.filter(|_| kind != KIND_ZERO && kind != KIND_SYNCED);
    let (version, flags) = match seal {
        Some(_) => (SEALED_VERSION, FLAG_SEALED),
        None => (version, 0),
    };
    out.put_u32(WAL_MAGIC);
    out.put_u16(version);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u64(t.epoch);
    out.put_u64(t.lsn.0);
    out.put_u64(t.layer.0);
    out.put_u64(t.block.0);
    out.put_u64(t.generation);
    out.put_u32(payload.map_or(0, |p| p.len() as u32));
    out.put_u32(payload_crc);
    // A data record covers one block; a zero record up to u32::MAX (callers split longer runs).
    out.put_u32(count.min(u64::from(u32::MAX)) as u32);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start..]);
    if let Some(seal) = &seal {
        hasher.update(seal);
    }
    out.put_u32(hasher.finalize());
    if let Some(seal) = &seal {
        out.extend_from_slice(seal);
    }
    if let Some(p) = payload {
        out.extend_from_slice(p);
    }
}

/// One record found by [`scan`].
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub lsn: Lsn,
    pub layer: LayerId,
    pub block: BlockIndex,
    pub generation: u64,
    pub kind: RecordKind,
    /// Blocks covered: 1 for data and placed records, the run length for zeros.
    pub count: u64,
    pub payload: &'a [u8],
    /// The block's seal, if the record is sealed.
    pub seal: Option<Seal>,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// A record that was never completely written (or an older epoch's leftovers): the
    /// normal end of the log.
    Tail,
    /// A record of a newer format version.
    FutureVersion(u32),
}

/// Result of a scan: the next LSN to use, where the valid log ends, and why it ended.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    pub next_lsn: Lsn,
    pub end_offset: u64,
    pub end: End,
}

/// Bytes read per call while scanning.
const WINDOW: usize = 8 << 20;

/// Reads the records of `epoch` from offset 0, starting at `first_lsn`, calling `apply` on
/// each in order, until the first record that is not the expected next one. A failed read
/// of the log becomes an `E` through `io_error`.
pub(crate) fn scan<E>(
    file: &dyn StorageFile,
    (epoch, first_lsn, block_size): (u64, Lsn, u32),
    io_error: impl Fn(std::io::Error) -> E,
    mut apply: impl FnMut(Entry<'_>) -> Result<(), E>,
) -> Result<ScanEnd, E> {
    let file_len = file.size().map_err(&io_error)?;
    let mut offset = 0u64;
    let mut expected = first_lsn;
    let mut buf = Vec::new();
    let record_max = HEADER_LEN + SEAL_LEN + block_size as usize;
    loop {
        let avail = file_len.saturating_sub(offset);
        if avail < HEADER_LEN as u64 {
            break;
        }
        let want = (avail as usize).min(WINDOW.max(record_max));
        buf.resize(want, 0);
        file.read_at(&mut buf, offset).map_err(&io_error)?;
        let mut at = 0usize;
        loop {
            match parse(&buf[at..], epoch, expected, block_size) {
                Parsed::Record(entry, len) => {
                    apply(entry)?;
                    at += len;
                    expected = Lsn(expected.0 + 1);
                }
                Parsed::NeedMore if at > 0 => break,
                Parsed::NeedMore | Parsed::End(End::Tail) => {
                    return Ok(end(expected, offset + at as u64, End::Tail))
                }
                Parsed::End(e) => return Ok(end(expected, offset + at as u64, e)),
            }
        }
        offset += at as u64;
    }
    Ok(end(expected, offset, End::Tail))
}

fn end(next_lsn: Lsn, end_offset: u64, end: End) -> ScanEnd {
    ScanEnd {
        next_lsn,
        end_offset,
        end,
    }
}

enum Parsed<'a> {
    Record(Entry<'a>, usize),
    NeedMore,
    End(End),
}

fn parse(buf: &[u8], epoch: u64, expected: Lsn, block_size: u32) -> Parsed<'_> {
    if buf.len() < HEADER_LEN {
        return Parsed::NeedMore;
    }
    let header = &buf[..HEADER_LEN];
    let mut r = Reader::new(header);
    let mut next = || -> Result<[u64; 12], crate::codec::Short> {
        Ok([
            u64::from(r.u32("magic")?),
            u64::from(r.u16("version")?),
            u64::from(r.u8("kind")?),
            u64::from(r.u8("reserved")?),
            r.u64("epoch")?,
            r.u64("lsn")?,
            r.u64("layer")?,
            r.u64("block")?,
            r.u64("generation")?,
            u64::from(r.u32("payload length")?),
            u64::from(r.u32("payload crc")?),
            u64::from(r.u32("count")?),
        ])
    };
    let Ok(
        [magic, version, kind, flags, rec_epoch, lsn, layer, block, generation, len, pcrc, count],
    ) = next()
    else {
        return Parsed::End(End::Tail);
    };
    let sealed = flags == u64::from(FLAG_SEALED);
    let seal_len = if sealed { SEAL_LEN } else { 0 };
    if buf.len() < HEADER_LEN + seal_len {
        return Parsed::NeedMore;
    }
    let seal_bytes = &buf[HEADER_LEN..HEADER_LEN + seal_len];
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&header[HEADER_LEN - 4..]);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..HEADER_LEN - 4]);
    hasher.update(seal_bytes);
    if magic != u64::from(WAL_MAGIC) || hasher.finalize() != u32::from_le_bytes(stored) {
        return Parsed::End(End::Tail);
    }
    if rec_epoch != epoch || lsn != expected.0 {
        return Parsed::End(End::Tail);
    }
    if version > u64::from(SEALED_VERSION) {
        return Parsed::End(End::FutureVersion(version as u32));
    }
    // A seal only on sealed-version data and placed records, and those always with one.
    let sealable = matches!(kind as u8, KIND_DATA | KIND_PLACED | KIND_PLACED_UNSYNCED);
    if flags > u64::from(FLAG_SEALED)
        || sealed != (version == u64::from(SEALED_VERSION))
        || (sealed && !sealable)
    {
        return Parsed::End(End::Tail);
    }
    let seal = sealed.then(|| {
        let mut s = [0u8; SEAL_LEN];
        s.copy_from_slice(seal_bytes);
        s
    });
    let header_len = HEADER_LEN + seal_len;
    let payload_len = match kind as u8 {
        KIND_DATA if len == u64::from(block_size) && count == 1 => len as usize,
        KIND_ZERO | KIND_PLACED | KIND_PLACED_UNSYNCED | KIND_SYNCED if len == 0 && count >= 1 => 0,
        _ => return Parsed::End(End::Tail),
    };
    if matches!(kind as u8, KIND_PLACED | KIND_PLACED_UNSYNCED | KIND_SYNCED) && count != 1 {
        return Parsed::End(End::Tail);
    }
    if buf.len() < header_len + payload_len {
        return Parsed::NeedMore;
    }
    let payload = &buf[header_len..header_len + payload_len];
    let kind = match kind as u8 {
        KIND_DATA => {
            if crc(payload) != pcrc as u32 {
                return Parsed::End(End::Tail);
            }
            RecordKind::Data(pcrc as u32)
        }
        KIND_PLACED => RecordKind::Placed(pcrc as u32),
        KIND_PLACED_UNSYNCED => RecordKind::PlacedUnsynced(pcrc as u32),
        KIND_SYNCED => RecordKind::Synced,
        _ => RecordKind::Zero,
    };
    let entry = Entry {
        lsn: Lsn(lsn),
        layer: LayerId(layer),
        block: BlockIndex(block),
        generation,
        kind,
        count,
        payload,
        seal,
    };
    Parsed::Record(entry, header_len + payload_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemStorage, Storage};

    fn log_of(records: &[(u64, u64, Option<u8>)], epoch: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for &(lsn, block, fill) in records {
            let data = fill.map(|f| vec![f; 512]);
            let t = Target {
                epoch,
                lsn: Lsn(lsn),
                layer: LayerId(1),
                block: BlockIndex(block),
                generation: lsn,
                seal: None,
            };
            let body = match &data {
                Some(d) => Body::Data(d, crc(d)),
                None => Body::Zero(1),
            };
            encode(&mut out, t, body);
        }
        out
    }

    fn collect(bytes: &[u8], epoch: u64, first: u64) -> (Vec<(u64, u64)>, ScanEnd) {
        let s = MemStorage::new();
        let f = s.create_file("wal").unwrap();
        f.write_at(bytes, 0).unwrap();
        let mut seen = Vec::new();
        let end = scan(
            f.as_ref(),
            (epoch, Lsn(first), 512),
            |e| e,
            |e| {
                seen.push((e.lsn.0, e.block.0));
                Ok(())
            },
        )
        .unwrap();
        (seen, end)
    }

    #[test]
    fn placed_records_carry_only_the_crc() {
        let t = |lsn| Target {
            epoch: 7,
            lsn: Lsn(lsn),
            layer: LayerId(2),
            block: BlockIndex(40 + lsn),
            generation: 9,
            seal: None,
        };
        let mut out = Vec::new();
        encode(&mut out, t(1), Body::Placed(0xdead_beef));
        encode(&mut out, t(2), Body::Data(&[5; 512], crc(&[5; 512])));
        encode(&mut out, t(3), Body::Synced);
        assert_eq!(
            out.len(),
            3 * HEADER_LEN + 512,
            "no payload for a placed record or a mark"
        );
        let s = MemStorage::new();
        let f = s.create_file("wal").unwrap();
        f.write_at(&out, 0).unwrap();
        let mut kinds = Vec::new();
        let end = scan(
            f.as_ref(),
            (7, Lsn(1), 512),
            |e| e,
            |e| {
                kinds.push((e.block.0, e.kind, e.count, e.payload.len()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(end.end, End::Tail);
        assert_eq!(
            kinds,
            [
                (41, RecordKind::Placed(0xdead_beef), 1, 0),
                (42, RecordKind::Data(crc(&[5; 512])), 1, 512),
                (43, RecordKind::Synced, 1, 0)
            ]
        );
        // Version 2 marks placed records; a newer version is refused, not skipped.
        assert_eq!(u16::from_le_bytes([out[4], out[5]]), PLACED_VERSION);
        let mut newer = out[..HEADER_LEN].to_vec();
        newer[4] = (SEALED_VERSION + 1) as u8;
        let c = crc(&newer[..HEADER_LEN - 4]);
        newer[HEADER_LEN - 4..].copy_from_slice(&c.to_le_bytes());
        f.write_at(&newer, 0).unwrap();
        let end = scan(f.as_ref(), (7, Lsn(1), 512), |e| e, |_| Ok(())).unwrap();
        let newer_version = u32::from(SEALED_VERSION) + 1;
        assert_eq!(end.end, End::FutureVersion(newer_version));
    }

    #[test]
    fn sealed_records_carry_their_seal_under_the_header_checksum() {
        let t = |lsn, seal| Target {
            epoch: 3,
            lsn: Lsn(lsn),
            layer: LayerId(1),
            block: BlockIndex(lsn),
            generation: 4,
            seal,
        };
        let seal = [0x5a; SEAL_LEN];
        let mut out = Vec::new();
        encode(
            &mut out,
            t(1, Some(seal)),
            Body::Data(&[7; 512], crc(&[7; 512])),
        );
        encode(&mut out, t(2, Some(seal)), Body::PlacedUnsynced(0xabcd));
        // Zeros carry no seal, whatever the target says.
        encode(&mut out, t(3, Some(seal)), Body::Zero(2));
        assert_eq!(out.len(), 3 * HEADER_LEN + 2 * SEAL_LEN + 512);
        assert_eq!(u16::from_le_bytes([out[4], out[5]]), SEALED_VERSION);
        let scan_all = |bytes: &[u8]| {
            let s = MemStorage::new();
            let f = s.create_file("wal").unwrap();
            f.write_at(bytes, 0).unwrap();
            let mut seen = Vec::new();
            scan(
                f.as_ref(),
                (3, Lsn(1), 512),
                |e| e,
                |e| {
                    seen.push((e.lsn.0, e.kind, e.seal, e.payload.to_vec()));
                    Ok(())
                },
            )
            .unwrap();
            seen
        };
        let seen = scan_all(&out);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].2, Some(seal));
        assert_eq!(seen[0].3, vec![7; 512]);
        assert_eq!(
            (seen[1].1, seen[1].2),
            (RecordKind::PlacedUnsynced(0xabcd), Some(seal))
        );
        assert_eq!((seen[2].1, seen[2].2), (RecordKind::Zero, None));
        // A damaged seal ends the log there, like any torn record.
        for at in HEADER_LEN..HEADER_LEN + SEAL_LEN {
            let mut bad = out.clone();
            bad[at] ^= 0x10;
            assert!(scan_all(&bad).is_empty(), "seal byte {at}");
        }
        for cut in 0..out.len() {
            assert!(scan_all(&out[..cut]).len() < 3);
        }
    }

    #[test]
    fn scan_reads_records_in_order() {
        let bytes = log_of(&[(5, 1, Some(1)), (6, 2, None), (7, 3, Some(3))], 9);
        let (seen, end) = collect(&bytes, 9, 5);
        assert_eq!(seen, vec![(5, 1), (6, 2), (7, 3)]);
        assert_eq!(end.next_lsn, Lsn(8));
        assert_eq!(end.end_offset, bytes.len() as u64);
    }

    #[test]
    fn scan_stops_at_a_torn_record() {
        let bytes = log_of(&[(5, 1, Some(1)), (6, 2, Some(2)), (7, 3, Some(3))], 9);
        let mut torn = bytes.clone();
        let second = HEADER_LEN + 512;
        torn[second + HEADER_LEN + 100] ^= 0xff;
        let (seen, end) = collect(&torn, 9, 5);
        assert_eq!(seen, vec![(5, 1)]);
        assert_eq!(end.next_lsn, Lsn(6));
        for cut in 0..bytes.len() {
            let (seen, _) = collect(&bytes[..cut], 9, 5);
            assert!(seen.len() < 3);
        }
    }

    #[test]
    fn scan_ignores_other_epochs_and_gaps() {
        let bytes = log_of(&[(5, 1, Some(1))], 8);
        assert!(collect(&bytes, 9, 5).0.is_empty());
        assert!(collect(&bytes, 8, 4).0.is_empty());
    }
}
