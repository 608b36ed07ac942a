//! The daemon's configuration: one [`Settings`] struct read from command-line flags and
//! `TRIPOD_*` environment variables (clap, flags first) and from a TOML file (`--config`,
//! serde); the flags and variables override the file, the file overrides the built-in
//! defaults. Each field's doc comment is its `--help` text and its file key's meaning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tripod_replication::remote::ClusterSecret;

/// How API callers authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Keystone-style tokens from `/identity/v3` (the default).
    Keystone,
    /// Cinder's development mode: `X-Auth-Token: <user>:<project>`, no checks.
    Noauth,
}

/// When a write acknowledged to a client is durable against power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Block-device semantics (the default): at the client's next FLUSH or FUA write.
    Flush,
    /// Every write is synced on every replica before it is acknowledged.
    Sync,
}

/// The settings of `tripod serve`, each optional: what is unset falls back to the config
/// file, then to the default in brackets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Data directory (catalog, images, default replica roots) [default: ./tripod-data].
    #[arg(long, env = "TRIPOD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin API address [default: 127.0.0.1:8776].
    #[arg(long, env = "TRIPOD_API_LISTEN")]
    pub api_listen: Option<String>,
    /// NBD address [default: 127.0.0.1:10809].
    #[arg(long, env = "TRIPOD_NBD_LISTEN")]
    pub nbd_listen: Option<String>,
    /// A replica: a directory, or `tcp://HOST:PORT` of a `tripod replica` node; give it three
    /// times (the variable: a comma list) (default: `<data-dir>/replicas/{0,1,2}`).
    #[arg(long = "replica", env = "TRIPOD_REPLICAS", value_delimiter = ',')]
    pub replicas: Option<Vec<PathBuf>>,
    /// File holding the cluster secret replica nodes authenticate with (or the secret itself
    /// in TRIPOD_CLUSTER_SECRET).
    #[arg(long, env = "TRIPOD_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// The cluster secret itself: from `TRIPOD_CLUSTER_SECRET` (never from the file).
    #[arg(
        long,
        env = "TRIPOD_CLUSTER_SECRET",
        hide = true,
        hide_env_values = true
    )]
    #[serde(skip)]
    pub cluster_secret: Option<String>,
    /// How API callers authenticate: tokens from /identity/v3, or `noauth` (development
    /// only: trusts `X-Auth-Token: user:project`) [default: keystone].
    #[arg(long, env = "TRIPOD_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Token lifetime in seconds [default: 3600].
    #[arg(long, env = "TRIPOD_TOKEN_TTL_SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Availability zone volumes live in [default: nova].
    #[arg(long, env = "TRIPOD_AVAILABILITY_ZONE")]
    pub availability_zone: Option<String>,
    /// Type of volumes created without one [default: __DEFAULT__, no QoS limits].
    #[arg(long, env = "TRIPOD_DEFAULT_VOLUME_TYPE")]
    pub default_volume_type: Option<String>,
    /// Base URL for links and the token catalog [default: from the request's Host header].
    #[arg(long, env = "TRIPOD_PUBLIC_ENDPOINT")]
    pub public_endpoint: Option<String>,
    /// Emit EVS-only volume fields (`shareable`, …) that tempest's schemas reject
    /// [default: false].
    #[arg(long, env = "TRIPOD_EVS_EXTRA_FIELDS")]
    pub evs_extra_fields: Option<bool>,
    /// Seconds between replica health checks of an open volume [default: 5].
    #[arg(long, env = "TRIPOD_SUPERVISE_SECS")]
    pub supervise_secs: Option<u64>,
    /// Most MiB per second a resync or rebuild copies to one replica, to leave the disks to
    /// clients while a copy comes back [default: unlimited; 0 = unlimited].
    #[arg(long, env = "TRIPOD_SYNC_MIBPS")]
    pub sync_mibps: Option<u64>,
    /// Default quota limits for new projects (`volumes`, `gigabytes`, …; -1 = unlimited):
    /// the config file's `[quota]` table only.
    #[arg(skip)]
    pub quota: Option<BTreeMap<String, i64>>,
    /// Writes of at least this many KiB place blocks new to a volume's head layer in the
    /// data file instead of logging their data (0 = always log) [default: 64].
    #[arg(long, env = "TRIPOD_DIRECT_WRITE_KIB")]
    pub direct_write_kib: Option<u64>,
    /// When an acknowledged write is durable against power loss: `flush` (block-device
    /// semantics: at the client's next FLUSH or FUA write) or `sync` (at once)
    /// [default: flush].
    #[arg(long, env = "TRIPOD_DURABILITY", value_enum)]
    pub durability: Option<DurabilityMode>,
    /// Where backups go: a directory (or `file:///dir`), or `s3://bucket[/prefix]` with the
    /// usual `AWS_*` variables (`AWS_ENDPOINT_URL` for an S3-compatible server)
    /// [default: the data directory's backups/].
    #[arg(long, env = "TRIPOD_BACKUP_TARGET")]
    pub backup_target: Option<String>,
    /// A KMS (Huawei Cloud KMS dialect, `https://HOST`) holding the master keys of
    /// encrypted volumes [default: none: the local key store under the data directory].
    #[arg(long, env = "TRIPOD_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// The KMS project the keys live in (with `kms_endpoint`).
    #[arg(long, env = "TRIPOD_KMS_PROJECT")]
    pub kms_project: Option<String>,
    /// File holding the token for the KMS (`X-Auth-Token`), read at every call.
    #[arg(long, env = "TRIPOD_KMS_TOKEN_FILE")]
    pub kms_token_file: Option<PathBuf>,
}

impl Settings {
    /// `self`, with what it leaves unset taken from `lower` (field by field, through the
    /// settings' serde form, so a new field needs no code here).
    pub fn over(self, lower: Settings) -> Result<Settings, String> {
        let as_map = |s: &Settings| match serde_json::to_value(s) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err("settings are not a map".to_owned()),
            Err(e) => Err(format!("settings: {e}")),
        };
        let mut merged = as_map(&lower)?;
        for (k, v) in as_map(&self)? {
            if !v.is_null() {
                merged.insert(k, v);
            }
        }
        let mut out: Settings = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| format!("settings: {e}"))?;
        // Never serialized (it must not come from a file): carried across by hand.
        out.cluster_secret = self.cluster_secret.or(lower.cluster_secret);
        Ok(out)
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The flags of `tripod serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (keys as the long flags, with `_`; e.g. `api_listen`).
    #[arg(long, env = "TRIPOD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Everything else.
    #[command(flatten)]
    pub settings: Settings,
}

impl ServeArgs {
    /// Flags and variables over the file over the defaults.
    pub fn resolve(self) -> Result<ServeConfig, String> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        ServeConfig::resolve(self.settings.over(file)?)
    }
}

/// Where one replica of every volume lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaLocation {
    /// A local directory (a volume's copy is `<dir>/<volume id>/`).
    Dir(PathBuf),
    /// A `tripod replica` node at `host:port`.
    Node(String),
}

impl ReplicaLocation {
    /// `tcp://HOST:PORT` is a replica node; anything else is a directory.
    pub fn parse(p: &Path) -> Result<Self, String> {
        let Some(text) = p.to_str() else {
            return Ok(Self::Dir(p.to_owned()));
        };
        let Some(addr) = text.strip_prefix("tcp://") else {
            return Ok(Self::Dir(p.to_owned()));
        };
        let addr = addr.trim_end_matches('/');
        let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(format!("replica {text:?}: expected tcp://HOST:PORT"));
        }
        Ok(Self::Node(addr.to_owned()))
    }
}

/// Resolved configuration of `tripod serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Admin API address.
    pub api_listen: String,
    /// NBD address.
    pub nbd_listen: String,
    /// Replica roots (three), if not under the data dir.
    pub replicas: Option<[ReplicaLocation; 3]>,
    /// The secret replica nodes share (needed when a replica is a node).
    pub cluster_secret: Option<ClusterSecret>,
    /// Auth mode.
    pub auth: AuthMode,
    /// Token lifetime, seconds.
    pub token_ttl_secs: u64,
    /// Availability zone.
    pub availability_zone: String,
    /// Default volume type name.
    pub default_volume_type: String,
    /// Public base URL, if fixed.
    pub public_endpoint: Option<String>,
    /// EVS-only extra fields on volumes.
    pub evs_extra_fields: bool,
    /// Supervisor period, seconds.
    pub supervise_secs: u64,
    /// Resync and rebuild rate limit, bytes per second (`None`: unlimited).
    pub sync_rate: Option<u64>,
    /// Default quota limits.
    pub quota: BTreeMap<String, i64>,
    /// Engine tuning of every replica store.
    pub volume_options: tripod_engine::VolumeOptions,
    /// When acknowledged writes are durable.
    pub durability: DurabilityMode,
    /// Where backups go (see [`Settings::backup_target`]).
    pub backup_target: String,
    /// The KMS holding master keys, if not the local key store.
    pub kms: Option<KmsConfig>,
}

/// Where the KMS is and how to reach it (see [`Settings::kms_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConfig {
    /// Base URL.
    pub endpoint: String,
    /// The KMS project.
    pub project: String,
    /// The token's file.
    pub token_file: PathBuf,
}

/// Cinder's default quotas.
pub fn default_quota() -> BTreeMap<String, i64> {
    [
        ("volumes", 10),
        ("snapshots", 10),
        ("gigabytes", 1000),
        ("backups", 10),
        ("backup_gigabytes", 1000),
        ("per_volume_gigabytes", -1),
        ("groups", 10),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl ServeConfig {
    /// Resolves merged settings against the defaults.
    pub fn resolve(s: Settings) -> Result<Self, String> {
        let replicas = match s.replicas {
            None => None,
            Some(r) if r.is_empty() => None,
            Some(r) => match <[PathBuf; 3]>::try_from(r) {
                Ok([a, b, c]) => Some([
                    ReplicaLocation::parse(&a)?,
                    ReplicaLocation::parse(&b)?,
                    ReplicaLocation::parse(&c)?,
                ]),
                Err(r) => {
                    return Err(format!(
                        "replicas: exactly three are needed (got {})",
                        r.len()
                    ))
                }
            },
        };
        let cluster_secret = match (&s.secret_file, s.cluster_secret) {
            (Some(path), _) => Some(ClusterSecret::from_file(path).map_err(|e| e.to_string())?),
            (None, Some(text)) => Some(
                ClusterSecret::new(text.into_bytes())
                    .map_err(|e| format!("TRIPOD_CLUSTER_SECRET: {e}"))?,
            ),
            (None, None) => None,
        };
        let uses_nodes = replicas
            .iter()
            .flatten()
            .any(|r| matches!(r, ReplicaLocation::Node(_)));
        if uses_nodes && cluster_secret.is_none() {
            return Err(
                "replica nodes need the cluster secret: set TRIPOD_CLUSTER_SECRET or --secret-file"
                    .into(),
            );
        }
        let default_volume_type = s
            .default_volume_type
            .unwrap_or_else(|| crate::volume_types::DEFAULT_TYPE.into());
        let mut quota = default_quota();
        for (k, v) in s.quota.unwrap_or_default() {
            if v < -1 {
                return Err(format!("quota {k}: {v} is below -1"));
            }
            quota.insert(k, v);
        }
        let durability = s.durability.unwrap_or(DurabilityMode::Flush);
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("./tripod-data"));
        let backup_target = s
            .backup_target
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| data_dir.join("backups").display().to_string());
        let kms = match (s.kms_endpoint, s.kms_project, s.kms_token_file) {
            (None, None, None) => None,
            (Some(endpoint), Some(project), Some(token_file)) => {
                if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                    return Err(format!(
                        "kms_endpoint {endpoint:?}: expected an http(s) URL"
                    ));
                }
                Some(KmsConfig {
                    endpoint,
                    project,
                    token_file,
                })
            }
            _ => {
                return Err(
                    "a KMS needs all of kms_endpoint, kms_project and kms_token_file".into(),
                )
            }
        };
        Ok(Self {
            kms,
            data_dir,
            backup_target,
            api_listen: s.api_listen.unwrap_or_else(|| "127.0.0.1:8776".into()),
            nbd_listen: s.nbd_listen.unwrap_or_else(|| "127.0.0.1:10809".into()),
            replicas,
            cluster_secret,
            auth: s.auth.unwrap_or(AuthMode::Keystone),
            token_ttl_secs: s.token_ttl_secs.unwrap_or(3600),
            availability_zone: s.availability_zone.unwrap_or_else(|| "nova".into()),
            default_volume_type,
            public_endpoint: s
                .public_endpoint
                .map(|e| e.trim_end_matches('/').to_owned()),
            evs_extra_fields: s.evs_extra_fields.unwrap_or(false),
            supervise_secs: s.supervise_secs.unwrap_or(5).max(1),
            sync_rate: s
                .sync_mibps
                .filter(|m| *m > 0)
                .map(|m| m.saturating_mul(1 << 20)),
            quota,
            volume_options: tripod_engine::VolumeOptions {
                direct_write_min: match s.direct_write_kib {
                    None => tripod_engine::VolumeOptions::default().direct_write_min,
                    Some(0) => u64::MAX,
                    Some(kib) => kib.saturating_mul(1024),
                },
                // Stores sync every write only when the daemon promises that.
                write_back: durability == DurabilityMode::Flush,
                ..tripod_engine::VolumeOptions::default()
            },
            durability,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tripod serve ARGS` as the binary parses it.
    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let all = std::iter::once("serve").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(all).map(|c| c.serve)
    }

    #[test]
    fn flags_and_variables_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tripod.toml");
        std::fs::write(
            &file,
            "api_listen = \"127.0.0.1:2\"\nnbd_listen = \"127.0.0.1:3\"\ndata_dir = \"/from/file\"\n[quota]\nvolumes = 50\n",
        )
        .unwrap();
        // The only test that reads these variables.
        std::env::set_var("TRIPOD_DATA_DIR", "/srv/t");
        std::env::set_var("TRIPOD_REPLICAS", "/a,/b,/c");
        let args = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--api-listen",
            "127.0.0.1:1",
        ])
        .unwrap();
        std::env::remove_var("TRIPOD_DATA_DIR");
        std::env::remove_var("TRIPOD_REPLICAS");
        let c = args.resolve().unwrap();
        assert_eq!(c.api_listen, "127.0.0.1:1");
        assert_eq!(c.nbd_listen, "127.0.0.1:3");
        assert_eq!(c.data_dir, PathBuf::from("/srv/t"));
        assert_eq!(
            c.replicas,
            Some(["/a", "/b", "/c"].map(|d| ReplicaLocation::Dir(d.into())))
        );
        assert_eq!(c.quota["volumes"], 50);
        assert_eq!(c.quota["snapshots"], 10);
        assert_eq!(c.auth, AuthMode::Keystone);
        assert_eq!(c.token_ttl_secs, 3600);
        let flags = parse(&["--replica", "/x", "--replica", "/y", "--replica", "/z"]).unwrap();
        assert_eq!(flags.settings.replicas.map(|r| r.len()), Some(3));
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(toml::from_str::<Settings>("no_such_key = 1").is_err());
        assert!(parse(&["--auth", "open"]).is_err());
        assert!(parse(&["--durability", "sometimes"]).is_err());
        let two = Settings {
            replicas: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        };
        assert!(ServeConfig::resolve(two).is_err());
        // The secret never comes from the config file.
        assert!(toml::from_str::<Settings>("cluster_secret = \"x\"").is_err());
    }

    #[test]
    fn a_kms_needs_its_endpoint_project_and_token_file() {
        let kms = |endpoint: Option<&str>, token: Option<&str>| Settings {
            kms_endpoint: endpoint.map(str::to_owned),
            kms_project: Some("p".into()),
            kms_token_file: token.map(PathBuf::from),
            ..Default::default()
        };
        let c = ServeConfig::resolve(kms(Some("https://kms.example"), Some("/t"))).unwrap();
        assert_eq!(c.kms.unwrap().endpoint, "https://kms.example");
        assert!(ServeConfig::resolve(kms(Some("https://kms.example"), None)).is_err());
        assert!(ServeConfig::resolve(kms(Some("kms.example"), Some("/t"))).is_err());
        assert!(ServeConfig::resolve(Settings::default())
            .unwrap()
            .kms
            .is_none());
        let from_file: Settings = toml::from_str(
            "kms_endpoint = \"https://kms\"\nkms_project = \"p\"\nkms_token_file = \"/run/kms-token\"\n",
        )
        .unwrap();
        assert!(ServeConfig::resolve(from_file).unwrap().kms.is_some());
    }

    #[test]
    fn replica_nodes_need_a_valid_address_and_the_secret() {
        let nodes = |secret: Option<&str>| Settings {
            replicas: Some(vec![
                "/srv/r0".into(),
                "tcp://10.0.0.2:10810".into(),
                "tcp://node3:10810/".into(),
            ]),
            cluster_secret: secret.map(String::from),
            ..Default::default()
        };
        let c = ServeConfig::resolve(nodes(Some("a-long-enough-cluster-secret"))).unwrap();
        assert_eq!(
            c.replicas.unwrap(),
            [
                ReplicaLocation::Dir("/srv/r0".into()),
                ReplicaLocation::Node("10.0.0.2:10810".into()),
                ReplicaLocation::Node("node3:10810".into()),
            ]
        );
        let missing = ServeConfig::resolve(nodes(None)).unwrap_err();
        assert!(missing.contains("TRIPOD_CLUSTER_SECRET"), "{missing}");
        assert!(ServeConfig::resolve(nodes(Some("short"))).is_err());
        for bad in [
            "tcp://",
            "tcp://host",
            "tcp://host:0",
            "tcp://:1",
            "tcp://h:99999",
        ] {
            assert!(ReplicaLocation::parse(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
