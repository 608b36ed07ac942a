//! `tripod`: the command-line entry point. Until the daemon lands it reports its version and
//! can create and inspect engine volumes in a directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tripod_engine::{FileStorage, Geometry, Volume, VolumeOptions};

/// Tripod: three-copy block storage.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an engine volume in DIR.
    Create {
        /// Directory of the volume (created if missing).
        dir: PathBuf,
        /// Size in bytes (a multiple of the block size).
        #[arg(long)]
        size: u64,
        /// Block size: 4096 or 512.
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
    },
    /// Open the volume in DIR (recovering it if needed) and print its state.
    Info {
        /// Directory of the volume.
        dir: PathBuf,
    },
    /// Check every stored block of the volume in DIR against its checksum.
    Verify {
        /// Directory of the volume.
        dir: PathBuf,
    },
}

fn open(dir: &PathBuf) -> anyhow::Result<Volume> {
    let storage = Arc::new(FileStorage::new(dir).context("opening the directory")?);
    Volume::open(storage, VolumeOptions::default()).context("opening the volume")
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Create {
            dir,
            size,
            block_size,
        } => {
            let storage = Arc::new(FileStorage::new(&dir).context("creating the directory")?);
            let geometry = Geometry {
                block_size,
                ..Geometry::default()
            };
            Volume::create(storage, size, geometry, VolumeOptions::default())
                .context("creating the volume")?;
            println!("created {} ({size} bytes)", dir.display());
        }
        Command::Info { dir } => {
            let v = open(&dir)?;
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
        Command::Verify { dir } => {
            let report = open(&dir)?.verify().context("verifying")?;
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
    }
    Ok(())
}
