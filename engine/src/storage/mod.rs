//! The narrow I/O interface every byte of the engine goes through: a flat directory of files
//! with positional reads and writes. Four backends: [`FileStorage`] (a real directory),
//! [`MemStorage`] (memory that tracks written versus durable bytes and can simulate power loss),
//! [`FaultyStorage`] (wraps another backend and fails or tears chosen operations) and
//! [`OverlayStorage`] (another backend seen read-only, changes kept in memory).
//!
//! This module owns the I/O contract; it knows nothing of volumes, layers or formats.

mod faulty;
mod file;
mod mem;
mod overlay;

use std::io;
use std::sync::Arc;

pub use faulty::{FaultPlan, FaultyStorage};
pub use file::FileStorage;
pub use mem::{CrashMode, MemStorage};
pub use overlay::OverlayStorage;

/// One file of a [`Storage`]. Offsets are absolute; there is no cursor.
pub trait StorageFile: Send + Sync {
    /// Fills `buf` from `offset`. Bytes past the end of the file read as zeros (files are
    /// sparse by design).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// [`StorageFile::read_at`] only if it needs no disk I/O (the bytes are cached in
    /// memory): `Ok(false)` if it would have to wait for the disk (then `buf` holds
    /// nothing defined). The default never reads: `Ok(false)`.
    fn read_at_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let _ = (buf, offset);
        Ok(false)
    }
    /// Writes all of `data` at `offset`, growing the file if needed. Not durable until
    /// [`StorageFile::sync_data`] returns.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Writes the buffers one after the other from `offset`, as one write of their
    /// concatenation. The default copies them together; [`FileStorage`] uses `pwritev`.
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        match bufs {
            [] => Ok(()),
            [one] => self.write_at(one, offset),
            many => self.write_at(&many.concat(), offset),
        }
    }
    /// Makes `offset..offset+len` read as zeros and releases its space where the backend can.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes sure writing `offset..offset+len` later needs no new space (allocates it now,
    /// without changing the length), so a full file system refuses the request that needs
    /// the space instead of a later write that must not fail. Backends that cannot say
    /// accept it.
    fn reserve(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Bytes of backing space the file occupies (less than its length when sparse).
    fn allocated(&self) -> io::Result<u64>;
    /// Makes every write and punch so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// How many names the file has (hard links), in this storage and any other: more than
    /// one means another volume shares it (a linked clone), so it must not be changed in
    /// place. Backends without links say 1.
    fn links(&self) -> io::Result<u64> {
        Ok(1)
    }
    /// Byte ranges `(start, end)` that may hold data, in order; everything outside them
    /// reads as zeros (the file system's holes). The default is the whole file.
    fn data_regions(&self) -> io::Result<Vec<(u64, u64)>> {
        let size = self.size()?;
        Ok(if size == 0 {
            Vec::new()
        } else {
            vec![(0, size)]
        })
    }
}

/// A flat directory of files. Creating, renaming and removing names is durable only after
/// [`Storage::sync_dir`].
pub trait Storage: Send + Sync {
    /// Opens an existing file.
    fn open_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a file, or truncates it to zero length if it exists.
    fn create_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Whether a file of this name exists.
    fn exists(&self, name: &str) -> io::Result<bool>;
    /// Removes a file.
    fn remove_file(&self, name: &str) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes every create, rename and remove so far durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Names of all files.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Whether a file here may grow to `len` bytes: the file system's largest file (ext4
    /// with 4 KiB blocks stops at 16 TiB) bounds the volumes a directory can hold, since a
    /// layer's data file spans the volume's address space.
    fn can_hold(&self, len: u64) -> io::Result<bool> {
        let _ = len;
        Ok(true)
    }
    /// Bytes free for new data on the file system holding the storage (`None`: unknown).
    fn free_space(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    /// The path of file `name` on the local file system, where the backend has one.
    fn file_path(&self, name: &str) -> Option<std::path::PathBuf> {
        let _ = name;
        None
    }

    /// Makes `name` here a second name of `src`'s file `src_name` (a hard link: one file,
    /// two names, durable here after [`Storage::sync_dir`]). `Ok(false)` when the two
    /// cannot share a file (other file systems, other backends): the caller copies instead.
    fn link_from(&self, src: &dyn Storage, src_name: &str, name: &str) -> io::Result<bool> {
        let _ = (src, src_name, name);
        Ok(false)
    }

    /// The backend as `Any`, for backends that link only among their own kind.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Takes an exclusive lock on the directory for as long as this storage lives, so two
    /// processes never open one volume; fails with `WouldBlock` if another holds it.
    /// Calling it again on the same storage succeeds.
    fn lock(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The error every backend returns once it is dead or a fault was injected.
pub(crate) fn injected_fault(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}
