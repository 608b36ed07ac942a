//! The NBD export with real block clients: `tripod serve` as a process, driven by qemu-img,
//! qemu-io, nbdinfo, nbdcopy, nbdsh and fio.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use support::*;
use tripod::nbd::{Export, ServerConfig};

/// The system Python, which has libnbd's bindings (python3-libnbd).
const PYTHON: &str = "/usr/bin/python3";

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri);
    let out = run_ok(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Pattern verification failed"), "{text}");
    assert!(!text.contains("failed"), "{text}");
    text
}

#[test]
fn qemu_img_info_and_convert_to_and_from_an_export() {
    let d = Daemon::start();
    let id = d.create_volume("64M");
    let out = run_ok(
        Command::new("qemu-img")
            .args(["info", "-f", "raw", "--output=json"])
            .arg(d.uri(&id)),
    );
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("\"virtual-size\": 67108864"), "{info}");
    let src = random_file(d.data_dir(), "src.img", 8 << 20, 1);
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(d.uri(&id)),
    );
    let back = d.data_dir().join("back.img");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(d.uri(&id))
            .arg(&back),
    );
    let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&back).unwrap());
    assert_eq!(b.len(), 64 << 20);
    assert!(a[..] == b[..a.len()], "converted data differs");
    assert!(b[a.len()..].iter().all(|&x| x == 0));
}

#[test]
fn qemu_io_patterns_at_aligned_unaligned_and_last_block_offsets() {
    let d = Daemon::start();
    let id = d.create_volume("16M");
    let uri = d.uri(&id);
    let last = (16 << 20) - 4096;
    qemu_io(
        &uri,
        &[
            "write -P 0x11 0 65536",
            "write -P 0x22 1000 3333",
            &format!("write -P 0x33 {last} 4096"),
            "write -P 0x44 16777200 16",
        ],
    );
    let text = qemu_io(
        &uri,
        &[
            "read -P 0x11 0 1000",
            "read -P 0x22 1000 3333",
            "read -P 0x11 4333 61203",
            &format!("read -P 0x33 {last} 4080"),
            "read -P 0x44 16777200 16",
            "read -P 0 65536 65536",
        ],
    );
    assert_eq!(text.matches("read ").count(), 6, "{text}");
    // Past the end: refused, and the server keeps serving.
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 16777216 512"])
        .arg(&uri)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("failed") || !out.status.success(), "{all}");
    qemu_io(&uri, &["read -P 0x11 0 512"]);
}

#[test]
fn nbdinfo_map_shows_holes_for_unwritten_and_trimmed_space() {
    let d = Daemon::start();
    let id = d.create_volume("8M");
    let uri = d.uri(&id);
    let map_of = |uri: &str| -> Vec<(u64, u64, bool)> {
        let out = run_ok(Command::new("nbdinfo").args(["--map", uri]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].parse().unwrap(), f[1].parse().unwrap(), f[3] == "data")
            })
            .collect()
    };
    qemu_io(&uri, &["write -P 0x55 1048576 1048576"]);
    let expected = vec![
        (0, 1048576, false),
        (1048576, 1048576, true),
        (2097152, 6291456, false),
    ];
    assert_eq!(map_of(&uri), expected);
    qemu_io(&uri, &["discard 1048576 524288"]);
    let expected = vec![
        (0, 1572864, false),
        (1572864, 524288, true),
        (2097152, 6291456, false),
    ];
    assert_eq!(map_of(&uri), expected);
    qemu_io(
        &uri,
        &["read -P 0 1048576 524288", "read -P 0x55 1572864 524288"],
    );
}

#[test]
fn nbdcopy_round_trips_a_64_mib_random_image() {
    let d = Daemon::start();
    let id = d.create_volume("64M");
    let src = random_file(d.data_dir(), "rand.img", 64 << 20, 7);
    run_ok(Command::new("nbdcopy").arg(&src).arg(d.uri(&id)));
    let back = d.data_dir().join("back.img");
    run_ok(Command::new("nbdcopy").arg(d.uri(&id)).arg(&back));
    assert!(
        std::fs::read(&src).unwrap() == std::fs::read(&back).unwrap(),
        "round trip differs"
    );
}

#[test]
fn fio_randwrite_with_crc32c_verify_passes() {
    let d = Daemon::start();
    let id = d.create_volume("64M");
    // fio leaves a verify-state file in its working directory: keep it out of the tree.
    let out = run_ok(Command::new("fio").current_dir(d.data_dir()).args([
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={}", d.uri(&id)),
        "--rw=randwrite",
        "--bs=4k",
        "--size=32m",
        "--iodepth=16",
        "--verify=crc32c",
        "--verify_fatal=1",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("err= 0"), "{text}");
}

#[test]
fn two_connections_see_each_others_flushed_writes() {
    let d = Daemon::start();
    let id = d.create_volume("8M");
    let script = format!(
        r#"
import nbd
a = nbd.NBD(); a.connect_uri("{uri}")
b = nbd.NBD(); b.connect_uri("{uri}")
assert a.can_multi_conn()
for i in range(20):
    data = bytes([i + 1]) * 4096
    a.pwrite(data, i * 65536)
    a.flush()
    assert b.pread(4096, i * 65536) == data, i
    b.pwrite(bytes([200 - i]) * 512, i * 65536 + 100)
    b.flush()
    assert a.pread(512, i * 65536 + 100) == bytes([200 - i]) * 512, i
print("ok")
"#,
        uri = d.uri(&id)
    );
    let out = run_ok(Command::new(PYTHON).args(["-c", &script]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn a_read_only_export_refuses_writes() {
    let (_dir, set) = temp_set(8 << 20);
    set.write(0, &[9; 4096]).unwrap();
    let mut map = HashMap::new();
    map.insert(
        "ro".to_owned(),
        Export {
            device: set,
            read_only: true,
        },
    );
    let server = InProcess::start(Arc::new(StaticExports(map)), ServerConfig::default());
    let info = run_ok(Command::new("nbdinfo").arg(server.uri("ro")));
    assert!(String::from_utf8_lossy(&info.stdout).contains("is_read_only: true"));
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 0 4096"])
        .arg(server.uri("ro"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a writable open of a read-only export must fail"
    );
    let mut read = Command::new("qemu-io");
    read.args(["-r", "-f", "raw", "-c", "read -P 9 0 4096"])
        .arg(server.uri("ro"));
    let text = String::from_utf8_lossy(&run_ok(&mut read).stdout).into_owned();
    assert!(text.contains("read 4096/4096"), "{text}");
}

#[test]
fn a_volume_grown_while_connected_shows_its_new_size_to_new_connections() {
    let (_dir, set) = temp_set(8 << 20);
    let mut map = HashMap::new();
    map.insert(
        "v".to_owned(),
        Export {
            device: set.clone(),
            read_only: false,
        },
    );
    let server = InProcess::start(Arc::new(StaticExports(map)), ServerConfig::default());
    let script = format!(
        r#"
import nbd
a = nbd.NBD(); a.connect_uri("{uri}")
assert a.get_size() == 8 << 20
a.pwrite(b"x" * 4096, 0)
print("ready", flush=True)
input()
a.pwrite(b"y" * 4096, 4096)
assert a.pread(4096, 0) == b"x" * 4096
print("ok")
"#,
        uri = server.uri("v")
    );
    let mut child = Command::new(PYTHON)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    set.expand(16 << 20).unwrap();
    let info = run_ok(Command::new("nbdinfo").args(["--size", &server.uri("v")]));
    assert_eq!(
        String::from_utf8_lossy(&info.stdout).trim(),
        (16u64 << 20).to_string()
    );
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ok");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let d = Daemon::start();
    let id = d.create_volume("8M");
    qemu_io(&d.uri(&id), &["write -P 0x77 0 4096"]);
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}
