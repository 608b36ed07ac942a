//! Typed request bodies. Each is deserialized from the request's JSON with serde; a member
//! that fails is reported as a 400 naming the member, under the EVS code the member's table
//! gives. Cinder's leniencies are kept: integers may come as digit strings, booleans as the
//! usual words, text is trimmed and at most 255 characters.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::input::{integer, metadata, parse_bool, top_with};
use super::ApiError;

/// A text member's update: absent (`None`), cleared (`Some(None)`) or set.
pub type TextUpdate = Option<Option<String>>;

/// Deserializes `body[key]` (the only top-level member, or one of `also`) as `T`; a member
/// that fails is a 400 with the code `codes` gives for it (`EVS.5400` otherwise).
pub fn parse<T: DeserializeOwned>(
    body: &Value,
    key: &str,
    also: &[&str],
    codes: &[(&str, &'static str)],
) -> Result<T, ApiError> {
    let inner = top_with(body, key, also)?;
    typed(&Value::Object(inner.clone()), codes)
}

/// Deserializes `value` as `T`, reporting the failing member as [`parse`] does.
pub fn typed<T: DeserializeOwned>(
    value: &Value,
    codes: &[(&str, &'static str)],
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let code = codes
            .iter()
            .find(|(field, _)| path == *field || path.starts_with(&format!("{field}.")))
            .map_or("EVS.5400", |(_, code)| code);
        let inner = e.into_inner().to_string();
        // A member that should not be there is the request's shape, not that member's value.
        let code = if inner.starts_with("unknown field") {
            "EVS.5400"
        } else {
            code
        };
        let message = if path == "." || path.is_empty() {
            format!("Invalid input: {inner}")
        } else {
            format!("Invalid input for field '{path}': {inner}")
        };
        ApiError::invalid(code, message)
    })
}

/// Text of at most 255 characters, trimmed; `null` clears it.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<TextUpdate, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > 255 {
                return Err(D::Error::custom("longer than 255 characters"));
            }
            Ok(Some(Some(s.to_owned())))
        }
        Some(_) => Err(D::Error::custom("not a string")),
    }
}

/// An integer given as a JSON integer or a string of digits.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    integer(&v).ok_or_else(|| D::Error::custom(format!("{v} is not an integer")))
}

/// An optional [`int`]: absent or `null` is `None`.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => integer(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{v} is not an integer"))),
    }
}

/// Cinder's boolean: a JSON boolean or one of the usual words; `null` is `false`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) => {
            parse_bool(&s).ok_or_else(|| D::Error::custom(format!("'{s}' is not a boolean")))
        }
        v => Err(D::Error::custom(format!("{v} is not a boolean"))),
    }
}

/// A member given (even as `null`), kept as JSON for a validator with its own codes.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// User metadata (see [`metadata`], whose refusals keep their own codes): absent → `None`,
/// `null` → empty.
pub fn user_metadata(v: &Option<Value>) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(BTreeMap::new())),
        Some(m) => metadata(m).map(Some),
    }
}

/// An optional id: absent or `null` is `None`, otherwise a string.
pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// `POST P/volumes/{id}/action`: exactly one action.
#[derive(Debug, Deserialize)]
pub enum Action {
    /// Grow the volume.
    #[serde(rename = "os-extend")]
    Extend(Extend),
    /// Mark it bootable or not.
    #[serde(rename = "os-set_bootable")]
    SetBootable(SetBootable),
    /// Make it read-only or not.
    #[serde(rename = "os-update_readonly_flag")]
    UpdateReadonly(UpdateReadonly),
    /// Reserve it for an attach (arguments ignored).
    #[serde(rename = "os-reserve")]
    Reserve(IgnoredAny),
    /// Undo a reservation (arguments ignored).
    #[serde(rename = "os-unreserve")]
    Unreserve(IgnoredAny),
    /// Record an attachment.
    #[serde(rename = "os-attach")]
    Attach(Attach),
    /// Remove an attachment.
    #[serde(rename = "os-detach")]
    Detach(Option<Detach>),
    /// Write an image of the volume.
    #[serde(rename = "os-volume_upload_image")]
    UploadImage(UploadImage),
    /// Change the volume's type.
    #[serde(rename = "os-retype")]
    Retype(Retype),
}

/// The actions' names, as [`Action`] spells them.
pub const ACTIONS: [&str; 9] = [
    "os-extend",
    "os-set_bootable",
    "os-update_readonly_flag",
    "os-reserve",
    "os-unreserve",
    "os-attach",
    "os-detach",
    "os-volume_upload_image",
    "os-retype",
];

/// EVS codes of the action members.
pub const ACTION_CODES: &[(&str, &str)] = &[("os-extend", "EVS.1010")];

/// `os-retype`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retype {
    /// The new type's name or id.
    pub new_type: String,
    /// `never` (default) or `on-demand`.
    #[serde(default)]
    pub migration_policy: Option<String>,
}

/// `os-extend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// The new size in GiB.
    #[serde(deserialize_with = "int")]
    pub new_size: i64,
}

/// `os-set_bootable`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBootable {
    /// Bootable or not.
    #[serde(deserialize_with = "flag")]
    pub bootable: bool,
}

/// `os-update_readonly_flag`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateReadonly {
    /// Read-only or not.
    #[serde(deserialize_with = "flag")]
    pub readonly: bool,
}

/// `os-attach`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attach {
    /// The instance attached to.
    #[serde(default, deserialize_with = "text")]
    pub instance_uuid: TextUpdate,
    /// Where it appears (required).
    #[serde(default, deserialize_with = "text")]
    pub mountpoint: TextUpdate,
    /// The host attached to.
    #[serde(default, deserialize_with = "text")]
    pub host_name: TextUpdate,
    /// `rw` (default) or `ro`.
    #[serde(default, deserialize_with = "text")]
    pub mode: TextUpdate,
}

/// `os-detach`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detach {
    /// Which attachment (may be omitted when there is one).
    #[serde(default, deserialize_with = "opt_id")]
    pub attachment_id: Option<String>,
}

/// `os-volume_upload_image`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadImage {
    /// The image's name (required).
    #[serde(default, deserialize_with = "text")]
    pub image_name: TextUpdate,
    /// Upload while in use.
    #[serde(default, deserialize_with = "flag")]
    pub force: bool,
    /// `raw` (default), `qcow2`, …
    #[serde(default, deserialize_with = "text")]
    pub disk_format: TextUpdate,
    /// `bare` (default), …
    #[serde(default, deserialize_with = "text")]
    pub container_format: TextUpdate,
    /// `windows` or `linux`.
    #[serde(default, rename = "__os_type", deserialize_with = "text")]
    pub os_type: TextUpdate,
    /// Glance's image visibility: accepted; images stay private to the project.
    #[serde(default, rename = "visibility")]
    pub _visibility: Option<IgnoredAny>,
    /// Glance's protection flag: accepted; images are not protected.
    #[serde(default, rename = "protected")]
    pub _protected: Option<IgnoredAny>,
}

/// `POST P/snapshots` → `snapshot`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    /// The volume (required).
    #[serde(default, deserialize_with = "opt_id")]
    pub volume_id: Option<String>,
    /// Snapshot an in-use volume.
    #[serde(default, deserialize_with = "flag")]
    pub force: bool,
    /// Name.
    #[serde(default, deserialize_with = "text")]
    pub name: TextUpdate,
    /// Name (v1 spelling).
    #[serde(default, deserialize_with = "text")]
    pub display_name: TextUpdate,
    /// Description.
    #[serde(default, deserialize_with = "text")]
    pub description: TextUpdate,
    /// User metadata (checked by [`user_metadata`]).
    #[serde(default, deserialize_with = "present")]
    pub metadata: Option<Value>,
}

/// `PUT P/snapshots/{id}` and `PUT P/volumes/{id}` → name and description (v1 spellings too).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// Name.
    #[serde(default, deserialize_with = "text")]
    pub name: TextUpdate,
    /// Name (v1 spelling).
    #[serde(default, deserialize_with = "text")]
    pub display_name: TextUpdate,
    /// Description.
    #[serde(default, deserialize_with = "text")]
    pub description: TextUpdate,
    /// Description (v1 spelling).
    #[serde(default, deserialize_with = "text")]
    pub display_description: TextUpdate,
    /// User metadata, replaced whole (volumes only; `null` clears it; checked by
    /// [`user_metadata`]).
    #[serde(default, deserialize_with = "present")]
    pub metadata: Option<Value>,
}

impl Rename {
    /// Name and description, the v2 spellings winning.
    pub fn resolved(&self) -> (TextUpdate, TextUpdate) {
        (
            self.name.clone().or_else(|| self.display_name.clone()),
            self.description
                .clone()
                .or_else(|| self.display_description.clone()),
        )
    }
}

/// EVS codes of the text and metadata members.
pub const TEXT_CODES: &[(&str, &str)] = &[
    ("name", "EVS.1003"),
    ("display_name", "EVS.1003"),
    ("description", "EVS.1004"),
    ("display_description", "EVS.1004"),
];

/// `POST P/volumes` → `volume`. Members it does not know are ignored, as Cinder does.
#[derive(Debug, Deserialize)]
pub struct VolumeCreate {
    /// GiB (may be omitted when copying: the source's size).
    #[serde(default, deserialize_with = "opt_int")]
    pub size: Option<i64>,
    /// Name.
    #[serde(default, deserialize_with = "text")]
    pub name: TextUpdate,
    /// Name (v1 spelling).
    #[serde(default, deserialize_with = "text")]
    pub display_name: TextUpdate,
    /// Description.
    #[serde(default, deserialize_with = "text")]
    pub description: TextUpdate,
    /// Description (v1 spelling).
    #[serde(default, deserialize_with = "text")]
    pub display_description: TextUpdate,
    /// Must be the configured zone.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// A type name.
    #[serde(default)]
    pub volume_type: Option<String>,
    /// Copy this snapshot.
    #[serde(default, deserialize_with = "opt_id")]
    pub snapshot_id: Option<String>,
    /// Copy this volume.
    #[serde(default, deserialize_with = "opt_id")]
    pub source_volid: Option<String>,
    /// An image to copy (not offered; refused).
    #[serde(default, rename = "imageRef", deserialize_with = "opt_id")]
    pub image_ref: Option<String>,
    /// The same, older spelling.
    #[serde(default, deserialize_with = "opt_id")]
    pub image_id: Option<String>,
    /// User metadata (checked by [`user_metadata`]).
    #[serde(default, deserialize_with = "present")]
    pub metadata: Option<Value>,
    /// Shareable between attachments.
    #[serde(default, deserialize_with = "flag")]
    pub multiattach: bool,
    /// Consistency groups are not offered: any id is unknown.
    #[serde(default)]
    pub consistencygroup_id: Option<Value>,
    /// Volumes to create: only 1.
    #[serde(default)]
    pub count: Option<Value>,
}

/// EVS codes of the volume create members.
pub const VOLUME_CREATE_CODES: &[(&str, &str)] = &[
    ("size", "EVS.1010"),
    ("name", "EVS.1003"),
    ("display_name", "EVS.1003"),
    ("description", "EVS.1004"),
    ("display_description", "EVS.1004"),
    ("availability_zone", "EVS.1036"),
    ("volume_type", "EVS.1020"),
];

/// EVS's rollback → `rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The snapshot's volume (required).
    #[serde(default, deserialize_with = "opt_id")]
    pub volume_id: Option<String>,
    /// A new name for the volume.
    #[serde(default, deserialize_with = "text")]
    pub name: TextUpdate,
}

/// `POST P/os-volume-transfer` → `transfer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferCreate {
    /// The volume offered (required).
    #[serde(default, deserialize_with = "opt_id")]
    pub volume_id: Option<String>,
    /// The offer's name.
    #[serde(default, deserialize_with = "text")]
    pub name: TextUpdate,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_action_and_its_lenient_members() {
        let a: Action = typed(&json!({"os-extend": {"new_size": "12"}}), ACTION_CODES).unwrap();
        assert!(matches!(a, Action::Extend(Extend { new_size: 12 })));
        let a: Action = typed(&json!({"os-reserve": null}), ACTION_CODES).unwrap();
        assert!(matches!(a, Action::Reserve(_)));
        let a: Action = typed(&json!({"os-detach": null}), ACTION_CODES).unwrap();
        assert!(matches!(a, Action::Detach(None)));
        let a: Action = typed(
            &json!({"os-set_bootable": {"bootable": "True"}}),
            ACTION_CODES,
        )
        .unwrap();
        assert!(matches!(
            a,
            Action::SetBootable(SetBootable { bootable: true })
        ));
    }

    #[test]
    fn a_bad_member_names_itself_under_its_code() {
        let e =
            typed::<Action>(&json!({"os-extend": {"new_size": "x"}}), ACTION_CODES).unwrap_err();
        assert_eq!(e.evs_code, "EVS.1010");
        assert!(e.message.contains("new_size"), "{}", e.message);
        let e = typed::<Action>(&json!({"os-extend": {"size": 3}}), ACTION_CODES).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = typed::<Action>(&json!({"os-shrink": {}}), ACTION_CODES).unwrap_err();
        assert_eq!(e.evs_code, "EVS.5400");
        // Every name the handler lets through is one the enum knows.
        for name in ACTIONS {
            // (os-reserve and os-unreserve ignore their arguments.)
            let r = typed::<Action>(&json!({ name: {"no_such_member": 1} }), ACTION_CODES);
            if let Err(e) = r {
                assert!(
                    !e.message.contains("unknown variant"),
                    "{name}: {}",
                    e.message
                );
            }
        }
        let long = "x".repeat(256);
        let e = typed::<Rename>(&json!({"name": long}), TEXT_CODES).unwrap_err();
        assert_eq!(e.evs_code, "EVS.1003");
        let e = typed::<Rename>(&json!({"description": 5}), TEXT_CODES).unwrap_err();
        assert_eq!(e.evs_code, "EVS.1004");
        let e = typed::<Rename>(&json!({"colour": "red"}), TEXT_CODES).unwrap_err();
        assert_eq!(e.evs_code, "EVS.5400");
    }

    #[test]
    fn text_is_trimmed_and_null_clears() {
        let r: Rename = typed(&json!({"display_name": " a ", "description": null}), &[]).unwrap();
        assert_eq!(r.resolved(), (Some(Some("a".into())), Some(None)));
        let r: Rename = typed(&json!({}), &[]).unwrap();
        assert_eq!(r.resolved(), (None, None));
        assert_eq!(user_metadata(&r.metadata).unwrap(), None);
        let r: Rename = typed(&json!({"metadata": null}), &[]).unwrap();
        assert_eq!(user_metadata(&r.metadata).unwrap(), Some(BTreeMap::new()));
        let r: Rename = typed(&json!({"metadata": {"k": 1}}), &[]).unwrap();
        assert_eq!(user_metadata(&r.metadata).unwrap_err().evs_code, "EVS.5400");
    }
}

/// The body of `POST P/os-tripod-volumes/{id}/replicas/{slot}/replace`:
/// `{"replace": {"with": LOCATION}}`, a replica root (an absolute directory or
/// `tcp://HOST:PORT`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceReplica {
    /// Where the replica goes.
    pub with: String,
}
