//! Snapshots: create, list, show, update, delete and EVS rollback (`docs/api.md` §5).

use super::set_field;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::IdPath;
use super::extract::{JsonBody, Params};
use super::input::{is_uuid, top};
use super::list::{collection_body, metadata_matches, ListQuery, Listable, SortValue};
use super::requests::{parse, typed, user_metadata, Rename, Rollback, SnapshotCreate, TEXT_CODES};
use super::volumes;
use super::{blocking, empty, quotas, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{
    CatalogRead, SnapshotRecord, SnapshotStatus, Timestamp, VolumeRecord, Writer,
};
use crate::lifecycle;

/// Snapshot `id` as `ctx` may see it, else 404.
pub fn load(r: &impl CatalogRead, ctx: &Ctx, id: &str) -> ApiResult<SnapshotRecord> {
    r.get::<SnapshotRecord>(id)?
        .filter(|x| x.project_id == ctx.project_id || ctx.is_admin)
        .ok_or_else(|| ApiError::not_found(format!("Snapshot {id} could not be found.")))
}

/// Commits `x` (stamping `updated_at`).
pub fn save(w: &mut Writer, x: &mut SnapshotRecord) -> ApiResult<()> {
    x.updated_at = Some(Timestamp::now());
    w.put(x)?;
    Ok(())
}

/// The base view; `detail` adds the extended attributes.
pub fn view(x: &SnapshotRecord, detail: bool) -> Value {
    let mut out = json!({
        "id": x.id,
        "name": x.name,
        "description": x.description,
        "status": x.status.as_str(),
        "size": x.size,
        "volume_id": x.volume_id,
        "metadata": x.metadata,
        "created_at": x.created_at.cinder(),
        "updated_at": x.updated_at.map(Timestamp::cinder),
    });
    if detail {
        let progress = if x.status == SnapshotStatus::Creating {
            "0%"
        } else {
            "100%"
        };
        set_field(
            &mut out,
            "os-extended-snapshot-attributes:progress",
            json!(progress),
        );
        set_field(
            &mut out,
            "os-extended-snapshot-attributes:project_id",
            json!(x.project_id),
        );
    }
    out
}

/// A snapshot with the zone of its volume, for filtering.
struct Listed {
    snap: SnapshotRecord,
    zone: String,
}

impl Listable for Listed {
    fn id(&self) -> &str {
        &self.snap.id
    }

    const SORT_KEYS: &'static [&'static str] = &[
        "id",
        "name",
        "status",
        "size",
        "created_at",
        "updated_at",
        "volume_id",
    ];

    fn sort_value(&self, key: &str) -> SortValue {
        let x = &self.snap;
        match key {
            "id" => SortValue::Text(x.id.clone()),
            "name" => x.name.clone().map_or(SortValue::Null, SortValue::Text),
            "status" => SortValue::Text(x.status.as_str().into()),
            "size" => SortValue::Num(i64::try_from(x.size).unwrap_or(i64::MAX)),
            "created_at" => SortValue::Num(x.created_at.0),
            "updated_at" => x
                .updated_at
                .map_or(SortValue::Null, |t| SortValue::Num(t.0)),
            "volume_id" => SortValue::Text(x.volume_id.clone()),
            _ => SortValue::Null,
        }
    }

    fn matches(&self, key: &str, value: &str) -> Option<bool> {
        let x = &self.snap;
        Some(match key {
            "name" | "display_name" => x.name.as_deref() == Some(value),
            "status" => x.status.as_str() == value,
            "volume_id" => x.volume_id == value,
            "availability_zone" => self.zone == value,
            "metadata" => metadata_matches(&x.metadata, value).unwrap_or(false),
            _ => return None,
        })
    }
}

async fn list_any(ctx: Ctx, s: Arc<ApiState>, params: Params, detail: bool) -> ApiResult<Response> {
    let q = ListQuery::parse::<Listed>(&params, ctx.is_admin)?;
    volumes::check_metadata_filter(&params)?;
    blocking(move || {
        let (snaps, vols) = s
            .catalog
            .read(|r| Ok::<_, ApiError>((r.all::<SnapshotRecord>()?, r.all::<VolumeRecord>()?)))?;
        let zones: BTreeMap<String, String> = vols
            .into_iter()
            .map(|v| (v.id, v.availability_zone))
            .collect();
        let mine: Vec<Listed> = snaps
            .into_iter()
            .filter(|x| q.all_tenants || x.project_id == ctx.project_id)
            .map(|snap| Listed {
                zone: zones.get(&snap.volume_id).cloned().unwrap_or_default(),
                snap,
            })
            .collect();
        let (page, next) = q.apply(mine)?;
        let items: Vec<Value> = page.iter().map(|l| view(&l.snap, detail)).collect();
        let body = collection_body(&ctx, "snapshots", detail, items, next, &params);
        Ok(reply(StatusCode::OK, body))
    })
    .await
}

/// `GET P/snapshots`.
pub async fn list(ctx: Ctx, State(s): State<Arc<ApiState>>, params: Params) -> ApiResult<Response> {
    list_any(ctx, s, params, false).await
}

/// `GET P/snapshots/detail`.
pub async fn list_detail(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    params: Params,
) -> ApiResult<Response> {
    list_any(ctx, s, params, true).await
}

/// `GET P/snapshots/{id}`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let x = s.catalog.read(|r| load(r, &ctx, &p.id))?;
        Ok(reply(StatusCode::OK, json!({"snapshot": view(&x, true)})))
    })
    .await
}

/// `POST P/snapshots`.
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: SnapshotCreate = parse(&body, "snapshot", &[], TEXT_CODES)?;
    let volume_id = req.volume_id.ok_or_else(|| {
        ApiError::bad_request("Invalid input: 'volume_id' is a required property")
    })?;
    let force = req.force;
    let name = req.name.or(req.display_name);
    let description = req.description;
    let meta = user_metadata(&req.metadata)?.unwrap_or_default();
    if !is_uuid(&volume_id) {
        return Err(ApiError::not_found(format!(
            "Volume {volume_id} could not be found."
        )));
    }
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let v = volumes::load(w, &ctx, &volume_id)?;
            lifecycle::may_snapshot(&v, force)?;
            quotas::check(
                w,
                &s.config,
                &v.project_id,
                &lifecycle::snapshot_deltas(v.size, &v.volume_type),
                None,
            )?;
            let rec = SnapshotRecord {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                project_id: v.project_id.clone(),
                user_id: ctx.user_id.clone(),
                volume_id: v.id.clone(),
                name: name.flatten(),
                description: description.flatten(),
                status: SnapshotStatus::Creating,
                size: v.size,
                metadata: meta,
                created_at: Timestamp::now(),
                updated_at: None,
            };
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        s.backend.start_snapshot(&rec.id);
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"snapshot": view(&rec, false)}),
        ))
    })
    .await
}

/// `PUT P/snapshots/{id}`: name and description.
pub async fn update(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let snap = top(&body, "snapshot")?;
    if snap.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid input: the snapshot object must have at least one member.",
        ));
    }
    let req: Rename = typed(&Value::Object(snap.clone()), TEXT_CODES)?;
    if req.metadata.is_some() {
        return Err(ApiError::bad_request(
            "Invalid input: additional properties are not allowed ('metadata' was unexpected)",
        ));
    }
    let (name, description) = req.resolved();
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let mut x = load(w, &ctx, &p.id)?;
            if let Some(n) = name {
                x.name = n;
            }
            if let Some(d) = description {
                x.description = d;
            }
            save(w, &mut x)?;
            Ok::<_, ApiError>(x)
        })?;
        Ok(reply(
            StatusCode::OK,
            json!({"snapshot": view(&rec, false)}),
        ))
    })
    .await
}

/// `DELETE P/snapshots/{id}`.
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        s.catalog.write(|w| {
            let mut x = load(w, &ctx, &p.id)?;
            let volumes: Vec<VolumeRecord> = w.all()?;
            lifecycle::begin_snapshot_delete(&mut x, &volumes)?;
            save(w, &mut x)?;
            Ok::<_, ApiError>(())
        })?;
        s.backend.start_snapshot(&p.id);
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

/// `POST P/cloudsnapshots/{id}/rollback` (and the `os-vendor-snapshots` alias): makes the
/// snapshot's volume's content the snapshot's.
pub async fn rollback(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: Rollback = parse(&body, "rollback", &[], TEXT_CODES)?;
    let volume_id = req.volume_id.ok_or_else(|| {
        ApiError::bad_request("Invalid input: 'volume_id' is a required property")
    })?;
    let name = req.name;
    blocking(move || {
        let vol = s.catalog.write(|w| {
            let mut x = load(w, &ctx, &p.id)?;
            let mut v = volumes::load(w, &ctx, &volume_id)?;
            lifecycle::begin_rollback(&mut x, &mut v, name)?;
            volumes::save(w, &mut v)?;
            save(w, &mut x)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&vol);
        s.backend.start_volume(&vol.id);
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"rollback": {"volume_id": vol.id}}),
        ))
    })
    .await
}
