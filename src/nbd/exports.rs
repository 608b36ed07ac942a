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
use crate::qos::{Direction, Throttle};

/// A volume as one NBD connection sees it: its replica set behind a write gate the registry
/// closes when the volume becomes read-only or is hidden, so connections made before the
/// change get EPERM for writes from then on (reads keep working), and behind the volume's
/// QoS throttle, where requests over its limits wait.
struct GatedVolume {
    set: Arc<ReplicaSet>,
    writable: Arc<AtomicBool>,
    /// The volume's QoS limits (shared with every connection to it).
    throttle: Arc<Throttle>,
    /// The volume's I/O figures.
    io: VolumeIo,
}

/// How the throttle counts a request: its direction and whether it moves its bytes.
fn cost_of(op: Op) -> (Direction, bool) {
    match op {
        Op::Read => (Direction::Read, true),
        Op::Write => (Direction::Write, true),
        Op::WriteZeroes | Op::Trim | Op::Flush => (Direction::Write, false),
    }
}

impl GatedVolume {
    fn check(&self) -> Result<(), DeviceError> {
        if self.writable.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(DeviceError::ReadOnly)
        }
    }

    /// Runs `f` counted as one `op` of `bytes` in the volume's I/O figures, once the
    /// volume's limits let it through (this thread sleeps meanwhile).
    fn counted<T>(
        &self,
        op: Op,
        bytes: u64,
        f: impl FnOnce() -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        let request = self.io.start(op, bytes);
        if op != Op::Flush && self.throttle.is_limited() {
            let (dir, data) = cost_of(op);
            self.io
                .throttled(self.throttle.admit_blocking(dir, bytes, data));
        }
        let r = f();
        request.done(r.is_ok());
        r
    }

    /// Starts `start` counted as one `op` of `bytes` in the volume's I/O figures, once the
    /// volume's limits let it through (waiting holds no thread). A write checks the gate
    /// again after a wait: the volume may have become read-only meanwhile.
    fn counted_async<T: Send + 'static>(
        self: Arc<Self>,
        op: Op,
        bytes: u64,
        start: impl FnOnce(&GatedVolume) -> DeviceFuture<T> + Send + 'static,
    ) -> DeviceFuture<T> {
        let request = self.io.start(op, bytes);
        if op == Op::Flush || !self.throttle.is_limited() {
            let fut = start(&self);
            return Box::pin(async move {
                let r = fut.await;
                request.done(r.is_ok());
                r
            });
        }
        Box::pin(async move {
            let (dir, data) = cost_of(op);
            let waited = self.throttle.admit(dir, bytes, data).await;
            self.io.throttled(waited);
            let r = match (op, self.check()) {
                (Op::Read, _) | (_, Ok(())) => start(&self).await,
                (_, Err(e)) => Err(e),
            };
            request.done(r.is_ok());
            r
        })
    }

    /// A refusal answered at once (and counted as a failed `op`).
    fn refused<T: Send + 'static>(&self, op: Op, e: DeviceError) -> DeviceFuture<T> {
        self.io.start(op, 0).done(false);
        Box::pin(std::future::ready(Err(e)))
    }

    /// A write-like call: refused at once if the gate is closed, else counted and throttled.
    fn gated_async<T: Send + 'static>(
        self: Arc<Self>,
        op: Op,
        bytes: u64,
        start: impl FnOnce(&GatedVolume) -> DeviceFuture<T> + Send + 'static,
    ) -> DeviceFuture<T> {
        match self.check() {
            Ok(()) => self.counted_async(op, bytes, start),
            Err(e) => self.refused(op, e),
        }
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
        self.counted_async(Op::Read, u64::from(len), move |me: &GatedVolume| {
            me.set.clone().read_async(offset, len)
        })
    }
    fn write_async(self: Arc<Self>, offset: u64, data: Bytes) -> DeviceFuture<()> {
        let bytes = data.len() as u64;
        self.gated_async(Op::Write, bytes, move |me: &GatedVolume| {
            BlockDevice::write_async(me.set.clone(), offset, data)
        })
    }
    fn write_zeroes_async(self: Arc<Self>, offset: u64, len: u32, punch: bool) -> DeviceFuture<()> {
        self.gated_async(Op::WriteZeroes, u64::from(len), move |me: &GatedVolume| {
            BlockDevice::write_zeroes_async(me.set.clone(), offset, len, punch)
        })
    }
    fn trim_async(self: Arc<Self>, offset: u64, len: u32) -> DeviceFuture<()> {
        self.gated_async(Op::Trim, u64::from(len), move |me: &GatedVolume| {
            BlockDevice::trim_async(me.set.clone(), offset, len)
        })
    }
    fn flush_async(self: Arc<Self>) -> DeviceFuture<()> {
        self.counted_async(Op::Flush, 0, |me: &GatedVolume| {
            BlockDevice::flush_async(me.set.clone())
        })
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
                    throttle: self.throttle(name),
                    io: self.io_metrics().volume(name),
                }),
                read_only,
            }),
            Err(e) => {
                tracing::warn!(export = name, "export refused: {e}");
                None
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.visible()
    }
}
