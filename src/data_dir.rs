//! Volumes on a data directory: each volume is a replica set whose three replicas live in
//! `<replica dir i>/<volume id>/` (by default `<data-dir>/replicas/{0,1,2}`) or on
//! `tripod replica` nodes (`tcp://HOST:PORT`, the copy named by the volume id). This module
//! creates them, finds them, opens them once and says which are offered and writable; the
//! catalog (`crate::backend`) decides that, and the NBD export (`crate::nbd::exports`) serves
//! them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tripod_engine::{FileStorage, Geometry, SnapshotId, VolumeOptions};
use tripod_replication::cipher::VolumeCipher;
use tripod_replication::remote::RemoteNode;
use tripod_replication::{
    Executor, LocalReplica, Replica, ReplicaSet, SetConfig, Supervisor, DEFAULT_POOL_THREADS,
};
use uuid::Uuid;

use crate::config::ReplicaLocation;
use crate::io_metrics::IoMetrics;
use crate::placement::{Placement, Placements};
use crate::qos::{Limits, Throttle};

/// Errors of the volume directory.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The id is not a canonical UUID (and so cannot name a directory).
    #[error("invalid volume id {0:?}")]
    BadId(String),
    /// No such volume.
    #[error("volume {0} not found")]
    NotFound(String),
    /// File-system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The replica set refused.
    #[error(transparent)]
    Replication(#[from] tripod_replication::ReplicationError),
    /// A request that cannot be carried out as asked (says why).
    #[error("{0}")]
    Invalid(String),
    /// A replica node refused or could not be reached.
    #[error("replica node {node}: {source}")]
    Node {
        /// The node's address.
        node: String,
        /// What went wrong.
        #[source]
        source: tripod_replication::ReplicaFault,
    },
}

/// Where one replica of every volume lives.
#[derive(Debug, Clone)]
pub enum ReplicaRoot {
    /// A local directory holding `<volume id>/` copies.
    Dir(PathBuf),
    /// A replica node holding copies named by volume id.
    Node(RemoteNode),
}

/// How long node-level requests (list, destroy) may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes the client of the replica node at an address (with the cluster secret).
#[derive(Clone)]
pub struct NodeMaker(pub Arc<dyn Fn(&str) -> RemoteNode + Send + Sync>);

impl std::fmt::Debug for NodeMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeMaker(..)")
    }
}

/// The replica roots of a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    replica_roots: [ReplicaRoot; 3],
    /// Volumes whose replicas were moved off the default roots.
    placements: Option<Placements>,
    /// Reaches replica nodes named by a placement (`None`: no cluster secret configured).
    nodes: Option<NodeMaker>,
    options: VolumeOptions,
    config: SetConfig,
    /// The threads of each disk (file system) holding replica roots, by device number,
    /// shared by every volume and every root on it (started on first use): threads follow
    /// disks, and three roots on one disk make one queue, not three.
    executors: Arc<Mutex<HashMap<u64, Arc<Executor>>>>,
}

/// Parses a volume id, accepting only the canonical lowercase hyphenated UUID form.
pub fn parse_id(id: &str) -> Result<Uuid, VolumeError> {
    match Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(u),
        _ => Err(VolumeError::BadId(id.to_owned())),
    }
}

impl DataDir {
    /// Replicas under `<data_dir>/replicas/{0,1,2}` unless `replicas` names three directories.
    pub fn new(data_dir: &Path, replicas: Option<[PathBuf; 3]>) -> Self {
        let dirs = replicas
            .unwrap_or_else(|| [0, 1, 2].map(|i| data_dir.join("replicas").join(i.to_string())));
        Self::with_roots(dirs.map(ReplicaRoot::Dir)).with_placements(data_dir.join("placements"))
    }

    /// Keeps per-volume replica placements (after `replica replace`) in `dir`.
    pub fn with_placements(mut self, dir: PathBuf) -> Self {
        self.placements = Some(Placements::new(dir));
        self
    }

    /// Reaches replica nodes named in placements with `nodes`.
    pub fn with_nodes(mut self, nodes: NodeMaker) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// Where each replica of volume `id` lives: the defaults, with its placement applied.
    pub fn roots_of(&self, id: &str) -> Result<[ReplicaRoot; 3], VolumeError> {
        let mut roots = self.replica_roots.clone();
        let Some(placements) = &self.placements else {
            return Ok(roots);
        };
        let placement = placements.load(id).map_err(|source| VolumeError::Io {
            context: format!("reading the placement of volume {id}"),
            source,
        })?;
        for (root, moved) in roots.iter_mut().zip(&placement.replicas) {
            if let Some(location) = moved {
                *root = self.root_at(location)?;
            }
        }
        Ok(roots)
    }

    /// The replica root `location` names (a directory or `tcp://HOST:PORT`).
    fn root_at(&self, location: &str) -> Result<ReplicaRoot, VolumeError> {
        match ReplicaLocation::parse(Path::new(location)).map_err(VolumeError::Invalid)? {
            ReplicaLocation::Dir(dir) if dir.is_absolute() => Ok(ReplicaRoot::Dir(dir)),
            ReplicaLocation::Dir(dir) => Err(VolumeError::Invalid(format!(
                "a replica directory must be an absolute path, not {}",
                dir.display()
            ))),
            ReplicaLocation::Node(addr) => match &self.nodes {
                Some(make) => Ok(ReplicaRoot::Node((make.0)(&addr))),
                None => Err(VolumeError::Invalid(format!(
                    "replica node {addr}: this daemon has no cluster secret to reach nodes"
                ))),
            },
        }
    }

    /// Prepares moving replica `slot` of volume `id` to the root `location` (an empty
    /// directory root or a node without a copy of it): records the new placement durably and
    /// returns the new, empty replica (for [`ReplicaSet::replace`]), the location it leaves
    /// and the placement before, to put back with [`DataDir::restore_placement`] if the set
    /// refuses.
    pub fn prepare_replacement(
        &self,
        id: &str,
        slot: usize,
        location: &str,
    ) -> Result<(Arc<dyn Replica>, String, Placement), VolumeError> {
        // One spelling per root, so `/mnt/d/` is found to be `/mnt/d` already in use.
        let location = location.trim_end_matches('/');
        let uuid = parse_id(id)?;
        let placements = self.placements.as_ref().ok_or_else(|| {
            VolumeError::Invalid("this data directory keeps no placements".into())
        })?;
        let current = self.roots_of(id)?;
        let old = current
            .get(slot)
            .ok_or_else(|| VolumeError::Invalid(format!("no replica {slot}: slots are 0, 1, 2")))?;
        let new = self.root_at(location)?;
        let describe = |r: &ReplicaRoot| match r {
            ReplicaRoot::Dir(d) => d.display().to_string(),
            ReplicaRoot::Node(n) => format!("tcp://{}", n.addr()),
        };
        if current.iter().any(|r| describe(r) == describe(&new)) {
            return Err(VolumeError::Invalid(format!(
                "{} already holds a replica of volume {id}",
                describe(&new)
            )));
        }
        let replica: Arc<dyn Replica> = match &new {
            ReplicaRoot::Dir(root) => {
                let dir = root.join(id);
                let occupied = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
                if occupied {
                    return Err(VolumeError::Invalid(format!(
                        "{} is not empty: a new replica starts from an empty directory",
                        dir.display()
                    )));
                }
                let executor = self.executor(root)?;
                let storage = FileStorage::new(&dir).map_err(|source| VolumeError::Io {
                    context: format!("creating {}", dir.display()),
                    source,
                })?;
                Arc::new(LocalReplica::with_executor(
                    dir.display().to_string(),
                    Arc::new(storage),
                    self.options,
                    executor,
                ))
            }
            ReplicaRoot::Node(node) => {
                let held = node
                    .list(NODE_TIMEOUT)
                    .map_err(|source| VolumeError::Node {
                        node: node.addr().to_owned(),
                        source,
                    })?;
                if held.iter().any(|n| n == id) {
                    return Err(VolumeError::Invalid(format!(
                        "node {} already holds a copy named {id}",
                        node.addr()
                    )));
                }
                Arc::new(node.replica(&uuid.hyphenated().to_string()))
            }
        };
        let before = placements.load(id).map_err(|source| VolumeError::Io {
            context: format!("reading the placement of volume {id}"),
            source,
        })?;
        let mut after = before.clone();
        if let Some(entry) = after.replicas.get_mut(slot) {
            *entry = Some(location.to_owned());
        }
        placements
            .store(id, &after)
            .map_err(|source| VolumeError::Io {
                context: format!("recording the placement of volume {id}"),
                source,
            })?;
        Ok((replica, describe(old), before))
    }

    /// Puts back the placement of volume `id` that [`DataDir::prepare_replacement`] replaced.
    pub fn restore_placement(&self, id: &str, before: &Placement) -> Result<(), VolumeError> {
        match &self.placements {
            Some(p) => p.store(id, before).map_err(|source| VolumeError::Io {
                context: format!("restoring the placement of volume {id}"),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Replicas at `roots` (directories or nodes, in any mix).
    pub fn with_roots(roots: [ReplicaRoot; 3]) -> Self {
        Self {
            replica_roots: roots,
            placements: None,
            nodes: None,
            options: VolumeOptions::write_back(),
            config: SetConfig::default(),
            executors: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same directories, opening each replica's store with `options` (default:
    /// write-back, durable at flush).
    pub fn with_options(mut self, options: VolumeOptions) -> Self {
        self.options = options;
        self
    }

    /// The same directories, opening each set with `config`.
    pub fn with_set_config(mut self, config: SetConfig) -> Self {
        self.config = config;
        self
    }

    /// The executor of the disk holding directory `root`.
    fn executor(&self, root: &Path) -> Result<Arc<Executor>, VolumeError> {
        let io = |source| VolumeError::Io {
            context: format!("opening {}", root.display()),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let device = std::fs::metadata(root).map_err(io)?.dev();
        let mut executors = self.executors.lock();
        if let Some(e) = executors.get(&device) {
            return Ok(e.clone());
        }
        let name = format!("disk{}", executors.len());
        let e = Executor::new(&name, DEFAULT_POOL_THREADS).map_err(|source| VolumeError::Io {
            context: "starting the replica threads".into(),
            source,
        })?;
        executors.insert(device, e.clone());
        Ok(e)
    }

    fn replicas_of(&self, id: &Uuid) -> Result<[Arc<dyn Replica>; 3], VolumeError> {
        let mut out: Vec<Arc<dyn Replica>> = Vec::with_capacity(3);
        for root in &self.roots_of(&id.hyphenated().to_string())? {
            let name = id.hyphenated().to_string();
            match root {
                ReplicaRoot::Dir(root) => {
                    let dir = root.join(&name);
                    let storage = FileStorage::new(&dir).map_err(|source| VolumeError::Io {
                        context: format!("opening {}", dir.display()),
                        source,
                    })?;
                    out.push(Arc::new(LocalReplica::with_executor(
                        dir.display().to_string(),
                        Arc::new(storage),
                        self.options,
                        self.executor(root)?,
                    )));
                }
                ReplicaRoot::Node(node) => out.push(Arc::new(node.replica(&name))),
            }
        }
        let [a, b, c]: [Arc<dyn Replica>; 3] = out
            .try_into()
            .map_err(|_| VolumeError::BadId(id.to_string()))?;
        Ok([a, b, c])
    }

    /// Creates a volume of `size` bytes; returns its id.
    pub fn create(&self, size: u64) -> Result<(Uuid, ReplicaSet), VolumeError> {
        let id = Uuid::new_v4();
        let set = self.create_with_id(&id, size)?;
        Ok((id, set))
    }

    /// Creates volume `id` of `size` bytes, first removing whatever a previous, unfinished
    /// creation of the same id left behind.
    pub fn create_with_id(&self, id: &Uuid, size: u64) -> Result<ReplicaSet, VolumeError> {
        self.create_with_key(id, size, None)
    }

    /// [`DataDir::create_with_id`], encrypted with `cipher` when one is given (the replicas
    /// then hold only ciphertext).
    pub fn create_with_key(
        &self,
        id: &Uuid,
        size: u64,
        cipher: Option<Arc<VolumeCipher>>,
    ) -> Result<ReplicaSet, VolumeError> {
        self.remove(id)?;
        let replicas = self.replicas_of(id)?;
        Ok(match cipher {
            Some(c) => {
                ReplicaSet::create_encrypted(replicas, size, Geometry::default(), self.config, c)?
            }
            None => ReplicaSet::create(replicas, size, Geometry::default(), self.config)?,
        })
    }

    /// Creates volume `id` of `size` bytes as snapshot `snapshot` of the open volume
    /// `source`, in O(metadata) by linking the snapshot's files into the new copies
    /// (`ReplicaSet::clone_linked`). `None` when that is not possible here (a replica out of
    /// service, copies on nodes): nothing is left behind and the caller copies instead.
    pub fn clone_linked(
        &self,
        source: &ReplicaSet,
        snapshot: &SnapshotId,
        id: &Uuid,
        size: u64,
    ) -> Result<Option<ReplicaSet>, VolumeError> {
        self.remove(id)?;
        let targets = self.replicas_of(id)?;
        match source.clone_linked(snapshot, targets, size, self.config) {
            Ok((set, report)) => {
                tracing::info!(
                    volume = %id,
                    linked = report.linked,
                    copied = report.copied,
                    "created as a linked clone"
                );
                Ok(Some(set))
            }
            Err(tripod_replication::ReplicationError::NotLinkable(why)) => {
                tracing::info!(volume = %id, "no linked clone ({why}); copying");
                self.remove(id)?;
                Ok(None)
            }
            Err(e) => {
                let _ = self.remove(id);
                Err(e.into())
            }
        }
    }

    /// Removes every replica of volume `id` (absent ones are fine; an unreachable node is
    /// an error, so nothing is left behind unnoticed).
    pub fn remove(&self, id: &Uuid) -> Result<(), VolumeError> {
        for root in &self.roots_of(&id.hyphenated().to_string())? {
            let dir = match root {
                ReplicaRoot::Dir(root) => root.join(id.hyphenated().to_string()),
                ReplicaRoot::Node(node) => {
                    node.destroy(&id.hyphenated().to_string(), NODE_TIMEOUT)
                        .map_err(|source| VolumeError::Node {
                            node: node.addr().to_owned(),
                            source,
                        })?;
                    continue;
                }
            };
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(VolumeError::Io {
                        context: format!("removing {}", dir.display()),
                        source,
                    })
                }
            }
        }
        self.restore_placement(&id.hyphenated().to_string(), &Placement::default())
    }

    /// Opens an existing volume (reconciling its replicas after a crash).
    pub fn open(&self, id: &str) -> Result<ReplicaSet, VolumeError> {
        self.open_with_key(id, None)
    }

    /// [`DataDir::open`] with the volume's cipher if it is encrypted (opening an encrypted
    /// volume without it, or a plain one with one, fails before anything is changed).
    pub fn open_with_key(
        &self,
        id: &str,
        cipher: Option<Arc<VolumeCipher>>,
    ) -> Result<ReplicaSet, VolumeError> {
        let uuid = parse_id(id)?;
        let held = |root: &ReplicaRoot| match root {
            ReplicaRoot::Dir(r) => r.join(id).join("set-state").exists(),
            ReplicaRoot::Node(node) => node
                .list(NODE_TIMEOUT)
                .is_ok_and(|names| names.iter().any(|n| n == id)),
        };
        if !self.roots_of(id)?.iter().any(held) {
            return Err(VolumeError::NotFound(id.to_owned()));
        }
        let replicas = self.replicas_of(&uuid)?;
        Ok(match cipher {
            Some(c) => ReplicaSet::open_encrypted(replicas, self.config, c)?,
            None => ReplicaSet::open(replicas, self.config)?,
        })
    }

    /// Opens volume `id` for maintenance (resync, rebuild, scrub), encrypted or not, without
    /// its key: an encrypted volume opened so takes no client I/O.
    pub fn open_for_maintenance(&self, id: &str) -> Result<ReplicaSet, VolumeError> {
        let uuid = parse_id(id)?;
        Ok(ReplicaSet::open_for_maintenance(
            self.replicas_of(&uuid)?,
            self.config,
        )?)
    }

    /// Ids of every volume found in any replica directory or on any reachable node.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for root in &self.replica_roots {
            match root {
                ReplicaRoot::Dir(r) => ids.extend(
                    std::fs::read_dir(r)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.ok()?.file_name().into_string().ok()),
                ),
                ReplicaRoot::Node(node) => match node.list(NODE_TIMEOUT) {
                    Ok(names) => ids.extend(names),
                    Err(e) => tracing::warn!(node = node.addr(), "cannot list volumes: {e}"),
                },
            }
        }
        if let Some(p) = &self.placements {
            ids.extend(p.ids());
        }
        ids.retain(|n| parse_id(n).is_ok());
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Whether and how a volume is offered over NBD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Offered; read-only or not.
    Exported {
        /// Refuse writes.
        read_only: bool,
    },
    /// Not offered (being created, deleted or rolled back, or in error).
    Hidden,
}

/// Finds the cipher of an encrypted volume by its id (`None`: a plain volume); the catalog
/// provides it ([`VolumeRegistry::set_key_source`]).
pub type KeySource =
    Arc<dyn Fn(&str) -> Result<Option<Arc<VolumeCipher>>, VolumeError> + Send + Sync>;

/// The volumes of a data directory, opened on first use and kept open.
/// Volumes the catalog manages are offered as it says ([`VolumeRegistry::expose`]); volumes
/// it does not know (made offline by `tripod volume create`) are offered read-write.
pub struct VolumeRegistry {
    dir: DataDir,
    open: Mutex<HashMap<String, Arc<ReplicaSet>>>,
    /// One supervisor thread for every open volume (started on first use).
    supervisor: Mutex<Option<Supervisor>>,
    exposure: Mutex<HashMap<String, Exposure>>,
    /// Per volume, whether connected clients may write (shared with every connection).
    gates: Mutex<HashMap<String, Arc<AtomicBool>>>,
    supervise_every: Duration,
    /// Per-volume I/O figures (series of open volumes only).
    io: Arc<IoMetrics>,
    /// Per volume, the QoS throttle every connection to it shares.
    throttles: Mutex<HashMap<String, Arc<Throttle>>>,
    /// Volumes whose type asks for every write to be synced (`durability=sync`).
    sync_writes: Mutex<HashMap<String, bool>>,
    /// Where an encrypted volume's key comes from when it is opened.
    keys: Mutex<Option<KeySource>>,
}

impl VolumeRegistry {
    /// A registry over `dir`; each opened volume gets a supervisor checking it every
    /// `supervise_every` (health, resync, rebuild).
    pub fn new(dir: DataDir, supervise_every: Duration) -> Self {
        Self {
            dir,
            open: Mutex::new(HashMap::new()),
            supervisor: Mutex::new(None),
            exposure: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            supervise_every,
            io: Arc::new(IoMetrics::default()),
            throttles: Mutex::new(HashMap::new()),
            sync_writes: Mutex::new(HashMap::new()),
            keys: Mutex::new(None),
        }
    }

    /// Sets where encrypted volumes' keys come from: asked each time a volume is opened, so
    /// a plaintext data key lives only in the open volume's cipher.
    pub fn set_key_source(&self, source: KeySource) {
        *self.keys.lock() = Some(source);
    }

    /// The open volume `id`, opening it if needed.
    pub fn get(&self, id: &str) -> Result<Arc<ReplicaSet>, VolumeError> {
        let mut open = self.open.lock();
        if let Some(set) = open.get(id) {
            return Ok(set.clone());
        }
        let source = self.keys.lock().clone();
        let cipher = match source {
            Some(find) => find(id)?,
            None => None,
        };
        let set = Arc::new(self.dir.open_with_key(id, cipher)?);
        if let Some(on) = self.sync_writes.lock().get(id) {
            set.set_sync_writes(*on);
        }
        self.supervise(&set)?;
        open.insert(id.to_owned(), set.clone());
        Ok(set)
    }

    /// Hands `set` to the registry's supervisor, starting it if needed.
    fn supervise(&self, set: &Arc<ReplicaSet>) -> Result<(), VolumeError> {
        let mut slot = self.supervisor.lock();
        if slot.is_none() {
            let started =
                Supervisor::new(self.supervise_every).map_err(|source| VolumeError::Io {
                    context: "starting the replica supervisor".into(),
                    source,
                })?;
            *slot = Some(started);
        }
        if let Some(s) = slot.as_ref() {
            s.watch(set);
        }
        Ok(())
    }

    /// Marks volume `id` read-only (or not) for new NBD connections.
    pub fn set_read_only(&self, id: &str, read_only: bool) {
        self.expose(id, Exposure::Exported { read_only });
    }

    /// Sets how volume `id` is offered to new NBD connections; connections already open
    /// lose (or regain) the right to write with it.
    pub fn expose(&self, id: &str, exposure: Exposure) {
        let writable = exposure == Exposure::Exported { read_only: false };
        self.write_gate(id).store(writable, Ordering::Release);
        self.exposure.lock().insert(id.to_owned(), exposure);
    }

    /// The write gate of volume `id`, shared by every connection to it: closed while the
    /// volume is read-only or hidden.
    pub fn write_gate(&self, id: &str) -> Arc<AtomicBool> {
        self.gates
            .lock()
            .entry(id.to_owned())
            .or_insert_with(|| Arc::new(AtomicBool::new(true)))
            .clone()
    }

    /// The QoS throttle of volume `id`, shared by every connection to it (unlimited until
    /// [`VolumeRegistry::set_limits`] says otherwise).
    pub fn throttle(&self, id: &str) -> Arc<Throttle> {
        self.throttles
            .lock()
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// The QoS limits in force for volume `id` (`None`: never set).
    pub fn limits(&self, id: &str) -> Option<Limits> {
        self.throttles.lock().get(id).map(|t| t.limits())
    }

    /// Makes volume `id` sync every write before acknowledging it (`durability=sync`) or not,
    /// now if it is open and whenever it is opened.
    pub fn set_sync_writes(&self, id: &str, on: bool) {
        self.sync_writes.lock().insert(id.to_owned(), on);
        if let Some(set) = self.open.lock().get(id) {
            set.set_sync_writes(on);
        }
    }

    /// Whether volume `id` syncs every write (its type's `durability=sync`, or the daemon's).
    pub fn syncs_writes(&self, id: &str) -> bool {
        self.dir.config.durability == tripod_replication::Durability::Sync
            || self.sync_writes.lock().get(id).copied().unwrap_or(false)
    }

    /// Applies `limits` to volume `id`'s I/O, also to requests already waiting.
    pub fn set_limits(&self, id: &str, limits: &Limits) {
        self.throttle(id).set_limits(limits);
    }

    /// Closes volume `id` if open (stopping its supervisor) and hides it; connections that
    /// still hold it keep their handle until they end.
    pub fn close(&self, id: &str) {
        self.expose(id, Exposure::Hidden);
        let closed = self.open.lock().remove(id);
        if let (Some(set), Some(s)) = (&closed, self.supervisor.lock().as_ref()) {
            s.unwatch(set);
        }
        drop(closed);
        self.io.forget(id);
        self.throttles.lock().remove(id);
        self.sync_writes.lock().remove(id);
    }

    /// The per-volume I/O figures.
    pub fn io_metrics(&self) -> &Arc<IoMetrics> {
        &self.io
    }

    /// The volumes open now.
    pub fn open_volumes(&self) -> Vec<(String, Arc<ReplicaSet>)> {
        self.open
            .lock()
            .iter()
            .map(|(id, set)| (id.clone(), set.clone()))
            .collect()
    }

    /// How volume `id` is offered (`None`: the catalog never said; offered read-write).
    pub fn exposure(&self, id: &str) -> Option<Exposure> {
        self.exposure.lock().get(id).copied()
    }

    /// The volumes of the data directory that are not hidden.
    pub fn visible(&self) -> Vec<String> {
        let exposure = self.exposure.lock();
        self.dir
            .list()
            .into_iter()
            .filter(|n| exposure.get(n) != Some(&Exposure::Hidden))
            .collect()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }
}
