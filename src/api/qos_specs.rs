//! QoS specs (Cinder's `qos-specs` endpoints, admins only): named sets of limits with a
//! consumer, associated with volume types (`openstack volume qos create/set/unset/associate/
//! disassociate/delete`). Keys are checked when set (`crate::qos::spec`); a change reaches
//! the I/O of every volume of an associated type at once, requests already waiting included.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody, Params};
use super::input::{parse_bool, text_pairs, top};
use super::{blocking, empty, reply, types, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{CatalogRead, QosSpecRecord, Timestamp, VolumeTypeRecord};
use crate::qos::{spec, Consumer};

/// Longest spec name, key and value.
const MAX_TEXT: usize = 255;

fn admin_only(ctx: &Ctx) -> ApiResult<()> {
    if ctx.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Policy doesn't allow volume_extension:qos_specs_manage to be performed.",
        ))
    }
}

fn view(q: &QosSpecRecord) -> Value {
    json!({"id": q.id, "name": q.name, "consumer": q.consumer, "specs": q.specs})
}

fn load(r: &impl CatalogRead, id: &str) -> ApiResult<QosSpecRecord> {
    r.get::<QosSpecRecord>(id)?
        .ok_or_else(|| ApiError::not_found(format!("QoS Specs {id} could not be found.")))
}

fn consumer(value: &str) -> ApiResult<String> {
    Consumer::parse(value)
        .map(|_| value.to_owned())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid consumer {value}: it must be front-end, back-end or both."
            ))
        })
}

/// Spec keys and values from a request object, `name` and `consumer` left out.
fn pairs(obj: &serde_json::Map<String, Value>) -> ApiResult<BTreeMap<String, String>> {
    text_pairs(obj, &["name", "consumer"], "QoS key")
}

fn checked(specs: &BTreeMap<String, String>) -> ApiResult<()> {
    spec::validate(specs).map_err(|e| ApiError::bad_request(format!("Invalid QoS specs: {e}")))
}

/// The types associated with spec `id`.
fn types_of(r: &impl CatalogRead, id: &str) -> ApiResult<Vec<VolumeTypeRecord>> {
    Ok(r.all::<VolumeTypeRecord>()?
        .into_iter()
        .filter(|t| t.qos_specs_id.as_deref() == Some(id))
        .collect())
}

/// Re-applies the limits of the volumes of `types`.
fn reapply(s: &ApiState, types: &[VolumeTypeRecord]) -> ApiResult<()> {
    for t in types {
        types::reapply(s, &t.name)?;
    }
    Ok(())
}

/// `GET P/qos-specs`.
pub async fn list(ctx: Ctx, State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    admin_only(&ctx)?;
    blocking(move || {
        let mut all: Vec<QosSpecRecord> = s.catalog.read(|r| r.all())?;
        all.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        let shown: Vec<Value> = all.iter().map(view).collect();
        Ok(reply(StatusCode::OK, json!({ "qos_specs": shown })))
    })
    .await
}

/// `POST P/qos-specs` `{"qos_specs": {"name", "consumer"?, key: value…}}`.
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let q = top(&body, "qos_specs")?;
    let name = q
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= MAX_TEXT)
        .ok_or_else(|| ApiError::bad_request("QoS specs name must be 1 to 255 characters."))?
        .to_owned();
    let consumer = match q.get("consumer") {
        None => "back-end".to_owned(),
        Some(Value::String(c)) => consumer(c)?,
        Some(_) => return Err(ApiError::bad_request("consumer must be a string.")),
    };
    let specs = pairs(q)?;
    checked(&specs)?;
    blocking(move || {
        let rec = s.catalog.write(|w| {
            if w.all::<QosSpecRecord>()?.iter().any(|x| x.name == name) {
                return Err(ApiError::conflict(format!(
                    "QoS Specs {name} already exists."
                )));
            }
            let rec = QosSpecRecord {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                name,
                consumer,
                specs,
                created_at: Timestamp::now(),
            };
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        Ok(reply(
            StatusCode::OK,
            json!({"qos_specs": view(&rec), "links": []}),
        ))
    })
    .await
}

/// `GET P/qos-specs/{id}`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    blocking(move || {
        let q = s.catalog.read(|r| load(r, &p.id))?;
        Ok(reply(
            StatusCode::OK,
            json!({"qos_specs": view(&q), "links": []}),
        ))
    })
    .await
}

/// Changes spec `id` with `f`, checks the result and applies it to the associated types'
/// volumes.
async fn change(
    s: Arc<ApiState>,
    id: String,
    f: impl FnOnce(&mut QosSpecRecord) -> ApiResult<()> + Send + 'static,
) -> ApiResult<()> {
    blocking(move || {
        let types = s.catalog.write(|w| {
            let mut q = load(w, &id)?;
            f(&mut q)?;
            checked(&q.specs)?;
            w.put(&q)?;
            types_of(w, &id)
        })?;
        reapply(&s, &types)
    })
    .await
}

/// `PUT P/qos-specs/{id}` `{"qos_specs": {key: value…}}`: sets keys (and the consumer).
pub async fn update(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let q = top(&body, "qos_specs")?.clone();
    let new_consumer = match q.get("consumer") {
        None => None,
        Some(Value::String(c)) => Some(consumer(c)?),
        Some(_) => return Err(ApiError::bad_request("consumer must be a string.")),
    };
    if q.contains_key("name") {
        return Err(ApiError::bad_request(
            "A QoS spec's name can not be changed.",
        ));
    }
    let new = pairs(&q)?;
    change(s, p.id, move |rec| {
        if let Some(c) = new_consumer {
            rec.consumer = c;
        }
        rec.specs.extend(new);
        Ok(())
    })
    .await?;
    Ok(reply(StatusCode::OK, json!({ "qos_specs": q })))
}

/// `PUT P/qos-specs/{id}/delete_keys` `{"keys": […]}`.
pub async fn delete_keys(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let keys: Vec<String> = body
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| ApiError::bad_request("Missing required element 'keys' in request body."))?;
    let id = p.id.clone();
    change(s, p.id, move |rec| {
        for k in &keys {
            if rec.specs.remove(k).is_none() {
                return Err(ApiError::bad_request(format!(
                    "QoS spec {id} has no key {k}."
                )));
            }
        }
        Ok(())
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `DELETE P/qos-specs/{id}[?force=true]`: refused while associated, unless forced (then
/// its types lose it).
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    params: Params,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let force = match params.get("force") {
        None => false,
        Some(f) => parse_bool(f)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value '{f}' for force.")))?,
    };
    blocking(move || {
        let types = s.catalog.write(|w| {
            load(w, &p.id)?;
            let types = types_of(w, &p.id)?;
            if !types.is_empty() && !force {
                return Err(ApiError::bad_request(format!(
                    "QoS Specs {} is still associated with entities.",
                    p.id
                )));
            }
            for mut t in types.clone() {
                t.qos_specs_id = None;
                w.put(&t)?;
            }
            w.delete::<QosSpecRecord>(&p.id)?;
            Ok::<_, ApiError>(types)
        })?;
        reapply(&s, &types)?;
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

/// `GET P/qos-specs/{id}/associations`.
pub async fn associations(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    blocking(move || {
        let types = s.catalog.read(|r| {
            load(r, &p.id)?;
            types_of(r, &p.id)
        })?;
        let shown: Vec<Value> = types
            .iter()
            .map(|t| json!({"association_type": "volume_type", "name": t.name, "id": t.id}))
            .collect();
        Ok(reply(StatusCode::OK, json!({ "qos_associations": shown })))
    })
    .await
}

/// Sets or clears the QoS spec of the type `vol_type_id` names (`associate`: to spec `id`).
async fn link(
    ctx: Ctx,
    s: Arc<ApiState>,
    id: String,
    params: Params,
    associate: bool,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    let type_id = params
        .get("vol_type_id")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("Missing required parameter vol_type_id."))?;
    blocking(move || {
        let t = s.catalog.write(|w| {
            load(w, &id)?;
            let mut t = w.get::<VolumeTypeRecord>(&type_id)?.ok_or_else(|| {
                ApiError::not_found(format!("Volume type {type_id} could not be found."))
            })?;
            if associate {
                if let Some(other) = t.qos_specs_id.as_ref().filter(|o| **o != id) {
                    return Err(ApiError::bad_request(format!(
                        "Type {type_id} is already associated with another qos specs: {other}"
                    )));
                }
                t.qos_specs_id = Some(id.clone());
            } else if t.qos_specs_id.as_deref() == Some(id.as_str()) {
                t.qos_specs_id = None;
            }
            t.updated_at = Some(Timestamp::now());
            w.put(&t)?;
            Ok::<_, ApiError>(t)
        })?;
        reapply(&s, std::slice::from_ref(&t))?;
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

/// `GET P/qos-specs/{id}/associate?vol_type_id=…`.
pub async fn associate(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    params: Params,
) -> ApiResult<Response> {
    link(ctx, s, p.id, params, true).await
}

/// `GET P/qos-specs/{id}/disassociate?vol_type_id=…`.
pub async fn disassociate(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    params: Params,
) -> ApiResult<Response> {
    link(ctx, s, p.id, params, false).await
}

/// `GET P/qos-specs/{id}/disassociate_all`.
pub async fn disassociate_all(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    admin_only(&ctx)?;
    blocking(move || {
        let types = s.catalog.write(|w| {
            load(w, &p.id)?;
            let types = types_of(w, &p.id)?;
            for mut t in types.clone() {
                t.qos_specs_id = None;
                w.put(&t)?;
            }
            Ok::<_, ApiError>(types)
        })?;
        reapply(&s, &types)?;
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}
