//! `tripod`: the daemon around the engine and the replica set — the EVS/Cinder admin API and
//! its Keystone-style identity, the catalog, the volume lifecycle that drives the replica
//! sets, and the NBD export. It holds no storage logic of its own.

pub mod api;
pub mod backend;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod identity;
pub mod nbd;
pub mod volumes;
