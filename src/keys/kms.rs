//! A key provider backed by a key management service over HTTP, in the dialect of Huawei
//! Cloud KMS (the one EVS uses): master keys never leave the KMS, which wraps and unwraps
//! data keys (`encrypt-datakey`, `decrypt-datakey`) under them.
//!
//! Requests: `POST {endpoint}/v1.0/{kms project}/kms/<action>` with a JSON body and the
//! `X-Auth-Token` header, the token read from a file at every call (so whatever refreshes
//! it — a sidecar, a cron job — needs no restart here). The actions used:
//!
//! | action | body | answer |
//! |---|---|---|
//! | `create-key` | `{key_alias, key_description}` | `{key_info: {key_id}}` |
//! | `list-keys` | `{limit, marker}` | `{key_details: [{key_id, key_alias, key_state}], next_marker, truncated}` |
//! | `describe-key` | `{key_id}` | `{key_info: {key_id, key_alias, key_state}}` |
//! | `encrypt-datakey` | `{key_id, plain_text, datakey_plain_length, additional_authenticated_data}` | `{key_id, cipher_text}` |
//! | `decrypt-datakey` | `{key_id, cipher_text, datakey_cipher_length, additional_authenticated_data}` | `{data_key, datakey_dgst}` |
//!
//! `plain_text` is the data key in hex followed by the hex SHA-256 of it; the answer's
//! `datakey_dgst` is checked the same way. The additional authenticated data (at most 128
//! bytes there: the hex SHA-256 of what it stands for) binds each wrapped key to its Tripod
//! project and volume, so the KMS refuses to unwrap it for another.
//!
//! Tenant isolation: all Tripod projects share the KMS project, so Tripod keeps its own
//! namespace there. Keys it makes for project `P` are named `tripod/P/<name>` (the default
//! key `tripod/P/evs-default`); a project may use a key only if its alias is in the
//! project's namespace and the key is enabled (`key_state` 2).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tripod_replication::cipher::KEY_LEN;
use zeroize::Zeroizing;

use super::{KeyError, KeyProvider};

/// The KMS's state of an enabled key.
const ENABLED: &str = "2";
/// The name of each project's default key inside its namespace.
const DEFAULT_NAME: &str = "evs-default";

/// Master keys in a KMS.
#[derive(Debug)]
pub struct KmsKeyProvider {
    /// `{endpoint}/v1.0/{project}/kms/`.
    base: String,
    token_file: PathBuf,
    agent: ureq::Agent,
    making: parking_lot::Mutex<()>,
}

fn store(e: impl std::fmt::Display) -> KeyError {
    KeyError::Store(format!("KMS: {e}"))
}

/// The text at `path` in a JSON answer.
fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn alias_prefix(project: &str) -> String {
    format!("tripod/{project}/")
}

impl KmsKeyProvider {
    /// A provider for the KMS at `endpoint` (e.g. `https://kms.example.com`), keeping keys
    /// in its project `kms_project`, authenticating with the token in `token_file`.
    pub fn new(endpoint: &str, kms_project: &str, token_file: PathBuf) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        Self {
            base: format!("{}/v1.0/{kms_project}/kms/", endpoint.trim_end_matches('/')),
            token_file,
            agent,
            making: parking_lot::Mutex::new(()),
        }
    }

    fn call(&self, action: &str, body: Value) -> Result<Value, KeyError> {
        let token = Zeroizing::new(
            std::fs::read_to_string(&self.token_file)
                .map_err(|e| store(format!("reading {}: {e}", self.token_file.display())))?,
        );
        let url = format!("{}{action}", self.base);
        match self
            .agent
            .post(&url)
            .set("X-Auth-Token", token.trim())
            .send_json(body)
        {
            Ok(resp) => resp
                .into_json()
                .map_err(|e| store(format!("{action}: {e}"))),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                Err(store(format!("{action}: HTTP {code}: {text}")))
            }
            Err(e) => Err(store(format!("{action}: {e}"))),
        }
    }

    /// The key's alias and whether it is enabled, if the KMS knows it.
    fn describe(&self, cmk: &str) -> Result<(String, bool), KeyError> {
        let v = self.call("describe-key", json!({ "key_id": cmk }))?;
        let alias = text(&v, &["key_info", "key_alias"]).unwrap_or_default();
        Ok((
            alias.to_owned(),
            text(&v, &["key_info", "key_state"]) == Some(ENABLED),
        ))
    }

    fn find_alias(&self, alias: &str) -> Result<Option<String>, KeyError> {
        let mut marker = String::new();
        // Bounded: a KMS answering `truncated` forever must not hang a request.
        for _ in 0..100 {
            let v = self.call("list-keys", json!({ "limit": "1000", "marker": marker }))?;
            let details = v
                .get("key_details")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(k) = details
                .iter()
                .find(|k| text(k, &["key_alias"]) == Some(alias))
            {
                return Ok(text(k, &["key_id"]).map(str::to_owned));
            }
            match text(&v, &["next_marker"]) {
                Some(m) if text(&v, &["truncated"]) == Some("true") && !m.is_empty() => {
                    marker = m.to_owned()
                }
                _ => return Ok(None),
            }
        }
        Err(store("list-keys did not end"))
    }

    /// What a wrapped key is bound to, as the KMS takes it (64 hex characters).
    fn context(project: &str, context: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(b"tripod-kms-1\0");
        h.update(project.as_bytes());
        h.update(b"\0");
        h.update(context);
        hex::encode(h.finalize())
    }
}

impl KeyProvider for KmsKeyProvider {
    fn describe(&self) -> String {
        format!("KMS {}", self.base)
    }

    fn default_key(&self, project: &str) -> Result<String, KeyError> {
        let _making = self.making.lock();
        let alias = format!("{}{DEFAULT_NAME}", alias_prefix(project));
        if let Some(id) = self.find_alias(&alias)? {
            return Ok(id);
        }
        let v = self.call(
            "create-key",
            json!({
                "key_alias": alias,
                "key_description": format!("Tripod: default key of project {project} (evs/default)"),
            }),
        )?;
        let id = text(&v, &["key_info", "key_id"])
            .ok_or_else(|| store("create-key answered no key_id"))?
            .to_owned();
        tracing::info!(project, key = %id, "created a master key in the KMS");
        Ok(id)
    }

    fn check_key(&self, project: &str, cmk: &str) -> Result<(), KeyError> {
        match self.describe(cmk) {
            Ok((alias, true)) if alias.starts_with(&alias_prefix(project)) => Ok(()),
            // Disabled, another project's, unknown: not found, to this project.
            Ok(_) => Err(KeyError::NotFound(cmk.to_owned())),
            Err(e) => {
                tracing::warn!(key = cmk, "describing a master key: {e}");
                Err(KeyError::NotFound(cmk.to_owned()))
            }
        }
    }

    fn wrap(
        &self,
        project: &str,
        cmk: &str,
        data_key: &Zeroizing<[u8; KEY_LEN]>,
        context: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.check_key(project, cmk)?;
        let plain = Zeroizing::new(format!(
            "{}{}",
            hex::encode(data_key.as_slice()),
            hex::encode(Sha256::digest(data_key.as_slice()))
        ));
        let v = self.call(
            "encrypt-datakey",
            json!({
                "key_id": cmk,
                "plain_text": plain.as_str(),
                "datakey_plain_length": KEY_LEN.to_string(),
                "additional_authenticated_data": Self::context(project, context),
            }),
        )?;
        let cipher = text(&v, &["cipher_text"])
            .ok_or_else(|| store("encrypt-datakey answered no cipher_text"))?;
        Ok(cipher.as_bytes().to_vec())
    }

    fn unwrap(
        &self,
        project: &str,
        cmk: &str,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
        let refused = || KeyError::Unwrap {
            volume: String::new(),
            cmk: cmk.to_owned(),
        };
        self.check_key(project, cmk)?;
        let cipher = std::str::from_utf8(wrapped).map_err(|_| refused())?;
        let v = self.call(
            "decrypt-datakey",
            json!({
                "key_id": cmk,
                "cipher_text": cipher,
                "datakey_cipher_length": KEY_LEN.to_string(),
                "additional_authenticated_data": Self::context(project, context),
            }),
        )?;
        let key = Zeroizing::new(
            hex::decode(text(&v, &["data_key"]).ok_or_else(refused)?).map_err(|_| refused())?,
        );
        let digest =
            hex::decode(text(&v, &["datakey_dgst"]).unwrap_or_default()).map_err(|_| refused())?;
        if digest.as_slice() != Sha256::digest(key.as_slice()).as_slice() {
            return Err(refused());
        }
        let key: [u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| refused())?;
        Ok(Zeroizing::new(key))
    }
}
