//! `BlockDevice`: the narrow interface the NBD server serves, so it can run over a replica
//! set or (in tests) anything else. Each I/O call has a blocking
//! form and an async one; the server uses the async one, whose default runs the blocking
//! form on the runtime's blocking pool. A replica set answers asynchronously itself, so a
//! request in flight holds no thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tripod_engine::EngineError;
use tripod_replication::{ReplicaSet, ReplicationError};

/// Why a device operation failed, in the terms the protocol can report.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The range lies outside the device.
    #[error("out of range")]
    OutOfRange,
    /// The request itself is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The device cannot serve it now (no quorum, all copies bad, I/O failure).
    #[error("I/O error: {0}")]
    Io(String),
    /// The disks underneath are full: the write was refused, nothing of it stored.
    #[error("no space left: {0}")]
    NoSpace(String),
    /// Writes are not allowed (the volume became read-only while connected).
    #[error("the volume is read-only")]
    ReadOnly,
}

/// One run of an allocation map: `len` bytes that hold data or read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Bytes in the run.
    pub len: u64,
    /// Holds data (`false`: a hole that reads as zeros).
    pub data: bool,
}

/// The answer of an async device call.
pub type DeviceFuture<T> = Pin<Box<dyn Future<Output = Result<T, DeviceError>> + Send>>;

/// Runs a blocking device call on the runtime's blocking pool.
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeviceError> + Send + 'static,
) -> DeviceFuture<T> {
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(DeviceError::Io(format!("internal error: {e}"))))
    })
}

/// A disk the NBD server exports.
pub trait BlockDevice: Send + Sync + 'static {
    /// Current size in bytes (it may grow while connected).
    fn size(&self) -> u64;
    /// Reads `len` bytes at `offset`.
    fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError>;
    /// Writes `data` at `offset`; durable at the next flush (or at once, if the device
    /// promises that).
    fn write(&self, offset: u64, data: Bytes) -> Result<(), DeviceError>;
    /// Makes a range read as zeros (`punch`: may free its space).
    fn write_zeroes(&self, offset: u64, len: u32, punch: bool) -> Result<(), DeviceError>;
    /// Discards a range (reads back as zeros).
    fn trim(&self, offset: u64, len: u32) -> Result<(), DeviceError>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), DeviceError>;
    /// The allocation map of a range.
    fn allocation(&self, offset: u64, len: u32) -> Result<Vec<Run>, DeviceError>;

    /// [`BlockDevice::read`], awaited.
    fn read_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<Bytes> {
        blocking(move || self.read(offset, len))
    }
    /// [`BlockDevice::write`], awaited.
    fn write_async(self: Arc<Self>, offset: u64, data: Bytes) -> DeviceFuture<()> {
        blocking(move || self.write(offset, data))
    }
    /// [`BlockDevice::write_zeroes`], awaited.
    fn write_zeroes_async(self: Arc<Self>, offset: u64, len: u32, punch: bool) -> DeviceFuture<()> {
        blocking(move || self.write_zeroes(offset, len, punch))
    }
    /// [`BlockDevice::trim`], awaited.
    fn trim_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<()> {
        blocking(move || self.trim(offset, len))
    }
    /// [`BlockDevice::flush`], awaited.
    fn flush_async(self: Arc<Self>) -> DeviceFuture<()> {
        blocking(move || self.flush())
    }
    /// [`BlockDevice::allocation`], awaited.
    fn allocation_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<Vec<Run>> {
        blocking(move || self.allocation(offset, len))
    }
}

impl From<ReplicationError> for DeviceError {
    /// A set's error in the protocol's terms: a range outside the volume, a request the
    /// volume refuses, full disks (ENOSPC) or an I/O error.
    fn from(e: ReplicationError) -> Self {
        match e {
            ReplicationError::Invalid(EngineError::OutOfRange { .. }) => Self::OutOfRange,
            ReplicationError::Invalid(e) => Self::Invalid(e.to_string()),
            e @ ReplicationError::NoSpace { .. } => Self::NoSpace(e.to_string()),
            other => Self::Io(other.to_string()),
        }
    }
}

/// An engine allocation map as the protocol's runs.
fn runs(extents: &[tripod_engine::Extent]) -> Vec<Run> {
    extents
        .iter()
        .map(|e| Run {
            len: e.len,
            data: e.data,
        })
        .collect()
}

impl BlockDevice for ReplicaSet {
    fn size(&self) -> u64 {
        ReplicaSet::size(self)
    }
    fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        ReplicaSet::read(self, offset, u64::from(len)).map_err(DeviceError::from)
    }
    fn write(&self, offset: u64, data: Bytes) -> Result<(), DeviceError> {
        self.write_bytes(offset, data).map_err(DeviceError::from)
    }
    fn write_zeroes(&self, offset: u64, len: u32, _punch: bool) -> Result<(), DeviceError> {
        // Zeroed blocks always become holes: they read as zeros either way, and NO_HOLE is
        // only a hint about allocation.
        ReplicaSet::write_zeroes(self, offset, u64::from(len)).map_err(DeviceError::from)
    }
    fn trim(&self, offset: u64, len: u32) -> Result<(), DeviceError> {
        ReplicaSet::trim(self, offset, u64::from(len)).map_err(DeviceError::from)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        ReplicaSet::flush(self).map_err(DeviceError::from)
    }
    fn allocation(&self, offset: u64, len: u32) -> Result<Vec<Run>, DeviceError> {
        let extents = self
            .extents(offset, u64::from(len))
            .map_err(DeviceError::from)?;
        Ok(runs(&extents))
    }
    fn read_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<Bytes> {
        Box::pin(async move {
            let read = ReplicaSet::read_async(&self, offset, u64::from(len)).await;
            read.map_err(DeviceError::from)
        })
    }
    fn write_async(self: Arc<Self>, offset: u64, data: Bytes) -> DeviceFuture<()> {
        Box::pin(async move {
            let written = ReplicaSet::write_async(&self, offset, data).await;
            written.map_err(DeviceError::from)
        })
    }
    fn write_zeroes_async(
        self: Arc<Self>,
        offset: u64,
        len: u32,
        _punch: bool,
    ) -> DeviceFuture<()> {
        Box::pin(async move {
            let zeroed = ReplicaSet::write_zeroes_async(&self, offset, u64::from(len)).await;
            zeroed.map_err(DeviceError::from)
        })
    }
    fn trim_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<()> {
        Box::pin(async move {
            let trimmed = ReplicaSet::write_zeroes_async(&self, offset, u64::from(len)).await;
            trimmed.map_err(DeviceError::from)
        })
    }
    fn flush_async(self: Arc<Self>) -> DeviceFuture<()> {
        Box::pin(async move {
            ReplicaSet::flush_async(&self)
                .await
                .map_err(DeviceError::from)
        })
    }
}

/// One export: a device and whether clients may write.
#[derive(Clone)]
pub struct Export {
    /// The device.
    pub device: Arc<dyn BlockDevice>,
    /// Refuse writes.
    pub read_only: bool,
}

/// Where the server finds exports by name (the volume id).
pub trait Exports: Send + Sync + 'static {
    /// The export called `name`, if any.
    fn lookup(&self, name: &str) -> Option<Export>;
    /// Names of all exports.
    fn names(&self) -> Vec<String>;
}
