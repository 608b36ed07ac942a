//! Placements: where a volume's replicas live when that is not the data directory's default.
//! A volume whose replica was replaced (`tripod replica replace`) keeps that replica on the
//! new root; the override is a small JSON file per such volume, `<dir>/<volume id>.json`:
//!
//! ```json
//! {"replicas": [null, "/mnt/new-disk/tripod", null]}
//! ```
//!
//! Each entry is a replica root (a directory holding `<volume id>/`, or `tcp://HOST:PORT`),
//! `null` for the default. Files are replaced atomically (write, sync, rename, sync the
//! directory), so a crash leaves the old placement or the new one, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest placement file read (a damaged one must not become an allocation).
const MAX_FILE: u64 = 64 << 10;

/// The replica roots of one volume that differ from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Per replica slot: a root location, or `None` for the data directory's default.
    pub replicas: [Option<String>; 3],
}

/// The directory of placement files.
#[derive(Debug, Clone)]
pub struct Placements {
    dir: PathBuf,
}

impl Placements {
    /// Placements kept in `dir` (created when the first one is stored).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The placement of volume `id` (all defaults if it has none).
    pub fn load(&self, id: &str) -> std::io::Result<Placement> {
        let path = self.path(id);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Placement::default()),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() > MAX_FILE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is larger than a placement can be", path.display()),
            ));
        }
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Stores the placement of volume `id` durably (removes the file when all are defaults).
    pub fn store(&self, id: &str, placement: &Placement) -> std::io::Result<()> {
        if placement.replicas.iter().all(Option::is_none) {
            return self.remove(id);
        }
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{id}.json.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(placement).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.path(id))?;
        sync_dir(&self.dir)
    }

    /// Forgets volume `id`'s placement.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ids of every volume with a placement.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect()
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn placements_round_trip_and_vanish_when_back_to_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let p = Placements::new(tmp.path().join("placements"));
        assert_eq!(p.load("v1").unwrap(), Placement::default());
        let moved = Placement {
            replicas: [
                None,
                Some("/mnt/new".into()),
                Some("tcp://10.0.0.9:10810".into()),
            ],
        };
        p.store("v1", &moved).unwrap();
        assert_eq!(p.load("v1").unwrap(), moved);
        assert_eq!(p.ids(), vec!["v1".to_string()]);
        p.store("v1", &Placement::default()).unwrap();
        assert!(p.ids().is_empty());
        assert_eq!(p.load("v1").unwrap(), Placement::default());
    }

    #[test]
    fn a_damaged_placement_is_an_error_not_a_default() {
        let tmp = tempfile::tempdir().unwrap();
        let p = Placements::new(tmp.path());
        std::fs::write(tmp.path().join("v2.json"), b"{\"replicas\": [1,").unwrap();
        assert!(p.load("v2").is_err());
    }
}
