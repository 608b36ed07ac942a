//! A volume as a local disk without the kernel NBD module: `tripod attach` (nbdfuse + a loop
//! device), a real ext4 made, mounted, written, unmounted, `tripod detach`, then attached
//! again and the files read back. Needs root and /dev/fuse (CI has both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn attach(nbd: &str, id: &str, run: &Path) -> String {
    let dev = ok(tripod()
        .args(["attach", id, "--nbd", nbd, "--run-dir"])
        .arg(run));
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    dev
}

fn detach(id: &str, run: &Path) {
    ok(tripod().args(["detach", id, "--run-dir"]).arg(run));
}

#[test]
fn a_volume_formatted_mounted_and_read_back_through_nbdfuse_and_a_loop_device() {
    let root = ok(Command::new("id").arg("-u")) == "0";
    if !root || !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: needs root and /dev/fuse");
        return;
    }
    let d = Daemon::start();
    let id = d.create_volume("64M");
    let nbd = d.uri(&id);
    let nbd = nbd
        .trim_start_matches("nbd://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let run = tempfile::tempdir().unwrap();
    let fs = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..3 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();

    let dev = attach(&nbd, &id, run.path());
    ok(Command::new("mkfs.ext4").args(["-q", &dev]));
    ok(Command::new("mount").arg(&dev).arg(fs.path()));
    std::fs::write(fs.path().join("hello.txt"), "hello from a tripod volume\n").unwrap();
    std::fs::write(fs.path().join("payload.bin"), &payload).unwrap();
    ok(Command::new("umount").arg(fs.path()));
    detach(&id, run.path());
    assert!(
        !run.path().join(&id).join("disk").exists(),
        "the FUSE mount is gone"
    );

    // Attached again (the data went through the daemon to its replicas): the files are there.
    let dev = attach(&nbd, &id, run.path());
    ok(Command::new("mount").arg(&dev).arg(fs.path()));
    let hello = std::fs::read_to_string(fs.path().join("hello.txt")).unwrap();
    let back = std::fs::read(fs.path().join("payload.bin")).unwrap();
    ok(Command::new("umount").arg(fs.path()));
    detach(&id, run.path());
    assert_eq!(hello, "hello from a tripod volume\n");
    assert!(back == payload, "payload differs");
    // And the file system checks clean through a client of its own (qemu-img reads it raw).
    let (ok_io, text) = support::client::qemu_io(&d.uri(&id), &["read -P 0 0 1k"]);
    assert!(ok_io, "the first KiB of ext4 is zeros: {text}");
}
