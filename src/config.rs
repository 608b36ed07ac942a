//! The daemon's configuration: command-line flags, then a TOML file (`--config`), then
//! `TRIPOD_*` environment variables, then built-in defaults — the first that sets a value
//! wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tripod_replication::remote::ClusterSecret;

/// How API callers authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Keystone-style tokens from `/identity/v3` (the default).
    Keystone,
    /// Cinder's development mode: `X-Auth-Token: <user>:<project>`, no checks.
    Noauth,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keystone" => Ok(Self::Keystone),
            "noauth" => Ok(Self::Noauth),
            _ => Err(format!("unknown auth mode {s:?} (keystone or noauth)")),
        }
    }
}

/// When a write acknowledged to a client is durable against power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Block-device semantics (the default): at the client's next FLUSH or FUA write.
    Flush,
    /// Every write is synced on every replica before it is acknowledged.
    Sync,
}

impl std::str::FromStr for DurabilityMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flush" => Ok(Self::Flush),
            "sync" => Ok(Self::Sync),
            _ => Err(format!("unknown durability {s:?} (flush or sync)")),
        }
    }
}

/// One layer of settings; unset fields fall through to the next layer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Data directory (catalog, images, default replica roots).
    pub data_dir: Option<PathBuf>,
    /// Admin API address.
    pub api_listen: Option<String>,
    /// NBD address.
    pub nbd_listen: Option<String>,
    /// Three replicas: directories or `tcp://HOST:PORT` replica nodes.
    pub replicas: Option<Vec<PathBuf>>,
    /// File holding the cluster secret replica nodes authenticate with (instead of
    /// `TRIPOD_CLUSTER_SECRET`).
    pub secret_file: Option<PathBuf>,
    /// The cluster secret itself: only from `TRIPOD_CLUSTER_SECRET`, never from a file.
    #[serde(skip)]
    pub cluster_secret: Option<String>,
    /// `keystone` or `noauth`.
    pub auth: Option<AuthMode>,
    /// Token lifetime in seconds.
    pub token_ttl_secs: Option<u64>,
    /// The availability zone volumes live in.
    pub availability_zone: Option<String>,
    /// Type given to volumes created without one.
    pub default_volume_type: Option<String>,
    /// Base URL put in links and the token catalog (default: from the request's Host).
    pub public_endpoint: Option<String>,
    /// Emit EVS-only volume fields (`shareable`, …) that tempest's schemas reject.
    pub evs_extra_fields: Option<bool>,
    /// Seconds between replica health checks of an open volume.
    pub supervise_secs: Option<u64>,
    /// Default quota limits for new projects (`volumes`, `gigabytes`, …; -1 = unlimited).
    pub quota: Option<BTreeMap<String, i64>>,
    /// Writes of at least this many KiB place blocks new to a volume's head layer in the
    /// data file instead of logging their data (0 = never; see `VolumeOptions`).
    pub direct_write_kib: Option<u64>,
    /// `flush` (block-device semantics) or `sync` (every write durable when acknowledged).
    pub durability: Option<DurabilityMode>,
}

impl Settings {
    /// `self`, with unset fields taken from `lower`.
    pub fn or(self, lower: Settings) -> Settings {
        Settings {
            data_dir: self.data_dir.or(lower.data_dir),
            api_listen: self.api_listen.or(lower.api_listen),
            nbd_listen: self.nbd_listen.or(lower.nbd_listen),
            replicas: self.replicas.or(lower.replicas),
            secret_file: self.secret_file.or(lower.secret_file),
            cluster_secret: self.cluster_secret.or(lower.cluster_secret),
            auth: self.auth.or(lower.auth),
            token_ttl_secs: self.token_ttl_secs.or(lower.token_ttl_secs),
            availability_zone: self.availability_zone.or(lower.availability_zone),
            default_volume_type: self.default_volume_type.or(lower.default_volume_type),
            public_endpoint: self.public_endpoint.or(lower.public_endpoint),
            evs_extra_fields: self.evs_extra_fields.or(lower.evs_extra_fields),
            supervise_secs: self.supervise_secs.or(lower.supervise_secs),
            quota: self.quota.or(lower.quota),
            direct_write_kib: self.direct_write_kib.or(lower.direct_write_kib),
            durability: self.durability.or(lower.durability),
        }
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads `TRIPOD_*` variables through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        fn parsed<T: std::str::FromStr>(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
        ) -> Result<Option<T>, String> {
            var(name)
                .map(|v| v.parse().map_err(|_| format!("{name}: cannot parse {v:?}")))
                .transpose()
        }
        Ok(Settings {
            data_dir: var("TRIPOD_DATA_DIR").map(PathBuf::from),
            api_listen: var("TRIPOD_API_LISTEN"),
            nbd_listen: var("TRIPOD_NBD_LISTEN"),
            replicas: var("TRIPOD_REPLICAS").map(|v| v.split(',').map(PathBuf::from).collect()),
            secret_file: var("TRIPOD_SECRET_FILE").map(PathBuf::from),
            cluster_secret: var("TRIPOD_CLUSTER_SECRET"),
            auth: parsed(&var, "TRIPOD_AUTH")?,
            token_ttl_secs: parsed(&var, "TRIPOD_TOKEN_TTL_SECS")?,
            availability_zone: var("TRIPOD_AVAILABILITY_ZONE"),
            default_volume_type: var("TRIPOD_DEFAULT_VOLUME_TYPE"),
            public_endpoint: var("TRIPOD_PUBLIC_ENDPOINT"),
            evs_extra_fields: parsed(&var, "TRIPOD_EVS_EXTRA_FIELDS")?,
            supervise_secs: parsed(&var, "TRIPOD_SUPERVISE_SECS")?,
            quota: None,
            direct_write_kib: parsed(&var, "TRIPOD_DIRECT_WRITE_KIB")?,
            durability: parsed(&var, "TRIPOD_DURABILITY")?,
        })
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

/// The volume types every deployment offers (EVS's names).
pub const VOLUME_TYPES: [&str; 5] = ["SATA", "SAS", "SSD", "GPSSD", "ESSD"];

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
    /// Default quota limits.
    pub quota: BTreeMap<String, i64>,
    /// Engine tuning of every replica store.
    pub volume_options: tripod_engine::VolumeOptions,
    /// When acknowledged writes are durable.
    pub durability: DurabilityMode,
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
        let default_volume_type = s.default_volume_type.unwrap_or_else(|| "SSD".into());
        if !VOLUME_TYPES.contains(&default_volume_type.as_str()) {
            return Err(format!(
                "default_volume_type {default_volume_type:?} is not one of {VOLUME_TYPES:?}"
            ));
        }
        let mut quota = default_quota();
        for (k, v) in s.quota.unwrap_or_default() {
            if v < -1 {
                return Err(format!("quota {k}: {v} is below -1"));
            }
            quota.insert(k, v);
        }
        let durability = s.durability.unwrap_or(DurabilityMode::Flush);
        Ok(Self {
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("./tripod-data")),
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

    #[test]
    fn flags_beat_file_beat_env_beat_defaults() {
        let flags = Settings {
            api_listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let file: Settings = toml::from_str(
            "api_listen = \"127.0.0.1:2\"\nnbd_listen = \"127.0.0.1:3\"\n[quota]\nvolumes = 50\n",
        )
        .unwrap();
        let env = Settings::from_env(|k| match k {
            "TRIPOD_NBD_LISTEN" => Some("127.0.0.1:4".into()),
            "TRIPOD_DATA_DIR" => Some("/srv/t".into()),
            _ => None,
        })
        .unwrap();
        let c = ServeConfig::resolve(flags.or(file).or(env)).unwrap();
        assert_eq!(c.api_listen, "127.0.0.1:1");
        assert_eq!(c.nbd_listen, "127.0.0.1:3");
        assert_eq!(c.data_dir, PathBuf::from("/srv/t"));
        assert_eq!(c.quota["volumes"], 50);
        assert_eq!(c.quota["snapshots"], 10);
        assert_eq!(c.auth, AuthMode::Keystone);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(toml::from_str::<Settings>("no_such_key = 1").is_err());
        assert!(Settings::from_env(|k| (k == "TRIPOD_AUTH").then(|| "open".into())).is_err());
        let two = Settings {
            replicas: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        };
        assert!(ServeConfig::resolve(two).is_err());
        // The secret never comes from the config file.
        assert!(toml::from_str::<Settings>("cluster_secret = \"x\"").is_err());
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
