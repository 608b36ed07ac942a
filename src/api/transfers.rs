//! Volume transfers between projects (`docs/api.md` §5): the owner offers a volume and gets a
//! one-time auth key (stored only salted and hashed); whoever presents id and key takes it.

use super::set_field;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::IdPath;
use super::extract::{JsonBody, Params};
use super::input::{only, parse_bool, top};
use super::list::MAX_LIMIT;
use super::requests::{parse, TransferCreate, TEXT_CODES};
use super::volumes::{self, transfer_links};
use super::{blocking, empty, quotas, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{CatalogRead, SnapshotRecord, Timestamp, TransferRecord};
use crate::identity::{random_hex, sha256_hex};
use crate::lifecycle;

fn key_hash(salt: &str, key: &str) -> String {
    sha256_hex(format!("{salt}:{key}").as_bytes())
}

fn load(r: &impl CatalogRead, ctx: &Ctx, id: &str) -> ApiResult<TransferRecord> {
    r.get::<TransferRecord>(id)?
        .filter(|t| t.project_id == ctx.project_id || ctx.is_admin)
        .ok_or_else(|| ApiError::not_found(format!("Transfer {id} could not be found.")))
}

fn view(ctx: &Ctx, t: &TransferRecord, detail: bool) -> Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "volume_id": t.volume_id,
        "links": transfer_links(ctx, &t.id),
    });
    if detail {
        set_field(&mut v, "created_at", json!(t.created_at.cinder()));
    }
    v
}

/// `POST P/os-volume-transfer`.
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: TransferCreate = parse(&body, "transfer", &[], TEXT_CODES)?;
    let volume_id = req.volume_id.ok_or_else(|| {
        ApiError::bad_request("Invalid input: 'volume_id' is a required property")
    })?;
    let name = req.name.flatten();
    if name.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "Invalid input for field 'name': 1 to 255 characters.",
        ));
    }
    blocking(move || {
        let salt = random_hex(4)?;
        let auth_key = random_hex(8)?;
        let rec = s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &volume_id)?;
            let has_snapshots = w
                .all::<SnapshotRecord>()?
                .iter()
                .any(|x| x.volume_id == v.id);
            lifecycle::offer_transfer(&mut v, has_snapshots)?;
            volumes::save(w, &mut v)?;
            let rec = TransferRecord {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                project_id: v.project_id.clone(),
                volume_id: v.id.clone(),
                name: name.clone(),
                key_hash: key_hash(&salt, &auth_key),
                salt: salt.clone(),
                created_at: Timestamp::now(),
            };
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        let mut body = view(&ctx, &rec, true);
        set_field(&mut body, "auth_key", json!(auth_key));
        Ok(reply(StatusCode::ACCEPTED, json!({ "transfer": body })))
    })
    .await
}

/// `POST P/os-volume-transfer/{id}/accept`: the caller's project takes the volume.
pub async fn accept(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let a = top(&body, "accept")?;
    only(a, &["auth_key"])?;
    let key = match a.get("auth_key") {
        Some(Value::String(k)) => k.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(ApiError::bad_request("'auth_key' is a required property")),
    };
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let t = w.get::<TransferRecord>(&p.id)?.ok_or_else(|| {
                ApiError::not_found(format!("Transfer {} could not be found.", p.id))
            })?;
            if key_hash(&t.salt, &key) != t.key_hash {
                return Err(ApiError::bad_request(format!(
                    "Invalid auth key: Attempt to transfer {} with invalid auth key.",
                    t.id
                )));
            }
            let mut v = w
                .get::<crate::catalog::VolumeRecord>(&t.volume_id)?
                .ok_or_else(|| {
                    ApiError::not_found(format!("Volume {} could not be found.", t.volume_id))
                })?;
            quotas::check(
                w,
                &s.config,
                &ctx.project_id,
                &lifecycle::volume_deltas(v.size, &v.volume_type),
                Some(v.size),
            )?;
            lifecycle::accept_transfer(&mut v, &ctx.project_id, &ctx.user_id)?;
            volumes::save(w, &mut v)?;
            w.delete::<TransferRecord>(&t.id)?;
            Ok::<_, ApiError>(t)
        })?;
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"transfer": view(&ctx, &rec, false)}),
        ))
    })
    .await
}

async fn list_any(ctx: Ctx, s: Arc<ApiState>, params: Params, detail: bool) -> ApiResult<Response> {
    let number = |v: &str, max: usize| v.trim().parse::<usize>().ok().filter(|n| *n <= max);
    let limit = match params.get("limit") {
        None => None,
        Some(l) => Some(number(l, MAX_LIMIT).ok_or_else(|| {
            ApiError::invalid("EVS.1023", "limit param must be an integer 0 to 1000")
        })?),
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(o) => number(o, i32::MAX as usize).ok_or_else(|| {
            ApiError::bad_request("offset param must be an integer 0 to 2147483647")
        })?,
    };
    let all_tenants = ctx.is_admin
        && params
            .get("all_tenants")
            .map(|v| parse_bool(v).unwrap_or(true))
            .unwrap_or(false);
    let name = params.get("name").map(str::to_owned);
    blocking(move || {
        let mut all: Vec<TransferRecord> = s.catalog.read(|r| r.all())?;
        all.retain(|t| {
            (all_tenants || t.project_id == ctx.project_id)
                && name.as_ref().is_none_or(|n| t.name.as_ref() == Some(n))
        });
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let page: Vec<TransferRecord> = all
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(MAX_LIMIT))
            .collect();
        let items: Vec<Value> = page.iter().map(|t| view(&ctx, t, detail)).collect();
        let mut body = json!({ "transfers": items });
        if let Some(l) = limit.filter(|l| *l > 0 && page.len() == *l) {
            set_field(
                &mut body,
                "transfers_links",
                json!([{"rel": "next", "href": format!(
                    "{}/{}/{}/os-volume-transfer{}?limit={l}&offset={}",
                    ctx.base, ctx.version, ctx.project_id,
                    if detail { "/detail" } else { "" },
                    offset + page.len()
                )}]),
            );
        }
        Ok(reply(StatusCode::OK, body))
    })
    .await
}

/// `GET P/os-volume-transfer`.
pub async fn list(ctx: Ctx, State(s): State<Arc<ApiState>>, params: Params) -> ApiResult<Response> {
    list_any(ctx, s, params, false).await
}

/// `GET P/os-volume-transfer/detail`.
pub async fn list_detail(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    params: Params,
) -> ApiResult<Response> {
    list_any(ctx, s, params, true).await
}

/// `GET P/os-volume-transfer/{id}`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let t = s.catalog.read(|r| load(r, &ctx, &p.id))?;
        Ok(reply(
            StatusCode::OK,
            json!({"transfer": view(&ctx, &t, true)}),
        ))
    })
    .await
}

/// `DELETE P/os-volume-transfer/{id}`: withdraws the offer; the volume is available again.
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        s.catalog.write(|w| {
            let t = load(w, &ctx, &p.id)?;
            if let Some(mut v) = w.get::<crate::catalog::VolumeRecord>(&t.volume_id)? {
                if lifecycle::withdraw_transfer(&mut v) {
                    volumes::save(w, &mut v)?;
                }
            }
            w.delete::<TransferRecord>(&t.id)?;
            Ok::<_, ApiError>(())
        })?;
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}
