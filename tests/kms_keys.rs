//! Master keys in a KMS (`--kms-endpoint`): the provider against a loopback double of the
//! Huawei Cloud KMS dialect (`tests/support/kms_double.rs`), and a daemon whose encrypted
//! volumes' keys live there — served through NBD, reopened after a restart, and kept closed
//! while the KMS cannot be reached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::client::{qemu_io, Http};
use support::kms_double::{start, TOKEN};
use support::*;
use tripod::keys::kms::KmsKeyProvider;
use tripod::keys::{cipher_of, new_volume_key, share_volume_key, KeyError, KeyProvider};

#[test]
fn data_keys_wrapped_by_the_kms_open_only_in_their_project_and_volume() {
    let (url, kms, _rt) = start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let p = KmsKeyProvider::new(&url, "kms-project", token.clone());
    let cmk = p.default_key("p1").unwrap();
    assert_eq!(p.default_key("p1").unwrap(), cmk, "made once");
    let other = p.default_key("p2").unwrap();
    assert_ne!(other, cmk);
    assert_eq!(kms.keys.lock()[&cmk].0, "tripod/p1/evs-default");

    let rec = new_volume_key(&p, "p1", &cmk, "vol-1").unwrap();
    let a = cipher_of(&p, "p1", "vol-1", &rec).unwrap();
    let b = cipher_of(&p, "p1", "vol-1", &rec).unwrap();
    assert_eq!(a.key_check(), b.key_check());
    // A clone's key is the same key, wrapped for the clone.
    let clone = share_volume_key(&p, "p1", "vol-1", &rec, "vol-2").unwrap();
    assert_eq!(
        cipher_of(&p, "p1", "vol-2", &clone).unwrap().key_check(),
        a.key_check()
    );
    // Bound to its volume and project; another project cannot use p1's key at all.
    assert!(cipher_of(&p, "p1", "vol-3", &rec).is_err());
    assert!(cipher_of(&p, "p2", "vol-1", &rec).is_err());
    assert!(matches!(
        p.check_key("p2", &cmk),
        Err(KeyError::NotFound(_))
    ));
    assert!(matches!(
        p.check_key("p1", "no-such-key"),
        Err(KeyError::NotFound(_))
    ));
    // A disabled key is not used.
    kms.keys.lock().get_mut(&cmk).unwrap().1 = "3".into();
    assert!(cipher_of(&p, "p1", "vol-1", &rec).is_err());
    kms.keys.lock().get_mut(&cmk).unwrap().1 = "2".into();
    // A wrong token is refused by the KMS, with its answer in the error.
    std::fs::write(&token, "stale").unwrap();
    match p.default_key("p3") {
        Err(KeyError::Store(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Refreshed in the file, it works again without a restart.
    std::fs::write(&token, TOKEN).unwrap();
    assert!(cipher_of(&p, "p1", "vol-1", &rec).is_ok());
}

#[test]
fn a_daemon_keeps_its_master_keys_in_the_kms() {
    let (url, kms, rt) = start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("kms-token");
    std::fs::write(&token, TOKEN).unwrap();
    let token = token.display().to_string();
    let args = [
        "--kms-endpoint",
        url.as_str(),
        "--kms-project",
        "kms-project",
        "--kms-token-file",
        token.as_str(),
    ];
    let d = Daemon::start_with(dir, &args, &[]);
    let h = Http::login(&d.api());
    let (s, v) = h.call(
        "POST",
        "volumes",
        Some(json!({"volume": {"size": 1, "metadata": {"__system__encrypted": "1"}}})),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["volume"]["id"].as_str().unwrap().to_owned();
    let vol = h.wait(&format!("volumes/{id}"), "volume", "available");
    assert_eq!(vol["encrypted"], true);
    let cmk = vol["metadata"]["__system__cmkid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The master key is the KMS's, in the project's namespace; none is kept locally.
    assert!(kms.keys.lock()[&cmk].0.starts_with("tripod/"));
    assert!(!d.data_dir().join("keys").exists());
    let (ok, text) = qemu_io(
        &d.uri(&id),
        &["write -P 0x3c 0 256k", "read -P 0x3c 0 256k"],
    );
    assert!(ok, "{text}");
    // Reopened after a restart, through the KMS.
    let dir = d.stop_keeping_data();
    let d = Daemon::start_with(dir, &args, &[]);
    let (ok, text) = qemu_io(&d.uri(&id), &["read -P 0x3c 0 256k"]);
    assert!(ok, "{text}");
    // Without the KMS the volume stays closed; nothing else is affected.
    let dir = d.stop_keeping_data();
    drop(rt);
    let d = Daemon::start_with(dir, &args, &[]);
    let (ok, _) = qemu_io(&d.uri(&id), &["read 0 4096"]);
    assert!(!ok, "served without its master key");
}
