//! Volume type encryption specs (Cinder's `types/{id}/encryption` endpoints): everyone who
//! sees a type sees its spec; admins create, change and delete it while no volume has the
//! type. Volumes created with an encrypted type are encrypted (`crate::lifecycle`'s
//! encryption rules); the spec names the one scheme Tripod offers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody};
use super::input::{only, top, Obj};
use super::types::{admin_only, load, volumes_of};
use super::{blocking, empty, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{EncryptionSpec, Timestamp, VolumeTypeRecord};
use crate::volume_types::{
    validate_encryption, ENCRYPTION_CIPHER, ENCRYPTION_CONTROL_LOCATION, ENCRYPTION_KEY_SIZE,
    ENCRYPTION_PROVIDER,
};

/// A spec as Cinder shows it.
fn view(t: &VolumeTypeRecord, e: &EncryptionSpec) -> Value {
    json!({
        "volume_type_id": t.id,
        "encryption_id": e.encryption_id,
        "provider": e.provider,
        "cipher": e.cipher,
        "key_size": e.key_size,
        "control_location": e.control_location,
        "created_at": e.created_at.cinder(),
        "updated_at": e.updated_at.map(Timestamp::cinder),
        "deleted": false,
        "deleted_at": null,
    })
}

/// The fields a request sets.
#[derive(Default)]
struct Fields {
    provider: Option<String>,
    cipher: Option<String>,
    key_size: Option<u32>,
    control_location: Option<String>,
}

fn fields(obj: &Obj) -> ApiResult<Fields> {
    only(obj, &["provider", "cipher", "key_size", "control_location"])?;
    let text = |key: &str| -> ApiResult<Option<String>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {key}: a string is required."
            ))),
        }
    };
    let key_size = match obj.get("key_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            super::input::integer(v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Invalid input for field/attribute key_size.")
                })?,
        ),
    };
    let f = Fields {
        provider: text("provider")?,
        cipher: text("cipher")?,
        key_size,
        control_location: text("control_location")?,
    };
    validate_encryption(
        f.provider.as_deref(),
        f.cipher.as_deref(),
        f.key_size,
        f.control_location.as_deref(),
    )
    .map_err(|e| ApiError::bad_request(format!("Invalid input received: {e}.")))?;
    Ok(f)
}

/// `GET P/types/{id}/encryption` (`{}` for a type without one) and
/// `GET P/types/{id}/encryption/{key}` (one field).
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let t = s
            .catalog
            .read(|r| load(r, &ctx, &s.config.default_volume_type, &p.id))?;
        let Some(e) = &t.encryption else {
            if p.key.is_empty() {
                return Ok(reply(StatusCode::OK, json!({})));
            }
            return Err(ApiError::not_found(format!(
                "Volume type encryption for type {} does not exist.",
                t.id
            )));
        };
        let all = view(&t, e);
        if p.key.is_empty() {
            return Ok(reply(StatusCode::OK, all));
        }
        let value = all
            .get(&p.key)
            .filter(|_| !matches!(p.key.as_str(), "deleted" | "deleted_at"))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Volume type encryption for type {} has no field {}.",
                    t.id, p.key
                ))
            })?;
        Ok(reply(StatusCode::OK, json!({ p.key.clone(): value })))
    })
    .await
}

/// Refuses changes to the encryption of a type that volumes have.
fn not_in_use(w: &crate::catalog::Writer, t: &VolumeTypeRecord) -> ApiResult<()> {
    if volumes_of(w, &t.name)?.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Cannot update encryption specs. Volume type {} is in use.",
            t.id
        )))
    }
}

/// `POST P/types/{id}/encryption` `{"encryption": {…}}` (admins).
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let f = fields(top(&body, "encryption")?)?;
    blocking(move || {
        let (t, e) = s.catalog.write(|w| {
            let mut t = load(w, &ctx, &s.config.default_volume_type, &p.id)?;
            if t.encryption.is_some() {
                return Err(ApiError::bad_request(format!(
                    "Volume type encryption for type {} already exists.",
                    t.id
                )));
            }
            not_in_use(w, &t)?;
            let e = EncryptionSpec {
                encryption_id: uuid::Uuid::new_v4().hyphenated().to_string(),
                provider: f.provider.unwrap_or_else(|| ENCRYPTION_PROVIDER.into()),
                cipher: f.cipher.unwrap_or_else(|| ENCRYPTION_CIPHER.into()),
                key_size: f.key_size.unwrap_or(ENCRYPTION_KEY_SIZE),
                control_location: f
                    .control_location
                    .unwrap_or_else(|| ENCRYPTION_CONTROL_LOCATION.into()),
                created_at: Timestamp::now(),
                updated_at: None,
            };
            t.encryption = Some(e.clone());
            t.updated_at = Some(Timestamp::now());
            w.put(&t)?;
            Ok::<_, ApiError>((t, e))
        })?;
        tracing::info!(volume_type = %t.id, "volume type encryption created");
        Ok(reply(StatusCode::OK, json!({"encryption": view(&t, &e)})))
    })
    .await
}

/// `PUT P/types/{id}/encryption/{encryption_id}` `{"encryption": {…}}` (admins).
pub async fn update(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let obj = top(&body, "encryption")?.clone();
    let f = fields(&obj)?;
    blocking(move || {
        s.catalog.write(|w| {
            let mut t = load(w, &ctx, &s.config.default_volume_type, &p.id)?;
            let Some(mut e) = t.encryption.clone().filter(|e| e.encryption_id == p.key) else {
                return Err(ApiError::not_found(format!(
                    "Volume type encryption for type {} does not exist.",
                    t.id
                )));
            };
            not_in_use(w, &t)?;
            // Only the one scheme is offered, so a valid change restates it.
            if let Some(v) = f.provider {
                e.provider = v;
            }
            if let Some(v) = f.cipher {
                e.cipher = v;
            }
            if let Some(v) = f.key_size {
                e.key_size = v;
            }
            if let Some(v) = f.control_location {
                e.control_location = v;
            }
            e.updated_at = Some(Timestamp::now());
            t.encryption = Some(e);
            w.put(&t)?;
            Ok::<_, ApiError>(())
        })?;
        Ok(reply(StatusCode::OK, json!({ "encryption": obj })))
    })
    .await
}

/// `DELETE P/types/{id}/encryption/{encryption_id}` (admins).
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    blocking(move || {
        s.catalog.write(|w| {
            let mut t = load(w, &ctx, &s.config.default_volume_type, &p.id)?;
            if t.encryption
                .as_ref()
                .is_none_or(|e| e.encryption_id != p.key)
            {
                return Err(ApiError::not_found(format!(
                    "Volume type encryption for type {} does not exist.",
                    t.id
                )));
            }
            not_in_use(w, &t)?;
            t.encryption = None;
            t.updated_at = Some(Timestamp::now());
            w.put(&t)?;
            Ok::<_, ApiError>(())
        })?;
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}
