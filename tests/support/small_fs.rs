//! Small real file systems for disk-full tests: an ext4 image on a loop device (as the
//! design's "loopback-backed test volumes"), or, where loop devices are missing, a
//! size-limited tmpfs. Mounting needs root; without it the caller skips with the printed
//! reason. Shared by the engine's, the replica set's and the daemon's tests (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted small file system, unmounted when dropped.
pub struct SmallFs {
    /// Where it is mounted.
    pub dir: tempfile::TempDir,
    /// Holds the ext4 image (if any).
    _image: Option<tempfile::TempDir>,
    /// What it is, for messages.
    pub kind: &'static str,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}

impl SmallFs {
    /// A file system of about `mib` MiB: ext4 on a loop device, else tmpfs; `None` (the
    /// reason printed) where neither can be mounted.
    pub fn new(mib: u64) -> Option<Self> {
        match Self::ext4(mib) {
            Ok(fs) => return Some(fs),
            Err(e) => eprintln!("no loop-mounted ext4 ({e}); trying tmpfs"),
        }
        match Self::tmpfs(mib) {
            Ok(fs) => Some(fs),
            Err(e) => {
                eprintln!("SKIPPED: cannot mount a small file system: {e}");
                None
            }
        }
    }

    fn ext4(mib: u64) -> Result<Self, String> {
        let image_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = image_dir.path().join("fs.img");
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        f.set_len(mib << 20).map_err(|e| e.to_string())?;
        // No blocks reserved for root (tests run as root and must see the disk full).
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-E", "nodiscard"])
            .arg(&image))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path()))?;
        Ok(Self {
            dir,
            _image: Some(image_dir),
            kind: "ext4 on a loop device",
        })
    }

    fn tmpfs(mib: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path()))?;
        Ok(Self {
            dir,
            _image: None,
            kind: "tmpfs",
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file until a write fails for lack of space; returns the
    /// file (remove it to free the space).
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for size in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
            let buf = vec![0xeeu8; size];
            while f.write_all(&buf).is_ok() {}
        }
        let _ = f.sync_all();
        path
    }

    /// Frees what [`SmallFs::fill`] took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path().join("filler"));
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a test that failed may still hold files open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
