//! [`FileStorage`]: a real directory on a local file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{fallocate, seek, FallocateFlags, SeekFrom};
use rustix::io::{Errno, ReadWriteFlags};

use super::{Storage, StorageFile};

/// A directory on the local file system.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
    /// The open lock file while [`Storage::lock`] holds the directory.
    lock: Arc<parking_lot::Mutex<Option<File>>>,
}

/// Buffers per `pwritev` call: well under every system's `IOV_MAX` (1024 on Linux).
const IOV_GROUP: usize = 512;

/// Name of the lock file in a volume directory.
const LOCK_FILE: &str = "lock";

/// A short-lived file that probes the largest file the file system allows.
const SIZE_PROBE: &str = "size-probe";

impl FileStorage {
    /// Uses `dir`, creating it (and its parents) if missing.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            lock: Arc::new(parking_lot::Mutex::new(None)),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }
}

struct DiskFile {
    file: File,
}

impl StorageFile for DiskFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn read_at_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        // RWF_NOWAIT: served from the page cache, or EAGAIN instead of waiting for the disk.
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let mut slices = [IoSliceMut::new(&mut buf[done..])];
            match rustix::io::preadv2(&self.file, &mut slices, at, ReadWriteFlags::NOWAIT) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(Errno::AGAIN) | Err(Errno::OPNOTSUPP) => return Ok(false),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for group in bufs.chunks(IOV_GROUP) {
            let slices: Vec<IoSlice<'_>> = group.iter().map(|b| IoSlice::new(b)).collect();
            let total: usize = group.iter().map(|b| b.len()).sum();
            let written = rustix::io::pwritev(&self.file, &slices, at)?;
            if written < total {
                // A short write (signal, nearly full disk): finish piece by piece.
                let mut skip = written;
                let mut pos = at + written as u64;
                for b in group {
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    self.file.write_all_at(&b[skip..], pos)?;
                    pos += (b.len() - skip) as u64;
                    skip = 0;
                }
            }
            at += total as u64;
        }
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match fallocate(&self.file, flags, offset, len) {
            Ok(()) => Ok(()),
            // File systems without hole punching still get the zeros, just not the space.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
                let end = self.size()?.min(offset.saturating_add(len));
                let zeros = vec![0u8; 1 << 16];
                let mut at = offset;
                while at < end {
                    let n = (end - at).min(zeros.len() as u64) as usize;
                    self.file.write_all_at(&zeros[..n], at)?;
                    at += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match fallocate(&self.file, FallocateFlags::KEEP_SIZE, offset, len) {
            // Without preallocation a full disk shows at the write itself, as before.
            Err(e) if e == Errno::OPNOTSUPP => Ok(()),
            r => r.map_err(io::Error::from),
        }
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn allocated(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.blocks() * 512)
    }

    fn links(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.nlink())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn data_regions(&self) -> io::Result<Vec<(u64, u64)>> {
        let size = self.size()?;
        let mut regions = Vec::new();
        let mut at = 0;
        while at < size {
            let start = match seek(&self.file, SeekFrom::Data(at)) {
                Ok(start) => start,
                // No data after `at`.
                Err(Errno::NXIO) => break,
                // A file system without SEEK_DATA: all of it may be data.
                Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(vec![(0, size)]),
                Err(e) => return Err(e.into()),
            };
            let end = seek(&self.file, SeekFrom::Hole(start))?.min(size);
            if end <= start {
                break;
            }
            regions.push((start, end));
            at = end;
        }
        Ok(regions)
    }
}

impl Storage for FileStorage {
    fn open_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(name)?)?;
        Ok(Arc::new(DiskFile { file }))
    }

    fn create_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path(name)?)?;
        Ok(Arc::new(DiskFile { file }))
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.path(name)?.try_exists()
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from)?, self.path(to)?)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn file_path(&self, name: &str) -> Option<PathBuf> {
        self.path(name).ok()
    }

    fn link_from(&self, src: &dyn Storage, src_name: &str, name: &str) -> io::Result<bool> {
        let Some(from) = src.file_path(src_name) else {
            return Ok(false);
        };
        match fs::hard_link(from, self.path(name)?) {
            Ok(()) => Ok(true),
            // Another file system, one without hard links, or the link limit: copy instead.
            Err(e)
                if [Errno::XDEV, Errno::PERM, Errno::OPNOTSUPP, Errno::MLINK]
                    .iter()
                    .any(|n| e.raw_os_error() == Some(n.raw_os_error())) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn free_space(&self) -> io::Result<Option<u64>> {
        let st = rustix::fs::statvfs(&self.dir)?;
        Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
    }

    fn can_hold(&self, len: u64) -> io::Result<bool> {
        // A sparse probe: extending a file past the file system's limit fails with EFBIG
        // (rustix's errno table names it; std's `FileTooLarge` kind is still unstable).
        let probe = self.path(SIZE_PROBE)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)?;
        let result = file.set_len(len);
        drop(file);
        fs::remove_file(&probe)?;
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::FBIG.raw_os_error()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn lock(&self) -> io::Result<()> {
        let mut held = self.lock.lock();
        if held.is_some() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK_FILE))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another process ({e})", self.dir.display()),
                )
            },
        )?;
        *held = Some(file);
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}
