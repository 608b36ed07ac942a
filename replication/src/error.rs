//! The replication crate's error type.

use tripod_engine::{BlockIndex, EngineError};

use crate::ids::ReplicaId;

/// Why one replica could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaFault {
    /// The replica's store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An I/O error outside the engine (the set-state file, a health check).
    #[error("I/O error while {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the set's I/O timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The replica is gone (worker stopped, connection closed).
    #[error("the replica is disconnected")]
    Disconnected,
    /// The replica holds no volume yet (a new, empty replica).
    #[error("the replica holds no volume")]
    Empty,
    /// Its stored set state is damaged or belongs to another volume.
    #[error("bad set state: {0}")]
    BadSetState(String),
    /// A replica node reported a failure whose kind does not cross the network (its
    /// message does), or broke the protocol.
    #[error("replica node: {0}")]
    Remote(String),
    /// This kind of replica cannot do the operation (e.g. a copy on a node sharing files).
    #[error("not supported by this replica: {0}")]
    Unsupported(&'static str),
}

/// Everything that can go wrong in a replica set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// Fewer than two replicas are in service: writes are refused and nothing is
    /// acknowledged.
    #[error("no write quorum: {in_service} replica(s) in service, 2 needed")]
    NoQuorum {
        /// Replicas in service when the operation was refused or failed.
        in_service: usize,
    },
    /// The replicas' file systems are full: the change was refused and nothing of it was
    /// acknowledged; the volume stays readable, and the same request succeeds once space is
    /// freed.
    #[error("no space left on the replicas' disks ({in_service} replica(s) in service)")]
    NoSpace {
        /// Replicas in service afterwards.
        in_service: usize,
    },
    /// No replica holds a good copy of this block.
    #[error("no replica holds a good copy of {block}")]
    NoGoodCopy {
        /// The block.
        block: BlockIndex,
    },
    /// An encrypted volume's block that authenticates on no copy: its stored bytes were
    /// altered, moved from another place or rolled back (or the key is not the volume's).
    /// Never returned as data.
    #[error("{block} failed authentication on every copy (altered, moved or rolled back)")]
    Unauthentic {
        /// The block.
        block: BlockIndex,
    },
    /// An encrypted volume opened for maintenance, without its key, refuses client I/O.
    #[error("the volume is encrypted and was opened without its key: only maintenance (resync, rebuild, scrub) is possible")]
    KeyNeeded,
    /// A request the set refuses before touching any replica (range, sizes, snapshot ids).
    #[error(transparent)]
    Invalid(EngineError),
    /// One replica failed where the operation needs that replica.
    #[error("{replica}: {source}")]
    Replica {
        /// Which replica.
        replica: ReplicaId,
        /// What went wrong there.
        #[source]
        source: ReplicaFault,
    },
    /// No replica could be opened or agreed on the volume.
    #[error("cannot open the replica set: {0}")]
    Open(String),
    /// A resync or rebuild is already running for this replica.
    #[error("{0} is busy syncing")]
    Busy(ReplicaId),
    /// A linked clone cannot be made here (a replica out of service, a copy on a node):
    /// nothing was created; copy the data instead.
    #[error("no linked clone possible: {0}")]
    NotLinkable(String),
    /// Blocking work handed off by an async caller did not finish (the runtime is shutting
    /// down, or the work panicked).
    #[error("the request's blocking part did not finish: {0}")]
    Abandoned(String),
}

/// Result alias for the replication crate.
pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;

impl ReplicaFault {
    /// Whether the replica refused for lack of space (its copy unchanged).
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Engine(EngineError::NoSpace { .. }))
    }

    /// Whether this is the caller's mistake, answered the same by every replica (a range,
    /// size or snapshot name the volume refuses), rather than a fault of this replica.
    pub fn is_caller_error(&self) -> bool {
        matches!(self, Self::Engine(e) if e.is_caller_error())
    }
}
