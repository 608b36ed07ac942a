//! `tripod serve`: opens the catalog, bootstraps the first admin, finishes work a previous
//! run left in flight, then serves the admin API and the NBD export until SIGINT/SIGTERM,
//! and drains both (and any lifecycle work) before exiting.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::{self, ApiState, Metrics};
use crate::backend::Backend;
use crate::backup::BackupStore;
use crate::catalog::Catalog;
use crate::config::{AuthMode, DurabilityMode, ReplicaLocation, ServeConfig};
use crate::data_dir::{DataDir, NodeMaker, ReplicaRoot, VolumeRegistry};
use crate::identity::{random_hex, Identity};
use crate::nbd::{self, ServerConfig};
use crate::volume_types;
use tripod_replication::remote::RemoteNode;
use tripod_replication::{Durability, SetConfig};

/// File (in the data dir) holding the generated first admin password.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// The runtime replica-node connections run on, apart from the daemon's: the set waits for
/// replica answers on blocking threads, and those answers must never need a thread the
/// waiters hold. It lives as long as the process.
fn network_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("replica-net")
        .enable_all()
        .build()
        .context("starting the replica network runtime")?;
    Ok(RUNTIME.get_or_init(|| rt).handle().clone())
}

/// The replica roots `config` names: directories, or replica nodes reached with the cluster
/// secret.
fn data_dir_of(config: &ServeConfig) -> anyhow::Result<DataDir> {
    let placements = config.data_dir.join("placements");
    let Some(locations) = &config.replicas else {
        return with_nodes(DataDir::new(&config.data_dir, None), config);
    };
    let mut roots = Vec::with_capacity(3);
    for location in locations {
        roots.push(match location {
            ReplicaLocation::Dir(dir) => ReplicaRoot::Dir(dir.clone()),
            ReplicaLocation::Node(addr) => {
                let secret = config
                    .cluster_secret
                    .clone()
                    .context("replica nodes need the cluster secret")?;
                ReplicaRoot::Node(RemoteNode::new(addr.clone(), secret, network_runtime()?))
            }
        });
    }
    let [a, b, c]: [ReplicaRoot; 3] = roots
        .try_into()
        .map_err(|_| anyhow::anyhow!("three replicas are needed"))?;
    with_nodes(
        DataDir::with_roots([a, b, c]).with_placements(placements),
        config,
    )
}

/// With a cluster secret, `dir` can reach replica nodes a placement names (a replica moved
/// to a node by `replica replace`).
fn with_nodes(dir: DataDir, config: &ServeConfig) -> anyhow::Result<DataDir> {
    let Some(secret) = config.cluster_secret.clone() else {
        return Ok(dir);
    };
    let runtime = network_runtime()?;
    let make = move |addr: &str| RemoteNode::new(addr.to_owned(), secret.clone(), runtime.clone());
    Ok(dir.with_nodes(NodeMaker(Arc::new(make))))
}

/// Opens everything `serve` needs over `config.data_dir`, bootstraps the first admin
/// (`admin_password`, or a generated one written to [`INITIAL_PASSWORD_FILE`] if no user
/// exists yet), and reconciles interrupted operations.
pub fn open_state(
    config: &ServeConfig,
    admin_password: Option<&str>,
) -> anyhow::Result<Arc<ApiState>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let catalog = Arc::new(
        Catalog::open(&config.data_dir.join("catalog.redb"))
            .context("opening the catalog (is another tripod serve using this data dir?)")?,
    );
    let identity = Arc::new(Identity::new(catalog.clone(), config.token_ttl_secs)?);
    bootstrap(&identity, &config.data_dir, admin_password)?;
    catalog
        .write(|w| {
            volume_types::seed(w)?;
            volume_types::find(w, &config.default_volume_type)
        })
        .context("writing the built-in volume types")?
        .with_context(|| {
            format!(
                "default_volume_type {:?} is not a volume type in the catalog",
                config.default_volume_type
            )
        })?;
    let set_config = SetConfig {
        durability: match config.durability {
            DurabilityMode::Flush => Durability::Flush,
            DurabilityMode::Sync => Durability::Sync,
        },
        sync_rate: config.sync_rate,
        ..SetConfig::default()
    };
    let dir = data_dir_of(config)?
        .with_options(config.volume_options)
        .with_set_config(set_config);
    let registry = Arc::new(VolumeRegistry::new(
        dir,
        Duration::from_secs(config.supervise_secs),
    ));
    let backups = BackupStore::open(&config.backup_target)
        .with_context(|| format!("opening the backup target {}", config.backup_target))?;
    let backend = Arc::new(
        Backend::new(catalog.clone(), registry, config.data_dir.join("images"))
            .with_backups(Arc::new(backups))
            .with_keys(key_provider(config)),
    );
    let finished = backend.reconcile().context("reconciling the catalog")?;
    if finished > 0 {
        tracing::warn!("finished {finished} operations interrupted by the last shutdown");
    }
    Ok(Arc::new(ApiState {
        config: config.clone(),
        catalog,
        identity,
        backend,
        metrics: Metrics::default(),
    }))
}

/// Where master keys live: the configured KMS, else the local key store.
fn key_provider(config: &ServeConfig) -> Arc<dyn crate::keys::KeyProvider> {
    let provider: Arc<dyn crate::keys::KeyProvider> = match &config.kms {
        Some(k) => Arc::new(crate::keys::kms::KmsKeyProvider::new(
            &k.endpoint,
            &k.project,
            k.token_file.clone(),
        )),
        None => Arc::new(crate::keys::local::LocalKeyStore::new(
            config.data_dir.join("keys"),
        )),
    };
    tracing::info!("master keys: {}", provider.describe());
    provider
}

fn bootstrap(identity: &Identity, data_dir: &Path, password: Option<&str>) -> anyhow::Result<()> {
    match password {
        Some(pw) if !pw.is_empty() => {
            if identity.bootstrap_admin(pw)? {
                tracing::info!("created user admin in project admin (TRIPOD_ADMIN_PASSWORD)");
            } else {
                tracing::info!("user admin exists; TRIPOD_ADMIN_PASSWORD ignored");
            }
        }
        _ if !identity.has_users()? => {
            let pw = random_hex(12)?;
            let path = data_dir.join(INITIAL_PASSWORD_FILE);
            write_private(&path, &format!("{pw}\n"))?;
            identity.bootstrap_admin(&pw)?;
            tracing::warn!(
                "no TRIPOD_ADMIN_PASSWORD: created user admin with a generated password in {}",
                path.display()
            );
        }
        _ => {}
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Runs the daemon until a shutdown signal.
pub async fn serve(config: ServeConfig, admin_password: Option<String>) -> anyhow::Result<()> {
    if config.auth == AuthMode::Noauth {
        tracing::warn!("--auth noauth: the API trusts any X-Auth-Token of the form user:project; for local development only");
    }
    let cfg = config.clone();
    let state =
        tokio::task::spawn_blocking(move || open_state(&cfg, admin_password.as_deref())).await??;
    let api_listener = tokio::net::TcpListener::bind(&config.api_listen)
        .await
        .with_context(|| format!("binding the admin API on {}", config.api_listen))?;
    let nbd_listener = tokio::net::TcpListener::bind(&config.nbd_listen)
        .await
        .with_context(|| format!("binding the NBD listener on {}", config.nbd_listen))?;
    tracing::info!(
        "admin API listening on http://{}",
        api_listener.local_addr()?
    );
    tracing::info!("NBD export listening on {}", nbd_listener.local_addr()?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let nbd_server = tokio::spawn(nbd::run(
        nbd_listener,
        state.backend.registry().clone(),
        ServerConfig::default(),
        stopped.clone(),
    ));
    let mut api_stopped = stopped;
    let router = api::router(state.clone());
    let api_server = tokio::spawn(async move {
        axum::serve(api_listener, router)
            .with_graceful_shutdown(async move {
                let _ = api_stopped.wait_for(|s| *s).await;
            })
            .await
    });
    shutdown_signal().await;
    tracing::info!("shutting down: draining connections");
    let _ = stop.send(true);
    api_server.await??;
    nbd_server.await??;
    let backend = state.backend.clone();
    let idle = backend.wait_idle(Duration::from_secs(120)).await;
    if !idle {
        tracing::warn!(
            "exiting with volume operations still running; the next start finishes them"
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
