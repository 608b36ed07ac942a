//! Client writes, flushes and reads of a [`ReplicaSet`]: a request is sent to every replica
//! at once (one shared payload), their answers are gathered under one deadline
//! ([`Fanout`]) and settled by [`Membership`](crate::Membership). Each request exists in a
//! blocking form (the thread waits) and an async form (the task waits; no thread is parked
//! per request), which share everything but the wait.
//!
//! A write is acknowledged once it is in every in-service replica and in at least two;
//! a flush makes everything acknowledged before it durable on them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{ArcRwLockReadGuard, RawRwLock};
use tripod_engine::{OwnedRangeGuard, Seal, View};

use crate::cipher::VolumeCipher;
use crate::error::{ReplicationError, Result};
use crate::fanout::{Answers, Fanout};
use crate::ids::{spread, PerReplica};
use crate::replica::join;
use crate::set::ReplicaSet;

/// What a submitted request was.
enum Kind {
    /// A write of these chunks; `logged`: noted in the activity log.
    Write { chunks: Vec<u64>, logged: bool },
    /// A flush covering every write event up to this mark.
    Flush(u64),
}

/// A request sent to the replicas and not yet settled. It holds the set's structure lock
/// (shared) and, for a write, its blocks (exclusive) until it is dropped, so structural
/// changes and overlapping writes are ordered after it on every replica.
struct Submitted {
    kind: Kind,
    fanout: Fanout<()>,
    _order: Option<OwnedRangeGuard>,
    _structure: ArcRwLockReadGuard<RawRwLock, ()>,
}

/// How a submission takes the set's locks.
#[derive(Clone, Copy)]
enum Lock {
    /// Waits for them (a blocking caller).
    Wait,
    /// Only if free now (an async caller).
    Try,
}

/// Why a request was not sent.
enum Refused {
    /// A lock is held and the caller asked not to wait.
    WouldWait,
    /// It failed.
    Failed(ReplicationError),
}

impl Refused {
    /// The error of a caller that waits (which never sees `WouldWait`).
    fn into_error(self) -> ReplicationError {
        match self {
            Refused::Failed(e) => e,
            Refused::WouldWait => ReplicationError::Abandoned("lock not taken".into()),
        }
    }
}

impl From<ReplicationError> for Refused {
    fn from(e: ReplicationError) -> Self {
        Refused::Failed(e)
    }
}

/// How a settled request ends.
struct Settled {
    answer: Result<()>,
    /// The durable set state changed and must be stored before answering.
    persist: bool,
}

impl ReplicaSet {
    /// Writes `data` at `offset`: in every in-service replica and in at least two when it
    /// returns (durable at the next [`ReplicaSet::flush`], or at once with
    /// [`crate::Durability::Sync`] or replicas whose stores sync every write).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.mutate(
            offset,
            data.len() as u64,
            Some(Bytes::copy_from_slice(data)),
        )
    }

    /// [`ReplicaSet::write`] taking a shared buffer (no copy).
    pub fn write_bytes(&self, offset: u64, data: Bytes) -> Result<()> {
        self.mutate(offset, data.len() as u64, Some(data))
    }

    /// Makes a range read as zeros (and frees whole blocks).
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.mutate(offset, len, None)
    }

    /// Discards a range: it reads back as zeros.
    pub fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.mutate(offset, len, None)
    }

    /// Makes every write acknowledged before this call durable on every in-service replica
    /// and on at least two (all replicas flush in parallel, under one deadline). A replica
    /// that fails leaves service, missing every chunk written since the last flush.
    pub fn flush(&self) -> Result<()> {
        let submitted = self.submit_flush(Lock::Wait).map_err(Refused::into_error)?;
        self.finish(submitted)
    }

    /// [`ReplicaSet::write_bytes`] for async callers: the task waits, no thread does.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped before it completes, the write still reaches the replicas but
    /// is never settled, so a replica that failed it stays in service until its next failure
    /// (its chunks stay in the activity log). Run it to completion (the NBD server does).
    pub async fn write_async(self: &Arc<Self>, offset: u64, data: Bytes) -> Result<()> {
        self.mutate_async(offset, data.len() as u64, Some(data))
            .await
    }

    /// [`ReplicaSet::write_zeroes`] (and trim) for async callers.
    ///
    /// # Cancel safety
    /// As [`ReplicaSet::write_async`].
    pub async fn write_zeroes_async(self: &Arc<Self>, offset: u64, len: u64) -> Result<()> {
        self.mutate_async(offset, len, None).await
    }

    /// [`ReplicaSet::flush`] for async callers.
    ///
    /// # Cancel safety
    /// As [`ReplicaSet::write_async`]: dropped early, a replica that failed the flush is not
    /// taken out by it.
    pub async fn flush_async(self: &Arc<Self>) -> Result<()> {
        let submitted = match self.submit_flush(Lock::Try) {
            Ok(s) => s,
            Err(Refused::WouldWait) => {
                // A structural change is under way: wait for it off the async threads.
                let set = self.clone();
                return blocking(move || set.flush()).await;
            }
            Err(Refused::Failed(e)) => return Err(e),
        };
        self.finish_async(submitted).await
    }

    /// Reads `len` bytes of the head at `offset` for async callers. The common case — the
    /// chosen copy answers and is good — waits without a thread; anything else (a bad
    /// copy, a failed replica) takes the blocking path, which tries the other copies,
    /// repairs and takes failed replicas out of service.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn read_async(self: &Arc<Self>, offset: u64, len: u64) -> Result<Bytes> {
        if let Some(cipher) = self.cipher.clone() {
            if let Some(data) = self.read_sealed_async(&cipher, offset, len).await? {
                return Ok(data);
            }
            let set = self.clone();
            return blocking(move || set.read(offset, len)).await;
        }
        if let Some(_structure) = self.structure.try_read_arc() {
            self.check_range(offset, len)?;
            let in_service = self.membership.lock().in_service();
            if in_service.is_empty() {
                return Err(ReplicationError::NoQuorum { in_service: 0 });
            }
            // Each chunk is read from one copy (spread over the copies by chunk), so the
            // page cache holds one copy of hot data, not three.
            let Some(&id) = in_service.get(spread(self.chunk_of(offset), in_service.len())) else {
                return Err(ReplicationError::NoQuorum { in_service: 0 });
            };
            let replica = self.replica(id);
            // Cached data is served here, without a hand-off.
            if let Some(data) = replica.read_now(offset, len) {
                return Ok(data);
            }
            let read = replica.read(View::Head, offset, len);
            let fanout = Fanout::new(vec![(id, read)], self.config.io_timeout);
            if let Some((_, Ok(data))) = fanout.wait_async().await.pop() {
                return Ok(data);
            }
        }
        let set = self.clone();
        blocking(move || set.read(offset, len)).await
    }

    /// An encrypted volume's read without a hand-off: whole blocks with their seals from
    /// one copy (chosen as for plain reads), decrypted on the caller's task. `Ok(None)` when
    /// that is not enough — a lock is held, the copy fails, or a block does not
    /// authenticate — and the blocking path, which tries the other copies, must serve it.
    async fn read_sealed_async(
        &self,
        cipher: &VolumeCipher,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>> {
        let Some(_structure) = self.structure.try_read_arc() else {
            return Ok(None);
        };
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(Some(Bytes::new()));
        }
        let in_service = self.membership.lock().in_service();
        let Some(&id) = in_service.get(spread(self.chunk_of(offset), in_service.len())) else {
            return Ok(None);
        };
        let bs = self.geometry.bs();
        let first = offset / bs;
        let end = (offset + len).div_ceil(bs);
        let read = self
            .replica(id)
            .read_sealed(View::Head, first * bs, (end - first) * bs);
        let fanout = Fanout::new(vec![(id, read)], self.config.io_timeout);
        let Some((_, Ok(r))) = fanout.wait_async().await.pop() else {
            return Ok(None);
        };
        let stored = crate::set::Stored {
            data: r.data,
            seals: Some(r.seals),
            from: Some(id),
        };
        let Ok(plain) = self.decrypt(cipher, first, &stored) else {
            return Ok(None);
        };
        let skip = usize::try_from(offset - first * bs).unwrap_or(0);
        let take = usize::try_from(len).unwrap_or(0);
        let plain = Bytes::from(plain);
        Ok((skip + take <= plain.len()).then(|| plain.slice(skip..skip + take)))
    }

    fn mutate(&self, offset: u64, len: u64, data: Option<Bytes>) -> Result<()> {
        let submitted = self
            .submit_mutation(offset, len, &data, Lock::Wait)
            .map_err(Refused::into_error)?;
        let Some(submitted) = submitted else {
            return Ok(());
        };
        self.finish(submitted)?;
        if self.syncs_every_write() {
            self.flush()?;
        }
        Ok(())
    }

    async fn mutate_async(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        data: Option<Bytes>,
    ) -> Result<()> {
        let submitted = match self.submit_mutation(offset, len, &data, Lock::Try) {
            Ok(s) => s,
            Err(Refused::WouldWait) => {
                // An overlapping write or a structural change holds a lock: wait for it off
                // the async threads (the holder may need one of them to finish).
                let set = self.clone();
                return blocking(move || set.mutate(offset, len, data)).await;
            }
            Err(Refused::Failed(e)) => return Err(e),
        };
        let Some(submitted) = submitted else {
            return Ok(());
        };
        self.finish_async(submitted).await?;
        if self.syncs_every_write() {
            self.flush_async().await?;
        }
        Ok(())
    }

    /// Sends a write (`data`) or a zeroing (`None`) to every replica that takes writes.
    /// `Ok(None)` for an empty range. With `Lock::Try`, `Err(WouldWait)` if a lock is held
    /// now (an async caller must not block its thread: the holder may need it to finish).
    fn submit_mutation(
        &self,
        offset: u64,
        len: u64,
        data: &Option<Bytes>,
        lock: Lock,
    ) -> std::result::Result<Option<Submitted>, Refused> {
        let structure = match lock {
            Lock::Wait => self.structure.read_arc(),
            Lock::Try => self.structure.try_read_arc().ok_or(Refused::WouldWait)?,
        };
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(None);
        }
        let bs = self.geometry.bs();
        let (first, end) = (offset / bs, (offset + len).div_ceil(bs));
        let order = match lock {
            Lock::Wait => self.block_locks.write_owned(first, end),
            Lock::Try => self
                .block_locks
                .try_write_owned(first, end)
                .ok_or(Refused::WouldWait)?,
        };
        // An encrypted volume writes whole blocks: the plaintext of partly written edge
        // blocks is read now, under the write's block locks (a blocking read: an async
        // caller is sent to the blocking path).
        let edges = match &self.cipher {
            Some(cipher) if offset % bs != 0 || len % bs != 0 => {
                if matches!(lock, Lock::Try) {
                    return Err(Refused::WouldWait);
                }
                Some(self.read_edges(cipher, offset, len)?)
            }
            _ => None,
        };
        let chunks = self.chunks_of(offset, len);
        let replicas = self.replicas.read().clone();
        // Only a replica whose store caches writes can lose acknowledged ones.
        let logged = replicas.iter().any(|(_, r)| r.caches_writes());
        let (targets, in_service) = {
            let mut m = self.membership.lock();
            m.check_quorum()
                .map_err(|in_service| ReplicationError::NoQuorum { in_service })?;
            // Noted before it is sent: a replica that fails from now on misses it.
            if logged {
                m.note_written(&chunks);
            }
            (m.write_targets(), m.in_service().len())
        };
        let generation = self.next_generation.fetch_add(1, Ordering::SeqCst);
        let pieces = match &self.cipher {
            Some(cipher) => self.sealed_pieces(cipher, (offset, len), data, edges, generation),
            None => vec![match data {
                Some(d) => Piece::Data(offset, d.clone(), None),
                None => Piece::Zeros(offset, len),
            }],
        };
        let pending = targets
            .iter()
            .map(|id| {
                let r = &replicas[*id];
                let send = |piece: &Piece| match piece {
                    Piece::Data(at, d, None) => r.write(*at, d.clone(), generation),
                    Piece::Data(at, d, Some(seals)) => {
                        r.write_sealed(*at, d.clone(), generation, seals.clone())
                    }
                    Piece::Zeros(at, n) => r.write_zeroes(*at, *n, generation),
                };
                let p = match pieces.as_slice() {
                    [one] => send(one),
                    several => join(several.iter().map(send).collect(), |_| ()),
                };
                (*id, p)
            })
            .collect();
        Ok(Some(Submitted {
            kind: Kind::Write { chunks, logged },
            fanout: Fanout::with_lag(
                pending,
                self.config.io_timeout,
                self.config.client_lag(in_service),
            ),
            _order: Some(order),
            _structure: structure,
        }))
    }

    /// The plaintext of the partly written first and last blocks of `offset..offset+len`
    /// (`None` for an edge that is whole), read from the head (callers hold the structure
    /// lock and the range's block locks).
    fn read_edges(
        &self,
        cipher: &VolumeCipher,
        offset: u64,
        len: u64,
    ) -> std::result::Result<Edges, Refused> {
        let bs = self.geometry.bs();
        let end = offset + len;
        let head = (offset % bs != 0)
            .then(|| self.read_decrypted(cipher, &View::Head, offset / bs * bs, bs))
            .transpose()?;
        let last = (end - 1) / bs;
        let tail = (end % bs != 0 && (head.is_none() || last != offset / bs))
            .then(|| self.read_decrypted(cipher, &View::Head, last * bs, bs))
            .transpose()?;
        Ok(Edges { head, tail })
    }

    /// What an encrypted volume sends for a write (`data`) or zeroing (`None`) of
    /// `offset..offset+len`: whole blocks, each encrypted with its seal; the whole blocks of
    /// a zeroing stay a zeroing (no data, nothing to decrypt), its partial edges become data.
    fn sealed_pieces(
        &self,
        cipher: &VolumeCipher,
        (offset, len): (u64, u64),
        data: &Option<Bytes>,
        edges: Option<Edges>,
        generation: u64,
    ) -> Vec<Piece> {
        let bs = self.geometry.bs();
        let bsz = usize::try_from(bs).unwrap_or(4096);
        let first = offset / bs;
        let end = (offset + len).div_ceil(bs);
        let edges = edges.unwrap_or_default();
        // The whole blocks' plaintext: the edges as they were, with the change on top.
        let build = |from: u64, to: u64, fill: &dyn Fn(&mut [u8], u64)| -> Piece {
            let mut buf = vec![0u8; usize::try_from((to - from) * bs).unwrap_or(0)];
            if let (Some(h), true) = (&edges.head, from == first) {
                if let Some(dst) = buf.get_mut(..h.len()) {
                    dst.copy_from_slice(h);
                }
            }
            if let (Some(t), true) = (&edges.tail, to == end) {
                let at = buf.len().saturating_sub(t.len());
                if let Some(dst) = buf.get_mut(at..) {
                    dst.copy_from_slice(t);
                }
            }
            fill(&mut buf, from * bs);
            let seals: Vec<Seal> = buf
                .chunks_mut(bsz)
                .enumerate()
                .map(|(i, block)| cipher.seal_block(from + i as u64, generation, block))
                .collect();
            Piece::Data(from * bs, Bytes::from(buf), Some(seals.into()))
        };
        // Bytes `offset..offset+len` within a buffer starting at byte `base`.
        let within = |base: u64| {
            let a = usize::try_from(offset.saturating_sub(base)).unwrap_or(0);
            let b = usize::try_from(offset + len - base).unwrap_or(0);
            (a, b)
        };
        match data {
            Some(d) => vec![build(first, end, &|buf: &mut [u8], base| {
                let (a, b) = within(base);
                if let Some(dst) = buf.get_mut(a..b) {
                    dst.copy_from_slice(d);
                }
            })],
            None => {
                let zero = |buf: &mut [u8], base: u64| {
                    let (a, b) = within(base);
                    if let Some(dst) = buf.get_mut(a..b.min(buf.len())) {
                        dst.fill(0);
                    }
                };
                let mut pieces = Vec::new();
                let mut inner = (first, end);
                if edges.head.is_some() {
                    pieces.push(build(first, first + 1, &zero));
                    inner.0 = first + 1;
                }
                if edges.tail.is_some() && end > inner.0 {
                    pieces.push(build(end - 1, end, &zero));
                    inner.1 = end - 1;
                }
                if inner.0 < inner.1 {
                    pieces.push(Piece::Zeros(inner.0 * bs, (inner.1 - inner.0) * bs));
                }
                pieces
            }
        }
    }

    /// Sends a flush to every replica that takes writes (`lock` as for writes).
    fn submit_flush(&self, lock: Lock) -> std::result::Result<Submitted, Refused> {
        let structure = match lock {
            Lock::Wait => self.structure.read_arc(),
            Lock::Try => self.structure.try_read_arc().ok_or(Refused::WouldWait)?,
        };
        let (targets, mark, in_service) = {
            let m = self.membership.lock();
            m.check_quorum()
                .map_err(|in_service| ReplicationError::NoQuorum { in_service })?;
            (m.write_targets(), m.flush_mark(), m.in_service().len())
        };
        let replicas = self.replicas.read().clone();
        let pending = targets
            .iter()
            .map(|id| (*id, replicas[*id].flush()))
            .collect();
        Ok(Submitted {
            kind: Kind::Flush(mark),
            fanout: Fanout::with_lag(
                pending,
                self.config.io_timeout,
                self.config.client_lag(in_service),
            ),
            _order: None,
            _structure: structure,
        })
    }

    /// Waits (blocking) and settles.
    fn finish(&self, submitted: Submitted) -> Result<()> {
        let Submitted {
            kind,
            fanout,
            _order,
            _structure,
        } = submitted;
        let settled = self.settle_answers(&kind, fanout.wait())?;
        if settled.persist {
            self.persist()?;
        }
        settled.answer
    }

    /// Waits (async) and settles; storing a changed set state runs on a blocking thread.
    async fn finish_async(self: &Arc<Self>, submitted: Submitted) -> Result<()> {
        let Submitted {
            kind,
            fanout,
            _order,
            _structure,
        } = submitted;
        let answers = fanout.wait_async().await;
        let settled = self.settle_answers(&kind, answers)?;
        if settled.persist {
            let set = self.clone();
            blocking(move || set.persist()).await?;
        }
        settled.answer
    }

    /// Turns the replicas' answers into an outcome and applies it to the membership. A
    /// caller error (the same on every replica) is returned at once.
    fn settle_answers(&self, kind: &Kind, answers: Answers<()>) -> Result<Settled> {
        let mut outcome = PerReplica::default();
        let mut refused = PerReplica::default();
        for (id, answer) in answers {
            match answer {
                Ok(()) => outcome[id] = Some(true),
                Err(e) if e.is_no_space() && matches!(kind, Kind::Write { .. }) => {
                    tracing::warn!(replica = %id, "write refused: {e}");
                    outcome[id] = Some(false);
                    refused[id] = true;
                }
                Err(e) if e.is_caller_error() => {
                    return Err(ReplicationError::Replica {
                        replica: id,
                        source: e,
                    })
                }
                Err(e) => {
                    tracing::warn!(replica = %id, "request failed, taking it out of service: {e}");
                    outcome[id] = Some(false);
                }
            }
        }
        let mut m = self.membership.lock();
        let mut no_space = false;
        let (ok, persist) = match kind {
            Kind::Write { chunks, logged } => {
                // Answered: a flush from now on covers it.
                if *logged {
                    m.note_written(chunks);
                }
                let (outcome, refused) = m.refused_for_space(&outcome, &refused);
                no_space = refused;
                let v = m.settle_write(chunks, &outcome);
                (if v.ack { 2 } else { 0 }, v.changed)
            }
            Kind::Flush(mark) => m.settle_flush(&outcome, *mark),
        };
        if matches!(kind, Kind::Write { .. }) {
            self.out_of_space.store(no_space, Ordering::Relaxed);
        }
        let answer = if no_space {
            self.space_refusals.fetch_add(1, Ordering::Relaxed);
            Err(ReplicationError::NoSpace {
                in_service: m.in_service().len(),
            })
        } else if ok >= 2 {
            Ok(())
        } else {
            Err(ReplicationError::NoQuorum {
                in_service: m.in_service().len(),
            })
        };
        Ok(Settled { answer, persist })
    }
}

/// One request to the copies for a client write.
enum Piece {
    /// Data at an offset, with the blocks' seals for a sealed volume.
    Data(u64, Bytes, Option<Arc<[Seal]>>),
    /// A zeroing: offset and length.
    Zeros(u64, u64),
}

/// The plaintext of a write's partly written first and last blocks.
#[derive(Default)]
struct Edges {
    head: Option<Bytes>,
    tail: Option<Bytes>,
}

/// Runs blocking set work from an async caller on the runtime's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ReplicationError::Abandoned(e.to_string())))
}
