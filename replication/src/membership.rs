//! The replica set's decision logic as a plain state machine: who is in service, whether a
//! write may be acknowledged, what an absent replica misses, when a resync is complete. No
//! threads, no I/O: the set feeds it outcomes and acts on its answers, and unit tests drive
//! it directly.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{PerReplica, ReplicaId};
use crate::set_state::{Member, SetState};

/// A resync or rebuild in progress (not durable: after a restart it starts again from the
/// durable dirty map, skipping what already matches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// The target gets client writes (and structural changes) as they happen.
    pub receives_writes: bool,
    /// A full rebuild rather than a resync of dirty chunks.
    pub full: bool,
    /// Chunks done.
    pub done: u64,
    /// Chunks to do (as planned).
    pub total: u64,
    /// Set when a write to the target failed: the sync must stop.
    pub aborted: bool,
}

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteVerdict {
    /// The write may be acknowledged.
    pub ack: bool,
    /// The durable state changed and must be persisted before acknowledging.
    pub changed: bool,
}

/// Durable set state plus the syncs in progress.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The durable part.
    pub state: SetState,
    /// Per replica, the sync in progress.
    pub syncing: PerReplica<Option<SyncProgress>>,
    /// The activity log: chunks written since the last flush that completed on every
    /// in-service replica, each with the number of its latest write event. Replicas may hold
    /// those writes only in volatile caches, so a replica that leaves service misses them
    /// too (DRBD keeps the same log). Not durable: after a restart of the whole set, opening
    /// reconciles every chunk.
    pub unflushed: BTreeMap<u64, u64>,
    /// Number of the latest write event.
    pub write_events: u64,
}

impl Membership {
    /// Starts from a durable state with no sync running.
    pub fn new(state: SetState) -> Self {
        Self {
            state,
            syncing: PerReplica::default(),
            unflushed: BTreeMap::new(),
            write_events: 0,
        }
    }

    /// Notes a write event on `chunks`: a write about to be sent, or one just answered (so
    /// a write still in flight when a flush starts stays in the log after that flush).
    pub fn note_written(&mut self, chunks: &[u64]) {
        self.write_events += 1;
        for c in chunks {
            self.unflushed.insert(*c, self.write_events);
        }
    }

    /// The mark a flush starting now covers: every write event up to it.
    pub fn flush_mark(&self) -> u64 {
        self.write_events
    }

    /// Records the outcome of a flush that started at `mark`: failed replicas leave service
    /// (missing every unflushed chunk); if every in-service replica flushed, the chunks
    /// written no later than `mark` leave the activity log. Returns (successes among
    /// in-service replicas, whether the durable state changed).
    pub fn settle_flush(&mut self, outcome: &PerReplica<Option<bool>>, mark: u64) -> (usize, bool) {
        let (ok, changed) = self.settle(&[], outcome, false);
        let all = self
            .in_service()
            .iter()
            .all(|id| outcome[*id] == Some(true));
        if all && ok >= 2 {
            self.unflushed.retain(|_, event| *event > mark);
        }
        (ok, changed)
    }

    /// Replicas holding every acknowledged write.
    pub fn in_service(&self) -> Vec<ReplicaId> {
        ReplicaId::ALL
            .into_iter()
            .filter(|id| self.state.members[*id] == Member::InService)
            .collect()
    }

    /// Whether `id` is in service.
    pub fn is_in_service(&self, id: ReplicaId) -> bool {
        self.state.members[id] == Member::InService
    }

    /// Replicas a write (or structural change) is sent to: in service, and syncing targets
    /// that already receive writes.
    pub fn write_targets(&self) -> Vec<ReplicaId> {
        ReplicaId::ALL
            .into_iter()
            .filter(|id| {
                self.is_in_service(*id)
                    || self.syncing[*id]
                        .as_ref()
                        .is_some_and(|s| s.receives_writes && !s.aborted)
            })
            .collect()
    }

    /// `Ok` when a write may be attempted (two or more in service), else the count.
    pub fn check_quorum(&self) -> Result<(), usize> {
        let n = self.in_service().len();
        if n >= 2 {
            Ok(())
        } else {
            Err(n)
        }
    }

    fn bump(&mut self) {
        self.state.epoch += 1;
    }

    /// Takes `id` out of service (or stops its sync), recording `chunks` as missed and, with
    /// `full`, that it needs a rebuild. Returns whether the durable state changed.
    /// Every chunk of the activity log is recorded as missed too.
    pub fn take_out(&mut self, id: ReplicaId, chunks: &[u64], full: bool) -> bool {
        if let Some(s) = self.syncing[id].as_mut() {
            s.aborted = true;
        }
        let missed = chunks.iter().chain(self.unflushed.keys()).copied();
        let changed = match &mut self.state.members[id] {
            m @ Member::InService => {
                *m = Member::Out {
                    dirty: missed.collect(),
                    full,
                };
                true
            }
            Member::Out { dirty, full: f } => {
                let mut grew = false;
                for c in missed {
                    grew |= dirty.insert(c);
                }
                let more_full = full && !*f;
                *f |= full;
                grew || more_full
            }
        };
        if changed {
            self.bump();
        }
        changed
    }

    /// Records that out-of-service `id` did not get a write of `chunks` (or, with
    /// `structural`, a structural change). A running sync goes on (its passes pick the chunks
    /// up), except a resync that now needs a full rebuild. Returns whether the durable state
    /// changed.
    pub fn record_missed(&mut self, id: ReplicaId, chunks: &[u64], structural: bool) -> bool {
        let Member::Out { dirty, full } = &mut self.state.members[id] else {
            return false;
        };
        let mut changed = false;
        for c in chunks {
            changed |= dirty.insert(*c);
        }
        if structural && !*full {
            *full = true;
            changed = true;
            if let Some(s) = self.syncing[id].as_mut() {
                if !s.full {
                    s.aborted = true;
                }
            }
        }
        if changed {
            self.bump();
        }
        changed
    }

    /// Records the outcome of a write of `chunks`: `Some(true)` succeeded, `Some(false)`
    /// failed, `None` was not sent. Failed replicas leave service; every replica out of
    /// service (or not receiving writes) records the chunks as missed. The write is
    /// acknowledged when it succeeded on at least two replicas that were in service.
    pub fn settle_write(
        &mut self,
        chunks: &[u64],
        outcome: &PerReplica<Option<bool>>,
    ) -> WriteVerdict {
        let (acks, changed) = self.settle(chunks, outcome, false);
        WriteVerdict {
            ack: acks >= 2,
            changed,
        }
    }

    /// Turns an outcome in which the replicas marked in `refused` refused a change for lack
    /// of space into the outcome to settle, and says whether the change counts as refused.
    ///
    /// If it still succeeded on two in-service replicas it is an ordinary success: the
    /// refusing replicas missed it and leave service (resynced once they have room). If not,
    /// nothing is acknowledged and the refusal wins: the in-service replicas that refused
    /// hold their old content and stay in service (reads go on; writes are refused until
    /// space is freed), while those that applied it differ from them now and leave service.
    pub fn refused_for_space(
        &self,
        outcome: &PerReplica<Option<bool>>,
        refused: &PerReplica<bool>,
    ) -> (PerReplica<Option<bool>>, bool) {
        let mut settled = outcome.clone();
        let ok = ReplicaId::ALL
            .into_iter()
            .filter(|id| self.is_in_service(*id) && outcome[*id] == Some(true))
            .count();
        let any_refused = ReplicaId::ALL.into_iter().any(|id| refused[id]);
        if ok >= 2 || !any_refused {
            return (settled, false);
        }
        for id in ReplicaId::ALL {
            if refused[id] && self.is_in_service(id) {
                settled[id] = None;
            } else if outcome[id] == Some(true) {
                settled[id] = Some(false);
            }
        }
        (settled, true)
    }

    /// Applies an outcome: failed replicas leave service, replicas out of service record
    /// what they missed. Returns (successes among in-service replicas, changed).
    fn settle(
        &mut self,
        chunks: &[u64],
        outcome: &PerReplica<Option<bool>>,
        structural: bool,
    ) -> (usize, bool) {
        let ok = ReplicaId::ALL
            .into_iter()
            .filter(|id| self.is_in_service(*id) && outcome[*id] == Some(true))
            .count();
        let mut changed = false;
        for id in ReplicaId::ALL {
            match outcome[id] {
                Some(true) => {}
                Some(false) => changed |= self.take_out(id, chunks, structural),
                None if !self.is_in_service(id) => {
                    changed |= self.record_missed(id, chunks, structural)
                }
                None => {}
            }
        }
        (ok, changed)
    }

    /// Records the outcome of a structural change (snapshot, rollback, delete, expand):
    /// replicas that failed or did not get it need a full rebuild. Returns (successes among
    /// replicas that were in service, changed).
    pub fn settle_structural(&mut self, outcome: &PerReplica<Option<bool>>) -> (usize, bool) {
        self.settle(&[], outcome, true)
    }

    /// Starts a sync of `id` if it is out of service and none runs; returns whether it is a
    /// full rebuild and the chunks to copy.
    pub fn begin_sync(&mut self, id: ReplicaId) -> Option<(bool, BTreeSet<u64>)> {
        if self.syncing[id].is_some() {
            return None;
        }
        let Member::Out { dirty, full } = &self.state.members[id] else {
            return None;
        };
        let plan = (*full, dirty.clone());
        self.syncing[id] = Some(SyncProgress {
            full: *full,
            total: dirty.len() as u64,
            ..SyncProgress::default()
        });
        Some(plan)
    }

    /// From now on `id` gets client writes and structural changes.
    pub fn start_receiving(&mut self, id: ReplicaId) {
        if let Some(s) = self.syncing[id].as_mut() {
            s.receives_writes = true;
        }
    }

    /// Whether the sync of `id` was stopped by a failure.
    pub fn sync_aborted(&self, id: ReplicaId) -> bool {
        self.syncing[id].as_ref().is_none_or(|s| s.aborted)
    }

    /// Sets the planned and done counts of a running sync.
    pub fn progress(&mut self, id: ReplicaId, done: u64, total: u64) {
        if let Some(s) = self.syncing[id].as_mut() {
            s.done = done;
            s.total = total;
        }
    }

    /// Chunk `chunk` was copied to `id` while it received writes: it misses nothing there.
    pub fn chunk_copied(&mut self, id: ReplicaId, chunk: u64) {
        let receiving = self.syncing[id]
            .as_ref()
            .is_some_and(|s| s.receives_writes && !s.aborted);
        if let (true, Member::Out { dirty, .. }) = (receiving, &mut self.state.members[id]) {
            dirty.remove(&chunk);
        }
    }

    /// Chunks `id` still misses.
    pub fn dirty(&self, id: ReplicaId) -> BTreeSet<u64> {
        match &self.state.members[id] {
            Member::Out { dirty, .. } => dirty.clone(),
            Member::InService => BTreeSet::new(),
        }
    }

    /// Ends the sync of `id`. With `complete` (every pass done, nothing missed, not aborted)
    /// the replica rejoins. Returns whether the durable state changed.
    pub fn finish_sync(&mut self, id: ReplicaId, complete: bool) -> bool {
        let sync = self.syncing[id].take();
        let ok = complete
            && sync.is_some_and(|s| s.receives_writes && !s.aborted)
            && matches!(&self.state.members[id], Member::Out { dirty, .. } if dirty.is_empty());
        if ok {
            self.state.members[id] = Member::InService;
            self.bump();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set_state::random_volume_id;

    fn fresh() -> Membership {
        Membership::new(SetState {
            volume_id: random_volume_id(),
            epoch: 1,
            block_size: 4096,
            chunk_blocks: 1024,
            members: PerReplica::from_fn(|_| Member::InService),
            key_check: None,
        })
    }

    const R0: ReplicaId = ReplicaId::ALL[0];
    const R1: ReplicaId = ReplicaId::ALL[1];
    const R2: ReplicaId = ReplicaId::ALL[2];

    fn outcome(a: Option<bool>, b: Option<bool>, c: Option<bool>) -> PerReplica<Option<bool>> {
        PerReplica([a, b, c])
    }

    fn dirty_of(m: &Membership, id: ReplicaId) -> Vec<u64> {
        match &m.state.members[id] {
            Member::Out { dirty, .. } => dirty.iter().copied().collect(),
            Member::InService => vec![],
        }
    }

    #[test]
    fn a_write_refused_for_space_by_too_many_keeps_the_refusing_copies_in_service() {
        let mut m = fresh();
        // All three refused: nobody leaves, the write is refused.
        let all = PerReplica([true, true, true]);
        let (o, refused) =
            m.refused_for_space(&outcome(Some(false), Some(false), Some(false)), &all);
        assert!(refused);
        assert_eq!(o, outcome(None, None, None));
        // One took it, two refused: the one that took it differs now and leaves service.
        let two = PerReplica([false, true, true]);
        let (o, refused) =
            m.refused_for_space(&outcome(Some(true), Some(false), Some(false)), &two);
        assert!(refused);
        assert_eq!(o, outcome(Some(false), None, None));
        let v = m.settle_write(&[7], &o);
        assert!(!v.ack && v.changed);
        assert_eq!(m.in_service(), vec![R1, R2]);
        assert_eq!(dirty_of(&m, R0), vec![7]);
        // Two took it: an ordinary write, the refusing one misses it.
        let mut m = fresh();
        let one = PerReplica([false, false, true]);
        let o = outcome(Some(true), Some(true), Some(false));
        let (settled, refused) = m.refused_for_space(&o, &one);
        assert!(!refused);
        assert_eq!(settled, o);
        assert!(m.settle_write(&[3], &settled).ack);
        assert_eq!(dirty_of(&m, R2), vec![3]);
    }

    #[test]
    fn a_replica_leaving_service_misses_every_chunk_written_since_the_last_flush() {
        let mut m = fresh();
        m.note_written(&[1, 2]);
        m.settle_write(&[1, 2], &outcome(Some(true), Some(true), Some(true)));
        m.note_written(&[7]);
        m.settle_write(&[9], &outcome(Some(true), Some(true), Some(false)));
        assert_eq!(dirty_of(&m, R2), vec![1, 2, 7, 9]);
    }

    #[test]
    fn a_flush_on_every_in_service_replica_empties_the_activity_log_up_to_its_mark() {
        let mut m = fresh();
        m.note_written(&[1]);
        let mark = m.flush_mark();
        m.note_written(&[2]); // a write still in flight when the flush started
        let (ok, changed) = m.settle_flush(&outcome(Some(true), Some(true), Some(true)), mark);
        assert_eq!((ok, changed), (3, false));
        assert_eq!(m.unflushed.keys().copied().collect::<Vec<_>>(), vec![2]);
        m.take_out(R0, &[], false);
        assert_eq!(dirty_of(&m, R0), vec![2]);
    }

    #[test]
    fn a_failed_flush_takes_the_replica_out_with_the_log_and_keeps_it() {
        let mut m = fresh();
        m.note_written(&[3, 4]);
        let mark = m.flush_mark();
        let (ok, changed) = m.settle_flush(&outcome(Some(true), Some(false), Some(true)), mark);
        assert_eq!((ok, changed), (2, true));
        assert_eq!(dirty_of(&m, R1), vec![3, 4]);
        // R1 is out, the other two flushed: the log may go.
        assert!(m.unflushed.is_empty());
        let mut m = fresh();
        m.note_written(&[5]);
        let mark = m.flush_mark();
        let (ok, _) = m.settle_flush(&outcome(Some(true), Some(false), Some(false)), mark);
        assert_eq!(ok, 1);
        assert_eq!(m.unflushed.keys().copied().collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn a_write_on_all_three_is_acknowledged_without_state_change() {
        let mut m = fresh();
        let v = m.settle_write(&[4], &outcome(Some(true), Some(true), Some(true)));
        assert_eq!(
            v,
            WriteVerdict {
                ack: true,
                changed: false
            }
        );
        assert_eq!(m.state.epoch, 1);
    }

    #[test]
    fn one_failure_takes_that_replica_out_and_still_acknowledges() {
        let mut m = fresh();
        let v = m.settle_write(&[4, 5], &outcome(Some(true), Some(false), Some(true)));
        assert_eq!(
            v,
            WriteVerdict {
                ack: true,
                changed: true
            }
        );
        assert_eq!(m.in_service(), vec![R0, R2]);
        assert_eq!(m.dirty(R1), [4, 5].into_iter().collect());
    }

    #[test]
    fn two_failures_lose_quorum_and_nothing_is_acknowledged() {
        let mut m = fresh();
        let v = m.settle_write(&[1], &outcome(Some(false), Some(true), Some(false)));
        assert!(!v.ack);
        assert_eq!(m.check_quorum(), Err(1));
    }

    #[test]
    fn an_absent_replica_accumulates_dirty_chunks_once() {
        let mut m = fresh();
        m.take_out(R2, &[], false);
        let epoch = m.state.epoch;
        let v = m.settle_write(&[9], &outcome(Some(true), Some(true), None));
        assert_eq!(
            v,
            WriteVerdict {
                ack: true,
                changed: true
            }
        );
        let v = m.settle_write(&[9], &outcome(Some(true), Some(true), None));
        assert_eq!(
            v,
            WriteVerdict {
                ack: true,
                changed: false
            }
        );
        assert_eq!(m.state.epoch, epoch + 1);
        assert_eq!(m.dirty(R2), [9].into_iter().collect());
    }

    #[test]
    fn with_one_out_a_second_failure_refuses_the_write() {
        let mut m = fresh();
        m.take_out(R0, &[], false);
        let v = m.settle_write(&[2], &outcome(None, Some(true), Some(false)));
        assert!(!v.ack && v.changed);
        assert_eq!(m.in_service(), vec![R1]);
        assert_eq!(m.dirty(R0), [2].into_iter().collect());
    }

    #[test]
    fn a_missed_structural_change_needs_a_rebuild() {
        let mut m = fresh();
        m.take_out(R1, &[3], false);
        let (ok, changed) = m.settle_structural(&outcome(Some(true), None, Some(true)));
        assert_eq!((ok, changed), (2, true));
        assert!(matches!(
            m.state.members[R1],
            Member::Out { full: true, .. }
        ));
    }

    #[test]
    fn resync_rejoins_only_when_nothing_is_missed() {
        let mut m = fresh();
        m.take_out(R2, &[1, 2], false);
        let (full, plan) = m.begin_sync(R2).unwrap();
        assert!(!full);
        assert_eq!(plan.len(), 2);
        assert!(m.begin_sync(R2).is_none(), "one sync at a time");
        m.start_receiving(R2);
        assert_eq!(m.write_targets(), vec![R0, R1, R2]);
        m.chunk_copied(R2, 1);
        assert!(!m.finish_sync(R2, true), "chunk 2 still missed");
        assert!(m.begin_sync(R2).is_some());
        m.start_receiving(R2);
        m.chunk_copied(R2, 2);
        assert!(m.finish_sync(R2, true));
        assert_eq!(m.in_service(), vec![R0, R1, R2]);
    }

    #[test]
    fn a_failed_write_to_a_sync_target_aborts_the_sync() {
        let mut m = fresh();
        m.take_out(R0, &[], false);
        m.begin_sync(R0).unwrap();
        m.start_receiving(R0);
        let v = m.settle_write(&[7], &outcome(Some(false), Some(true), Some(true)));
        assert!(v.ack && v.changed);
        assert!(m.sync_aborted(R0));
        assert!(!m.write_targets().contains(&R0));
        assert!(!m.finish_sync(R0, true));
        assert_eq!(m.dirty(R0), [7].into_iter().collect());
    }

    #[test]
    fn writes_before_a_target_receives_them_are_recorded_as_missed() {
        let mut m = fresh();
        m.take_out(R1, &[], true);
        m.begin_sync(R1).unwrap();
        m.settle_write(&[5], &outcome(Some(true), None, Some(true)));
        m.chunk_copied(R1, 5); // copied before receiving: does not count
        assert_eq!(m.dirty(R1), [5].into_iter().collect());
    }
}

#[cfg(test)]
mod race_tests {
    use super::*;
    use crate::set_state::random_volume_id;

    #[test]
    fn a_write_sent_before_a_target_received_writes_does_not_abort_its_sync() {
        let mut m = Membership::new(SetState {
            volume_id: random_volume_id(),
            epoch: 1,
            block_size: 4096,
            chunk_blocks: 1024,
            members: PerReplica::from_fn(|_| Member::InService),
            key_check: None,
        });
        let r = ReplicaId::ALL[1];
        m.take_out(r, &[], true);
        m.begin_sync(r).unwrap();
        m.start_receiving(r);
        // A write whose targets were chosen before the flip settles after it.
        m.settle_write(&[3], &PerReplica([Some(true), None, Some(true)]));
        assert!(!m.sync_aborted(r));
        assert_eq!(m.dirty(r), [3].into_iter().collect());
        m.chunk_copied(r, 3);
        assert!(m.finish_sync(r, true));
    }
}
