//! Opening a set: the newest set state among the replicas, then reconciliation of the
//! replicas that were in service — a crash may have left an unacknowledged write or
//! structural change on some of them: snapshots all-or-nothing, the size the largest, each
//! differing block from the copy with the highest generation — then serve.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tripod_engine::{BlockIndex, BlockInfo, ChunkIndex, SnapshotId, View};

use crate::catch_up::{fault, raw_blocks, summary};
use crate::cipher::VolumeCipher;
use crate::error::{ReplicationError, Result};
use crate::ids::{PerReplica, ReplicaId};
use crate::replica::{Replica, ReplicaInfo};
use crate::set::{ReplicaSet, SetConfig};
use crate::set_state::{Member, SetState};

impl ReplicaSet {
    /// Opens an existing set: picks the newest set state, reconciles the replicas that were
    /// in service (a crash may have left an unacknowledged write on some of them), and
    /// resyncs returning replicas right away if fewer than two are in service.
    pub fn open(replicas: [Arc<dyn Replica>; 3], config: SetConfig) -> Result<Self> {
        Self::open_with(replicas, config, None, false)
    }

    /// Opens a set for maintenance — reconciliation, resync, rebuild, scrub, which work on
    /// the stored bytes — whether or not it is encrypted, without its key. An encrypted
    /// volume opened so refuses client reads and writes ([`ReplicationError::KeyNeeded`]).
    pub fn open_for_maintenance(
        replicas: [Arc<dyn Replica>; 3],
        config: SetConfig,
    ) -> Result<Self> {
        Self::open_with(replicas, config, None, true)
    }

    /// [`ReplicaSet::open`] for an encrypted volume, with its cipher. Opening an encrypted
    /// volume without its cipher, or a plain one with a cipher, fails before anything is
    /// changed.
    pub fn open_encrypted(
        replicas: [Arc<dyn Replica>; 3],
        config: SetConfig,
        cipher: Arc<VolumeCipher>,
    ) -> Result<Self> {
        Self::open_with(replicas, config, Some(cipher), false)
    }

    fn open_with(
        replicas: [Arc<dyn Replica>; 3],
        config: SetConfig,
        cipher: Option<Arc<VolumeCipher>>,
        maintenance: bool,
    ) -> Result<Self> {
        let replicas = PerReplica(replicas);
        let mut state = newest_state(&replicas, &config)?;
        if let (Some(check), Some(c)) = (state.key_check, &cipher) {
            if check != c.key_check() {
                return Err(ReplicationError::Open(
                    "the key given is not this volume's key".into(),
                ));
            }
        }
        let geometry = tripod_engine::Geometry {
            block_size: state.block_size,
            chunk_blocks: state.chunk_blocks,
        }
        .validate()
        .map_err(|e| ReplicationError::Open(e.to_string()))?;
        let mut infos: PerReplica<Option<ReplicaInfo>> = PerReplica::default();
        for (id, r) in replicas.iter() {
            if state.members[id] != Member::InService {
                continue;
            }
            match r.info().wait(config.io_timeout) {
                Ok(info)
                    if info.geometry == geometry
                        && !maintenance
                        && info.sealed != cipher.is_some() =>
                {
                    // The copies say what they hold; nothing is changed on a mismatch.
                    return Err(ReplicationError::Open(if info.sealed {
                        format!("{id} holds an encrypted volume: its key is needed to open it")
                    } else {
                        format!("{id} holds a volume that is not encrypted, but a key was given")
                    }));
                }
                Ok(info) if info.geometry == geometry => infos[id] = Some(info),
                outcome => {
                    tracing::warn!(replica = %id, "unusable at open ({outcome:?}); rebuild needed");
                    state.members[id] = Member::Out {
                        dirty: BTreeSet::new(),
                        full: true,
                    };
                }
            }
        }
        let live = loop {
            let live: Vec<ReplicaId> = ReplicaId::ALL
                .into_iter()
                .filter(|id| infos[*id].is_some())
                .collect();
            if live.is_empty() {
                return Err(ReplicationError::Open(
                    "no in-service replica is readable".into(),
                ));
            }
            match reconcile(&replicas, &live, &infos, &config) {
                Ok(()) => break live,
                // One copy failing (or answering nonsense) costs that copy, not the volume:
                // it leaves service for a rebuild and the others are reconciled again.
                Err(ReplicationError::Replica { replica, source }) if live.len() > 1 => {
                    tracing::warn!(%replica, "failed while reconciling at open ({source}); rebuild needed");
                    infos[replica] = None;
                    state.members[replica] = Member::Out {
                        dirty: BTreeSet::new(),
                        full: true,
                    };
                }
                Err(e) => return Err(e),
            }
        };
        let mut size = 0;
        let mut generation = 0;
        for id in &live {
            let info = replicas[*id]
                .info()
                .wait(config.io_timeout)
                .map_err(fault(*id))?;
            size = size.max(info.size);
            generation = generation.max(info.generation);
        }
        state.epoch += 1;
        let shape = (size, geometry);
        // Without a key (maintenance), what the copies hold says whether it is encrypted.
        let sealed = cipher.is_some()
            || live
                .iter()
                .any(|id| infos[*id].as_ref().is_some_and(|i| i.sealed));
        let mut set = Self::assemble(replicas, state, shape, generation + 1, config, cipher);
        set.sealed = sealed;
        set.persist()?;
        if set.membership.lock().check_quorum().is_err() {
            set.heal_now();
        }
        Ok(set)
    }

    /// The next generation a write will take (for diagnostics).
    pub fn generation(&self) -> u64 {
        self.next_generation.load(Ordering::SeqCst)
    }
}

/// The newest valid set state among the replicas; every replica holding one must belong to
/// the same volume and sit in the slot it was stored for.
fn newest_state(replicas: &PerReplica<Arc<dyn Replica>>, config: &SetConfig) -> Result<SetState> {
    let mut best: Option<SetState> = None;
    for (id, r) in replicas.iter() {
        let bytes = match r.load_set_state().wait(config.io_timeout) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(replica = %id, "cannot read its set state: {e}");
                continue;
            }
        };
        let (state, me) = match SetState::decode(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(replica = %id, "damaged set state ignored: {e}");
                continue;
            }
        };
        if me != id {
            return Err(ReplicationError::Open(format!(
                "{id} holds the copy of replica slot {}; check the replica order",
                me.index()
            )));
        }
        if let Some(b) = &best {
            if b.volume_id != state.volume_id {
                return Err(ReplicationError::Open(format!(
                    "{id} belongs to another volume"
                )));
            }
        }
        if best.as_ref().is_none_or(|b| state.epoch > b.epoch) {
            best = Some(state);
        }
    }
    best.ok_or_else(|| ReplicationError::Open("no replica holds a set state".into()))
}

/// Brings the in-service replicas `live` to one state after a crash: a snapshot survives only
/// if all have it, the size is the largest, and each head block that differs takes the copy
/// with the highest generation (a write that reached only some replicas was never
/// acknowledged, so either outcome is allowed; agreeing is what matters).
fn reconcile(
    replicas: &PerReplica<Arc<dyn Replica>>,
    live: &[ReplicaId],
    infos: &PerReplica<Option<ReplicaInfo>>,
    config: &SetConfig,
) -> Result<()> {
    let timeout = config.io_timeout;
    let snaps = |id: ReplicaId| -> BTreeSet<SnapshotId> {
        infos[id]
            .as_ref()
            .map(|i| i.snapshots.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default()
    };
    let Some(&first) = live.first() else {
        return Ok(());
    };
    let mut common = snaps(first);
    for id in live {
        common = common.intersection(&snaps(*id)).cloned().collect();
    }
    let mut size = 0;
    for id in live {
        for extra in snaps(*id).difference(&common) {
            tracing::warn!(replica = %id, snapshot = %extra, "removing a half-made snapshot");
            replicas[*id]
                .delete_snapshot(extra.clone())
                .wait(config.long_timeout)
                .map_err(fault(*id))?;
        }
        size = size.max(infos[*id].as_ref().map_or(0, |i| i.size));
    }
    for id in live {
        if infos[*id].as_ref().is_some_and(|i| i.size < size) {
            replicas[*id]
                .expand(size)
                .wait(timeout)
                .map_err(fault(*id))?;
        }
    }
    let mut chunks: BTreeSet<ChunkIndex> = BTreeSet::new();
    for id in live {
        let list = replicas[*id]
            .view_chunks(View::Head)
            .wait(config.long_timeout);
        chunks.extend(list.map_err(fault(*id))?);
    }
    for chunk in chunks {
        reconcile_chunk(replicas, live, chunk, infos, config)?;
    }
    Ok(())
}

fn reconcile_chunk(
    replicas: &PerReplica<Arc<dyn Replica>>,
    live: &[ReplicaId],
    chunk: ChunkIndex,
    infos: &PerReplica<Option<ReplicaInfo>>,
    config: &SetConfig,
) -> Result<()> {
    let timeout = config.io_timeout;
    let Some(geometry) = live
        .first()
        .and_then(|id| infos[*id].as_ref())
        .map(|i| i.geometry)
    else {
        return Ok(());
    };
    let mut sums: Vec<(ReplicaId, Vec<BlockInfo>)> = Vec::new();
    for id in live {
        let r = (*id, replicas[*id].as_ref());
        sums.push((
            *id,
            summary(r, &View::Head, chunk, geometry.chunk_blocks, timeout)?,
        ));
    }
    let bs = geometry.bs();
    let first = chunk.0 * u64::from(geometry.chunk_blocks);
    for slot in 0..geometry.chunk_blocks {
        // This block as each copy has it (every summary holds `chunk_blocks` entries).
        let copies: Vec<(ReplicaId, BlockInfo)> = sums
            .iter()
            .filter_map(|(id, s)| Some((*id, *s.get(slot as usize)?)))
            .collect();
        // Highest generation wins; ties keep the lowest replica id's copy.
        let Some((winner, best)) = copies.iter().copied().reduce(|a, b| {
            if b.1.generation > a.1.generation {
                b
            } else {
                a
            }
        }) else {
            continue;
        };
        let block = first + u64::from(slot);
        if copies
            .iter()
            .all(|(id, b)| *id == winner || b.same_content(&best))
        {
            continue;
        }
        let sealed = infos[winner].as_ref().is_some_and(|i| i.sealed);
        let (data, seals) = if best.content.is_zero() {
            (None, None)
        } else if sealed {
            let r = replicas[winner]
                .read_sealed(View::Head, block * bs, bs)
                .wait(timeout)
                .map_err(fault(winner))?;
            (Some(r.data), Some(r.seals))
        } else {
            let d = replicas[winner]
                .read(View::Head, block * bs, bs)
                .wait(timeout);
            (Some(d.map_err(fault(winner))?), None)
        };
        for (id, b) in &copies {
            if *id != winner && !b.same_content(&best) {
                tracing::warn!(replica = %id, block, "reconciling a block left by a crash");
                let raw = raw_blocks(&[(block, best)], data.as_ref(), bs, seals.as_deref());
                replicas[*id]
                    .write_raw(BlockIndex(block), raw)
                    .wait(timeout)
                    .map_err(fault(*id))?;
            }
        }
    }
    Ok(())
}
