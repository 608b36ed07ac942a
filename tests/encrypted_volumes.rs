//! Encrypted volumes through the daemon, as users meet them: an admin gives a volume type an
//! encryption spec (Cinder's `types/{id}/encryption`), or a user asks with EVS's
//! `__system__encrypted` metadata; NBD clients (nbdcopy, qemu-io) read and write plaintext
//! while the replica directories hold none of it; snapshots and clones stay encrypted with
//! the same master key; encryption never changes by retype or transfer; a restart opens the
//! volume again from its wrapped key, and a missing master key keeps it closed without
//! touching its replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::client::{openstack_cli, openstack_ok, qemu_io, Http};
use support::*;

/// Every 8-byte window of `pattern` (random data: a chance match is negligible).
fn windows(pattern: &[u8]) -> HashSet<u64> {
    pattern
        .windows(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .filter(|w| *w != 0)
        .collect()
}

/// Whether any file under `dir` holds 8 consecutive bytes of the pattern.
fn found_under(dir: &Path, needles: &HashSet<u64>) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        if path.is_dir() {
            found_under(&path, needles)
        } else {
            std::fs::read(&path)
                .unwrap()
                .windows(8)
                .any(|w| needles.contains(&u64::from_le_bytes(w.try_into().unwrap())))
        }
    })
}

/// Every file under `dir` with its bytes.
fn files_under(dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.insert(path.display().to_string(), std::fs::read(&path).unwrap());
        }
    }
}

fn create(h: &Http, body: Value) -> Value {
    let (s, v) = h.call("POST", "volumes", Some(json!({ "volume": body })));
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("volumes/{id}"), "volume", "available")
}

fn replica_dirs(data_dir: &Path, id: &str) -> Vec<std::path::PathBuf> {
    (0..3)
        .map(|r| data_dir.join("replicas").join(r.to_string()).join(id))
        .collect()
}

#[test]
fn an_encrypted_type_makes_volumes_clients_use_in_plaintext_and_replicas_hold_only_ciphertext() {
    let d = Daemon::start();
    let h = Http::login(&d.api());
    let (s, t) = h.call(
        "POST",
        "types",
        Some(json!({"volume_type": {"name": "encrypted-ssd"}})),
    );
    assert_eq!(s, 200, "{t}");
    let type_id = t["volume_type"]["id"].as_str().unwrap().to_owned();
    let enc = format!("types/{type_id}/encryption");
    let (s, v) = h.call("GET", &enc, None);
    assert_eq!((s, v.clone()), (200, json!({})), "no spec yet");
    // Only the scheme Tripod offers is accepted, with a reason.
    for bad in [
        json!({"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256}),
        json!({"control_location": "front-end"}),
        json!({"key_size": 128}),
    ] {
        let (s, v) = h.call("POST", &enc, Some(json!({ "encryption": bad })));
        assert_eq!(s, 400, "{v}");
    }
    let (s, v) = h.call(
        "POST",
        &enc,
        Some(json!({"encryption": {"provider": "tripod", "cipher": "aes-256-gcm-siv", "key_size": 256, "control_location": "back-end"}})),
    );
    assert_eq!(s, 200, "{v}");
    let encryption_id = v["encryption"]["encryption_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = h.call("GET", &enc, None);
    assert_eq!(v["cipher"], "aes-256-gcm-siv");
    assert_eq!(v["volume_type_id"], type_id.as_str());
    let (s, v) = h.call("GET", &format!("{enc}/cipher"), None);
    assert_eq!((s, v), (200, json!({"cipher": "aes-256-gcm-siv"})));

    let vol = create(&h, json!({"size": 1, "volume_type": "encrypted-ssd"}));
    let id = vol["id"].as_str().unwrap().to_owned();
    assert_eq!(vol["encrypted"], true, "{vol}");
    let meta = &vol["metadata"];
    assert_eq!(meta["__system__encrypted"], "1");
    let cmk = meta["__system__cmkid"].as_str().unwrap().to_owned();
    // The project's default master key was made on first use, private to the daemon's user.
    let key_files: Vec<_> = walk_keys(&d.data_dir().join("keys"));
    assert_eq!(key_files.len(), 1, "{key_files:?}");
    assert!(key_files[0].ends_with(format!("{cmk}.key")));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_files[0])
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The type's spec is fixed while volumes have it.
    let (s, v) = h.call("DELETE", &format!("{enc}/{encryption_id}"), None);
    assert_eq!(s, 400, "{v}");

    // A random image in and out through NBD: equal; the replicas hold none of it.
    let image = random_file(d.data_dir(), "image.raw", 4 << 20, 31);
    run_ok(Command::new("nbdcopy").arg(&image).arg(d.uri(&id)));
    let back = d.data_dir().join("back.raw");
    run_ok(Command::new("nbdcopy").arg(d.uri(&id)).arg(&back));
    let data = std::fs::read(&image).unwrap();
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), 1 << 30);
    assert!(got[..data.len()] == data[..], "round trip differs");
    assert!(got[data.len()..].iter().all(|b| *b == 0));
    drop(got);
    std::fs::remove_file(&back).unwrap();
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &["write -P 0x5c 4000 9000", "read -P 0x5c 4000 9000", "flush"],
    );
    assert!(ok, "{text}");
    let needles = windows(&data);
    for dir in replica_dirs(d.data_dir(), &id) {
        assert!(dir.exists());
        assert!(
            !found_under(&dir, &needles),
            "plaintext in {}",
            dir.display()
        );
    }
    // The same image on a plain volume is found in its replicas: the search works.
    let plain = create(&h, json!({"size": 1}));
    let plain_id = plain["id"].as_str().unwrap().to_owned();
    assert_eq!(plain["encrypted"], false);
    run_ok(Command::new("nbdcopy").arg(&image).arg(d.uri(&plain_id)));
    let (ok, text) = qemu_io(&d.uri(&plain_id), &["flush"]);
    assert!(ok, "{text}");
    assert!(found_under(
        &replica_dirs(d.data_dir(), &plain_id)[0],
        &needles
    ));

    // A snapshot's volume is encrypted with the same master key and reads the same.
    let (s, v) = h.call(
        "POST",
        "snapshots",
        Some(json!({"snapshot": {"volume_id": id, "name": "s"}})),
    );
    assert_eq!(s, 202, "{v}");
    let snap = v["snapshot"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("snapshots/{snap}"), "snapshot", "available");
    let child = create(&h, json!({"snapshot_id": snap}));
    let child_id = child["id"].as_str().unwrap().to_owned();
    assert_eq!(child["encrypted"], true);
    assert_eq!(child["metadata"]["__system__cmkid"], cmk.as_str());
    let clone = create(&h, json!({"source_volid": id}));
    assert_eq!(clone["encrypted"], true);
    for v in [&child_id, clone["id"].as_str().unwrap()] {
        let (ok, text) = qemu_io(&d.uri(v), &["read -P 0x5c 4000 9000"]);
        assert!(ok, "{v}: {text}");
    }
    // A plain volume's clone cannot be asked to be encrypted; encryption never changes.
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(
            json!({"volume": {"source_volid": plain_id, "metadata": {"__system__encrypted": "1"}}}),
        ),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.call(
        "POST",
        &format!("volumes/{id}/action"),
        Some(json!({"os-retype": {"new_type": "__DEFAULT__"}})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.call(
        "POST",
        &format!("volumes/{plain_id}/action"),
        Some(json!({"os-retype": {"new_type": "encrypted-ssd"}})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.call(
        "POST",
        "os-volume-transfer",
        Some(json!({"transfer": {"volume_id": id}})),
    );
    assert_eq!(s, 400, "{v}");

    // After a restart the volume opens again from its wrapped key.
    let dir = d.stop_keeping_data();
    let d = Daemon::start_in(dir);
    let (ok, text) = qemu_io(&d.uri(&id), &["read -P 0x5c 4000 9000"]);
    assert!(ok, "{text}");

    // Without its master key it stays closed, and its replicas are not touched; the plain
    // volume is served as ever.
    let dir = d.stop_keeping_data();
    let mut before = BTreeMap::new();
    for r in replica_dirs(dir.path(), &id) {
        files_under(&r, &mut before);
    }
    let key_file = walk_keys(&dir.path().join("keys")).remove(0);
    let saved = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let d = Daemon::start_in(dir);
    let (ok, _) = qemu_io(&d.uri(&id), &["read 0 4096"]);
    assert!(!ok, "an encrypted volume was served without its master key");
    let (ok, text) = qemu_io(&d.uri(&plain_id), &["read 0 4096"]);
    assert!(ok, "{text}");
    let dir = d.stop_keeping_data();
    let mut after = BTreeMap::new();
    for r in replica_dirs(dir.path(), &id) {
        files_under(&r, &mut after);
    }
    assert!(before == after, "a refused open changed the replicas");
    // With the key back, it is served again.
    std::fs::write(&key_file, saved).unwrap();
    let d = Daemon::start_in(dir);
    let (ok, text) = qemu_io(&d.uri(&id), &["read -P 0x5c 4000 9000"]);
    assert!(ok, "{text}");
}

/// The master key files under the key store.
fn walk_keys(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk_keys(&path));
        } else if path.extension().is_some_and(|x| x == "key") {
            out.push(path);
        }
    }
    out
}

#[test]
fn evs_metadata_asks_for_encryption_with_the_default_or_a_named_master_key() {
    let d = Daemon::start();
    let h = Http::login(&d.api());
    let a = create(
        &h,
        json!({"size": 1, "metadata": {"__system__encrypted": "1"}}),
    );
    assert_eq!(a["encrypted"], true);
    let cmk = a["metadata"]["__system__cmkid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same default key serves the project's next volume, named or not.
    let b = create(
        &h,
        json!({"size": 1, "metadata": {"__system__encrypted": "1", "__system__cmkid": cmk}}),
    );
    assert_eq!(b["metadata"]["__system__cmkid"], cmk.as_str());
    let c = create(
        &h,
        json!({"size": 1, "metadata": {"__system__encrypted": "1"}}),
    );
    assert_eq!(c["metadata"]["__system__cmkid"], cmk.as_str());
    for bad in [
        json!({"__system__encrypted": "1", "__system__cmkid": "0b6cf4ad-2a4e-4d5f-9f51-3f3d6c1b2a90"}),
        json!({"__system__encrypted": "1", "__system__cmkid": "../../etc/passwd"}),
        json!({"__system__cmkid": cmk}),
        json!({"__system__encrypted": "yes"}),
    ] {
        let (s, v) = h.call(
            "POST",
            "volumes",
            Some(json!({"volume": {"size": 1, "metadata": bad}})),
        );
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let id = a["id"].as_str().unwrap();
    let (ok, text) = qemu_io(
        &d.uri(id),
        &["write -P 0x42 0 1M", "read -P 0x42 0 1M", "read -P 0 1M 1M"],
    );
    assert!(ok, "{text}");

    // A backup of it restores into a new volume encrypted under the same master key.
    let (s, v) = h.call(
        "POST",
        "backups",
        Some(json!({"backup": {"volume_id": id}})),
    );
    assert_eq!(s, 202, "{v}");
    let backup = v["backup"]["id"].as_str().unwrap().to_owned();
    h.wait(&format!("backups/{backup}"), "backup", "available");
    let (s, v) = h.call(
        "POST",
        &format!("backups/{backup}/restore"),
        Some(json!({"restore": {"name": "restored"}})),
    );
    assert_eq!(s, 202, "{v}");
    let restored = v["restore"]["volume_id"].as_str().unwrap().to_owned();
    let r = h.wait(&format!("volumes/{restored}"), "volume", "available");
    assert_eq!(r["encrypted"], true, "{r}");
    assert_eq!(r["metadata"]["__system__cmkid"], cmk.as_str());
    let (ok, text) = qemu_io(&d.uri(&restored), &["read -P 0x42 0 1M"]);
    assert!(ok, "{text}");
}

#[test]
fn the_openstack_cli_makes_an_encrypted_type_and_volume() {
    let Some(cli) = openstack_cli() else {
        return;
    };
    let d = Daemon::start();
    let os = |args: &[&str]| openstack_ok(&cli, &d, args);
    os(&[
        "volume",
        "type",
        "create",
        "encrypted",
        "--encryption-provider",
        "tripod",
        "--encryption-cipher",
        "aes-256-gcm-siv",
        "--encryption-key-size",
        "256",
        "--encryption-control-location",
        "back-end",
    ]);
    let shown = os(&[
        "volume",
        "type",
        "show",
        "encrypted",
        "--encryption-type",
        "-f",
        "json",
    ]);
    assert!(shown.contains("aes-256-gcm-siv"), "{shown}");
    let id = os(&[
        "volume",
        "create",
        "--type",
        "encrypted",
        "--size",
        "1",
        "secret",
        "-f",
        "value",
        "-c",
        "id",
    ])
    .trim()
    .to_owned();
    let h = Http::login(&d.api());
    let v = h.wait(&format!("volumes/{id}"), "volume", "available");
    assert_eq!(v["encrypted"], true, "{v}");
    let (ok, text) = qemu_io(&d.uri(&id), &["write -P 0x77 0 64k", "read -P 0x77 0 64k"]);
    assert!(ok, "{text}");
}
