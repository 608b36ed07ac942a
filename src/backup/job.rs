//! Taking, restoring and verifying one backup: the data work, between a replica set and a
//! [`BackupStore`]. Statuses, records and quotas are the caller's.

use std::collections::BTreeMap;

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
    progress: &dyn Fn(u64, u64),
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
    let mut report = TakeReport::default();
    let total = todo.len() as u64;
    for (done, index) in todo.into_iter().enumerate() {
        let len = size.saturating_sub(index * BLOCK_SIZE).min(BLOCK_SIZE);
        let data = src.set.read_view(&src.view, index * BLOCK_SIZE, len)?;
        report.read_bytes += len;
        if data.iter().all(|b| *b == 0) {
            blocks.remove(&index);
        } else {
            let (hash, uploaded) = store.put_block(&data)?;
            if uploaded > 0 {
                report.uploaded_objects += 1;
                report.uploaded_bytes += uploaded;
            }
            blocks.insert(index, hash);
        }
        progress(done as u64 + 1, total);
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
    progress: &dyn Fn(u64, u64),
) -> Result<u64, JobError> {
    if target.size() < m.size {
        return Err(JobError::Invalid(format!(
            "the volume ({} bytes) is smaller than the backup ({} bytes)",
            target.size(),
            m.size
        )));
    }
    let ranges = m.size.div_ceil(BLOCK_SIZE);
    let by_index: BTreeMap<u64, BlockHash> = m.blocks.iter().map(|b| (b.index, b.hash)).collect();
    let mut written = 0;
    for index in 0..ranges {
        let at = index * BLOCK_SIZE;
        let len = m.range_len(index);
        match by_index.get(&index) {
            Some(hash) => {
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
                written += n;
            }
            None => target.write_zeroes(at, len)?,
        }
        progress(index + 1, ranges);
    }
    target.flush()?;
    Ok(written)
}

/// Fetches and checks every block of backup `m` without restoring it; the first missing
/// or damaged one is the error.
pub fn verify(
    m: &Manifest,
    store: &BackupStore,
    progress: &dyn Fn(u64, u64),
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
