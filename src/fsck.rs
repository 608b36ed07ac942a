//! `tripod fsck`: an offline check of every replica of every volume in a data directory,
//! without changing a byte of it, and a repair from good copies on request.
//!
//! Each local replica is opened through an [`OverlayStorage`]: the engine recovers it exactly
//! as a daemon would (log replay, checkpoint), but every write stays in memory. Then:
//! - its **format and metadata**: the manifest, chunk records and log must open, and its
//!   set state (who is in service) must decode and name this volume;
//! - **every stored block** against its checksum ([`Volume::verify`]);
//! - the **replicas against each other**: the replicas the set counts in service must agree on
//!   every view (head and snapshots: sizes, which snapshots exist, and each block's content by
//!   checksum and generation, from metadata alone).
//!
//! The engine's lock is taken as a daemon takes it, so a volume in use by a running daemon is
//! reported as such, never read half-written. Replicas on replica nodes are not checked here
//! (they are another machine's disks: run `tripod fsck` there).
//!
//! `--repair` then opens each damaged volume as the daemon does (the set reconciles its
//! replicas at open; an encrypted volume without its key, as only stored bytes are moved), resyncs or rebuilds replicas out of service, scrubs (every bad copy
//! rewritten from a good one) and checks the volume again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tripod_engine::{
    BlockIndex, ChunkIndex, EngineError, FileStorage, OverlayStorage, Storage, View, Volume,
    VolumeOptions,
};
use tripod_replication::{stored_set_state, Member, SetState};

use crate::data_dir::{DataDir, ReplicaRoot};

/// Most block numbers listed per finding (the count is always whole).
const LISTED: usize = 16;

/// What fsck found in one data directory.
#[derive(Debug, Clone, Serialize)]
pub struct FsckReport {
    /// One entry per volume found in any local replica root.
    pub volumes: Vec<VolumeCheck>,
}

/// The verdict on one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every checked replica is sound and the in-service ones agree.
    Clean,
    /// Something is wrong (see `problems`).
    Damaged,
    /// It could not be checked (in use by a daemon, unreadable directory).
    NotChecked,
}

/// What fsck found in one volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeCheck {
    /// The volume id.
    pub id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Per replica, in replica order.
    pub replicas: Vec<ReplicaCheck>,
    /// Everything wrong, one sentence each.
    pub problems: Vec<String>,
    /// Things worth knowing that are not damage (a replica waiting for a resync).
    pub notes: Vec<String>,
    /// Filled by `--repair`: what the repair did.
    pub repair: Option<String>,
}

/// One replica of a volume.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaCheck {
    /// Where it lives.
    pub location: String,
    /// What was found.
    pub state: ReplicaState,
}

/// What fsck found in one replica.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ReplicaState {
    /// Opened and every stored block checked.
    Checked {
        /// Stored data blocks checked.
        blocks_checked: u64,
        /// Blocks whose checksum failed (block numbers, at most a few listed).
        bad_blocks: Vec<u64>,
        /// How many blocks failed.
        bad_count: usize,
        /// The set state says it holds every acknowledged write.
        in_service: bool,
    },
    /// No copy of the volume in this root.
    Missing,
    /// On a replica node: not checked from here.
    Remote,
    /// A daemon has the volume open.
    InUse,
    /// It does not open: why.
    Unreadable {
        /// The error.
        error: String,
    },
}

/// An opened replica and what the check needs of it.
struct Opened {
    volume: Volume,
    set_state: Option<SetState>,
}

/// Counts what the check has done, for a progress display. The total grows as replicas are
/// opened (each is opened once: its recovery is the expensive part of knowing its size).
pub trait Progress {
    /// A replica holding `blocks` stored data blocks was opened: that many more to check.
    fn discovered(&self, blocks: u64);
    /// `blocks` more data blocks were checked.
    fn advance(&self, blocks: u64);
    /// A volume's check ended.
    fn finished(&self, check: &VolumeCheck);
}

/// Checks every volume of `dir`, reporting progress to `progress`.
pub fn check(dir: &DataDir, progress: &dyn Progress) -> FsckReport {
    let volumes = dir
        .list()
        .into_iter()
        .map(|id| {
            let check = check_volume(dir, &id, progress);
            progress.finished(&check);
            check
        })
        .collect();
    FsckReport { volumes }
}

/// Checks one volume.
pub fn check_volume(dir: &DataDir, id: &str, progress: &dyn Progress) -> VolumeCheck {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut replicas = Vec::new();
    let mut opened: Vec<Option<Opened>> = Vec::new();
    let roots = match dir.roots_of(id) {
        Ok(r) => r,
        Err(e) => {
            return VolumeCheck {
                id: id.to_string(),
                verdict: Verdict::Damaged,
                replicas,
                problems: vec![format!("where its replicas live is unknown: {e}")],
                notes,
                repair: None,
            }
        }
    };
    for (index, root) in roots.iter().enumerate() {
        let (location, state, open) = check_replica(root, id, index, progress, &mut problems);
        replicas.push(ReplicaCheck { location, state });
        opened.push(open);
    }
    let not_checked = replicas
        .iter()
        .any(|r| matches!(r.state, ReplicaState::InUse));
    let in_service = membership(&opened, &mut problems, &mut notes);
    for (i, r) in replicas.iter_mut().enumerate() {
        if let ReplicaState::Checked { in_service: s, .. } = &mut r.state {
            *s = in_service.contains(&i);
        }
    }
    if !not_checked {
        unrecorded(&opened, &in_service, &mut problems, &mut notes);
        compare(&opened, &in_service, &mut problems);
        lost_blocks(&replicas, &in_service, &mut problems);
    }
    let verdict = if not_checked {
        Verdict::NotChecked
    } else if problems.is_empty() {
        Verdict::Clean
    } else {
        Verdict::Damaged
    };
    VolumeCheck {
        id: id.to_string(),
        verdict,
        replicas,
        problems,
        notes,
        repair: None,
    }
}

/// A replica directory seen read-only (an overlay: recovery writes stay in memory).
fn overlay_of(path: &Path) -> Result<Arc<dyn Storage>, EngineError> {
    let base = FileStorage::new(path).map_err(|source| EngineError::Io {
        context: "opening the directory".to_string(),
        source,
    })?;
    Ok(Arc::new(OverlayStorage::new(Arc::new(base))))
}

/// Checks one replica: opens it, verifies every block, reads its set state.
fn check_replica(
    root: &ReplicaRoot,
    id: &str,
    index: usize,
    progress: &dyn Progress,
    problems: &mut Vec<String>,
) -> (String, ReplicaState, Option<Opened>) {
    let path = match root {
        ReplicaRoot::Dir(r) => r.join(id),
        ReplicaRoot::Node(node) => {
            return (format!("tcp://{}", node.addr()), ReplicaState::Remote, None);
        }
    };
    let location = path.display().to_string();
    if !path.is_dir() {
        problems.push(format!("replica {index} ({location}) is missing"));
        return (location, ReplicaState::Missing, None);
    }
    let storage = match overlay_of(&path) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("replica {index} ({location}) does not open: {e}"));
            let error = e.to_string();
            return (location, ReplicaState::Unreadable { error }, None);
        }
    };
    let volume = match Volume::open(storage.clone(), VolumeOptions::write_back()) {
        Ok(v) => v,
        Err(EngineError::InUse { .. }) => return (location, ReplicaState::InUse, None),
        Err(e) => {
            problems.push(format!("replica {index} ({location}) does not open: {e}"));
            let error = e.to_string();
            return (location, ReplicaState::Unreadable { error }, None);
        }
    };
    progress.discovered(volume.space_used().total_bytes / volume.geometry().bs());
    let mut last = 0;
    let verified = volume.verify_with(&mut |done| {
        progress.advance(done - last);
        last = done;
    });
    let report = match verified {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("replica {index} ({location}) cannot be read: {e}"));
            let error = e.to_string();
            return (location, ReplicaState::Unreadable { error }, None);
        }
    };
    let mut bad: Vec<u64> = report.bad.iter().map(|b| b.block.0).collect();
    bad.sort_unstable();
    bad.dedup();
    let set_state = match stored_set_state(storage.as_ref()) {
        Ok(Some((state, me))) if me.index() == index => Some(state),
        Ok(Some((_, me))) => {
            problems.push(format!(
                "replica {index} ({location}) holds the set state of replica {}",
                me.index()
            ));
            None
        }
        Ok(None) => {
            problems.push(format!("replica {index} ({location}) has no set state"));
            None
        }
        Err(e) => {
            problems.push(format!("replica {index} ({location}): set state: {e}"));
            None
        }
    };
    let state = ReplicaState::Checked {
        blocks_checked: report.blocks_checked,
        bad_count: bad.len(),
        bad_blocks: bad.iter().take(LISTED).copied().collect(),
        in_service: false,
    };
    (location, state, Some(Opened { volume, set_state }))
}

/// The replicas the newest set state counts in service (only those that opened), with a
/// problem if the replicas are of different volumes or fewer than two are left.
fn membership(
    opened: &[Option<Opened>],
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> BTreeSet<usize> {
    let states: Vec<(usize, &SetState)> = opened
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((i, o.as_ref()?.set_state.as_ref()?)))
        .collect();
    let Some((_, newest)) = states.iter().max_by_key(|(_, s)| s.epoch) else {
        if opened.iter().any(Option::is_some) {
            problems.push("no replica holds a readable set state".to_string());
        }
        return BTreeSet::new();
    };
    for (i, s) in &states {
        if s.volume_id != newest.volume_id {
            problems.push(format!(
                "replica {i} belongs to another volume (its set state)"
            ));
        }
    }
    let mut in_service = BTreeSet::new();
    for (id, member) in newest.members.iter() {
        let i = id.index();
        match member {
            Member::InService if opened.get(i).is_some_and(Option::is_some) => {
                in_service.insert(i);
            }
            Member::InService => {}
            Member::Out { full: true, .. } => notes.push(format!(
                "replica {i} is out of service and waits for a rebuild"
            )),
            Member::Out { dirty, .. } => notes.push(format!(
                "replica {i} is out of service and waits for a resync of {} chunk(s)",
                dirty.len()
            )),
        }
    }
    if in_service.len() < 2 && !states.is_empty() {
        problems.push(format!(
            "only {} replica(s) in service and readable (a volume needs two)",
            in_service.len()
        ));
    }
    in_service
}

/// Compares the in-service replicas view by view, from metadata.
fn compare(opened: &[Option<Opened>], in_service: &BTreeSet<usize>, problems: &mut Vec<String>) {
    let vols: Vec<(usize, &Volume)> = in_service
        .iter()
        .filter_map(|i| Some((*i, &opened.get(*i)?.as_ref()?.volume)))
        .collect();
    let Some((first, reference)) = vols.first() else {
        return;
    };
    let snaps: Vec<BTreeSet<String>> = vols
        .iter()
        .map(|(_, v)| {
            v.list_snapshots()
                .into_iter()
                .map(|s| s.id.to_string())
                .collect()
        })
        .collect();
    let Some(reference_snaps) = snaps.first() else {
        return;
    };
    for ((i, _), theirs) in vols.iter().zip(&snaps).skip(1) {
        for missing in reference_snaps.symmetric_difference(theirs) {
            problems.push(format!(
                "snapshot {missing} is on only one of replicas {first} and {i}"
            ));
        }
    }
    let mut views = vec![View::Head];
    views.extend(
        reference
            .list_snapshots()
            .into_iter()
            .filter(|s| snaps.iter().all(|set| set.contains(&s.id.to_string())))
            .map(|s| View::Snapshot(s.id)),
    );
    for view in &views {
        compare_view(&vols, view, problems);
    }
}

/// Data no chunk record accounts for: damage (a metadata file cut short or lost) where
/// another in-service replica holds that chunk; otherwise a note (a crash can leave new data
/// placed but never recorded, for a write that was never made durable).
fn unrecorded(
    opened: &[Option<Opened>],
    in_service: &BTreeSet<usize>,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let head_chunks: BTreeMap<usize, BTreeSet<ChunkIndex>> = opened
        .iter()
        .enumerate()
        .filter(|(i, _)| in_service.contains(i))
        .filter_map(|(i, o)| {
            let chunks = o.as_ref()?.volume.view_chunks(&View::Head).ok()?;
            Some((i, chunks.into_iter().collect()))
        })
        .collect();
    for (i, o) in opened.iter().enumerate() {
        let Some(o) = o else { continue };
        let found = match o.volume.unrecorded_data() {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("replica {i}: mapping its data files: {e}"));
                continue;
            }
        };
        // Per metadata file: the chunks others hold, and the ones nobody does.
        let mut missing: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        for u in found {
            let elsewhere = head_chunks
                .iter()
                .any(|(j, chunks)| *j != i && chunks.contains(&u.chunk));
            let entry = missing.entry(u.meta_file).or_default();
            if elsewhere {
                entry.0.push(u.chunk.0);
            } else {
                entry.1.push(u.chunk.0);
            }
        }
        let list = |chunks: &[u64]| {
            let shown: Vec<String> = chunks.iter().take(LISTED).map(u64::to_string).collect();
            let more = if chunks.len() > LISTED { ", …" } else { "" };
            format!("{}{more}", shown.join(", "))
        };
        for (file, (held, alone)) in missing {
            if !held.is_empty() {
                problems.push(format!(
                    "replica {i}: {file} has no record of chunk(s) {} although its data file \
                     holds data there and another replica has them (metadata cut short or lost)",
                    list(&held)
                ));
            }
            if !alone.is_empty() {
                notes.push(format!(
                    "replica {i}: data without a record in {file} for chunk(s) {} (left by a \
                     crash before it was recorded; never acknowledged as durable)",
                    list(&alone)
                ));
            }
        }
    }
}

fn view_name(view: &View) -> String {
    match view {
        View::Head => "the volume".to_string(),
        View::Snapshot(id) => format!("snapshot {id}"),
    }
}

/// Compares one view of the replicas: size, then every block's content and generation.
fn compare_view(vols: &[(usize, &Volume)], view: &View, problems: &mut Vec<String>) {
    let sizes: Vec<(usize, Result<u64, EngineError>)> =
        vols.iter().map(|(i, v)| (*i, v.view_size(view))).collect();
    let known: BTreeSet<u64> = sizes
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .copied()
        .collect();
    if known.len() > 1 {
        let listed: Vec<String> = sizes
            .iter()
            .map(|(i, s)| match s {
                Ok(n) => format!("replica {i}: {n} bytes"),
                Err(e) => format!("replica {i}: {e}"),
            })
            .collect();
        problems.push(format!(
            "{} differs in size ({})",
            view_name(view),
            listed.join(", ")
        ));
        return;
    }
    let mut chunks: BTreeSet<ChunkIndex> = BTreeSet::new();
    for (i, v) in vols {
        match v.view_chunks(view) {
            Ok(c) => chunks.extend(c),
            Err(e) => problems.push(format!("replica {i}: {}: {e}", view_name(view))),
        }
    }
    // Block -> the replicas that disagree with the first.
    let mut differing: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for chunk in chunks {
        let summaries: Vec<(usize, Vec<tripod_engine::BlockInfo>)> = vols
            .iter()
            .filter_map(|(i, v)| Some((*i, v.chunk_summary(view, chunk).ok()?)))
            .collect();
        let Some((first, reference)) = summaries.first() else {
            continue;
        };
        let g = vols.first().map(|(_, v)| v.geometry()).unwrap_or_default();
        for (i, summary) in summaries.iter().skip(1) {
            for (slot, (a, b)) in reference.iter().zip(summary).enumerate() {
                if !a.same_content(b) {
                    let block: BlockIndex = g.block_at(chunk, slot);
                    let entry = differing.entry(block.0).or_default();
                    entry.insert(*first);
                    entry.insert(*i);
                }
            }
        }
    }
    if !differing.is_empty() {
        let listed: Vec<String> = differing.keys().take(LISTED).map(u64::to_string).collect();
        problems.push(format!(
            "the in-service replicas differ in {} block(s) of {} (blocks {}{})",
            differing.len(),
            view_name(view),
            listed.join(", "),
            if differing.len() > LISTED {
                ", …"
            } else {
                ""
            }
        ));
    }
}

/// Bad copies: repairable where another in-service replica's copy of the block is good, lost
/// where none is.
fn lost_blocks(
    replicas: &[ReplicaCheck],
    in_service: &BTreeSet<usize>,
    problems: &mut Vec<String>,
) {
    let bad_of = |r: &ReplicaCheck| match &r.state {
        ReplicaState::Checked {
            bad_blocks,
            bad_count,
            ..
        } => Some((bad_blocks.clone(), *bad_count)),
        _ => None,
    };
    let mut all_bad: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for (i, r) in replicas.iter().enumerate() {
        let Some((blocks, count)) = bad_of(r) else {
            continue;
        };
        if count > 0 {
            problems.push(format!(
                "replica {i} has {count} block(s) failing their checksum (blocks {}{})",
                blocks
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if count > blocks.len() { ", …" } else { "" }
            ));
        }
        for b in blocks {
            all_bad.entry(b).or_default().insert(i);
        }
    }
    let lost: Vec<u64> = all_bad
        .iter()
        .filter(|(_, bad)| in_service.iter().all(|i| bad.contains(i)))
        .map(|(b, _)| *b)
        .collect();
    if !lost.is_empty() && !in_service.is_empty() {
        problems.push(format!(
            "no in-service replica holds a good copy of block(s) {}: they read as I/O errors",
            lost.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

/// `--repair` for one damaged volume: opened as the daemon opens it (replicas reconciled),
/// replicas out of service brought back, a scrub, a flush; then checked again.
pub fn repair(dir: &DataDir, check: &VolumeCheck, progress: &dyn Progress) -> VolumeCheck {
    let outcome = (|| -> Result<String, String> {
        // Repair works on the stored bytes: an encrypted volume needs no key for it.
        let set = dir
            .open_for_maintenance(&check.id)
            .map_err(|e| format!("open: {e}"))?;
        let heal = set.heal_now();
        let scrub = set.scrub().map_err(|e| format!("scrub: {e}"))?;
        set.flush().map_err(|e| format!("flush: {e}"))?;
        let rejoined: Vec<String> = heal
            .rejoined
            .iter()
            .map(|r| r.index().to_string())
            .collect();
        let still_out: Vec<String> = heal
            .still_out
            .iter()
            .map(|(r, why)| format!("{} ({why})", r.index()))
            .collect();
        Ok(format!(
            "replicas reconciled at open; rejoined: [{}]; still out: [{}]; scrub checked {} \
             block(s), repaired {} of {} bad, {} without a good copy",
            rejoined.join(", "),
            still_out.join(", "),
            scrub.blocks_checked,
            scrub.repaired,
            scrub.bad,
            scrub.unrepairable.len()
        ))
    })();
    let mut after = check_volume(dir, &check.id, progress);
    after.repair = Some(match outcome {
        Ok(done) => done,
        Err(e) => format!("repair failed: {e}"),
    });
    after
}

/// The process exit code for `report`: 0 clean, 1 damage, 2 something could not be checked.
pub fn exit_code(report: &FsckReport) -> u8 {
    let verdicts: BTreeSet<Verdict> = report.volumes.iter().map(|v| v.verdict).collect();
    if verdicts.contains(&Verdict::Damaged) {
        1
    } else if verdicts.contains(&Verdict::NotChecked) {
        2
    } else {
        0
    }
}

/// The report as text for a person.
pub fn render(report: &FsckReport) -> String {
    let mut out = String::new();
    for v in &report.volumes {
        let verdict = match v.verdict {
            Verdict::Clean => "clean",
            Verdict::Damaged => "DAMAGED",
            Verdict::NotChecked => "NOT CHECKED",
        };
        out.push_str(&format!("volume {}: {verdict}\n", v.id));
        for (i, r) in v.replicas.iter().enumerate() {
            let state = match &r.state {
                ReplicaState::Checked {
                    blocks_checked,
                    bad_count,
                    in_service,
                    ..
                } => format!(
                    "{blocks_checked} block(s) checked, {bad_count} bad, {}",
                    if *in_service {
                        "in service"
                    } else {
                        "out of service"
                    }
                ),
                ReplicaState::Missing => "missing".to_string(),
                ReplicaState::Remote => "on a replica node: not checked".to_string(),
                ReplicaState::InUse => "in use by a running daemon: not checked".to_string(),
                ReplicaState::Unreadable { error } => format!("unreadable: {error}"),
            };
            out.push_str(&format!("  replica {i} {}: {state}\n", r.location));
        }
        for p in &v.problems {
            out.push_str(&format!("  problem: {p}\n"));
        }
        for n in &v.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        if let Some(r) = &v.repair {
            out.push_str(&format!("  repair: {r}\n"));
        }
    }
    let count = |want: Verdict| report.volumes.iter().filter(|v| v.verdict == want).count();
    out.push_str(&format!(
        "{} volume(s): {} clean, {} damaged, {} not checked\n",
        report.volumes.len(),
        count(Verdict::Clean),
        count(Verdict::Damaged),
        count(Verdict::NotChecked)
    ));
    out
}
