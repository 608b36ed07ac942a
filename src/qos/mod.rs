//! Quality of service: per-volume limits on I/O rates, set by the volume's type.
//!
//! A type's limits are a QoS spec ([`spec`]: Cinder's keys) resolved for the volume's size,
//! so they follow `os-extend` and `os-retype`; the built-in types carry EVS's published
//! formulas ([`evs`]). Each open volume has one [`Throttle`] that every NBD connection to it
//! shares; requests wait in it (never fail) before they reach the replica set, so one
//! volume's limits never hold a thread or slow another volume.

pub mod bucket;
pub mod evs;
pub mod spec;
pub mod throttle;

pub use spec::{Consumer, Limits, Rate, Scope, SpecError, Unit};
pub use throttle::{Direction, Throttle};
