//! User metadata of volumes and snapshots: the six operations (`docs/api.md` §5).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::IdPath;
use super::extract::JsonBody;
use super::input::{metadata, top};
use super::{blocking, empty, reply, snapshots, volumes, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{CatalogRead, VolumeStatus, Writer};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Volume,
    Snapshot,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Volume => "Volume",
            Kind::Snapshot => "Snapshot",
        }
    }
}

fn read_meta(
    r: &impl CatalogRead,
    ctx: &Ctx,
    kind: Kind,
    id: &str,
) -> ApiResult<BTreeMap<String, String>> {
    Ok(match kind {
        Kind::Volume => volumes::load(r, ctx, id)?.metadata,
        Kind::Snapshot => snapshots::load(r, ctx, id)?.metadata,
    })
}

fn change_meta(
    w: &mut Writer,
    ctx: &Ctx,
    kind: Kind,
    id: &str,
    f: impl FnOnce(&mut BTreeMap<String, String>) -> ApiResult<()>,
) -> ApiResult<BTreeMap<String, String>> {
    match kind {
        Kind::Volume => {
            let mut v = volumes::load(w, ctx, id)?;
            if matches!(
                v.status,
                VolumeStatus::Maintenance | VolumeStatus::Uploading
            ) {
                return Err(ApiError::bad_request(format!(
                    "Invalid volume: metadata cannot change while the volume is {}.",
                    v.status.as_str()
                )));
            }
            f(&mut v.metadata)?;
            volumes::save(w, &mut v)?;
            Ok(v.metadata)
        }
        Kind::Snapshot => {
            let mut s = snapshots::load(w, ctx, id)?;
            f(&mut s.metadata)?;
            snapshots::save(w, &mut s)?;
            Ok(s.metadata)
        }
    }
}

fn missing(kind: Kind, id: &str, key: &str) -> ApiError {
    ApiError::not_found(format!(
        "{} {id} has no metadata with key {key}.",
        kind.noun()
    ))
}

async fn all(ctx: Ctx, s: Arc<ApiState>, kind: Kind, id: String) -> ApiResult<Response> {
    blocking(move || {
        let m = s.catalog.read(|r| read_meta(r, &ctx, kind, &id))?;
        Ok(reply(StatusCode::OK, json!({ "metadata": m })))
    })
    .await
}

async fn write_all(
    ctx: Ctx,
    s: Arc<ApiState>,
    kind: Kind,
    id: String,
    body: Value,
    replace: bool,
) -> ApiResult<Response> {
    let root = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Malformed request body."))?;
    let new = metadata(
        root.get("metadata")
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                ApiError::bad_request("Missing required element 'metadata' in request body.")
            })?,
    )?;
    blocking(move || {
        let m = s.catalog.write(|w| {
            change_meta(w, &ctx, kind, &id, |m| {
                if replace {
                    *m = new;
                } else {
                    m.extend(new);
                }
                if serde_json::to_vec(m).map(|b| b.len()).unwrap_or(0) > 1 << 20 {
                    return Err(ApiError::invalid(
                        "EVS.1005",
                        "Metadata is larger than 1048576 bytes.",
                    ));
                }
                Ok(())
            })
        })?;
        Ok(reply(StatusCode::OK, json!({ "metadata": m })))
    })
    .await
}

async fn one(ctx: Ctx, s: Arc<ApiState>, kind: Kind, p: IdPath) -> ApiResult<Response> {
    blocking(move || {
        let m = s.catalog.read(|r| read_meta(r, &ctx, kind, &p.id))?;
        let v = m.get(&p.key).ok_or_else(|| missing(kind, &p.id, &p.key))?;
        Ok(reply(StatusCode::OK, json!({"meta": { p.key.clone(): v }})))
    })
    .await
}

async fn put_one(
    ctx: Ctx,
    s: Arc<ApiState>,
    kind: Kind,
    p: IdPath,
    body: Value,
) -> ApiResult<Response> {
    let meta = top(&body, "meta")?;
    if meta.len() > 1 {
        return Err(ApiError::bad_request(
            "Request body contains too many items.",
        ));
    }
    let pair = metadata(&Value::Object(meta.clone()))?;
    let (k, v) = pair
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("Malformed request body: 'meta' is empty."))?;
    if k != p.key {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    blocking(move || {
        let value = v.clone();
        s.catalog.write(|w| {
            change_meta(w, &ctx, kind, &p.id, |m| {
                m.insert(k.clone(), value);
                Ok(())
            })
        })?;
        Ok(reply(StatusCode::OK, json!({"meta": { p.key.clone(): v }})))
    })
    .await
}

async fn delete_one(ctx: Ctx, s: Arc<ApiState>, kind: Kind, p: IdPath) -> ApiResult<Response> {
    blocking(move || {
        s.catalog.write(|w| {
            change_meta(w, &ctx, kind, &p.id, |m| {
                m.remove(&p.key)
                    .map(|_| ())
                    .ok_or_else(|| missing(kind, &p.id, &p.key))
            })
        })?;
        Ok(empty(StatusCode::OK))
    })
    .await
}

macro_rules! metadata_routes {
    ($kind:expr, $all:ident, $merge:ident, $replace:ident, $one:ident, $put_one:ident, $delete_one:ident) => {
        /// `GET …/metadata`.
        pub async fn $all(
            ctx: Ctx,
            State(s): State<Arc<ApiState>>,
            Path(p): Path<IdPath>,
        ) -> ApiResult<Response> {
            all(ctx, s, $kind, p.id).await
        }
        /// `POST …/metadata` (merge).
        pub async fn $merge(
            ctx: Ctx,
            State(s): State<Arc<ApiState>>,
            Path(p): Path<IdPath>,
            JsonBody(b): JsonBody,
        ) -> ApiResult<Response> {
            write_all(ctx, s, $kind, p.id, b, false).await
        }
        /// `PUT …/metadata` (replace).
        pub async fn $replace(
            ctx: Ctx,
            State(s): State<Arc<ApiState>>,
            Path(p): Path<IdPath>,
            JsonBody(b): JsonBody,
        ) -> ApiResult<Response> {
            write_all(ctx, s, $kind, p.id, b, true).await
        }
        /// `GET …/metadata/{key}`.
        pub async fn $one(
            ctx: Ctx,
            State(s): State<Arc<ApiState>>,
            Path(p): Path<IdPath>,
        ) -> ApiResult<Response> {
            one(ctx, s, $kind, p).await
        }
        /// `PUT …/metadata/{key}`.
        pub async fn $put_one(
            ctx: Ctx,
            State(s): State<Arc<ApiState>>,
            Path(p): Path<IdPath>,
            JsonBody(b): JsonBody,
        ) -> ApiResult<Response> {
            put_one(ctx, s, $kind, p, b).await
        }
        /// `DELETE …/metadata/{key}`.
        pub async fn $delete_one(
            ctx: Ctx,
            State(s): State<Arc<ApiState>>,
            Path(p): Path<IdPath>,
        ) -> ApiResult<Response> {
            delete_one(ctx, s, $kind, p).await
        }
    };
}

metadata_routes!(
    Kind::Volume,
    volume_all,
    volume_merge,
    volume_replace,
    volume_one,
    volume_put_one,
    volume_delete_one
);
metadata_routes!(
    Kind::Snapshot,
    snapshot_all,
    snapshot_merge,
    snapshot_replace,
    snapshot_one,
    snapshot_put_one,
    snapshot_delete_one
);
