//! The catalog: every volume, snapshot, transfer, image, quota, project, user, role grant and
//! token hash of the daemon, in one embedded transactional store (`redb`: copy-on-write
//! B-trees, a commit is durable when it returns). Records are JSON values keyed by id, so a
//! field added later reads back from old records through `#[serde(default)]`.
//!
//! All changes go through [`Catalog::write`], which commits only if the closure succeeds:
//! an error leaves the catalog as it was.

mod records;
mod timestamp;

use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

pub use records::*;
pub use timestamp::Timestamp;

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// A kind of record and the table it lives in.
pub trait Record: Serialize + DeserializeOwned {
    /// The record's table.
    const TABLE: Table;
    /// The record's key.
    fn key(&self) -> String;
}

/// Errors of the catalog store.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The store failed (I/O, corruption, another process holds it).
    #[error("catalog store: {0}")]
    Store(String),
    /// A stored record does not decode.
    #[error("catalog record {key:?} in {table}: {source}")]
    Decode {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// What was wrong.
        #[source]
        source: serde_json::Error,
    },
}

fn store<E: std::fmt::Display>(e: E) -> CatalogError {
    CatalogError::Store(e.to_string())
}

/// Page cache of the catalog (redb's default is 1 GiB; the catalog is small).
const CACHE_BYTES: usize = 64 << 20;

/// The catalog database.
pub struct Catalog {
    db: redb::Database,
}

const ALL_TABLES: [Table; 13] = [
    VolumeRecord::TABLE,
    SnapshotRecord::TABLE,
    TransferRecord::TABLE,
    ImageRecord::TABLE,
    QuotaRecord::TABLE,
    ProjectRecord::TABLE,
    UserRecord::TABLE,
    GrantRecord::TABLE,
    TokenRecord::TABLE,
    SettingRecord::TABLE,
    VolumeTypeRecord::TABLE,
    QosSpecRecord::TABLE,
    BackupRecord::TABLE,
];

impl Catalog {
    /// Opens (creating if needed) the catalog at `path`, readable by its owner only (it holds
    /// password and token hashes). Fails if another process has it open.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(store)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(store)?;
        }
        let txn = db.begin_write().map_err(store)?;
        for table in ALL_TABLES {
            txn.open_table(table).map_err(store)?;
        }
        txn.commit().map_err(store)?;
        Ok(Self { db })
    }

    /// Runs `f` on a consistent snapshot of the catalog.
    pub fn read<T, E: From<CatalogError>>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_read().map_err(store)?;
        f(&Reader { txn })
    }

    /// Runs `f` in a write transaction, committed (durably) only if `f` returns `Ok`.
    pub fn write<T, E: From<CatalogError>>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().map_err(store)?;
        let mut writer = Writer { txn };
        let out = f(&mut writer)?;
        writer.txn.commit().map_err(store)?;
        Ok(out)
    }
}

fn decode<R: Record>(key: &str, bytes: &[u8]) -> Result<R, CatalogError> {
    serde_json::from_slice(bytes).map_err(|source| CatalogError::Decode {
        table: R::TABLE.to_string(),
        key: key.to_owned(),
        source,
    })
}

fn get_in<R: Record>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<R>, CatalogError> {
    match table.get(key).map_err(store)? {
        Some(v) => Ok(Some(decode(key, v.value())?)),
        None => Ok(None),
    }
}

fn all_in<R: Record>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<R>, CatalogError> {
    let mut out = Vec::new();
    for entry in table.iter().map_err(store)? {
        let (k, v) = entry.map_err(store)?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

/// Reading records, in a read or a write transaction.
pub trait CatalogRead {
    /// The record with `key`.
    fn get<R: Record>(&self, key: &str) -> Result<Option<R>, CatalogError>;
    /// Every record of the kind.
    fn all<R: Record>(&self) -> Result<Vec<R>, CatalogError>;
}

/// Read access inside [`Catalog::read`].
pub struct Reader {
    txn: redb::ReadTransaction,
}

impl CatalogRead for Reader {
    fn get<R: Record>(&self, key: &str) -> Result<Option<R>, CatalogError> {
        get_in(&self.txn.open_table(R::TABLE).map_err(store)?, key)
    }

    fn all<R: Record>(&self) -> Result<Vec<R>, CatalogError> {
        all_in(&self.txn.open_table(R::TABLE).map_err(store)?)
    }
}

/// Read-write access inside [`Catalog::write`].
pub struct Writer {
    txn: redb::WriteTransaction,
}

impl CatalogRead for Writer {
    fn get<R: Record>(&self, key: &str) -> Result<Option<R>, CatalogError> {
        get_in(&self.txn.open_table(R::TABLE).map_err(store)?, key)
    }

    fn all<R: Record>(&self) -> Result<Vec<R>, CatalogError> {
        all_in(&self.txn.open_table(R::TABLE).map_err(store)?)
    }
}

impl Writer {
    /// Inserts or replaces `record`.
    pub fn put<R: Record>(&mut self, record: &R) -> Result<(), CatalogError> {
        let bytes = serde_json::to_vec(record).map_err(store)?;
        let mut table = self.txn.open_table(R::TABLE).map_err(store)?;
        table
            .insert(record.key().as_str(), bytes.as_slice())
            .map_err(store)?;
        Ok(())
    }

    /// Removes the record with `key`; true if it existed.
    pub fn delete<R: Record>(&mut self, key: &str) -> Result<bool, CatalogError> {
        let mut table = self.txn.open_table(R::TABLE).map_err(store)?;
        let existed = table.remove(key).map_err(store)?.is_some();
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::catalog::CatalogRead as _;

    fn project(id: &str) -> ProjectRecord {
        ProjectRecord {
            id: id.into(),
            name: format!("p-{id}"),
            description: String::new(),
            enabled: true,
        }
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("catalog.redb")).unwrap();
        cat.write(|w| w.put(&project("a"))).unwrap();
        let r: Result<(), CatalogError> = cat.write(|w| {
            w.put(&project("b"))?;
            w.delete::<ProjectRecord>("a")?;
            Err(CatalogError::Store("boom".into()))
        });
        assert!(r.is_err());
        let all: Vec<ProjectRecord> = cat.read(|r| r.all()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, "a");
    }

    #[test]
    fn the_catalog_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        Catalog::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        {
            let cat = Catalog::open(&path).unwrap();
            cat.write(|w| w.put(&project("x"))).unwrap();
        }
        let cat = Catalog::open(&path).unwrap();
        let got: Option<ProjectRecord> = cat.read(|r| r.get("x")).unwrap();
        assert_eq!(got.unwrap().name, "p-x");
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.redb")).unwrap();
        let txn = cat.db.begin_write().unwrap();
        txn.open_table(ProjectRecord::TABLE)
            .unwrap()
            .insert("bad", b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let r: Result<Option<ProjectRecord>, CatalogError> = cat.read(|r| r.get("bad"));
        assert!(matches!(r, Err(CatalogError::Decode { .. })));
    }
}
