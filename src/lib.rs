//! `tripod`: the daemon around the engine and the replica set — the NBD export, the volume
//! catalog on a data directory, and (next) the EVS/Cinder admin API. It holds no storage
//! logic of its own.

pub mod nbd;
pub mod volumes;
