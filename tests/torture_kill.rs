//! Kill soak: `tripod serve` is killed with SIGKILL at random moments while an NBD client
//! has many writes, zeroings, trims and flushes in flight, between snapshots, rollbacks,
//! snapshot deletions and expansions made through the admin API. After every kill the
//! volume is opened from its replica directories (what a restart does) and checked against
//! a model of what was acknowledged:
//!
//! - every acknowledged write reads back exactly (a process crash keeps what the kernel
//!   has; durability against power loss is the engine's and the set's crash tests' job);
//! - a block with a request in flight at the kill reads as before or as that request left it;
//! - every snapshot reads as the head did when it was taken; the size is the one expanded to;
//! - the three copies agree (after the restart's reconciliation) and pass a scrub.
//!
//! `kill_soak` runs `TRIPOD_SOAK_TRIALS` trials (20 by default, the CI run); the documented
//! soak (`RELIABILITY.md`) runs 1000 with the ignored `kill_soak_long`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use support::client::Http;
use support::nbd_client::{read_reply, NbdClient};
use support::soak::{block_data, identify, Rng, BS};
use support::Daemon;
use tripod::nbd::proto::{CMD_FLUSH, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES};
use tripod_engine::{FileStorage, SnapshotId, View, VolumeOptions};
use tripod_replication::{LocalReplica, Replica, ReplicaSet, SetConfig};

const GIB: u64 = 1 << 30;
/// Blocks the random requests fall in (the first 64 MiB and the last 64 MiB of the volume,
/// so expansions move the target).
const SPAN: u64 = 16384;
const MAX_IN_FLIGHT: usize = 16;

/// What the volume holds: per block, the id of the write whose content it has (absent: 0).
type Content = HashMap<u64, u64>;

struct Model {
    size: u64,
    head: Content,
    /// Snapshot id → the head's content when it was taken.
    snaps: BTreeMap<String, Content>,
}

/// A request sent and not yet answered.
struct Sent {
    first: u64,
    count: u64,
    /// The content id it writes (0: zeros); `None` for a flush.
    id: Option<u64>,
}

#[derive(Default)]
struct Flight {
    sent: HashMap<u64, Sent>,
    /// Answered requests, in the order of their answers.
    answered: Vec<(u64, u32)>,
    done: bool,
}

/// Random requests for `run_for`, then the daemon is killed while they are in flight.
/// Returns the requests never answered. Requests in flight never overlap, so each block's
/// answered writes are ordered.
fn burst(
    d: Daemon,
    vol: &str,
    model: &mut Model,
    rng: &mut Rng,
    next_id: &mut u64,
    run_for: Duration,
) -> (tempfile::TempDir, Vec<Sent>) {
    let mut client = NbdClient::open(d.port, vol).unwrap();
    assert_eq!(client.size, model.size);
    let flight = Arc::new(Mutex::new(Flight::default()));
    let mut reader: TcpStream = client.reader().unwrap();
    let reader_flight = flight.clone();
    let reader = std::thread::spawn(move || {
        while let Ok(r) = read_reply(&mut reader) {
            reader_flight.lock().answered.push((r.handle, r.error));
        }
        reader_flight.lock().done = true;
    });
    let last = model.size / BS;
    let started = Instant::now();
    let mut handle = 0u64;
    let mut applied = 0usize;
    let apply_answers = |model: &mut Model, flight: &mut Flight, applied: &mut usize| {
        while *applied < flight.answered.len() {
            let (h, error) = flight.answered[*applied];
            *applied += 1;
            let sent = flight.sent.remove(&h).expect("an answer to a request sent");
            assert_eq!(error, 0, "request {h} failed");
            if let Some(id) = sent.id {
                for b in sent.first..sent.first + sent.count {
                    if id == 0 {
                        model.head.remove(&b);
                    } else {
                        model.head.insert(b, id);
                    }
                }
            }
        }
    };
    while started.elapsed() < run_for {
        let mut f = flight.lock();
        apply_answers(model, &mut f, &mut applied);
        if f.done {
            break;
        }
        if f.sent.len() >= MAX_IN_FLIGHT {
            drop(f);
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let kind = rng.below(100);
        let (cmd, count, id) = match kind {
            0..60 => (CMD_WRITE, 1 + rng.below(16), Some(0)),
            60..75 => (CMD_WRITE_ZEROES, 1 + rng.below(64), Some(0)),
            75..85 => (CMD_TRIM, 1 + rng.below(64), Some(0)),
            _ => (CMD_FLUSH, 0, None),
        };
        // Half the requests near the start, half near the end of the volume.
        let first = if rng.below(2) == 0 {
            rng.below(SPAN)
        } else {
            last.saturating_sub(SPAN) + rng.below(SPAN)
        };
        let count = count.min(last - first);
        if count == 0 && cmd != CMD_FLUSH {
            continue;
        }
        let overlaps = f
            .sent
            .values()
            .any(|s| s.id.is_some() && first < s.first + s.count && s.first < first + count);
        if overlaps && cmd != CMD_FLUSH {
            continue;
        }
        handle += 1;
        let id = id.map(|_| {
            if cmd == CMD_WRITE {
                *next_id += 1;
                *next_id
            } else {
                0
            }
        });
        f.sent.insert(handle, Sent { first, count, id });
        drop(f);
        let data: Option<Vec<u8>> = (cmd == CMD_WRITE).then(|| {
            (first..first + count)
                .flat_map(|b| block_data(id.unwrap_or(0), b))
                .collect()
        });
        let (offset, len) = if cmd == CMD_FLUSH {
            (0, 0)
        } else {
            (first * BS, (count * BS) as u32)
        };
        if client
            .send(cmd, handle, offset, len, data.as_deref())
            .is_err()
        {
            break;
        }
    }
    // The kill lands with requests in flight.
    let dir = d.kill9();
    reader.join().unwrap();
    let mut f = flight.lock();
    apply_answers(model, &mut f, &mut applied);
    let unanswered = std::mem::take(&mut f.sent).into_values().collect();
    (dir, unanswered)
}

/// Opens the volume from its replica directories, as a restart does, and checks it against
/// the model; blocks with a request in flight at the kill take what they now hold.
fn check_after_kill(data: &Path, vol: &str, model: &mut Model, unanswered: &[Sent]) -> u64 {
    let replicas: [Arc<dyn Replica>; 3] = [0, 1, 2].map(|i| {
        let dir = data.join("replicas").join(i.to_string()).join(vol);
        let storage = Arc::new(FileStorage::new(dir).unwrap());
        Arc::new(LocalReplica::new(
            format!("r{i}"),
            storage,
            VolumeOptions::write_back(),
        )) as Arc<dyn Replica>
    });
    let set = ReplicaSet::open(replicas, SetConfig::default()).unwrap();
    assert_eq!(set.size(), model.size, "size");
    let mut maybe: HashMap<u64, u64> = HashMap::new();
    for s in unanswered {
        if let Some(id) = s.id {
            for b in s.first..s.first + s.count {
                maybe.insert(b, id);
            }
        }
    }
    let mut blocks: Vec<u64> = model.head.keys().chain(maybe.keys()).copied().collect();
    blocks.sort_unstable();
    blocks.dedup();
    let mut checked = 0;
    for b in blocks {
        let got = set.read(b * BS, BS).unwrap();
        let id =
            identify(&got, b).unwrap_or_else(|| panic!("block {b}: content no write put there"));
        let acked = model.head.get(&b).copied().unwrap_or(0);
        if id != acked {
            assert_eq!(
                maybe.get(&b),
                Some(&id),
                "block {b}: holds write {id}, acknowledged was {acked}"
            );
        }
        if id == 0 {
            model.head.remove(&b);
        } else {
            model.head.insert(b, id);
        }
        checked += 1;
    }
    for (name, content) in &model.snaps {
        let view = View::Snapshot(SnapshotId::new(name.as_str()).unwrap());
        for (b, id) in content {
            let got = set.read_view(&view, b * BS, BS).unwrap();
            assert_eq!(identify(&got, *b), Some(*id), "snapshot {name} block {b}");
        }
        // Blocks the head has and the snapshot does not read as zeros there.
        for b in model
            .head
            .keys()
            .filter(|b| !content.contains_key(b))
            .take(64)
        {
            if *b * BS < set.size() {
                let got = set.read_view(&view, b * BS, BS).unwrap();
                assert_eq!(identify(&got, *b), Some(0), "snapshot {name} block {b}");
            }
        }
    }
    let scrub = set.scrub().unwrap();
    assert!(scrub.unrepairable.is_empty() && scrub.bad == 0, "{scrub:?}");
    checked
}

/// One structural change through the admin API, waited for.
fn structural(h: &Http, vol: &str, model: &mut Model, rng: &mut Rng) -> Option<&'static str> {
    let wait_vol = |h: &Http| h.wait(&format!("volumes/{vol}"), "volume", "available");
    // One of the changes that apply now.
    let mut choices = Vec::new();
    if model.snaps.len() < 3 {
        choices.push(0);
    }
    if !model.snaps.is_empty() {
        choices.extend([1, 2]);
    }
    if model.size < 3 * GIB && model.snaps.is_empty() {
        choices.push(3);
    }
    match choices[rng.below(choices.len() as u64) as usize] {
        0 => {
            let (s, v) = h.call(
                "POST",
                "snapshots",
                Some(json!({"snapshot": {"volume_id": vol, "force": true}})),
            );
            assert_eq!(s, 202, "{v}");
            let id = v["snapshot"]["id"].as_str().unwrap().to_owned();
            h.wait(&format!("snapshots/{id}"), "snapshot", "available");
            model.snaps.insert(id, model.head.clone());
            Some("snapshot")
        }
        1 => {
            let n = rng.below(model.snaps.len() as u64) as usize;
            let (id, content) = model
                .snaps
                .iter()
                .nth(n)
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap();
            let (s, v) = h.call(
                "POST",
                &format!("cloudsnapshots/{id}/rollback"),
                Some(json!({"rollback": {"volume_id": vol}})),
            );
            assert_eq!(s, 202, "{v}");
            wait_vol(h);
            model.head = content;
            Some("rollback")
        }
        2 => {
            let id = model.snaps.keys().next().cloned().unwrap();
            let (s, v) = h.call("DELETE", &format!("snapshots/{id}"), None);
            assert_eq!(s, 202, "{v}");
            support::wait_until("the snapshot to go", || {
                h.call("GET", &format!("snapshots/{id}"), None).0 == 404
            });
            model.snaps.remove(&id);
            Some("delete")
        }
        3 => {
            let new = model.size / GIB + 1;
            let (s, v) = h.call(
                "POST",
                &format!("volumes/{vol}/action"),
                Some(json!({"os-extend": {"new_size": new}})),
            );
            assert_eq!(s, 202, "{v}");
            let v = wait_vol(h);
            assert_eq!(v["size"], new);
            model.size = new * GIB;
            Some("expand")
        }
        _ => None,
    }
}

fn soak(trials: u64, seed: u64) {
    let mut rng = Rng(seed);
    let mut dir = tempfile::tempdir().unwrap();
    let mut model = Model {
        size: GIB,
        head: HashMap::new(),
        snaps: BTreeMap::new(),
    };
    let mut vol = None;
    let mut next_id = 0u64;
    let (mut acked_checked, mut in_flight_at_kill) = (0u64, 0u64);
    let mut changes: BTreeMap<&str, u64> = BTreeMap::new();
    for trial in 0..trials {
        let d = Daemon::start_with(dir, &[], &[]);
        let h = Http::login(&d.api());
        let id = match &vol {
            Some(id) => {
                h.wait(&format!("volumes/{id}"), "volume", "available");
                id
            }
            None => vol.insert(h.create_volume(1)),
        }
        .clone();
        if rng.below(10) < 6 {
            if let Some(what) = structural(&h, &id, &mut model, &mut rng) {
                *changes.entry(what).or_default() += 1;
            }
        }
        let run_for = Duration::from_millis(100 + rng.below(900));
        let (data, unanswered) = burst(d, &id, &mut model, &mut rng, &mut next_id, run_for);
        in_flight_at_kill += unanswered.len() as u64;
        acked_checked += check_after_kill(data.path(), &id, &mut model, &unanswered);
        dir = data;
        if trial % 10 == 9 {
            eprintln!("trial {}: {acked_checked} block checks, {in_flight_at_kill} requests in flight at kills", trial + 1);
        }
    }
    eprintln!(
        "kill soak: {trials} trials, {acked_checked} block checks against acknowledged writes, \
         {in_flight_at_kill} requests in flight at the kills, {next_id} writes, \
         structural changes {changes:?}, final size {} GiB, losses: 0",
        model.size / GIB
    );
}

#[test]
fn kill_soak() {
    let trials = std::env::var("TRIPOD_SOAK_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    soak(trials, 0x5eed);
}

/// The documented soak: `cargo test --release --test torture_kill -- --ignored`.
#[test]
#[ignore = "long soak (about 90 minutes): run by hand, see RELIABILITY.md"]
fn kill_soak_long() {
    soak(1000, 0x10_0005eed);
}
