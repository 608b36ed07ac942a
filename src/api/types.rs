//! Volume types (Cinder's `types` endpoints): everyone lists and shows the public ones;
//! admins also see private ones and each type's `qos_specs_id`, and create, update and
//! delete types and their extra specs (`openstack volume type create/set/unset/delete`).
//! A type's `qos:<key>` extra specs are QoS limits (checked like a QoS spec's keys); a
//! change to a type's specs reaches the I/O of its volumes at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody};
use super::input::{only, parse_bool, text_pairs, top, Obj};
use super::{blocking, empty, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{CatalogRead, Timestamp, VolumeRecord, VolumeTypeRecord, Writer};
use crate::volume_types;

/// Longest type name and description (Cinder's columns).
const MAX_NAME: usize = 255;

/// A type as the API shows it to `ctx`.
pub fn view(ctx: &Ctx, t: &VolumeTypeRecord) -> Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "os-volume-type-access:is_public": t.is_public,
        "extra_specs": t.extra_specs,
    });
    if ctx.is_admin {
        super::set_field(&mut v, "qos_specs_id", json!(t.qos_specs_id));
    }
    v
}

/// The full record of the type named `name`, as an upload answer shows it.
pub fn record_view(r: &impl CatalogRead, name: &str) -> Result<Value, ApiError> {
    let t = volume_types::find(r, name)?;
    Ok(match t {
        Some(t) => json!({
            "id": t.id,
            "name": t.name,
            "description": t.description,
            "is_public": t.is_public,
            "extra_specs": t.extra_specs,
            "qos_specs_id": t.qos_specs_id,
            "created_at": t.created_at.cinder(),
            "updated_at": t.updated_at.map(Timestamp::cinder),
            "deleted": false,
            "deleted_at": null,
        }),
        None => Value::Null,
    })
}

pub(super) fn admin_only(ctx: &Ctx) -> ApiResult<()> {
    if ctx.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Policy doesn't allow volume_extension:types_manage to be performed.",
        ))
    }
}

/// The type `id` names (or `default`), as `ctx` may see it.
pub(super) fn load(
    r: &impl CatalogRead,
    ctx: &Ctx,
    default: &str,
    id: &str,
) -> ApiResult<VolumeTypeRecord> {
    let wanted = if id == "default" { default } else { id };
    volume_types::find(r, wanted)?
        .filter(|t| t.is_public || ctx.is_admin)
        .ok_or_else(|| ApiError::not_found(format!("Volume type {id} could not be found.")))
}

/// `GET P/types`: public types (admins: all; `is_public=false|None` filters as Cinder's).
pub async fn list(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    params: super::extract::Params,
) -> ApiResult<Response> {
    let wanted = match params.get("is_public") {
        None => Some(true),
        Some(p) if p.eq_ignore_ascii_case("none") => None,
        Some(p) => Some(
            parse_bool(p)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid is_public filter [{p}]")))?,
        ),
    };
    blocking(move || {
        let all = s.catalog.read(volume_types::all)?;
        let shown: Vec<Value> = all
            .iter()
            .filter(|t| {
                if ctx.is_admin {
                    wanted.is_none_or(|w| t.is_public == w)
                } else {
                    t.is_public
                }
            })
            .map(|t| view(&ctx, t))
            .collect();
        Ok(reply(StatusCode::OK, json!({ "volume_types": shown })))
    })
    .await
}

/// `GET P/types/{id}` (`default` names the default type).
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let t = s
            .catalog
            .read(|r| load(r, &ctx, &s.config.default_volume_type, &p.id))?;
        Ok(reply(
            StatusCode::OK,
            json!({"volume_type": view(&ctx, &t)}),
        ))
    })
    .await
}

fn text(obj: &Obj, key: &str) -> ApiResult<Option<Option<String>>> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(t)) if t.chars().count() <= MAX_NAME => Ok(Some(Some(t.clone()))),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: a string of at most {MAX_NAME} characters is required."
        ))),
    }
}

fn flag(obj: &Obj, keys: &[&str]) -> ApiResult<Option<bool>> {
    for key in keys {
        match obj.get(*key) {
            None => continue,
            Some(Value::Bool(b)) => return Ok(Some(*b)),
            Some(Value::String(t)) => {
                return parse_bool(t)
                    .map(Some)
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid value '{t}' for {key}")))
            }
            Some(_) => return Err(ApiError::bad_request(format!("Invalid value for {key}"))),
        }
    }
    Ok(None)
}

/// Extra specs from a JSON object.
fn specs(v: &Value) -> ApiResult<BTreeMap<String, String>> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("extra_specs must be an object."))?;
    text_pairs(obj, &[], "extra spec")
}

fn check_qos(extra: &BTreeMap<String, String>) -> ApiResult<()> {
    volume_types::validate_extra_specs(extra)
        .map_err(|e| ApiError::bad_request(format!("Invalid extra specs: {e}")))
}

fn name_taken(r: &impl CatalogRead, name: &str, except: &str) -> ApiResult<()> {
    let taken = r
        .all::<VolumeTypeRecord>()?
        .iter()
        .any(|t| t.name == name && t.id != except);
    if taken {
        Err(ApiError::conflict(format!(
            "Volume Type {name} already exists."
        )))
    } else {
        Ok(())
    }
}

/// `POST P/types` (admins).
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let t = top(&body, "volume_type")?;
    only(
        t,
        &[
            "name",
            "description",
            "os-volume-type-access:is_public",
            "is_public",
            "extra_specs",
        ],
    )?;
    let name = text(t, "name")?
        .flatten()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Volume type name can not be empty."))?;
    let description = text(t, "description")?.flatten();
    let is_public = flag(t, &["os-volume-type-access:is_public", "is_public"])?.unwrap_or(true);
    let extra_specs = t
        .get("extra_specs")
        .map(specs)
        .transpose()?
        .unwrap_or_default();
    check_qos(&extra_specs)?;
    blocking(move || {
        let rec = s.catalog.write(|w| {
            name_taken(w, &name, "")?;
            let rec = VolumeTypeRecord {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                name,
                description,
                is_public,
                extra_specs,
                qos_specs_id: None,
                created_at: Timestamp::now(),
                updated_at: None,
                encryption: None,
            };
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        tracing::info!(volume_type = %rec.id, name = %rec.name, "volume type created");
        Ok(reply(
            StatusCode::OK,
            json!({"volume_type": view(&ctx, &rec)}),
        ))
    })
    .await
}

/// The volumes of type `name`.
pub(super) fn volumes_of(r: &impl CatalogRead, name: &str) -> ApiResult<Vec<VolumeRecord>> {
    Ok(r.all::<VolumeRecord>()?
        .into_iter()
        .filter(|v| v.volume_type == name)
        .collect())
}

/// `PUT P/types/{id}` (admins): name, description, is_public.
pub async fn update(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let t = top(&body, "volume_type")?;
    only(
        t,
        &[
            "name",
            "description",
            "is_public",
            "os-volume-type-access:is_public",
        ],
    )?;
    let name = text(t, "name")?
        .map(|n| {
            n.map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("Volume type name can not be empty."))
        })
        .transpose()?;
    let description = text(t, "description")?;
    let is_public = flag(t, &["is_public", "os-volume-type-access:is_public"])?;
    if name.is_none() && description.is_none() && is_public.is_none() {
        return Err(ApiError::bad_request(
            "Specify volume type name, description, is_public or a combination thereof.",
        ));
    }
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let mut rec = load(w, &ctx, &s.config.default_volume_type, &p.id)?;
            if let Some(name) = name.filter(|n| *n != rec.name) {
                name_taken(w, &name, &rec.id)?;
                if rec.name == s.config.default_volume_type {
                    return Err(ApiError::bad_request(
                        "The default volume type can not be renamed: the configuration names it.",
                    ));
                }
                rename_volumes(w, &rec.name, &name)?;
                rec.name = name;
            }
            if let Some(d) = description {
                rec.description = d;
            }
            if let Some(p) = is_public {
                rec.is_public = p;
            }
            rec.updated_at = Some(Timestamp::now());
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        Ok(reply(
            StatusCode::OK,
            json!({"volume_type": view(&ctx, &rec)}),
        ))
    })
    .await
}

/// Volumes hold their type's name: a rename renames it in them too.
fn rename_volumes(w: &mut Writer, from: &str, to: &str) -> ApiResult<()> {
    for mut v in volumes_of(w, from)? {
        v.volume_type = to.to_owned();
        w.put(&v)?;
    }
    Ok(())
}

/// `DELETE P/types/{id}` (admins): refused while a volume has the type, and for the default.
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    blocking(move || {
        s.catalog.write(|w| {
            let rec = load(w, &ctx, &s.config.default_volume_type, &p.id)?;
            if rec.name == s.config.default_volume_type {
                return Err(ApiError::bad_request(
                    "Default volume type can not be deleted.",
                ));
            }
            if !volumes_of(w, &rec.name)?.is_empty() {
                return Err(ApiError::bad_request("Target volume type is still in use."));
            }
            w.delete::<VolumeTypeRecord>(&rec.id)?;
            Ok::<_, ApiError>(())
        })?;
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

/// Re-applies the limits of every volume of type `name` (its specs changed).
pub fn reapply(s: &ApiState, name: &str) -> ApiResult<()> {
    let volumes = s.catalog.read(|r| volumes_of(r, name))?;
    for v in &volumes {
        s.backend.apply_limits(v);
    }
    Ok(())
}

/// `GET P/types/{id}/extra_specs` (and `…/{key}`).
pub async fn extra_specs(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let t = s
            .catalog
            .read(|r| load(r, &ctx, &s.config.default_volume_type, &p.id))?;
        if p.key.is_empty() {
            return Ok(reply(StatusCode::OK, json!({"extra_specs": t.extra_specs})));
        }
        let value = t.extra_specs.get(&p.key).ok_or_else(|| {
            ApiError::not_found(format!(
                "Volume Type {} has no extra specs with key {}.",
                t.id, p.key
            ))
        })?;
        Ok(reply(StatusCode::OK, json!({ p.key.clone(): value })))
    })
    .await
}

/// Changes type `id`'s extra specs with `f` (admins), checks the QoS keys, and applies the
/// result to the type's volumes.
async fn change_specs(
    ctx: Ctx,
    s: Arc<ApiState>,
    id: String,
    f: impl FnOnce(&mut BTreeMap<String, String>) -> ApiResult<()> + Send + 'static,
) -> ApiResult<()> {
    admin_only(&ctx)?;
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let mut rec = load(w, &ctx, &s.config.default_volume_type, &id)?;
            f(&mut rec.extra_specs)?;
            check_qos(&rec.extra_specs)?;
            rec.updated_at = Some(Timestamp::now());
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        reapply(&s, &rec.name)
    })
    .await
}

/// `POST P/types/{id}/extra_specs` `{"extra_specs": {…}}`: adds or replaces keys.
pub async fn set_extra_specs(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let root = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("extra_specs"))
        .ok_or_else(|| {
            ApiError::bad_request("Missing required element 'extra_specs' in request body.")
        })?;
    let new = specs(root)?;
    let shown = new.clone();
    change_specs(ctx, s, p.id, move |extra| {
        extra.extend(new);
        Ok(())
    })
    .await?;
    Ok(reply(StatusCode::OK, json!({ "extra_specs": shown })))
}

/// `PUT P/types/{id}/extra_specs/{key}` `{key: value}`.
pub async fn set_extra_spec(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let new = specs(&body)?;
    if new.len() != 1 || !new.contains_key(&p.key) {
        return Err(ApiError::bad_request(
            "Request body and URI mismatch: the body must set exactly the key in the path.",
        ));
    }
    let shown = new.clone();
    change_specs(ctx, s, p.id, move |extra| {
        extra.extend(new);
        Ok(())
    })
    .await?;
    Ok(reply(StatusCode::OK, json!(shown)))
}

/// `DELETE P/types/{id}/extra_specs/{key}`.
pub async fn delete_extra_spec(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    let key = p.key.clone();
    change_specs(ctx, s, p.id, move |extra| {
        extra.remove(&key).map(|_| ()).ok_or_else(|| {
            ApiError::not_found(format!("Volume Type has no extra specs with key {key}."))
        })
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED))
}
