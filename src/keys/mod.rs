//! Keys of encrypted volumes. Each encrypted volume has its own random 256-bit data key,
//! stored in the catalog only *wrapped* (encrypted and authenticated) by a master key of the
//! volume's project; master keys live in a [`KeyProvider`] — by default the local key store
//! under the data directory ([`local::LocalKeyStore`]), or a KMS ([`kms::KmsKeyProvider`]). The plaintext data key exists only
//! in memory while the volume is open (inside its replica set's cipher, wiped when the set
//! is dropped); it never reaches the catalog, the logs or the replicas.
//!
//! A wrapped key is bound to its project, master key, volume and key id (the associated
//! data of the wrapping), so a record copied to another volume or project does not unwrap.
//! Clones and volumes made from snapshots share their source's blocks, so they share its
//! data key: it is unwrapped and wrapped again for the new volume under the same master key.

pub mod kms;
pub mod local;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tripod_replication::cipher::{VolumeCipher, KEY_ID_LEN, KEY_LEN};
use zeroize::Zeroizing;

/// The alias of a project's default master key (EVS's name for it).
pub const DEFAULT_KEY_ALIAS: &str = "evs/default";

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The master key does not exist (or belongs to another project, which is the same to
    /// the caller).
    #[error("master key {0} not found")]
    NotFound(String),
    /// A wrapped data key did not authenticate under its master key.
    #[error("the data key of volume {volume} does not unwrap under master key {cmk}: the master key is not the one it was wrapped with, or the record is damaged")]
    Unwrap {
        /// The volume.
        volume: String,
        /// The master key.
        cmk: String,
    },
    /// A name that cannot be a key or project id.
    #[error("invalid {what} {value:?}")]
    Invalid {
        /// What it should have been.
        what: &'static str,
        /// What it was.
        value: String,
    },
    /// The key store failed.
    #[error("key store: {0}")]
    Store(String),
}

/// Where master keys live. Implementations keep them secret: they wrap and unwrap data keys
/// and never hand a master key out.
pub trait KeyProvider: Send + Sync {
    /// What and where it is, for logs.
    fn describe(&self) -> String;
    /// The id of project `project`'s default master key ([`DEFAULT_KEY_ALIAS`]), created on
    /// first use.
    fn default_key(&self, project: &str) -> Result<String, KeyError>;
    /// Checks that master key `cmk` exists and belongs to project `project`.
    fn check_key(&self, project: &str, cmk: &str) -> Result<(), KeyError>;
    /// Encrypts `data_key` under master key `cmk`, bound to `context`.
    fn wrap(
        &self,
        project: &str,
        cmk: &str,
        data_key: &Zeroizing<[u8; KEY_LEN]>,
        context: &[u8],
    ) -> Result<Vec<u8>, KeyError>;
    /// The data key `wrap` wrapped, if `wrapped` authenticates under `cmk` and `context`.
    fn unwrap(
        &self,
        project: &str,
        cmk: &str,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError>;
}

/// An encrypted volume's key as the catalog keeps it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeKeyRecord {
    /// The master key that wraps it (EVS's `__system__cmkid`).
    pub cmk_id: String,
    /// The data key's id (hex; bound into every block, shared by clones).
    pub key_id: String,
    /// The wrapped data key (hex).
    pub wrapped: String,
}

/// What a volume's data key is bound to when wrapped.
fn context(volume: &str, key_id: &str) -> Vec<u8> {
    format!("tripod-dek-1\0{volume}\0{key_id}").into_bytes()
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| KeyError::Store(format!("no randomness: {e}")))?;
    Ok(out)
}

/// A fresh data key for volume `volume` of project `project`, wrapped under master key
/// `cmk`.
pub fn new_volume_key(
    provider: &dyn KeyProvider,
    project: &str,
    cmk: &str,
    volume: &str,
) -> Result<VolumeKeyRecord, KeyError> {
    let data_key = Zeroizing::new(random::<KEY_LEN>()?);
    let key_id = hex::encode(random::<KEY_ID_LEN>()?);
    let wrapped = provider.wrap(project, cmk, &data_key, &context(volume, &key_id))?;
    Ok(VolumeKeyRecord {
        cmk_id: cmk.to_owned(),
        key_id,
        wrapped: hex::encode(wrapped),
    })
}

/// The plaintext data key of `key`, volume `volume`'s.
fn unwrap_key(
    provider: &dyn KeyProvider,
    project: &str,
    volume: &str,
    key: &VolumeKeyRecord,
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let wrapped = hex::decode(&key.wrapped).map_err(|_| KeyError::Unwrap {
        volume: volume.to_owned(),
        cmk: key.cmk_id.clone(),
    })?;
    provider
        .unwrap(
            project,
            &key.cmk_id,
            &wrapped,
            &context(volume, &key.key_id),
        )
        .map_err(|e| match e {
            KeyError::Unwrap { cmk, .. } => KeyError::Unwrap {
                volume: volume.to_owned(),
                cmk,
            },
            e => e,
        })
}

/// The data key of volume `source` (record `key`), wrapped again for volume `volume`: a
/// clone or a volume made from a snapshot shares its source's blocks and so its key.
pub fn share_volume_key(
    provider: &dyn KeyProvider,
    project: &str,
    source: &str,
    key: &VolumeKeyRecord,
    volume: &str,
) -> Result<VolumeKeyRecord, KeyError> {
    let data_key = unwrap_key(provider, project, source, key)?;
    let wrapped = provider.wrap(
        project,
        &key.cmk_id,
        &data_key,
        &context(volume, &key.key_id),
    )?;
    Ok(VolumeKeyRecord {
        cmk_id: key.cmk_id.clone(),
        key_id: key.key_id.clone(),
        wrapped: hex::encode(wrapped),
    })
}

/// The cipher of volume `volume` (record `key`), for opening its replica set.
pub fn cipher_of(
    provider: &dyn KeyProvider,
    project: &str,
    volume: &str,
    key: &VolumeKeyRecord,
) -> Result<Arc<VolumeCipher>, KeyError> {
    let data_key = unwrap_key(provider, project, volume, key)?;
    let key_id: [u8; KEY_ID_LEN] = hex::decode(&key.key_id)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| KeyError::Invalid {
            what: "data key id",
            value: key.key_id.clone(),
        })?;
    Ok(Arc::new(VolumeCipher::new(&data_key, key_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_unwrap_only_for_their_volume_and_clones_share_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = local::LocalKeyStore::new(dir.path().join("keys"));
        let project = "p1";
        let cmk = store.default_key(project).unwrap();
        let a = new_volume_key(&store, project, &cmk, "vol-a").unwrap();
        let c = cipher_of(&store, project, "vol-a", &a).unwrap();
        // Another volume's record, or another project, does not unwrap it.
        assert!(matches!(
            cipher_of(&store, project, "vol-b", &a),
            Err(KeyError::Unwrap { .. })
        ));
        assert!(cipher_of(&store, "p2", "vol-a", &a).is_err());
        // A clone's record opens to the same key (same key check), under the same key id.
        let b = share_volume_key(&store, project, "vol-a", &a, "vol-b").unwrap();
        assert_eq!(
            (b.key_id.as_str(), &b.cmk_id),
            (a.key_id.as_str(), &a.cmk_id)
        );
        assert_ne!(b.wrapped, a.wrapped);
        let cb = cipher_of(&store, project, "vol-b", &b).unwrap();
        assert_eq!(cb.key_check(), c.key_check());
        // Two volumes get different keys.
        let d = new_volume_key(&store, project, &cmk, "vol-d").unwrap();
        let cd = cipher_of(&store, project, "vol-d", &d).unwrap();
        assert_ne!(cd.key_check(), c.key_check());
    }
}
