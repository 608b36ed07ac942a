//! Replica ids and per-replica state: a `ReplicaId` is valid by construction (0, 1 or 2) and
//! per-replica data lives in a `[T; 3]` indexed by it.

use std::fmt;

/// Number of replicas in a set.
pub const REPLICAS: usize = 3;

/// One of the three replicas of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(u8);

impl ReplicaId {
    /// All three ids, in order.
    pub const ALL: [ReplicaId; REPLICAS] = [ReplicaId(0), ReplicaId(1), ReplicaId(2)];

    /// The id for `n`, if `n < 3`.
    pub fn new(n: usize) -> Option<Self> {
        u8::try_from(n).ok().filter(|_| n < REPLICAS).map(Self)
    }

    /// Index into a `[T; 3]`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replica {}", self.0)
    }
}

/// Per-replica values indexed by [`ReplicaId`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerReplica<T>(pub [T; REPLICAS]);

impl<T> PerReplica<T> {
    /// Builds from a function of the id.
    pub fn from_fn(mut f: impl FnMut(ReplicaId) -> T) -> Self {
        Self([f(ReplicaId(0)), f(ReplicaId(1)), f(ReplicaId(2))])
    }

    /// (id, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, &T)> {
        ReplicaId::ALL.into_iter().zip(self.0.iter())
    }
}

impl<T> std::ops::Index<ReplicaId> for PerReplica<T> {
    type Output = T;
    #[expect(
        clippy::indexing_slicing,
        reason = "a ReplicaId is below REPLICAS by construction"
    )]
    fn index(&self, id: ReplicaId) -> &T {
        &self.0[id.index()]
    }
}

impl<T> std::ops::IndexMut<ReplicaId> for PerReplica<T> {
    #[expect(
        clippy::indexing_slicing,
        reason = "a ReplicaId is below REPLICAS by construction"
    )]
    fn index_mut(&mut self, id: ReplicaId) -> &mut T {
        &mut self.0[id.index()]
    }
}

/// Which of `len` items the number `n` falls on (`n` modulo `len`; 0 when `len` is 0): how
/// requests are spread over replicas.
pub(crate) fn spread(n: u64, len: usize) -> usize {
    let len = len.max(1);
    usize::try_from(n % len as u64).unwrap_or(0)
}
