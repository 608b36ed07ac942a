//! Remote replicas: `tripod replica` nodes that hold copies for replica sets on other
//! machines, over TCP with mutual authentication by a shared cluster secret.
//!
//! - [`wire`]: the framed request/answer format (pure codecs, fuzzed);
//! - [`auth`]: the challenge–response handshake and the [`ClusterSecret`];
//! - [`ReplicaNode`]: the server side, one [`crate::LocalReplica`] per volume directory;
//! - [`RemoteNode`] / [`RemoteReplica`]: the client side, a [`crate::Replica`] the set drives
//!   like a local one.

pub mod auth;
mod client;
mod fault;
mod node;
pub mod wire;

pub use auth::{AuthError, ClusterSecret};
pub use client::{RemoteNode, RemoteReplica};
pub use node::{NodeError, ReplicaNode};
