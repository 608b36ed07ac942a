//! A volume as a local block device without the kernel NBD module: libnbd's `nbdfuse`
//! shows the export as a file (`<run-dir>/<volume>/disk`), and a loop device over that file
//! is a disk the kernel can format and mount. `tripod attach` does both steps, `tripod
//! detach` undoes them. Needs root (loop devices, FUSE mounts), `nbdfuse` (libnbd-bin) and
//! `losetup` (util-linux).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a volume could not be attached or detached.
#[derive(Debug, thiserror::Error)]
pub enum LocalDiskError {
    /// A tool could not be run (not installed?).
    #[error("running {tool}: {source} (install libnbd-bin and util-linux)")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{tool} failed: {message}")]
    Failed {
        /// The program.
        tool: &'static str,
        /// Its error output.
        message: String,
    },
    /// The export did not appear as a file in time.
    #[error("the export did not appear at {0} (is the daemon's NBD address right?)")]
    NoExport(PathBuf),
    /// A path the steps need could not be made.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// Where volume `volume`'s FUSE mount lives under `run_dir`.
pub fn mount_dir(run_dir: &Path, volume: &str) -> PathBuf {
    run_dir.join(volume)
}

fn run(tool: &'static str, args: &[&str]) -> Result<String, LocalDiskError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| LocalDiskError::Tool { tool, source })?;
    if !out.status.success() {
        return Err(LocalDiskError::Failed {
            tool,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Exposes volume `volume` of the daemon whose NBD server is at `nbd` (`host:port`) as a
/// loop device, and returns the device (`/dev/loopN`).
pub fn attach(nbd: &str, volume: &str, run_dir: &Path) -> Result<String, LocalDiskError> {
    if volume.is_empty() || volume.contains('/') || volume.starts_with('.') {
        return Err(LocalDiskError::Failed {
            tool: "tripod attach",
            message: format!("{volume:?} is not a volume id"),
        });
    }
    let dir = mount_dir(run_dir, volume);
    std::fs::create_dir_all(&dir).map_err(|e| LocalDiskError::Io(dir.clone(), e))?;
    let file = dir.join("disk");
    let uri = format!("nbd://{nbd}/{volume}");
    // nbdfuse serves the mount until it is unmounted: it runs on after this command.
    Command::new("nbdfuse")
        .arg(&file)
        .arg(&uri)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LocalDiskError::Tool {
            tool: "nbdfuse",
            source,
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        if Instant::now() > deadline {
            let _ = run("umount", &[&dir.to_string_lossy()]);
            return Err(LocalDiskError::NoExport(file));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match run("losetup", &["--find", "--show", &file.to_string_lossy()]) {
        Ok(dev) => Ok(dev),
        Err(e) => {
            let _ = run("umount", &[&dir.to_string_lossy()]);
            Err(e)
        }
    }
}

/// Undoes [`attach`]: detaches every loop device over the volume's file and ends its FUSE
/// mount. The file system on it must be unmounted first.
pub fn detach(volume: &str, run_dir: &Path) -> Result<(), LocalDiskError> {
    let dir = mount_dir(run_dir, volume);
    let file = dir.join("disk");
    let listed = run("losetup", &["--associated", &file.to_string_lossy()])?;
    for line in listed.lines() {
        if let Some((dev, _)) = line.split_once(':') {
            run("losetup", &["--detach", dev])?;
        }
    }
    run("umount", &[&dir.to_string_lossy()])?;
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_id_names_a_mount() {
        let run = Path::new("/run/tripod");
        assert_eq!(mount_dir(run, "v1"), PathBuf::from("/run/tripod/v1"));
        for bad in ["", "../etc", "a/b", ".hidden"] {
            assert!(attach("127.0.0.1:1", bad, run).is_err(), "{bad:?}");
        }
    }
}
