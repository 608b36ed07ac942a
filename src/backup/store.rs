//! A backup target: a local directory, an S3 bucket (or anything else `object_store`
//! speaks) or memory, with the objects of [`super::format`] in it. Calls block (they run
//! on the backend's blocking threads); the object store's async calls run on the daemon's
//! runtime, or on a small runtime of the target's own where there is none.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::RwLock;

use super::format::{
    decode_block, encode_hashed_block, BlockHash, FormatError, Manifest, VolumeIndex,
};

/// Errors of a backup target.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The target's address cannot be used.
    #[error("backup target {0}")]
    Target(String),
    /// The object store failed.
    #[error("backup target: {0}")]
    Io(#[from] object_store::Error),
    /// An object is missing.
    #[error("backup target: {0} is missing")]
    Missing(String),
    /// An object is damaged.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// No runtime could be made for the object store.
    #[error("backup target runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, StoreError>;

/// How the target's async calls are run.
enum Driver {
    /// On the daemon's runtime (from its blocking threads).
    Handle(tokio::runtime::Handle),
    /// On a runtime of our own (no runtime around).
    Own(tokio::runtime::Runtime),
}

/// A backup target.
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Where it is, for messages and export records.
    url: String,
    driver: Driver,
    /// Held shared while a backup writes, exclusively while garbage is collected, so a
    /// collection never deletes a block a backup being written has just found present.
    gc: RwLock<()>,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore")
            .field("url", &self.url)
            .finish()
    }
}

impl BackupStore {
    /// Opens the target at `url`: `file:///dir` or a plain path (created if missing),
    /// `s3://bucket[/prefix]` (credentials, region and endpoint from the usual `AWS_*`
    /// variables; an `http://` endpoint is allowed), or `memory://` (tests).
    pub fn open(url: &str) -> Result<Self> {
        let (store, prefix): (Arc<dyn ObjectStore>, String) = if url == "memory://" {
            (
                Arc::new(object_store::memory::InMemory::new()),
                String::new(),
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Target(format!("{url}: no bucket named")));
            }
            let mut b =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket.to_owned());
            if let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
            {
                b = b
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            let s3 = b
                .build()
                .map_err(|e| StoreError::Target(format!("{url}: {e}")))?;
            (Arc::new(s3), prefix.trim_matches('/').to_owned())
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() || url.contains("://") && !url.starts_with("file://") {
                return Err(StoreError::Target(format!(
                    "{url}: use a directory, file:///dir, s3://bucket/prefix or memory://"
                )));
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Target(format!("{url}: creating {dir}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| StoreError::Target(format!("{url}: {e}")))?;
            (Arc::new(fs), String::new())
        };
        let driver = match tokio::runtime::Handle::try_current() {
            Ok(h) => Driver::Handle(h),
            Err(_) => Driver::Own(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(Self {
            store,
            prefix: Path::from(prefix),
            url: url.to_owned(),
            driver,
            gc: RwLock::new(()),
        })
    }

    /// Where the target is.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        match &self.driver {
            Driver::Handle(h) => h.block_on(f),
            Driver::Own(rt) => rt.block_on(f),
        }
    }

    fn path(&self, rel: &str) -> Path {
        rel.split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn block_path(&self, hash: &BlockHash) -> Path {
        let name = hash.to_string();
        let fan = name.get(..2).unwrap_or("00");
        self.path(&format!("blocks/{fan}/{name}"))
    }

    fn get(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        self.run(async {
            match self.store.get(path).await {
                Ok(r) => Ok(Some(r.bytes().await?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        self.run(self.store.put(path, PutPayload::from(bytes)))?;
        Ok(())
    }

    fn delete(&self, path: &Path) -> Result<()> {
        match self.run(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps garbage collection away until dropped (hold it while writing a backup).
    pub fn writing(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.gc.read()
    }

    /// Stores block `data`, whose hash is `hash` (`BlockHash::of(data)`), unless an object
    /// of its content is there; returns the bytes uploaded (0 when it was there).
    pub fn put_block(&self, hash: &BlockHash, data: &[u8]) -> Result<u64> {
        debug_assert_eq!(*hash, BlockHash::of(data));
        let path = self.block_path(hash);
        let present = match self.run(self.store.head(&path)) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if present {
            return Ok(0);
        }
        let bytes = encode_hashed_block(hash, data);
        let n = bytes.len() as u64;
        self.put(&path, bytes)?;
        Ok(n)
    }

    /// The content of block `hash`, checked against its hash.
    pub fn get_block(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        let path = self.block_path(hash);
        let bytes = self
            .get(&path)?
            .ok_or_else(|| StoreError::Missing(format!("block object {path}")))?;
        Ok(decode_block(hash, &bytes)?)
    }

    /// Stores backup `m`'s manifest (atomically: it is there whole or not at all).
    pub fn put_manifest(&self, m: &Manifest) -> Result<()> {
        self.put(
            &self.path(&format!("backups/{}.json", m.backup_id)),
            m.encode(),
        )
    }

    /// Backup `id`'s manifest, if the target has it.
    pub fn manifest(&self, id: &str) -> Result<Option<Manifest>> {
        match self.get(&self.path(&format!("backups/{id}.json")))? {
            Some(bytes) => Ok(Some(Manifest::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Removes backup `id`'s manifest (its blocks stay until [`Self::collect_garbage`]).
    pub fn delete_manifest(&self, id: &str) -> Result<()> {
        self.delete(&self.path(&format!("backups/{id}.json")))
    }

    /// Every manifest in the target.
    pub fn manifests(&self) -> Result<Vec<Manifest>> {
        let prefix = self.path("backups");
        let metas: Vec<_> = self.run(self.store.list(Some(&prefix)).try_collect::<Vec<_>>())?;
        let mut out = Vec::new();
        for m in metas {
            if m.location.as_ref().ends_with(".json") {
                let bytes = self
                    .get(&m.location)?
                    .ok_or_else(|| StoreError::Missing(m.location.to_string()))?;
                out.push(Manifest::decode(&bytes)?);
            }
        }
        Ok(out)
    }

    /// Volume `id`'s index (empty if it has none).
    pub fn index(&self, volume_id: &str) -> Result<VolumeIndex> {
        match self.get(&self.path(&format!("volumes/{volume_id}.json")))? {
            Some(bytes) => Ok(VolumeIndex::decode(&bytes)?),
            None => Ok(VolumeIndex {
                volume_id: volume_id.to_owned(),
                backups: Vec::new(),
            }),
        }
    }

    /// Stores a volume's index.
    pub fn put_index(&self, index: &VolumeIndex) -> Result<()> {
        self.put(
            &self.path(&format!("volumes/{}.json", index.volume_id)),
            index.encode(),
        )
    }

    /// Deletes every block object no manifest names, except those written since the
    /// collection started (a backup of another process may be about to name them). Returns
    /// (objects deleted, bytes freed).
    pub fn collect_garbage(&self) -> Result<(u64, u64)> {
        let _exclusive = self.gc.write();
        let started = unix_millis();
        let referenced: HashSet<BlockHash> = self
            .manifests()?
            .iter()
            .flat_map(|m| m.blocks.iter().map(|b| b.hash))
            .collect();
        let prefix = self.path("blocks");
        let metas: Vec<_> = self.run(self.store.list(Some(&prefix)).try_collect::<Vec<_>>())?;
        let (mut n, mut bytes) = (0, 0);
        for m in metas {
            let Some(hash) = m.location.filename().and_then(BlockHash::parse) else {
                continue;
            };
            if referenced.contains(&hash) || m.last_modified.timestamp_millis() >= started {
                continue;
            }
            self.delete(&m.location)?;
            n += 1;
            bytes += m.size;
        }
        Ok((n, bytes))
    }
}

/// Milliseconds since the Unix epoch.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
