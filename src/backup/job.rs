//! Taking, restoring and verifying one backup: the data work, between a replica set and a
//! [`BackupStore`]. Statuses, records and quotas are the caller's.

use std::collections::{BTreeMap, HashSet};

use tripod_engine::View;
use tripod_replication::ReplicaSet;

use super::format::{BlockHash, BlockRef, Manifest, BLOCK_SIZE, MANIFEST_FORMAT};
use super::store::{BackupStore, StoreError};

/// Errors of backup work.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The target failed or holds something damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The volume failed.
    #[error(transparent)]
    Replication(#[from] tripod_replication::ReplicationError),
    /// The backup does not fit the volume.
    #[error("{0}")]
    Invalid(String),
}

/// Ranges worked on at once: reading, hashing, compressing and storing (or fetching,
/// checking and writing) overlap, so the disks and the CPU are busy together.
const WORKERS: usize = 4;

/// Runs `work` on every item of `items` with [`WORKERS`] threads, in any order; the first
/// error stops the others from taking new items and is returned. `progress(done, total)`
/// is called after each item.
fn parallel<T: Send>(
    items: &[u64],
    progress: &(dyn Fn(u64, u64) + Sync),
    work: impl Fn(u64) -> Result<T, JobError> + Sync,
) -> Result<Vec<(u64, T)>, JobError> {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let total = items.len() as u64;
    let results = parking_lot::Mutex::new(Vec::with_capacity(items.len()));
    let first_error = parking_lot::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(items.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match work(item) {
                        Ok(r) => {
                            results.lock().push((item, r));
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            progress(n, total);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Some(e) => Err(e),
        None => Ok(results.into_inner()),
    }
}

/// What a backup cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakeReport {
    /// Bytes read from the volume.
    pub read_bytes: u64,
    /// Block objects uploaded (new content).
    pub uploaded_objects: u64,
    /// Bytes uploaded (compressed).
    pub uploaded_bytes: u64,
}

/// What a backup is taken from and against.
pub struct Source<'a> {
    /// The volume.
    pub set: &'a ReplicaSet,
    /// The content to back up (a snapshot: it must not change meanwhile).
    pub view: View,
    /// The parent backup's manifest and, if the volume still has it, the snapshot it was
    /// taken from: only ranges changed since are read. Without that snapshot every range
    /// holding data is read and only blocks the target lacks are uploaded.
    pub parent: Option<(&'a Manifest, Option<View>)>,
}

/// Backs up `src` into `store` as `manifest` (whose `blocks` and `size` this fills) and
/// stores the manifest last, so a backup whose manifest is in the target is complete.
/// `progress(done, total)` counts ranges.
pub fn take(
    src: &Source<'_>,
    store: &BackupStore,
    manifest: &mut Manifest,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<TakeReport, JobError> {
    let _writing = store.writing();
    let size = view_size(src.set, &src.view)?;
    manifest.format = MANIFEST_FORMAT;
    manifest.block_size = BLOCK_SIZE;
    manifest.size = size;
    let ranges = size.div_ceil(BLOCK_SIZE);
    let (mut blocks, todo): (BTreeMap<u64, BlockHash>, Vec<u64>) = match &src.parent {
        Some((parent, Some(base))) => (
            parent
                .blocks
                .iter()
                .filter(|b| b.index < ranges)
                .map(|b| (b.index, b.hash))
                .collect(),
            src.set.changed_ranges(Some(base), &src.view, BLOCK_SIZE)?,
        ),
        _ => (
            BTreeMap::new(),
            src.set.changed_ranges(None, &src.view, BLOCK_SIZE)?,
        ),
    };
    // Each range: read it; all zeros → no block; else store its content unless present.
    // Equal contents met by two workers at once are uploaded by the first only.
    let claimed = parking_lot::Mutex::new(HashSet::new());
    let stored = parallel(&todo, progress, |index| {
        let len = size.saturating_sub(index * BLOCK_SIZE).min(BLOCK_SIZE);
        let data = src.set.read_view(&src.view, index * BLOCK_SIZE, len)?;
        if data.iter().all(|b| *b == 0) {
            return Ok((len, None));
        }
        let hash = BlockHash::of(&data);
        if !claimed.lock().insert(hash) {
            return Ok((len, Some((hash, 0))));
        }
        let uploaded = store.put_block(&hash, &data)?;
        Ok((len, Some((hash, uploaded))))
    })?;
    let mut report = TakeReport::default();
    for (index, (len, block)) in stored {
        report.read_bytes += len;
        match block {
            None => {
                blocks.remove(&index);
            }
            Some((hash, uploaded)) => {
                if uploaded > 0 {
                    report.uploaded_objects += 1;
                    report.uploaded_bytes += uploaded;
                }
                blocks.insert(index, hash);
            }
        }
    }
    manifest.blocks = blocks
        .into_iter()
        .map(|(index, hash)| BlockRef { index, hash })
        .collect();
    store.put_manifest(manifest)?;
    Ok(report)
}

/// The size in bytes of `view` of `set`.
fn view_size(set: &ReplicaSet, view: &View) -> Result<u64, JobError> {
    match view {
        View::Head => Ok(set.size()),
        View::Snapshot(id) => set
            .list_snapshots()?
            .into_iter()
            .find(|s| &s.id == id)
            .map(|s| s.size)
            .ok_or_else(|| JobError::Invalid(format!("snapshot {id} is gone"))),
    }
}

/// Writes backup `m` over the first `m.size` bytes of `target` (ranges without a block
/// become zeros) and flushes. Every block is fetched and checked before it is written: a
/// missing or damaged object stops the restore with the block named, and nothing wrong is
/// ever written. `progress(done, total)` counts ranges.
pub fn restore(
    m: &Manifest,
    store: &BackupStore,
    target: &ReplicaSet,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64, JobError> {
    if target.size() < m.size {
        return Err(JobError::Invalid(format!(
            "the volume ({} bytes) is smaller than the backup ({} bytes)",
            target.size(),
            m.size
        )));
    }
    let ranges: Vec<u64> = (0..m.size.div_ceil(BLOCK_SIZE)).collect();
    let by_index: BTreeMap<u64, BlockHash> = m.blocks.iter().map(|b| (b.index, b.hash)).collect();
    let done = parallel(&ranges, progress, |index| {
        let at = index * BLOCK_SIZE;
        let len = m.range_len(index);
        let Some(hash) = by_index.get(&index) else {
            target.write_zeroes(at, len)?;
            return Ok(0);
        };
        let data = store.get_block(hash)?;
        let n = data.len() as u64;
        if n > len {
            return Err(JobError::Invalid(format!(
                "block {hash} at range {index} is longer than the range"
            )));
        }
        target.write_bytes(at, data.into())?;
        if n < len {
            target.write_zeroes(at + n, len - n)?;
        }
        Ok(n)
    })?;
    let written = done.iter().map(|(_, n)| n).sum();
    target.flush()?;
    Ok(written)
}

/// Fetches and checks every block of backup `m` without restoring it; the first missing
/// or damaged one is the error.
pub fn verify(
    m: &Manifest,
    store: &BackupStore,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), JobError> {
    let total = m.blocks.len() as u64;
    for (i, b) in m.blocks.iter().enumerate() {
        let data = store.get_block(&b.hash)?;
        if data.len() as u64 > m.range_len(b.index) {
            return Err(JobError::Invalid(format!(
                "block {} at range {} is longer than the range",
                b.hash, b.index
            )));
        }
        progress(i as u64 + 1, total);
    }
    Ok(())
}
