//! Volume types in the catalog: the built-in ones — Cinder's `__DEFAULT__` without limits and
//! the five EVS classes with theirs — written once, on the first start (admins may change or
//! delete them like any other type), lookup by name or id, and the limits a type gives one
//! volume.
//!
//! A volume's limits are its type's QoS spec (when its consumer is one Tripod enforces),
//! with the type's `qos:<key>` extra specs added on top (so `openstack volume type create
//! --property qos:total_iops_sec=500` works without a separate spec), resolved for the
//! volume's size.

use std::collections::BTreeMap;

use crate::catalog::{
    CatalogError, CatalogRead, QosSpecRecord, SettingRecord, Timestamp, VolumeRecord,
    VolumeTypeRecord, Writer,
};
use crate::qos::{evs, spec, Consumer, Limits};

/// The setting that records that the built-in types were written.
const SEEDED: &str = "volume_types_seeded";
/// The type volumes get when created without one (unless configured otherwise): Cinder's
/// own default type, with no QoS limits — a disk as fast as the replicas allow.
pub const DEFAULT_TYPE: &str = "__DEFAULT__";
/// Its fixed id.
const DEFAULT_TYPE_ID: &str = "3f2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d";
/// The prefix of extra specs that are QoS keys.
pub const QOS_PREFIX: &str = "qos:";
/// The extra spec that chooses when writes are durable: `sync` (every write before its
/// acknowledgement) or `flush` (at the client's next FLUSH or FUA write, the default).
pub const DURABILITY_KEY: &str = "durability";

/// Writes the built-in types and their QoS specs, unless that was done before (so types an
/// admin deleted stay deleted). Returns whether it wrote them.
pub fn seed(w: &mut Writer) -> Result<bool, CatalogError> {
    if w.get::<SettingRecord>(SEEDED)?.is_some() {
        return Ok(false);
    }
    let now = Timestamp::now();
    w.put(&VolumeTypeRecord {
        id: DEFAULT_TYPE_ID.into(),
        name: DEFAULT_TYPE.into(),
        description: Some("Default Volume Type (no QoS limits)".into()),
        is_public: true,
        extra_specs: BTreeMap::new(),
        qos_specs_id: None,
        created_at: now,
        updated_at: None,
        encryption: None,
    })?;
    for class in evs::CLASSES {
        w.put(&QosSpecRecord {
            id: class.qos_id.into(),
            name: format!("{}-qos", class.name),
            consumer: "back-end".into(),
            specs: class.specs(),
            created_at: now,
        })?;
        w.put(&VolumeTypeRecord {
            id: class.type_id.into(),
            name: class.name.into(),
            description: Some(format!("{} ({}), three replicas", class.title, class.name)),
            is_public: true,
            extra_specs: BTreeMap::from([("volume_backend_name".into(), "tripod".into())]),
            qos_specs_id: Some(class.qos_id.into()),
            created_at: now,
            updated_at: None,
            encryption: None,
        })?;
    }
    w.put(&SettingRecord {
        name: SEEDED.into(),
        value: "1".into(),
    })?;
    Ok(true)
}

/// Every type, oldest first (the built-in ones: the default, then EVS's classes, slowest
/// first).
pub fn all(r: &impl CatalogRead) -> Result<Vec<VolumeTypeRecord>, CatalogError> {
    let mut types: Vec<VolumeTypeRecord> = r.all()?;
    let builtin = |t: &VolumeTypeRecord| {
        if t.id == DEFAULT_TYPE_ID {
            return 0;
        }
        evs::CLASSES
            .iter()
            .position(|c| c.type_id == t.id)
            .map_or(usize::MAX, |i| i + 1)
    };
    types.sort_by(|a, b| {
        (a.created_at, builtin(a), &a.name).cmp(&(b.created_at, builtin(b), &b.name))
    });
    Ok(types)
}

/// The type named or identified by `name_or_id`.
pub fn find(
    r: &impl CatalogRead,
    name_or_id: &str,
) -> Result<Option<VolumeTypeRecord>, CatalogError> {
    if let Some(t) = r.get::<VolumeTypeRecord>(name_or_id)? {
        return Ok(Some(t));
    }
    Ok(r.all::<VolumeTypeRecord>()?
        .into_iter()
        .find(|t| t.name == name_or_id))
}

/// The QoS keys that apply to volumes of type `t`.
pub fn effective_specs(
    r: &impl CatalogRead,
    t: &VolumeTypeRecord,
) -> Result<BTreeMap<String, String>, CatalogError> {
    let mut specs = BTreeMap::new();
    if let Some(q) = match &t.qos_specs_id {
        Some(id) => r.get::<QosSpecRecord>(id)?,
        None => None,
    } {
        if Consumer::parse(&q.consumer).is_some_and(Consumer::enforced) {
            specs.extend(q.specs);
        }
    }
    for (k, v) in &t.extra_specs {
        if let Some(key) = k.strip_prefix(QOS_PREFIX) {
            specs.insert(key.to_owned(), v.clone());
        }
    }
    Ok(specs)
}

/// The limits of volume `v` now (none if its type is gone).
pub fn limits_of(r: &impl CatalogRead, v: &VolumeRecord) -> Result<Limits, CatalogError> {
    Ok(match find(r, &v.volume_type)? {
        Some(t) => spec::resolve(&effective_specs(r, &t)?, v.size),
        None => Limits::default(),
    })
}

/// Whether volume `v`'s type asks for every write to be synced (`durability=sync`).
pub fn syncs_writes(r: &impl CatalogRead, v: &VolumeRecord) -> Result<bool, CatalogError> {
    Ok(find(r, &v.volume_type)?
        .is_some_and(|t| t.extra_specs.get(DURABILITY_KEY).map(String::as_str) == Some("sync")))
}

/// Checks a type's extra specs (as they would be stored): `durability` and the `qos:` keys.
pub fn validate_extra_specs(extra: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(d) = extra.get(DURABILITY_KEY) {
        if d != "sync" && d != "flush" {
            return Err(format!("durability must be sync or flush, not {d:?}"));
        }
    }
    validate_qos_specs(extra).map_err(|e| e.to_string())
}

/// Checks the `qos:` entries of a type's extra specs.
fn validate_qos_specs(extra: &BTreeMap<String, String>) -> Result<(), spec::SpecError> {
    let qos: BTreeMap<String, String> = extra
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(QOS_PREFIX)
                .map(|key| (key.to_owned(), v.clone()))
        })
        .collect();
    spec::validate(&qos)
}

/// The only encryption provider: Tripod itself, in the back end.
pub const ENCRYPTION_PROVIDER: &str = "tripod";
/// The only cipher: AES-256-GCM-SIV per block (authenticated, bound to position and write).
pub const ENCRYPTION_CIPHER: &str = "aes-256-gcm-siv";
/// The only key size, bits.
pub const ENCRYPTION_KEY_SIZE: u32 = 256;
/// Where encryption happens: above the replicas, in the daemon.
pub const ENCRYPTION_CONTROL_LOCATION: &str = "back-end";

/// Checks an encryption spec's fields as a request gives them (`None`: not given, the
/// default). Tripod offers one scheme, so anything else is refused with what it offers
/// rather than accepted and ignored.
pub fn validate_encryption(
    provider: Option<&str>,
    cipher: Option<&str>,
    key_size: Option<u32>,
    control_location: Option<&str>,
) -> Result<(), String> {
    if let Some(p) = provider.filter(|p| *p != ENCRYPTION_PROVIDER) {
        return Err(format!(
            "provider {p:?} is not offered: Tripod encrypts volumes itself (provider {ENCRYPTION_PROVIDER:?})"
        ));
    }
    if let Some(c) = cipher.filter(|c| *c != ENCRYPTION_CIPHER) {
        return Err(format!(
            "cipher {c:?} is not offered: Tripod encrypts with {ENCRYPTION_CIPHER:?}"
        ));
    }
    if let Some(k) = key_size.filter(|k| *k != ENCRYPTION_KEY_SIZE) {
        return Err(format!(
            "key size {k} is not offered: keys are {ENCRYPTION_KEY_SIZE} bits"
        ));
    }
    if let Some(l) = control_location.filter(|l| *l != ENCRYPTION_CONTROL_LOCATION) {
        return Err(format!(
            "control_location {l:?} is not offered: Tripod encrypts in the back end ({ENCRYPTION_CONTROL_LOCATION:?}), so clients see plaintext"
        ));
    }
    Ok(())
}
