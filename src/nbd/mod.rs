//! The NBD export: a spec-faithful fixed-newstyle NBD server (reference: `doc/proto.md` of
//! NetworkBlockDevice/nbd) that serves volumes to real block clients — qemu, libnbd's tools,
//! fio, the Linux client. Export name = volume id.
//!
//! `proto` holds the wire format (pure), `handshake` the option negotiation, `transmission`
//! the pipelined request loop and the one errno mapping, `server` the listener, `device` the
//! narrow `BlockDevice` interface it serves, `exports` the data directory's volumes as
//! exports.

pub mod device;
pub mod exports;
pub mod handshake;
pub mod proto;
pub mod server;
pub mod transmission;

pub use device::{BlockDevice, DeviceError, DeviceFuture, Export, Exports, Run};
pub use server::{handle_connection, run, ServerConfig};
pub use transmission::Limits;
