//! The local key store: master keys as files under the data directory, the default key
//! provider.
//!
//! Layout: `<root>/<project id>/<master key id>.key` (32 random bytes, mode 0600, in
//! directories of mode 0700), and `<root>/<project id>/default` holding the id of the
//! project's default master key ([`super::DEFAULT_KEY_ALIAS`]), made on first use. Master
//! key ids are UUIDs. A data key is wrapped with AES-256-GCM-SIV under the master key:
//! `nonce [12] | encrypted key [32] | tag [16]`, the associated data naming the project, the
//! master key and the caller's context (volume and data key id).
//!
//! Whoever can read the key files can decrypt every volume: keep the data directory's
//! permissions tight, and keep backups of `keys/` apart from the replicas (losing a master
//! key loses every volume it wraps).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use parking_lot::Mutex;
use tripod_replication::cipher::KEY_LEN;
use zeroize::Zeroizing;

use super::{KeyError, KeyProvider};

const NONCE_LEN: usize = 12;
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + 16;

/// Master keys in files under a directory.
#[derive(Debug)]
pub struct LocalKeyStore {
    root: PathBuf,
    /// Serialises the making of default keys (two volumes created at once get one key).
    making: Mutex<()>,
}

fn store_error(what: &str, path: &Path, e: std::io::Error) -> KeyError {
    KeyError::Store(format!("{what} {}: {e}", path.display()))
}

/// Project ids name directories: only what ids are made of.
fn check_project(project: &str) -> Result<(), KeyError> {
    let ok = !project.is_empty()
        && project.len() <= 64
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid {
            what: "project id",
            value: project.to_owned(),
        })
    }
}

/// A master key id as a canonical UUID (so it can name a file).
fn check_cmk(cmk: &str) -> Result<(), KeyError> {
    match uuid::Uuid::parse_str(cmk) {
        Ok(u) if u.hyphenated().to_string() == cmk => Ok(()),
        _ => Err(KeyError::NotFound(cmk.to_owned())),
    }
}

impl LocalKeyStore {
    /// A store rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            making: Mutex::new(()),
        }
    }

    fn project_dir(&self, project: &str) -> Result<PathBuf, KeyError> {
        check_project(project)?;
        let dir = self.root.join(project);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| store_error("creating", &dir, e))?;
        Ok(dir)
    }

    /// Makes a new master key for project `project`; returns its id.
    pub fn create_key(&self, project: &str) -> Result<String, KeyError> {
        let dir = self.project_dir(project)?;
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let key = Zeroizing::new(super::random::<KEY_LEN>()?);
        let path = dir.join(format!("{id}.key"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| store_error("creating", &path, e))?;
        f.write_all(key.as_slice())
            .and_then(|()| f.sync_all())
            .map_err(|e| store_error("writing", &path, e))?;
        sync_dir(&dir)?;
        tracing::info!(project, key = %id, "created a master key");
        Ok(id)
    }

    /// The ids of project `project`'s master keys.
    pub fn list_keys(&self, project: &str) -> Result<Vec<String>, KeyError> {
        check_project(project)?;
        let dir = self.root.join(project);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(store_error("listing", &dir, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let id = name.strip_suffix(".key")?;
                check_cmk(id).ok().map(|()| id.to_owned())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn load(&self, project: &str, cmk: &str) -> Result<Aes256GcmSiv, KeyError> {
        check_project(project)?;
        check_cmk(cmk)?;
        let path = self.root.join(project).join(format!("{cmk}.key"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::NotFound(cmk.to_owned()))
            }
            Err(e) => return Err(store_error("reading", &path, e)),
        };
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Store(format!(
                "{} holds {} bytes, not a {KEY_LEN}-byte key",
                path.display(),
                bytes.len()
            )));
        }
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "a master key file is readable by others than its owner");
            }
        }
        Aes256GcmSiv::new_from_slice(&bytes).map_err(|e| KeyError::Store(e.to_string()))
    }
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| store_error("syncing", dir, e))
}

/// The associated data of a wrapping.
fn aad(project: &str, cmk: &str, context: &[u8]) -> Vec<u8> {
    let mut a = format!("tripod-wrap-1\0{project}\0{cmk}\0").into_bytes();
    a.extend_from_slice(context);
    a
}

impl KeyProvider for LocalKeyStore {
    fn describe(&self) -> String {
        format!("local key store {}", self.root.display())
    }

    fn default_key(&self, project: &str) -> Result<String, KeyError> {
        let _making = self.making.lock();
        let dir = self.project_dir(project)?;
        let alias = dir.join("default");
        match std::fs::read_to_string(&alias) {
            Ok(id) => {
                let id = id.trim().to_owned();
                check_cmk(&id)
                    .map_err(|_| KeyError::Store(format!("{} is damaged", alias.display())))?;
                return Ok(id);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_error("reading", &alias, e)),
        }
        let id = self.create_key(project)?;
        let tmp = dir.join("default.tmp");
        std::fs::write(&tmp, format!("{id}\n"))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &alias))
            .map_err(|e| store_error("writing", &alias, e))?;
        sync_dir(&dir)?;
        Ok(id)
    }

    fn check_key(&self, project: &str, cmk: &str) -> Result<(), KeyError> {
        self.load(project, cmk).map(|_| ())
    }

    fn wrap(
        &self,
        project: &str,
        cmk: &str,
        data_key: &Zeroizing<[u8; KEY_LEN]>,
        context: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let master = self.load(project, cmk)?;
        let nonce = super::random::<NONCE_LEN>()?;
        let sealed = master
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: data_key.as_slice(),
                    aad: &aad(project, cmk, context),
                },
            )
            .map_err(|e| KeyError::Store(format!("wrapping: {e}")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(
        &self,
        project: &str,
        cmk: &str,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
        let master = self.load(project, cmk)?;
        let refused = || KeyError::Unwrap {
            volume: String::from_utf8_lossy(context).replace('\0', " "),
            cmk: cmk.to_owned(),
        };
        if wrapped.len() != WRAPPED_LEN {
            return Err(refused());
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| refused())?;
        let plain = Zeroizing::new(
            master
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad(project, cmk, context),
                    },
                )
                .map_err(|_| refused())?,
        );
        let key: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| refused())?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_is_made_once_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalKeyStore::new(dir.path().join("keys"));
        let a = store.default_key("proj").unwrap();
        assert_eq!(store.default_key("proj").unwrap(), a);
        assert_ne!(store.default_key("other").unwrap(), a);
        let file = dir.path().join("keys/proj").join(format!("{a}.key"));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let pdir = dir.path().join("keys/proj");
        assert_eq!(
            std::fs::metadata(pdir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(store.list_keys("proj").unwrap(), vec![a.clone()]);
        // Another project's key is not found; neither are names that are not key ids.
        assert!(matches!(
            store.check_key("other", &a),
            Err(KeyError::NotFound(_))
        ));
        assert!(store.check_key("proj", "../other/x").is_err());
        assert!(store.default_key("../escape").is_err());
    }

    #[test]
    fn a_wrapped_key_unwraps_only_under_its_master_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalKeyStore::new(dir.path());
        let k1 = store.create_key("p").unwrap();
        let k2 = store.create_key("p").unwrap();
        let dek = Zeroizing::new([7u8; KEY_LEN]);
        let w = store.wrap("p", &k1, &dek, b"vol-1").unwrap();
        assert_eq!(w.len(), WRAPPED_LEN);
        assert_eq!(
            *store.unwrap("p", &k1, &w, b"vol-1").unwrap(),
            [7u8; KEY_LEN]
        );
        assert!(store.unwrap("p", &k2, &w, b"vol-1").is_err());
        assert!(store.unwrap("p", &k1, &w, b"vol-2").is_err());
        assert!(store.unwrap("p", &k1, &w[1..], b"vol-1").is_err());
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert!(store.unwrap("p", &k1, &bad, b"vol-1").is_err());
        // A missing key file is a clear error.
        std::fs::remove_file(dir.path().join("p").join(format!("{k1}.key"))).unwrap();
        assert!(matches!(
            store.unwrap("p", &k1, &w, b"vol-1"),
            Err(KeyError::NotFound(_))
        ));
    }
}
