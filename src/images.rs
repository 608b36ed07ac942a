//! Volume images: the formats an upload can produce and writing a snapshot of a volume into
//! an image file (raw directly, other formats through `qemu-img convert`).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tripod_engine::{SnapshotId, View};
use tripod_replication::{ReplicaSet, ReplicationError};

use crate::catalog::ImageRecord;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image file or its directory.
    #[error("image file: {0}")]
    Io(#[source] std::io::Error),
    /// Reading the volume.
    #[error("reading the volume: {0}")]
    Read(#[from] ReplicationError),
    /// A format no upload produces.
    #[error("unsupported image format {0}")]
    Format(String),
    /// `qemu-img convert` failed.
    #[error("qemu-img convert: {0}")]
    Convert(String),
}

/// Formats an upload can produce, and how `qemu-img` names them (`raw` is written directly).
pub fn image_format(disk_format: &str) -> Option<&'static str> {
    match disk_format {
        "raw" => Some("raw"),
        "qcow2" => Some("qcow2"),
        "vmdk" => Some("vmdk"),
        "vdi" => Some("vdi"),
        "vhd" => Some("vpc"),
        "vhdx" => Some("vhdx"),
        _ => None,
    }
}

/// Whether `qemu-img` can be run (needed for every image format but `raw`).
pub fn qemu_img_available() -> bool {
    std::process::Command::new("qemu-img")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Writes snapshot `snap` of `set` as `image` into `dir` (`image.file`), reading `step` bytes
/// at a time; the file and the directory are synced before it returns.
pub fn write(
    set: &ReplicaSet,
    snap: &SnapshotId,
    image: &ImageRecord,
    dir: &Path,
    step: u64,
    progress: &dyn Fn(u64),
) -> Result<(), ImageError> {
    let img = ImageError::Io;
    std::fs::create_dir_all(dir).map_err(img)?;
    let final_path = dir.join(&image.file);
    let raw_path = dir.join(format!("{}.raw.partial", image.id));
    let size = set.size();
    {
        let mut file = std::fs::File::create(&raw_path).map_err(img)?;
        file.set_len(size).map_err(img)?;
        let view = View::Snapshot(snap.clone());
        let mut off = 0;
        while off < size {
            let n = step.min(size - off);
            let data = set.read_view(&view, off, n)?;
            if data.iter().any(|b| *b != 0) {
                file.write_all_at(&data, off).map_err(img)?;
            }
            off += n;
            progress(off);
        }
        file.flush().map_err(img)?;
        file.sync_all().map_err(img)?;
    }
    let format = image_format(&image.disk_format)
        .ok_or_else(|| ImageError::Format(image.disk_format.clone()))?;
    if format == "raw" {
        std::fs::rename(&raw_path, &final_path).map_err(img)?;
    } else {
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", format])
            .arg(&raw_path)
            .arg(&final_path)
            .output()
            .map_err(img);
        let _ = std::fs::remove_file(&raw_path);
        let out = out?;
        if !out.status.success() {
            return Err(ImageError::Convert(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        std::fs::File::open(&final_path)
            .and_then(|f| f.sync_all())
            .map_err(img)?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(img)?;
    Ok(())
}
