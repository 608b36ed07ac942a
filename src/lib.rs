//! `tripod`: the daemon around the engine and the replica set — the EVS/Cinder admin API and
//! its Keystone-style identity, the catalog, the volume lifecycle that drives the replica
//! sets, and the NBD export. It holds no storage logic of its own.

// Everything from a socket or a request is untrusted: no index or narrowing cast that could
// panic or wrap unnoticed outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::cast_possible_truncation)
)]

pub mod admin_client;
pub mod api;
pub mod backend;
pub mod backup;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod data_dir;
pub mod follow;
pub mod fsck;
pub mod identity;
pub mod images;
pub mod io_metrics;
pub mod keys;
pub mod lifecycle;
pub mod local_disk;
pub mod logging;
pub mod nbd;
pub mod operations;
pub mod placement;
pub mod qos;
pub mod volume_types;

/// The README's code blocks, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
