//! [`MemStorage`]: files in memory that remember which bytes are durable, so tests can cut the
//! power at any instant and see exactly what a disk would have kept.
//!
//! Model: every file has a durable image and a list of operations issued since its last
//! `sync_data`. Names (create, rename, remove) are durable after `sync_dir`. A crash keeps the
//! durable state, plus, in [`CrashMode::Torn`], a seeded random choice of the unsynced
//! operations, some applied only partly (whole 512-byte sectors of a write), because disks
//! reorder and tear unsynced writes.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Storage, StorageFile};

/// Sector size used when tearing writes.
const SECTOR: usize = 512;

/// What survives a simulated power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced data and synced names survive.
    LoseUnsynced,
    /// Synced state plus a random subset of unsynced file operations, some torn at sector
    /// boundaries. The same seed gives the same outcome.
    Torn {
        /// Seed of the choice.
        seed: u64,
    },
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    Punch { offset: u64, len: u64 },
    Truncate,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
    /// Names the file has now, in every storage sharing it.
    links: u64,
}

fn apply(image: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        PendingOp::Punch { offset, len } => {
            let start = (*offset as usize).min(image.len());
            let end = (offset.saturating_add(*len) as usize).min(image.len());
            image[start..end].fill(0);
        }
        PendingOp::Truncate => image.clear(),
    }
}

/// SplitMix64: a tiny deterministic generator for crash choices (no dependency needed for it).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[derive(Debug, Default)]
struct Dir {
    inodes: HashMap<u64, Arc<Mutex<Inode>>>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    syncs: u64,
    /// Largest file allowed, like a file system's limit (`None`: unlimited).
    max_file_size: Option<u64>,
}

impl Dir {
    /// One name of inode `ino` went away.
    fn unlink(&self, ino: u64) {
        if let Some(inode) = self.inodes.get(&ino) {
            let mut i = inode.lock();
            i.links = i.links.saturating_sub(1);
        }
    }
}

/// In-memory storage with a power-loss model. Cloning shares the same files.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    dir: Arc<Mutex<Dir>>,
}

struct MemFile {
    inode: Arc<Mutex<Inode>>,
    dir: Arc<Mutex<Dir>>,
}

impl StorageFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let inode = self.inode.lock();
        let start = (offset as usize).min(inode.current.len());
        let end = (offset as usize)
            .saturating_add(buf.len())
            .min(inode.current.len());
        let n = end - start;
        buf[..n].copy_from_slice(&inode.current[start..end]);
        buf[n..].fill(0);
        Ok(())
    }

    fn read_at_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.read_at(buf, offset).map(|()| true)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let max = self.dir.lock().max_file_size;
        if max.is_some_and(|max| offset.saturating_add(data.len() as u64) > max) {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::FBIG.raw_os_error(),
            ));
        }
        let op = PendingOp::Write {
            offset,
            data: data.to_vec(),
        };
        let mut inode = self.inode.lock();
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let op = PendingOp::Punch { offset, len };
        let mut inode = self.inode.lock();
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.inode.lock().current.len() as u64)
    }

    fn allocated(&self) -> io::Result<u64> {
        // Count non-zero sectors, as a sparse file system would allocate them.
        let inode = self.inode.lock();
        let used = inode
            .current
            .chunks(SECTOR)
            .filter(|s| s.iter().any(|&b| b != 0))
            .count();
        Ok((used * SECTOR) as u64)
    }

    fn links(&self) -> io::Result<u64> {
        Ok(self.inode.lock().links)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut inode = self.inode.lock();
        let pending = std::mem::take(&mut inode.pending);
        for op in &pending {
            apply(&mut inode.durable, op);
        }
        drop(inode);
        self.dir.lock().syncs += 1;
        Ok(())
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name:?}"))
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty storage whose files may not grow past `max` bytes (as on a file system
    /// with a maximum file size).
    pub fn with_max_file_size(max: u64) -> Self {
        let s = Self::default();
        s.dir.lock().max_file_size = Some(max);
        s
    }

    /// Simulates a power loss: returns a new storage holding what a disk would have kept.
    /// Handles into `self` stay usable but no longer affect the returned storage.
    pub fn crash(&self, mode: CrashMode) -> MemStorage {
        let dir = self.dir.lock();
        let mut rng = match mode {
            CrashMode::LoseUnsynced => None,
            CrashMode::Torn { seed } => Some(SplitMix(seed)),
        };
        let mut out = Dir {
            next_inode: dir.next_inode,
            max_file_size: dir.max_file_size,
            ..Dir::default()
        };
        for (name, ino) in &dir.durable_names {
            let Some(inode) = dir.inodes.get(ino) else {
                continue;
            };
            if !out.inodes.contains_key(ino) {
                let inode = inode.lock();
                let mut image = inode.durable.clone();
                if let Some(rng) = rng.as_mut() {
                    for op in &inode.pending {
                        replay_maybe_torn(&mut image, op, rng);
                    }
                }
                let links = dir.durable_names.values().filter(|i| *i == ino).count() as u64;
                let survivor = Inode {
                    current: image.clone(),
                    durable: image,
                    pending: Vec::new(),
                    links,
                };
                out.inodes.insert(*ino, Arc::new(Mutex::new(survivor)));
            }
            out.names.insert(name.clone(), *ino);
            out.durable_names.insert(name.clone(), *ino);
        }
        MemStorage {
            dir: Arc::new(Mutex::new(out)),
        }
    }

    /// Number of `sync_data` and `sync_dir` calls so far.
    pub fn syncs(&self) -> u64 {
        self.dir.lock().syncs
    }

    /// XORs `mask` into the byte at `offset` of file `name`, in both the current and the
    /// durable image (a bit flip on the medium).
    pub fn flip_bits(&self, name: &str, offset: u64, mask: u8) -> io::Result<()> {
        let dir = self.dir.lock();
        let ino = dir.names.get(name).ok_or_else(|| not_found(name))?;
        let inode = dir.inodes.get(ino).ok_or_else(|| not_found(name))?;
        let mut guard = inode.lock();
        let inode = &mut *guard;
        let at = offset as usize;
        for image in [&mut inode.current, &mut inode.durable] {
            if let Some(b) = image.get_mut(at) {
                *b ^= mask;
            }
        }
        Ok(())
    }

    /// Replaces the whole content of file `name` (current and durable), creating it durably
    /// if needed: for tests that plant damaged files.
    pub fn put_file(&self, name: &str, content: &[u8]) {
        let mut dir = self.dir.lock();
        let ino = dir.next_inode;
        dir.next_inode += 1;
        let inode = Inode {
            current: content.to_vec(),
            durable: content.to_vec(),
            pending: Vec::new(),
            links: 1,
        };
        dir.inodes.insert(ino, Arc::new(Mutex::new(inode)));
        dir.names.insert(name.to_owned(), ino);
        dir.durable_names.insert(name.to_owned(), ino);
    }

    /// The current content of file `name`.
    pub fn read_file(&self, name: &str) -> io::Result<Vec<u8>> {
        let dir = self.dir.lock();
        let ino = dir.names.get(name).ok_or_else(|| not_found(name))?;
        let inode = dir.inodes.get(ino).ok_or_else(|| not_found(name))?;
        let content = inode.lock().current.clone();
        Ok(content)
    }
}

fn replay_maybe_torn(image: &mut Vec<u8>, op: &PendingOp, rng: &mut SplitMix) {
    match rng.next() % 3 {
        0 => {}
        1 => apply(image, op),
        _ => match op {
            PendingOp::Write { offset, data } => {
                // Keep a random subset of the write's sectors.
                for (i, sector) in data.chunks(SECTOR).enumerate() {
                    if rng.next() % 2 == 0 {
                        let part = PendingOp::Write {
                            offset: offset + (i * SECTOR) as u64,
                            data: sector.to_vec(),
                        };
                        apply(image, &part);
                    }
                }
            }
            other => apply(image, other),
        },
    }
}

impl Storage for MemStorage {
    fn open_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let dir = self.dir.lock();
        let ino = dir.names.get(name).ok_or_else(|| not_found(name))?;
        let inode = dir.inodes.get(ino).ok_or_else(|| not_found(name))?.clone();
        Ok(Arc::new(MemFile {
            inode,
            dir: self.dir.clone(),
        }))
    }

    fn create_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let mut dir = self.dir.lock();
        if let Some(ino) = dir.names.get(name).copied() {
            let inode = dir.inodes.get(&ino).ok_or_else(|| not_found(name))?.clone();
            {
                let mut i = inode.lock();
                i.current.clear();
                i.pending.push(PendingOp::Truncate);
            }
            return Ok(Arc::new(MemFile {
                inode,
                dir: self.dir.clone(),
            }));
        }
        let ino = dir.next_inode;
        dir.next_inode += 1;
        let inode = Arc::new(Mutex::new(Inode {
            links: 1,
            ..Inode::default()
        }));
        dir.inodes.insert(ino, inode.clone());
        dir.names.insert(name.to_owned(), ino);
        Ok(Arc::new(MemFile {
            inode,
            dir: self.dir.clone(),
        }))
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        Ok(self.dir.lock().names.contains_key(name))
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        let mut dir = self.dir.lock();
        let ino = dir.names.remove(name).ok_or_else(|| not_found(name))?;
        dir.unlink(ino);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut dir = self.dir.lock();
        let ino = dir.names.remove(from).ok_or_else(|| not_found(from))?;
        if let Some(replaced) = dir.names.insert(to.to_owned(), ino) {
            dir.unlink(replaced);
        }
        Ok(())
    }

    fn link_from(&self, src: &dyn Storage, src_name: &str, name: &str) -> io::Result<bool> {
        let Some(src) = src.as_any().and_then(|a| a.downcast_ref::<MemStorage>()) else {
            return Ok(false);
        };
        let inode = {
            let from = src.dir.lock();
            let ino = from
                .names
                .get(src_name)
                .ok_or_else(|| not_found(src_name))?;
            from.inodes
                .get(ino)
                .ok_or_else(|| not_found(src_name))?
                .clone()
        };
        let mut dir = self.dir.lock();
        if dir.names.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("file {name:?} exists"),
            ));
        }
        inode.lock().links += 1;
        let ino = dir.next_inode;
        dir.next_inode += 1;
        dir.inodes.insert(ino, inode);
        dir.names.insert(name.to_owned(), ino);
        Ok(true)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut dir = self.dir.lock();
        dir.durable_names = dir.names.clone();
        let live: std::collections::HashSet<u64> = dir.names.values().copied().collect();
        // Forget inodes no name can reach any more (handles keep their own Arc).
        dir.inodes.retain(|ino, _| live.contains(ino));
        dir.syncs += 1;
        Ok(())
    }

    fn can_hold(&self, len: u64) -> io::Result<bool> {
        Ok(self.dir.lock().max_file_size.is_none_or(|max| len <= max))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.dir.lock().names.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_on_crash() {
        let s = MemStorage::new();
        let f = s.create_file("a").unwrap();
        s.sync_dir().unwrap();
        f.write_at(b"durable", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b"VOLATILE", 0).unwrap();
        let after = s.crash(CrashMode::LoseUnsynced);
        assert_eq!(after.read_file("a").unwrap(), b"durable");
    }

    #[test]
    fn unsynced_names_are_lost_on_crash() {
        let s = MemStorage::new();
        let f = s.create_file("a").unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        let after = s.crash(CrashMode::LoseUnsynced);
        assert!(!after.exists("a").unwrap());
    }

    #[test]
    fn rename_is_durable_after_sync_dir() {
        let s = MemStorage::new();
        s.create_file("tmp").unwrap().sync_data().unwrap();
        s.sync_dir().unwrap();
        s.rename("tmp", "final").unwrap();
        let lost = s.crash(CrashMode::LoseUnsynced);
        assert!(lost.exists("tmp").unwrap() && !lost.exists("final").unwrap());
        s.sync_dir().unwrap();
        let kept = s.crash(CrashMode::LoseUnsynced);
        assert!(kept.exists("final").unwrap() && !kept.exists("tmp").unwrap());
    }

    #[test]
    fn a_link_shares_the_file_and_counts_its_names() {
        let a = MemStorage::new();
        let b = MemStorage::new();
        let f = a.create_file("x").unwrap();
        f.write_at(b"shared", 0).unwrap();
        assert!(b.link_from(&a, "x", "y").unwrap());
        assert_eq!(b.read_file("y").unwrap(), b"shared");
        assert_eq!(f.links().unwrap(), 2);
        a.remove_file("x").unwrap();
        assert_eq!(f.links().unwrap(), 1);
        assert_eq!(b.read_file("y").unwrap(), b"shared");
        // Not durable in `b` before its directory is synced.
        assert!(!b.crash(CrashMode::LoseUnsynced).exists("y").unwrap());
        b.sync_dir().unwrap();
        assert!(b.crash(CrashMode::LoseUnsynced).exists("y").unwrap());
    }

    #[test]
    fn torn_crash_is_reproducible() {
        let s = MemStorage::new();
        let f = s.create_file("a").unwrap();
        s.sync_dir().unwrap();
        for i in 0..20u8 {
            f.write_at(&[i; 2048], u64::from(i) * 2048).unwrap();
        }
        let a = s.crash(CrashMode::Torn { seed: 7 }).read_file("a").unwrap();
        let b = s.crash(CrashMode::Torn { seed: 7 }).read_file("a").unwrap();
        assert_eq!(a, b);
    }
}
