//! [`FaultyStorage`]: wraps another storage and makes chosen operations fail, so tests can
//! stop the engine at any I/O (a failing disk, a crash point) deterministically.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{injected_fault, Storage, StorageFile};

/// Which operations fail. Operations are counted from 0 across every file and directory call
/// (reads included); syncs (`sync_data`, `sync_dir`) are also counted on their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// This operation fails once; later ones succeed (a transient I/O error).
    pub fail_once_at_op: Option<u64>,
    /// From this operation on, everything fails (the disk is gone / the power is cut).
    pub die_at_op: Option<u64>,
    /// From this sync on (counting syncs only), everything fails.
    pub die_at_sync: Option<u64>,
    /// When the operation that kills the storage is a write, half of it lands first.
    pub tear_dying_write: bool,
}

#[derive(Debug)]
struct Faults {
    plan: FaultPlan,
    ops: AtomicU64,
    syncs: AtomicU64,
    dead: AtomicBool,
}

impl Faults {
    /// Counts one operation; `Ok(())` lets it run, `Err(tear)` fails it, `tear` saying whether
    /// a write should land half-way first.
    fn admit(&self, is_sync: bool) -> Result<(), bool> {
        let op = self.ops.fetch_add(1, Ordering::SeqCst);
        if self.dead.load(Ordering::SeqCst) {
            return Err(false);
        }
        let mut dies = self.plan.die_at_op == Some(op);
        if is_sync {
            let sync = self.syncs.fetch_add(1, Ordering::SeqCst);
            dies |= self.plan.die_at_sync == Some(sync);
        }
        if dies {
            self.dead.store(true, Ordering::SeqCst);
            return Err(self.plan.tear_dying_write);
        }
        if self.plan.fail_once_at_op == Some(op) {
            return Err(false);
        }
        Ok(())
    }
}

/// A storage wrapper that injects faults according to a [`FaultPlan`].
#[derive(Clone)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    faults: Arc<Faults>,
}

impl FaultyStorage {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>, plan: FaultPlan) -> Self {
        Self {
            inner,
            faults: Arc::new(Faults {
                plan,
                ops: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                dead: AtomicBool::new(false),
            }),
        }
    }

    /// Operations issued so far (including failed ones).
    pub fn ops(&self) -> u64 {
        self.faults.ops.load(Ordering::SeqCst)
    }

    /// Syncs issued so far (including failed ones).
    pub fn syncs(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }

    /// Whether the storage has died.
    pub fn is_dead(&self) -> bool {
        self.faults.dead.load(Ordering::SeqCst)
    }

    fn check(&self, what: &str) -> io::Result<()> {
        self.faults.admit(false).map_err(|_| injected_fault(what))
    }
}

struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    faults: Arc<Faults>,
}

impl FaultyFile {
    fn check(&self, what: &str, is_sync: bool) -> io::Result<()> {
        self.faults.admit(is_sync).map_err(|_| injected_fault(what))
    }
}

impl StorageFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check("read", false)?;
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        match self.faults.admit(false) {
            Ok(()) => self.inner.write_at(data, offset),
            Err(tear) => {
                if tear {
                    // Best effort: the torn half is what matters, not whether it landed.
                    let _ = self.inner.write_at(&data[..data.len() / 2], offset);
                }
                Err(injected_fault("write"))
            }
        }
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check("punch", false)?;
        self.inner.punch_hole(offset, len)
    }

    fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.reserve(offset, len)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn allocated(&self) -> io::Result<u64> {
        self.inner.allocated()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check("sync_data", true)?;
        self.inner.sync_data()
    }

    fn links(&self) -> io::Result<u64> {
        self.inner.links()
    }

    fn data_regions(&self) -> io::Result<Vec<(u64, u64)>> {
        self.inner.data_regions()
    }
}

impl Storage for FaultyStorage {
    fn open_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.check("open")?;
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open_file(name)?,
            faults: self.faults.clone(),
        }))
    }

    fn create_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.check("create")?;
        Ok(Arc::new(FaultyFile {
            inner: self.inner.create_file(name)?,
            faults: self.faults.clone(),
        }))
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.inner.exists(name)
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        self.check("remove")?;
        self.inner.remove_file(name)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check("rename")?;
        self.inner.rename(from, to)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.faults
            .admit(true)
            .map_err(|_| injected_fault("sync_dir"))?;
        self.inner.sync_dir()
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn can_hold(&self, len: u64) -> io::Result<bool> {
        self.inner.can_hold(len)
    }

    fn lock(&self) -> io::Result<()> {
        self.inner.lock()
    }

    fn file_path(&self, name: &str) -> Option<std::path::PathBuf> {
        self.inner.file_path(name)
    }

    fn link_from(&self, src: &dyn Storage, src_name: &str, name: &str) -> io::Result<bool> {
        self.check("link")?;
        self.inner.link_from(src, src_name, name)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.inner.as_any()
    }
}
