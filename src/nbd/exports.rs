//! The volumes of a data directory as NBD exports: each connection gets the volume's replica
//! set behind the volume's write gate, so a volume made read-only (or hidden) refuses writes
//! on connections that were open before the change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tripod_replication::ReplicaSet;

use super::device::{BlockDevice, DeviceError, DeviceFuture, Export, Exports, Run};
use crate::data_dir::{Exposure, VolumeRegistry};

/// A volume as one NBD connection sees it: its replica set behind a write gate the registry
/// closes when the volume becomes read-only or is hidden, so connections made before the
/// change get EPERM for writes from then on (reads keep working).
struct GatedVolume {
    set: Arc<ReplicaSet>,
    writable: Arc<AtomicBool>,
}

impl GatedVolume {
    fn check(&self) -> Result<(), DeviceError> {
        if self.writable.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(DeviceError::ReadOnly)
        }
    }
}

impl BlockDevice for GatedVolume {
    fn size(&self) -> u64 {
        BlockDevice::size(self.set.as_ref())
    }
    fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        BlockDevice::read(self.set.as_ref(), offset, len)
    }
    fn write(&self, offset: u64, data: Bytes) -> Result<(), DeviceError> {
        self.check()?;
        BlockDevice::write(self.set.as_ref(), offset, data)
    }
    fn write_zeroes(&self, offset: u64, len: u32, punch: bool) -> Result<(), DeviceError> {
        self.check()?;
        BlockDevice::write_zeroes(self.set.as_ref(), offset, len, punch)
    }
    fn trim(&self, offset: u64, len: u32) -> Result<(), DeviceError> {
        self.check()?;
        BlockDevice::trim(self.set.as_ref(), offset, len)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        BlockDevice::flush(self.set.as_ref())
    }
    fn allocation(&self, offset: u64, len: u32) -> Result<Vec<Run>, DeviceError> {
        BlockDevice::allocation(self.set.as_ref(), offset, len)
    }
    fn read_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<Bytes> {
        self.set.clone().read_async(offset, len)
    }
    fn write_async(self: Arc<Self>, offset: u64, data: Bytes) -> DeviceFuture<()> {
        match self.check() {
            Ok(()) => BlockDevice::write_async(self.set.clone(), offset, data),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn write_zeroes_async(self: Arc<Self>, offset: u64, len: u32, punch: bool) -> DeviceFuture<()> {
        match self.check() {
            Ok(()) => BlockDevice::write_zeroes_async(self.set.clone(), offset, len, punch),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn trim_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<()> {
        match self.check() {
            Ok(()) => BlockDevice::trim_async(self.set.clone(), offset, len),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn flush_async(self: Arc<Self>) -> DeviceFuture<()> {
        BlockDevice::flush_async(self.set.clone())
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
