//! `tripod`: the command-line entry point: `tripod serve` runs the daemon (admin API + NBD
//! export), `tripod replica` runs a replica node for daemons on other machines,
//! `tripod volume …` manages unmanaged volumes offline, and `tripod engine …`
//! inspects a single engine store.

#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::cast_possible_truncation)
)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tripod::admin_client::{
    last_scrub, scrub_exit_code, scrub_line, status_exit_code, status_table, Session,
};
use tripod::config::ServeArgs;
use tripod::data_dir::DataDir;
use tripod::logging::{self, LogFormat};
use tripod_engine::{FileStorage, Volume, VolumeOptions};
use tripod_replication::remote::{ClusterSecret, ReplicaNode};

/// Tripod: three-copy block storage.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr: `text` for a person, `json` for a collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TRIPOD_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(clap::Args, Clone)]
struct DirArgs {
    /// Data directory.
    #[arg(long, default_value = "./tripod-data", env = "TRIPOD_DATA_DIR")]
    data_dir: PathBuf,
    /// A replica directory; give it three times (default: <data-dir>/replicas/{0,1,2}).
    #[arg(long = "replica")]
    replicas: Vec<PathBuf>,
}

impl DirArgs {
    fn data_dir(&self) -> anyhow::Result<DataDir> {
        let replicas = match self.replicas.as_slice() {
            [] => None,
            [a, b, c] => Some([a.clone(), b.clone(), c.clone()]),
            other => bail!("--replica must be given three times (got {})", other.len()),
        };
        Ok(DataDir::new(&self.data_dir, replicas))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the admin API (EVS/Cinder v2 + Keystone v3 subset) and the NBD export.
    Serve(Box<ServeArgs>),
    /// Run a replica node: hold volume copies in DIR for `tripod serve` daemons on other
    /// machines (`--replica tcp://HOST:PORT`), which authenticate with the cluster secret.
    /// With a subcommand: manage a volume's replicas on a running daemon.
    Replica(ReplicaCli),
    /// Manage volumes in a data directory.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Inspect one engine store (a single replica directory).
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
    /// Ask a running daemon for every volume and the health of each replica (admins; the
    /// OS_* variables of the openstack CLI). Exit 0: every open volume has its three
    /// replicas in service; 1: some replica is out of service; 2: the daemon could not be
    /// asked.
    Status {
        /// `table` for a person, `json` for a script.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Show VOLUME of a running daemon as a local disk without the kernel NBD module:
    /// `nbdfuse` makes the export a file, a loop device makes the file a disk; prints the
    /// device (`/dev/loopN`) to format and mount. Root only.
    Attach {
        /// The volume's id (its NBD export name).
        volume: String,
        /// The daemon's NBD address.
        #[arg(long, default_value = "127.0.0.1:10809", env = "TRIPOD_NBD_LISTEN")]
        nbd: String,
        /// Where the FUSE mounts live.
        #[arg(long, default_value = "/run/tripod")]
        run_dir: PathBuf,
    },
    /// Undo `tripod attach VOLUME` (unmount the file system on the device first).
    Detach {
        /// The volume's id.
        volume: String,
        /// Where the FUSE mounts live.
        #[arg(long, default_value = "/run/tripod")]
        run_dir: PathBuf,
    },
    /// Follow what a running daemon is doing to VOLUME — replica resyncs and rebuilds,
    /// clones, image exports, scrubs — with a progress bar each (rate, ETA; a line every few
    /// seconds when not on a terminal) until nothing runs and every replica is in service
    /// (admins; OS_* variables). Exit 0: settled; 1: a replica stays out of service with
    /// nothing in progress for ten minutes, or the volume is gone; 2: the daemon could not be
    /// asked.
    Watch {
        /// The volume's id.
        volume: String,
        /// `text` for a person, `json` for a script (the volume's final state).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Check every local replica of every volume offline, changing nothing: format and
    /// metadata (each replica opened and recovered in memory), every block's checksum, and
    /// the in-service replicas against each other. Stop the daemon first (a volume it holds
    /// is reported as not checked). Exit 0: all clean; 1: damage found (or left after
    /// `--repair`); 2: some volume could not be checked.
    Fsck {
        #[command(flatten)]
        dirs: DirArgs,
        /// Repair damaged volumes from good copies (where two replicas agree): each is
        /// opened as the daemon opens it, replicas out of service are resynced, a scrub
        /// rewrites bad copies; then it is checked again.
        #[arg(long)]
        repair: bool,
        /// `text` for a person, `json` for a script.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Verify every copy of VOLUME on a running daemon and repair bad ones from good ones
    /// (admins; OS_* variables), following it until it ends. Exit 0: every copy good now;
    /// 1: a block has no good copy anywhere, or the scrub failed; 2: the daemon could not be
    /// asked.
    Scrub {
        /// The volume's id.
        volume: String,
        /// `text` for a person, `json` for a script (the final state).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

/// `tripod fsck`'s progress: a bar with rate and ETA on a terminal, a line per volume
/// otherwise.
struct FsckProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl FsckProgress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} checking [{bar:30}] {human_pos}/{human_len} blocks {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Self { bar }
    }
}

impl tripod::fsck::Progress for FsckProgress {
    fn discovered(&self, blocks: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(blocks);
        }
    }
    fn advance(&self, blocks: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(blocks);
        }
    }
    fn finished(&self, check: &tripod::fsck::VolumeCheck) {
        let line = format!("volume {}: {:?}", check.id, check.verdict).to_lowercase();
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// `tripod fsck`: the exit code (see [`Command::Fsck`]).
fn run_fsck(dir: &tripod::data_dir::DataDir, repair: bool, format: &str) -> i32 {
    let progress = FsckProgress::new();
    let mut report = tripod::fsck::check(dir, &progress);
    if repair {
        for v in &mut report.volumes {
            if v.verdict == tripod::fsck::Verdict::Damaged {
                *v = tripod::fsck::repair(dir, v, &progress);
            }
        }
    }
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    if format == "json" {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        print!("{}", tripod::fsck::render(&report));
    }
    i32::from(tripod::fsck::exit_code(&report))
}

/// `tripod watch`: the exit code (see [`Command::Watch`]).
fn run_watch(volume: &str, format: &str) -> i32 {
    const STALL: std::time::Duration = std::time::Duration::from_secs(600);
    let session = match Session::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tripod watch: {e}");
            return 2;
        }
    };
    let mut follow = tripod::follow::Follower::new(volume, format != "text");
    let mut idle_since: Option<std::time::Instant> = None;
    let code = loop {
        let status = match session.get("os-tripod-status") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tripod watch: {e}");
                break 2;
            }
        };
        let Some(v) = tripod::follow::volume_of(&status, volume) else {
            eprintln!("tripod watch: no volume {volume}");
            break 1;
        };
        let now = tripod::follow::activities(v);
        follow.update(&now);
        if now.is_empty() && tripod::follow::settled(v) {
            follow.finish();
            if format == "json" {
                println!("{v:#}");
            } else {
                println!("{volume}: nothing in progress, every replica in service");
            }
            break 0;
        }
        if now.is_empty() {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= STALL {
                follow.finish();
                eprintln!(
                    "tripod watch: a replica is out of service and nothing has run for {} s",
                    STALL.as_secs()
                );
                break 1;
            }
        } else {
            idle_since = None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    code
}

/// `tripod replica replace`: the exit code (see [`ReplicaAction::Replace`]).
fn run_replace(volume: &str, slot: usize, with: &str, wait: bool, format: &str) -> i32 {
    use tripod::admin_client::replica_of;
    // The daemon keeps retrying a rebuild that cannot proceed (a node unreachable); the
    // command gives up following it after this long without progress.
    const STALL: std::time::Duration = std::time::Duration::from_secs(600);
    let session = match Session::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tripod replica replace: {e}");
            return 2;
        }
    };
    let body = serde_json::json!({"replace": {"with": with}});
    let path = format!("os-tripod-volumes/{volume}/replicas/{slot}/replace");
    let started = match session.post_json(&path, &body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tripod replica replace: {e}");
            return if e.is_refusal() { 1 } else { 2 };
        }
    };
    if format == "text" {
        eprintln!(
            "{volume}: replica {slot} moves from {} to {with}",
            started
                .get("previous_location")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        );
    }
    if !wait {
        if format == "json" {
            println!("{started:#}");
        }
        return 0;
    }
    let mut follow = tripod::follow::Follower::new(volume, format != "text");
    let mut last = (String::new(), 0u64, std::time::Instant::now());
    let outcome = loop {
        let status = match session.get("os-tripod-status") {
            Ok(status) => status,
            Err(e) => {
                eprintln!("tripod replica replace: {e}");
                break Err(2);
            }
        };
        let Some(replica) = replica_of(&status, volume, slot) else {
            eprintln!("tripod replica replace: volume {volume} is no longer open on the daemon");
            break Err(1);
        };
        let health = replica
            .get("health")
            .and_then(|h| h.as_str())
            .unwrap_or("?");
        let done = replica.get("done").and_then(|v| v.as_u64()).unwrap_or(0);
        if health == "in_service" {
            break Ok(replica);
        }
        if (health, done) != (last.0.as_str(), last.1) {
            last = (health.to_owned(), done, std::time::Instant::now());
        } else if last.2.elapsed() >= STALL {
            eprintln!(
                "tripod replica replace: no progress for {} s ({health}); the daemon keeps trying",
                STALL.as_secs()
            );
            break Err(1);
        }
        if let Some(v) = tripod::follow::volume_of(&status, volume) {
            follow.update(&tripod::follow::activities(v));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    follow.finish();
    match outcome {
        Ok(replica) => {
            if format == "json" {
                println!("{replica:#}");
            } else {
                println!(
                    "{volume}: replica {slot} in service at {}",
                    replica
                        .get("location")
                        .and_then(|v| v.as_str())
                        .unwrap_or(with)
                );
            }
            0
        }
        Err(code) => code,
    }
}

/// `tripod scrub`: the exit code (see [`Command::Scrub`]).
fn run_scrub(volume: &str, format: &str) -> i32 {
    let run = || -> Result<serde_json::Value, tripod::admin_client::ClientError> {
        let session = Session::from_env()?;
        session.post(&format!("os-tripod-volumes/{volume}/scrub"))?;
        let mut follow = tripod::follow::Follower::new(volume, format != "text");
        loop {
            let status = session.get("os-tripod-status")?;
            let scrub = last_scrub(&status, volume).unwrap_or_default();
            if scrub.get("state").and_then(|s| s.as_str()) != Some("running") {
                follow.finish();
                return Ok(scrub);
            }
            if let Some(v) = tripod::follow::volume_of(&status, volume) {
                follow.update(&tripod::follow::activities(v));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    match run() {
        Ok(scrub) => {
            if format == "json" {
                println!("{scrub:#}");
            } else {
                println!("{}", scrub_line(volume, &scrub));
            }
            scrub_exit_code(&scrub)
        }
        Err(e) => {
            eprintln!("tripod scrub: {e}");
            2
        }
    }
}

/// `tripod status`: the exit code (see [`Command::Status`]).
fn run_status(format: &str) -> i32 {
    let asked = Session::from_env().and_then(|s| s.get("os-tripod-status"));
    match asked {
        Ok(status) => {
            if format == "json" {
                println!("{status:#}");
            } else {
                print!("{}", status_table(&status));
            }
            status_exit_code(&status)
        }
        Err(e) => {
            eprintln!("tripod status: {e}");
            2
        }
    }
}

/// `tripod replica`: a node (flags only) or an admin action (a subcommand).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ReplicaCli {
    #[command(subcommand)]
    action: Option<ReplicaAction>,
    #[command(flatten)]
    node: ReplicaArgs,
}

/// Admin actions on a volume's replicas (the daemon's API; `OS_*` variables).
#[derive(Subcommand)]
enum ReplicaAction {
    /// Move replica N of VOLUME to a new root online — an empty directory (e.g. on a new
    /// disk) or a replica node (`tcp://HOST:PORT`) — and follow its rebuild there with a
    /// progress bar (rate, ETA) until it is in service. Clients keep using the volume
    /// meanwhile. Exit 0: the new replica is in service; 1: the daemon refused or the
    /// rebuild did not finish; 2: the daemon could not be asked.
    Replace {
        /// The volume's id.
        volume: String,
        /// The replica slot to move: 0, 1 or 2 (as `tripod status` numbers them).
        #[arg(long = "replica")]
        slot: usize,
        /// The new root: an absolute directory (the copy goes in DIR/VOLUME) or
        /// `tcp://HOST:PORT`.
        #[arg(long = "with")]
        with: String,
        /// Return once the daemon has started the rebuild, without following it.
        #[arg(long)]
        no_wait: bool,
        /// `text` for a person, `json` for a script (the replica's final state).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

/// Flags of `tripod replica` as a node.
#[derive(clap::Args)]
struct ReplicaArgs {
    /// Directory holding this node's copies (one subdirectory per volume); required to run
    /// a node.
    #[arg(long, env = "TRIPOD_REPLICA_DIR")]
    dir: Option<PathBuf>,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:10810", env = "TRIPOD_REPLICA_LISTEN")]
    listen: String,
    /// File holding the cluster secret [default: TRIPOD_CLUSTER_SECRET].
    #[arg(long, env = "TRIPOD_SECRET_FILE")]
    secret_file: Option<PathBuf>,
}

impl ReplicaArgs {
    fn secret(&self) -> anyhow::Result<ClusterSecret> {
        match (&self.secret_file, std::env::var("TRIPOD_CLUSTER_SECRET")) {
            (Some(path), _) => Ok(ClusterSecret::from_file(path)?),
            (None, Ok(text)) => {
                Ok(ClusterSecret::new(text.into_bytes()).context("TRIPOD_CLUSTER_SECRET")?)
            }
            (None, Err(_)) => bail!(
                "a replica node authenticates its peers: set TRIPOD_CLUSTER_SECRET or --secret-file"
            ),
        }
    }
}

/// Runs a replica node until SIGINT/SIGTERM.
fn run_replica(args: ReplicaArgs) -> anyhow::Result<()> {
    let Some(dir) = args.dir.clone() else {
        bail!("a replica node needs --dir DIR (or TRIPOD_REPLICA_DIR): where its copies live");
    };
    let secret = args.secret()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Write-back stores: the set flushes them when its clients flush (or after every write
    // when the daemon runs with durability=sync).
    let node = Arc::new(ReplicaNode::new(&dir, secret, VolumeOptions::write_back()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(
            "replica node serving {} on {}",
            dir.display(),
            listener.local_addr()?
        );
        node.serve(
            listener,
            tripod::daemon::shutdown_signal(),
            std::time::Duration::from_secs(30),
        )
        .await?;
        tracing::info!("replica node stopped");
        Ok::<_, anyhow::Error>(())
    })
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Create a volume; prints its id (the NBD export name).
    Create {
        #[command(flatten)]
        dirs: DirArgs,
        /// Size: bytes, or with a K/M/G/T suffix (powers of 1024).
        #[arg(long)]
        size: String,
    },
    /// List volume ids.
    List {
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// Show a volume's replicas and their health.
    Status {
        #[command(flatten)]
        dirs: DirArgs,
        /// Volume id.
        id: String,
    },
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Open the store in DIR (recovering it if needed) and print its state.
    Info {
        /// Directory of the store.
        dir: PathBuf,
    },
    /// Check every stored block of the store in DIR against its checksum.
    Verify {
        /// Directory of the store.
        dir: PathBuf,
    },
}

/// Parses `1073741824`, `64M`, `1G`, `2T`.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => bail!("unknown size suffix {c:?}"),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = digits.parse().with_context(|| format!("bad size {s:?}"))?;
    n.checked_mul(1u64 << shift).context("size overflows")
}

fn open_store(dir: &PathBuf) -> anyhow::Result<Volume> {
    let storage = Arc::new(FileStorage::new(dir).context("opening the directory")?);
    Volume::open(storage, VolumeOptions::default()).context("opening the store")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The daemon's audit trail goes to its data dir as well; other commands log to stderr.
    let (serve, command) = match cli.command {
        Command::Serve(args) => (Some(args.resolve().map_err(anyhow::Error::msg)?), None),
        other => (None, Some(other)),
    };
    let audit_dir = serve.as_ref().map(|c| c.data_dir.join("audit"));
    let _log_guard =
        logging::init(cli.log_format, audit_dir.as_deref()).map_err(anyhow::Error::msg)?;
    if let Some(config) = serve {
        let password = std::env::var("TRIPOD_ADMIN_PASSWORD").ok();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(tripod::daemon::serve(config, password))?;
        return Ok(());
    }
    let Some(command) = command else {
        return Ok(());
    };
    match command {
        // Run above, once its logging (with the audit file) is in place.
        Command::Serve(_) => {}
        Command::Replica(ReplicaCli { action: None, node }) => run_replica(node)?,
        Command::Replica(ReplicaCli {
            action:
                Some(ReplicaAction::Replace {
                    volume,
                    slot,
                    with,
                    no_wait,
                    format,
                }),
            ..
        }) => std::process::exit(run_replace(&volume, slot, &with, !no_wait, &format)),
        Command::Volume { command } => match command {
            VolumeCommand::Create { dirs, size } => {
                let (id, _) = dirs.data_dir()?.create(parse_size(&size)?)?;
                println!("{id}");
            }
            VolumeCommand::List { dirs } => {
                for id in dirs.data_dir()?.list() {
                    println!("{id}");
                }
            }
            VolumeCommand::Status { dirs, id } => {
                // Status needs no key: an encrypted volume is opened for maintenance.
                let set = dirs.data_dir()?.open_for_maintenance(&id)?;
                println!("{:#?}", set.status());
            }
        },
        Command::Status { format } => std::process::exit(run_status(&format)),
        Command::Attach {
            volume,
            nbd,
            run_dir,
        } => println!("{}", tripod::local_disk::attach(&nbd, &volume, &run_dir)?),
        Command::Detach { volume, run_dir } => tripod::local_disk::detach(&volume, &run_dir)?,
        Command::Scrub { volume, format } => std::process::exit(run_scrub(&volume, &format)),
        Command::Watch { volume, format } => std::process::exit(run_watch(&volume, &format)),
        Command::Fsck {
            dirs,
            repair,
            format,
        } => std::process::exit(run_fsck(&dirs.data_dir()?, repair, &format)),
        Command::Engine { command } => match command {
            EngineCommand::Info { dir } => {
                let v = open_store(&dir)?;
                let space = v.space_used();
                println!(
                    "size {} bytes, block size {}",
                    v.size(),
                    v.geometry().block_size
                );
                println!(
                    "data {} bytes (head {})",
                    space.total_bytes, space.head_bytes
                );
                for s in v.list_snapshots() {
                    println!("snapshot {} size {} used {}", s.id, s.size, s.used_bytes);
                }
            }
            EngineCommand::Verify { dir } => {
                let report = open_store(&dir)?.verify().context("verifying")?;
                println!(
                    "{} blocks checked, {} bad",
                    report.blocks_checked,
                    report.bad.len()
                );
                for b in &report.bad {
                    println!("bad {} in {}", b.block, b.layer);
                }
                if !report.bad.is_empty() {
                    std::process::exit(1);
                }
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
