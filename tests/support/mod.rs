//! Helpers for the daemon's integration tests: a `tripod serve` process on a free port, an
//! in-process NBD server over chosen exports, and running real client tools.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tripod::nbd::{self, Export, Exports, ServerConfig};

pub mod client;
pub mod kms_double;
pub mod nbd_client;
pub mod soak;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the first line of the daemon's `/metrics` at `api` that starts with
/// `line_start` (a metric name with its labels).
pub fn metric(api: &str, line_start: &str) -> Option<u64> {
    let out = Command::new("curl")
        .args(["-s", &format!("{api}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// Polls `done` until it holds; fails the test after a minute.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until something accepts TCP connections on every port, or `child` exits (its exit
/// status as the error) or a minute passes (then it is killed).
pub fn wait_for_ports(child: &mut Child, ports: &[u16]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(status.to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nothing listens on {port} after a minute"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The tripod binary under test.
pub fn tripod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tripod"))
}

/// Runs a command, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The first admin's password of test daemons.
pub const ADMIN_PASSWORD: &str = "test-admin-pw";

/// A `tripod serve` process on a temporary data directory.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    /// NBD port.
    pub port: u16,
    /// Admin API port.
    pub api_port: u16,
    child: Child,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    /// Starts `tripod serve` on `dir` (an existing data dir is reopened).
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_with(dir, &[], &[])
    }

    /// Starts `tripod serve` on `dir` with extra flags and environment. Its log goes to a
    /// file shown if it does not come up; a port taken between choosing and binding it
    /// (another process's connection got it) is retried with fresh ports.
    pub fn start_with(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let api_port = free_port();
            let log = tempfile::NamedTempFile::new().unwrap();
            let mut child = tripod()
                .args(["serve", "--data-dir"])
                .arg(dir.path())
                .args(["--nbd-listen", &format!("127.0.0.1:{port}")])
                .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
                .args(args)
                .env("TRIPOD_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap();
            match wait_for_ports(&mut child, &[port, api_port]) {
                Ok(()) => {
                    return Self {
                        dir,
                        port,
                        api_port,
                        child,
                    }
                }
                Err(status) => {
                    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                    if text.contains("Address already in use") {
                        continue;
                    }
                    panic!("tripod serve did not come up ({status}):\n{text}");
                }
            }
        }
        panic!("no free ports for tripod serve after five tries");
    }

    /// The admin API's base URL.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Kills the process with SIGKILL and returns its data directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Creates a volume of `size` (e.g. "64M"); returns its id.
    pub fn create_volume(&self, size: &str) -> String {
        let out = run_ok(
            tripod()
                .args(["volume", "create", "--data-dir"])
                .arg(self.dir.path())
                .args(["--size", size]),
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn uri(&self, id: &str) -> String {
        format!("nbd://127.0.0.1:{}/{id}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGTERM, checks that it exits cleanly and returns its data directory.
    pub fn stop_keeping_data(mut self) -> tempfile::TempDir {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exports from a fixed map.
pub struct StaticExports(pub HashMap<String, Export>);

impl Exports for StaticExports {
    fn lookup(&self, name: &str) -> Option<Export> {
        self.0.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// An NBD server running in this process (its own runtime thread) over `exports`.
pub struct InProcess {
    pub port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    pub fn start(exports: Arc<dyn Exports>, config: ServerConfig) -> Self {
        let std_listener = StdListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                nbd::run(listener, exports, config, stopped).await.unwrap();
            });
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn uri(&self, name: &str) -> String {
        format!("nbd://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A replica set over three temporary directories, as an export device.
pub fn temp_set(size: u64) -> (tempfile::TempDir, Arc<tripod_replication::ReplicaSet>) {
    let dir = tempfile::tempdir().unwrap();
    let data = tripod::data_dir::DataDir::new(dir.path(), None);
    let (_, set) = data.create(size).unwrap();
    (dir, Arc::new(set))
}

/// A file of `len` deterministic pseudo-random bytes.
pub fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// Flips one bit of the byte at `at` in `file` and syncs it (bit rot on a disk).
pub fn flip(file: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}
