//! Backups through Cinder's backup API on a running `tripod serve`: full and incremental
//! backups of a volume written through NBD, restored into new and existing volumes and
//! compared byte for byte with `qemu-img compare`; what each backup read and uploaded;
//! deletion (refused with dependents, forced, freeing only unshared blocks); a damaged
//! block object named by verify and by a failed restore; `kill -9` during a backup and
//! during a restore; and the same flow against a real S3-compatible server (moto) when the
//! test venv has it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::client::{openstack, openstack_cli, openstack_ok, qemu_io, Http};
use support::*;

const MIB: u64 = 1 << 20;

/// Writes `len` bytes of seeded random data at `at` of volume `id` through NBD.
fn write_random(d: &Daemon, id: &str, tmp: &Path, at: u64, len: u64, seed: u64) {
    // random_file seeds with `seed | 1`: keep every seed distinct.
    let f = random_file(tmp, &format!("w{seed}"), len as usize, seed * 2 + 1);
    let cmd = format!("write -s {} {at} {len}", f.display());
    let (ok, text) = qemu_io(&d.uri(id), &[&cmd]);
    assert!(ok, "{cmd}: {text}");
}

/// Volume `id`'s content, as a sparse raw file.
fn image_of(d: &Daemon, id: &str, tmp: &Path, name: &str) -> PathBuf {
    let out = tmp.join(name);
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &d.uri(id)])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// Whether volume `id` reads exactly as `image`.
fn same_as(d: &Daemon, id: &str, image: &Path) -> bool {
    let out = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw"])
        .arg(image)
        .arg(d.uri(id))
        .output()
        .unwrap();
    out.status.success()
}

fn backup(h: &Http, body: Value) -> Value {
    let (s, v) = h.call("POST", "backups", Some(json!({ "backup": body })));
    assert_eq!(s, 202, "{v}");
    let id = v["backup"]["id"].as_str().unwrap().to_owned();
    wait_final(h, &format!("backups/{id}"), "backup", "available")
}

/// Waits until `rest` is no longer in a transient status and checks it is `want`.
fn wait_final(h: &Http, rest: &str, key: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (s, v) = h.call("GET", rest, None);
        assert_eq!(s, 200, "{rest}: {v}");
        let status = v[key]["status"].as_str().unwrap_or("").to_owned();
        if ![
            "creating",
            "restoring",
            "deleting",
            "backing-up",
            "restoring-backup",
        ]
        .contains(&status.as_str())
        {
            assert_eq!(status, want, "{rest}: {v}");
            return v[key].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{rest}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn restore(h: &Http, backup: &str, volume: Option<&str>) -> String {
    let body = match volume {
        Some(v) => json!({"restore": {"volume_id": v}}),
        None => json!({"restore": {"name": "restored"}}),
    };
    let (s, v) = h.call("POST", &format!("backups/{backup}/restore"), Some(body));
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["restore"]["backup_id"], backup);
    v["restore"]["volume_id"].as_str().unwrap().to_owned()
}

fn uploaded(b: &Value) -> (u64, u64) {
    let u = &b["os-tripod-backup:uploaded"];
    (
        u["objects"].as_u64().unwrap(),
        u["read_bytes"].as_u64().unwrap(),
    )
}

/// Block objects in a directory target.
fn block_objects(target: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(fans) = std::fs::read_dir(target.join("blocks")) else {
        return out;
    };
    for fan in fans {
        for f in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[test]
fn full_and_incremental_backups_restore_exactly_and_upload_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start();
    let target = d.data_dir().join("backups");
    let h = Http::login(&d.api());
    let vol = h.create_volume(1);
    // 12 MiB at the start (3 ranges) and 4 MiB in the middle (1 range).
    write_random(&d, &vol, tmp.path(), 0, 12 * MIB, 1);
    write_random(&d, &vol, tmp.path(), 512 * MIB, 4 * MIB, 2);
    let first = image_of(&d, &vol, tmp.path(), "first.raw");

    let b1 = backup(&h, json!({"volume_id": vol, "name": "b1"}));
    let b1_id = b1["id"].as_str().unwrap().to_owned();
    assert_eq!(b1["is_incremental"], false);
    assert_eq!(b1["object_count"], 4);
    assert_eq!(uploaded(&b1), (4, 16 * MIB), "a full backup reads the data");
    assert_eq!(block_objects(&target).len(), 4);
    // The volume is back to available and kept serving.
    h.wait(&format!("volumes/{vol}"), "volume", "available");

    // Change one range, add one: the incremental backup reads and uploads just those two.
    write_random(&d, &vol, tmp.path(), 4 * MIB, 4 * MIB, 3);
    write_random(&d, &vol, tmp.path(), 900 * MIB, MIB, 4);
    let second = image_of(&d, &vol, tmp.path(), "second.raw");
    let b2 = backup(
        &h,
        json!({"volume_id": vol, "name": "b2", "incremental": true}),
    );
    let b2_id = b2["id"].as_str().unwrap().to_owned();
    assert_eq!(b2["is_incremental"], true);
    assert_eq!(b2["object_count"], 5);
    assert_eq!(uploaded(&b2), (2, 8 * MIB));
    assert_eq!(block_objects(&target).len(), 6);

    // Nothing changed: nothing read, nothing uploaded.
    let b3 = backup(
        &h,
        json!({"volume_id": vol, "name": "b3", "incremental": true}),
    );
    let b3_id = b3["id"].as_str().unwrap().to_owned();
    assert_eq!(uploaded(&b3), (0, 0));

    // The volume keeps changing; each backup restores exactly what it held.
    write_random(&d, &vol, tmp.path(), 0, MIB, 5);
    let new_vol = restore(&h, &b1_id, None);
    wait_final(&h, &format!("volumes/{new_vol}"), "volume", "available");
    assert!(
        same_as(&d, &new_vol, &first),
        "b1 restored into a new volume"
    );
    // Into an existing volume holding other data: replaced whole.
    let existing = h.create_volume(2);
    write_random(&d, &existing, tmp.path(), 0, 32 * MIB, 6);
    restore(&h, &b2_id, Some(&existing));
    wait_final(&h, &format!("volumes/{existing}"), "volume", "available");
    let restored = image_of(&d, &existing, tmp.path(), "restored.raw");
    let st = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw"])
        .arg(&second)
        .arg(&restored)
        .status()
        .unwrap();
    // compare of a 1 GiB image against a 2 GiB one: equal where both exist, zeros after.
    assert!(st.success(), "b2 restored into an existing volume");
    let (s, v) = h.call(
        "POST",
        &format!("backups/{b2_id}/restore"),
        Some(json!({"restore": {"volume_id": existing}})),
    );
    assert_eq!(s, 202, "{v}");
    wait_final(&h, &format!("volumes/{existing}"), "volume", "available");

    // A backup with an incremental after it cannot be deleted; forced, the others stay
    // restorable and blocks still named stay.
    let (s, v) = h.call("DELETE", &format!("backups/{b2_id}"), None);
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("Incremental backups exist"), "{v}");
    let (s, v) = h.call(
        "POST",
        &format!("backups/{b2_id}/action"),
        Some(json!({"os-force_delete": {}})),
    );
    assert_eq!(s, 202, "{v}");
    wait_gone(&h, &format!("backups/{b2_id}"));
    assert_eq!(
        block_objects(&target).len(),
        6,
        "b3 still names b2's blocks"
    );
    let b3 = h.call("GET", &format!("backups/{b3_id}"), None).1;
    assert_eq!(b3["backup"]["is_incremental"], true, "re-parented to b1");
    let from_b3 = restore(&h, &b3_id, None);
    wait_final(&h, &format!("volumes/{from_b3}"), "volume", "available");
    assert!(same_as(&d, &from_b3, &second), "b3 restores after b2 went");
    // Deleting b3 frees the two blocks only it named; b1 still verifies and restores.
    let (s, v) = h.call("DELETE", &format!("backups/{b3_id}"), None);
    assert_eq!(s, 202, "{v}");
    wait_gone(&h, &format!("backups/{b3_id}"));
    assert_eq!(block_objects(&target).len(), 4);
    let (s, v) = h.call("POST", &format!("os-tripod-backups/{b1_id}/verify"), None);
    assert_eq!((s, &v["verify"]["ok"]), (200, &json!(true)), "{v}");
    assert_eq!(v["verify"]["blocks_checked"], 4);

    // Quotas count backups: with backups=1 used up, a second is refused with 413.
    let (s, v) = h.call(
        "PUT",
        &format!("os-quota-sets/{}", h.project),
        Some(json!({"quota_set": {"backups": 1}})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = h.call(
        "POST",
        "backups",
        Some(json!({"backup": {"volume_id": vol}})),
    );
    assert_eq!(s, 413, "{v}");
    let (s, _) = h.call(
        "PUT",
        &format!("os-quota-sets/{}", h.project),
        Some(json!({"quota_set": {"backups": 10}})),
    );
    assert_eq!(s, 200);

    // One flipped byte in a block object: verify names it, a restore fails naming it and
    // the volume it went into is not left looking good.
    let victim = block_objects(&target).into_iter().next().unwrap();
    flip(&victim, 100);
    let name = victim.file_name().unwrap().to_str().unwrap().to_owned();
    let (_, v) = h.call("POST", &format!("os-tripod-backups/{b1_id}/verify"), None);
    assert_eq!(v["verify"]["ok"], false, "{v}");
    assert!(
        v["verify"]["error"].as_str().unwrap().contains(&name),
        "{v}"
    );
    let bad = restore(&h, &b1_id, None);
    wait_final(&h, &format!("volumes/{bad}"), "volume", "error");
    let b1 = h.wait(&format!("backups/{b1_id}"), "backup", "available");
    assert!(
        b1["fail_reason"].as_str().unwrap_or("").contains(&name),
        "{b1}"
    );
}

fn wait_gone(h: &Http, rest: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = h.call("GET", rest, None);
        if s == 404 {
            return;
        }
        assert!(
            v["backup"]["status"] == "deleting",
            "{rest}: expected deleting or gone: {v}"
        );
        assert!(std::time::Instant::now() < deadline, "{rest}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_kill_during_a_backup_or_a_restore_leaves_final_states_and_nothing_half_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start();
    let h = Http::login(&d.api());
    let vol = h.create_volume(1);
    write_random(&d, &vol, tmp.path(), 0, 256 * MIB, 7);
    let image = image_of(&d, &vol, tmp.path(), "vol.raw");

    let (s, v) = h.call(
        "POST",
        "backups",
        Some(json!({"backup": {"volume_id": vol}})),
    );
    assert_eq!(s, 202, "{v}");
    let b = v["backup"]["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(150));
    let dir = d.kill9();
    let d = Daemon::start_in(dir);
    let h = Http::login(&d.api());
    // The interrupted backup was redone at startup (its volume had it pending).
    let got = wait_final(&h, &format!("backups/{b}"), "backup", "available");
    h.wait(&format!("volumes/{vol}"), "volume", "available");
    let manifest = d.data_dir().join(format!("backups/backups/{b}.json"));
    assert!(manifest.exists(), "{got}");

    let new_vol = restore(&h, &b, None);
    std::thread::sleep(Duration::from_millis(150));
    let dir = d.kill9();
    let d = Daemon::start_in(dir);
    let h = Http::login(&d.api());
    wait_final(&h, &format!("volumes/{new_vol}"), "volume", "available");
    wait_final(&h, &format!("backups/{b}"), "backup", "available");
    assert!(same_as(&d, &new_vol, &image), "the restore was redone");
}

/// The test venv's Python (with moto and boto3), if it has them.
fn moto_python() -> Option<PathBuf> {
    let py = std::env::var_os("TRIPOD_OPENSTACK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tripod-venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import moto.server, boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "moto is not installed for {} (scripts/test installs it)",
        py.display()
    );
    eprintln!("skipping: no Python with moto at {}", py.display());
    None
}

#[test]
fn backups_to_an_s3_server_restore_exactly() {
    let Some(py) = moto_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut moto = Command::new(&py)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let s3 = |script: &str| -> String {
        let code = format!(
            "import boto3,sys\ns3=boto3.client('s3',endpoint_url=sys.argv[1],aws_access_key_id='k',aws_secret_access_key='s',region_name='us-east-1')\n{script}"
        );
        let out = Command::new(&py)
            .args(["-c", &code, &endpoint])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    s3("s3.create_bucket(Bucket='tripod')");
    let count = || -> usize {
        s3("p=s3.get_paginator('list_objects_v2')\nprint(sum(o.get('KeyCount',0) for o in p.paginate(Bucket='tripod',Prefix='bk/blocks/')))")
            .trim()
            .parse()
            .unwrap()
    };
    let d = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &["--backup-target", "s3://tripod/bk"],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let h = Http::login(&d.api());
    let vol = h.create_volume(1);
    write_random(&d, &vol, tmp.path(), 8 * MIB, 8 * MIB, 11);
    let b1 = backup(&h, json!({"volume_id": vol}));
    assert_eq!(count(), 2);
    write_random(&d, &vol, tmp.path(), 100 * MIB, MIB, 12);
    let image = image_of(&d, &vol, tmp.path(), "s3.raw");
    let b2 = backup(&h, json!({"volume_id": vol, "incremental": true}));
    assert_eq!(uploaded(&b2), (1, 4 * MIB));
    assert_eq!(count(), 3);
    let listed =
        s3("print(len(s3.list_objects_v2(Bucket='tripod',Prefix='bk/backups/')['Contents']))");
    assert_eq!(listed.trim(), "2", "two manifests");
    let restored = restore(&h, b2["id"].as_str().unwrap(), None);
    wait_final(&h, &format!("volumes/{restored}"), "volume", "available");
    assert!(same_as(&d, &restored, &image));
    let _ = b1;
    let _ = moto.kill();
    let _ = moto.wait();
}

#[test]
fn the_openstack_cli_creates_lists_restores_and_deletes_backups() {
    let Some(cli) = openstack_cli() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start();
    let os = |args: &[&str]| openstack_ok(&cli, &d, args);
    let h = Http::login(&d.api());
    let vol = os(&[
        "volume", "create", "--size", "1", "v1", "-f", "value", "-c", "id",
    ])
    .trim()
    .to_owned();
    h.wait(&format!("volumes/{vol}"), "volume", "available");
    write_random(&d, &vol, tmp.path(), 0, 8 * MIB, 21);
    let id_of = |out: String| out.trim().to_owned();
    let full = id_of(os(&[
        "volume", "backup", "create", "--name", "full", "v1", "-f", "value", "-c", "id",
    ]));
    wait_final(&h, &format!("backups/{full}"), "backup", "available");
    write_random(&d, &vol, tmp.path(), 64 * MIB, MIB, 22);
    let image = image_of(&d, &vol, tmp.path(), "v1.raw");
    let inc = id_of(os(&[
        "volume",
        "backup",
        "create",
        "--name",
        "inc",
        "--incremental",
        "v1",
        "-f",
        "value",
        "-c",
        "id",
    ]));
    wait_final(&h, &format!("backups/{inc}"), "backup", "available");
    let listed = os(&["volume", "backup", "list", "-f", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let shown: Value =
        serde_json::from_str(&os(&["volume", "backup", "show", "inc", "-f", "json"])).unwrap();
    assert_eq!(shown["is_incremental"], true, "{shown}");
    assert_eq!(shown["volume_id"], vol.as_str(), "{shown}");
    let restored: Value = serde_json::from_str(&os(&[
        "volume", "backup", "restore", "inc", "from-inc", "-f", "json",
    ]))
    .unwrap();
    let new_vol = restored["volume_id"].as_str().unwrap().to_owned();
    wait_final(&h, &format!("volumes/{new_vol}"), "volume", "available");
    assert!(same_as(&d, &new_vol, &image), "restored through the CLI");
    // The full backup has an incremental after it: refused until that one is gone.
    let out = openstack(&cli, &d)
        .args(["volume", "backup", "delete", "full"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    os(&["volume", "backup", "delete", "inc"]);
    wait_gone(&h, &format!("backups/{inc}"));
    os(&["volume", "backup", "delete", "full"]);
    wait_gone(&h, &format!("backups/{full}"));
    assert!(block_objects(&d.data_dir().join("backups")).is_empty());
}

#[test]
fn a_fresh_daemon_restores_a_100_gib_volume_from_the_same_target_after_an_import() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let target_arg = target.path().to_str().unwrap().to_owned();
    let a = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &["--backup-target", &target_arg],
        &[],
    );
    let h = Http::login(&a.api());
    let vol = h.create_volume(100);
    write_random(&a, &vol, tmp.path(), 0, 64 * MIB, 31);
    write_random(&a, &vol, tmp.path(), 99 << 30, 64 * MIB, 32);
    let full = backup(&h, json!({"volume_id": vol, "name": "full"}));
    assert_eq!(uploaded(&full), (32, 128 * MIB), "only the data is read");
    // 8 MiB changed in a 100 GiB volume: 8 MiB read, two objects uploaded.
    write_random(&a, &vol, tmp.path(), 50 << 30, 8 * MIB, 33);
    let inc = backup(
        &h,
        json!({"volume_id": vol, "name": "inc", "incremental": true}),
    );
    assert_eq!(uploaded(&inc), (2, 8 * MIB));
    assert_eq!(inc["os-tripod-backup:progress"], Value::Null, "not running");
    let inc_id = inc["id"].as_str().unwrap().to_owned();
    let image = image_of(&a, &vol, tmp.path(), "big.raw");
    let (s, rec) = h.call("GET", &format!("backups/{inc_id}/export_record"), None);
    assert_eq!(s, 200, "{rec}");
    drop(a);

    // Another daemon with nothing but the target: the record lists it, it restores.
    let b = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &["--backup-target", &target_arg],
        &[],
    );
    let h = Http::login(&b.api());
    let (s, v) = h.call("POST", "backups/import_record", Some(rec.clone()));
    assert_eq!(s, 201, "{v}");
    let (s, v) = h.call("POST", "backups/import_record", Some(rec));
    assert_eq!(s, 409, "imported once: {v}");
    let shown = h.wait(&format!("backups/{inc_id}"), "backup", "available");
    assert_eq!(shown["size"], 100);
    let restored = restore(&h, &inc_id, None);
    wait_final(&h, &format!("volumes/{restored}"), "volume", "available");
    assert!(
        same_as(&b, &restored, &image),
        "restored from the target alone"
    );
    // A record for a backup that is not in the target is refused.
    let (s, v) = h.call(
        "POST",
        "backups/import_record",
        Some(
            json!({"backup-record": {"backup_service": "tripod.backup.object_store",
            "backup_url": hex_json(&json!({"id": "6f1c1a3e-0000-4000-8000-000000000000",
                "volume_id": "x", "name": null, "description": null, "container": null,
                "size": 1, "parent_id": null, "data_timestamp": 0, "object_count": 0}))}}),
        ),
    );
    assert_eq!(s, 400, "{v}");
}

fn hex_json(v: &Value) -> String {
    v.to_string().bytes().map(|b| format!("{b:02x}")).collect()
}
