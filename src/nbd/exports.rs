//! The volumes of a data directory as NBD exports: each connection gets the volume's replica
//! set behind the volume's write gate, so a volume made read-only (or hidden) refuses writes
//! on connections that were open before the change. Every request is counted in the
//! volume's I/O figures (`crate::io_metrics`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tripod_replication::ReplicaSet;

use super::device::{BlockDevice, DeviceError, DeviceFuture, Export, Exports, Run};
use crate::data_dir::{Exposure, VolumeRegistry};
use crate::io_metrics::{Op, VolumeIo};

/// A volume as one NBD connection sees it: its replica set behind a write gate the registry
/// closes when the volume becomes read-only or is hidden, so connections made before the
/// change get EPERM for writes from then on (reads keep working).
struct GatedVolume {
    set: Arc<ReplicaSet>,
    writable: Arc<AtomicBool>,
    /// The volume's I/O figures.
    io: VolumeIo,
}

impl GatedVolume {
    fn check(&self) -> Result<(), DeviceError> {
        if self.writable.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(DeviceError::ReadOnly)
        }
    }

    /// Runs `f` counted as one `op` of `bytes` in the volume's I/O figures.
    fn counted<T>(
        &self,
        op: Op,
        bytes: u64,
        f: impl FnOnce() -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        let request = self.io.start(op, bytes);
        let r = f();
        request.done(r.is_ok());
        r
    }

    /// Awaits `fut` counted as one `op` of `bytes` in the volume's I/O figures.
    fn counted_async<T: Send + 'static>(
        &self,
        op: Op,
        bytes: u64,
        fut: DeviceFuture<T>,
    ) -> DeviceFuture<T> {
        let request = self.io.start(op, bytes);
        Box::pin(async move {
            let r = fut.await;
            request.done(r.is_ok());
            r
        })
    }

    /// A refusal answered at once (and counted as a failed `op`).
    fn refused<T: Send + 'static>(&self, op: Op, e: DeviceError) -> DeviceFuture<T> {
        self.io.start(op, 0).done(false);
        Box::pin(std::future::ready(Err(e)))
    }
}

impl BlockDevice for GatedVolume {
    fn size(&self) -> u64 {
        BlockDevice::size(self.set.as_ref())
    }
    fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        self.counted(Op::Read, u64::from(len), || {
            BlockDevice::read(self.set.as_ref(), offset, len)
        })
    }
    fn write(&self, offset: u64, data: Bytes) -> Result<(), DeviceError> {
        self.counted(Op::Write, data.len() as u64, || {
            self.check()?;
            BlockDevice::write(self.set.as_ref(), offset, data)
        })
    }
    fn write_zeroes(&self, offset: u64, len: u32, punch: bool) -> Result<(), DeviceError> {
        self.counted(Op::WriteZeroes, u64::from(len), || {
            self.check()?;
            BlockDevice::write_zeroes(self.set.as_ref(), offset, len, punch)
        })
    }
    fn trim(&self, offset: u64, len: u32) -> Result<(), DeviceError> {
        self.counted(Op::Trim, u64::from(len), || {
            self.check()?;
            BlockDevice::trim(self.set.as_ref(), offset, len)
        })
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.counted(Op::Flush, 0, || BlockDevice::flush(self.set.as_ref()))
    }
    fn allocation(&self, offset: u64, len: u32) -> Result<Vec<Run>, DeviceError> {
        BlockDevice::allocation(self.set.as_ref(), offset, len)
    }
    fn read_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<Bytes> {
        let fut = self.set.clone().read_async(offset, len);
        self.counted_async(Op::Read, u64::from(len), fut)
    }
    fn write_async(self: Arc<Self>, offset: u64, data: Bytes) -> DeviceFuture<()> {
        let bytes = data.len() as u64;
        match self.check() {
            Ok(()) => {
                let fut = BlockDevice::write_async(self.set.clone(), offset, data);
                self.counted_async(Op::Write, bytes, fut)
            }
            Err(e) => self.refused(Op::Write, e),
        }
    }
    fn write_zeroes_async(self: Arc<Self>, offset: u64, len: u32, punch: bool) -> DeviceFuture<()> {
        match self.check() {
            Ok(()) => {
                let fut = BlockDevice::write_zeroes_async(self.set.clone(), offset, len, punch);
                self.counted_async(Op::WriteZeroes, u64::from(len), fut)
            }
            Err(e) => self.refused(Op::WriteZeroes, e),
        }
    }
    fn trim_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<()> {
        match self.check() {
            Ok(()) => {
                let fut = BlockDevice::trim_async(self.set.clone(), offset, len);
                self.counted_async(Op::Trim, u64::from(len), fut)
            }
            Err(e) => self.refused(Op::Trim, e),
        }
    }
    fn flush_async(self: Arc<Self>) -> DeviceFuture<()> {
        let fut = BlockDevice::flush_async(self.set.clone());
        self.counted_async(Op::Flush, 0, fut)
    }
}

impl Exports for VolumeRegistry {
    fn lookup(&self, name: &str) -> Option<Export> {
        let read_only = match self.exposure(name) {
            Some(Exposure::Hidden) => return None,
            Some(Exposure::Exported { read_only }) => read_only,
            None => false,
        };
        match self.get(name) {
            Ok(set) => Some(Export {
                device: Arc::new(GatedVolume {
                    set,
                    writable: self.write_gate(name),
                    io: self.io_metrics().volume(name),
                }),
                read_only,
            }),
            Err(e) => {
                tracing::info!(export = name, "export refused: {e}");
                None
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.visible()
    }
}
