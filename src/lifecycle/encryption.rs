//! Encryption rules: which new volumes are encrypted and with which master key, and what an
//! encrypted volume may not do. Encryption is chosen when a volume is created and never
//! changes (as in EVS).
//!
//! - A blank volume is encrypted when its type has an encryption spec, or when its metadata
//!   asks (EVS: `__system__encrypted = "1"`, optionally `__system__cmkid` naming the master
//!   key; without it the project's default key `evs/default` is used).
//! - A clone or a volume from a snapshot shares its source's blocks, so it is encrypted
//!   exactly when its source is, with the same data key and master key.
//! - An encrypted volume is not retyped to a type that differs in encryption, and not
//!   transferred to another project (its key is wrapped by this project's master key).

use std::collections::BTreeMap;

use super::Refusal;
use crate::catalog::VolumeRecord;

/// EVS's metadata key asking for (`"1"`) or showing encryption.
pub const ENCRYPTED_KEY: &str = "__system__encrypted";
/// EVS's metadata key naming the master key.
pub const CMK_KEY: &str = "__system__cmkid";

/// How a new volume is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewEncryption<'a> {
    /// Not at all.
    Plain,
    /// With a fresh data key under this master key (`None`: the project's default).
    Fresh {
        /// The master key asked for.
        cmk: Option<String>,
    },
    /// With the data key of this (encrypted) source volume.
    Shared(&'a VolumeRecord),
}

/// How a volume of project `project` is encrypted when made from `source` (the volume a
/// clone or a snapshot comes from, `None` for a blank one) with type encryption
/// `type_encrypted` and the request's `metadata`.
pub fn encryption_for_create<'a>(
    source: Option<&'a VolumeRecord>,
    type_encrypted: bool,
    metadata: &BTreeMap<String, String>,
    project: &str,
) -> Result<NewEncryption<'a>, Refusal> {
    let asked = match metadata.get(ENCRYPTED_KEY).map(String::as_str) {
        None => None,
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(other) => {
            return Err(Refusal::coded(
                "EVS.2032",
                format!(
                "Invalid input received: {ENCRYPTED_KEY} must be \"1\" or \"0\", not {other:?}."
            ),
            ))
        }
    };
    let cmk = metadata.get(CMK_KEY).cloned();
    if cmk.is_some() && asked != Some(true) {
        return Err(Refusal::coded(
            "EVS.2032",
            format!("Invalid input received: {CMK_KEY} needs {ENCRYPTED_KEY} = \"1\"."),
        ));
    }
    match source {
        Some(src) => match &src.encryption {
            Some(key) => {
                if src.project_id != project {
                    return Err(Refusal::rule(
                        "Invalid volume: an encrypted volume's clones stay in its project.",
                    ));
                }
                if asked == Some(false) || cmk.as_ref().is_some_and(|c| *c != key.cmk_id) {
                    return Err(Refusal::coded(
                        "EVS.2032",
                        "Invalid input received: a volume made from an encrypted volume or its snapshot is encrypted with the same master key.",
                    ));
                }
                Ok(NewEncryption::Shared(src))
            }
            None if asked == Some(true) => Err(Refusal::coded(
                "EVS.2032",
                "Invalid input received: a volume made from an unencrypted volume or its snapshot cannot be encrypted (it shares the source's blocks).",
            )),
            None => Ok(NewEncryption::Plain),
        },
        None if asked == Some(false) && type_encrypted => Err(Refusal::coded(
            "EVS.2032",
            "Invalid input received: volumes of this type are encrypted.",
        )),
        None if asked == Some(true) || type_encrypted => Ok(NewEncryption::Fresh { cmk }),
        None => Ok(NewEncryption::Plain),
    }
}

/// A retype keeps encryption as it is: the new type must agree with the volume.
pub fn check_retype_encryption(v: &VolumeRecord, new_type_encrypted: bool) -> Result<(), Refusal> {
    match (v.encryption.is_some(), new_type_encrypted) {
        (true, false) => Err(Refusal::rule(
            "Invalid volume: an encrypted volume cannot be retyped to an unencrypted type.",
        )),
        (false, true) => Err(Refusal::rule(
            "Invalid volume: a volume cannot be encrypted by a retype (encryption is chosen at creation).",
        )),
        _ => Ok(()),
    }
}

/// An encrypted volume stays in its project.
pub fn check_transferable(v: &VolumeRecord) -> Result<(), Refusal> {
    if v.encryption.is_some() {
        return Err(Refusal::rule(
            "Invalid volume: an encrypted volume cannot be transferred (its key belongs to this project's master key).",
        ));
    }
    Ok(())
}
