//! Quotas: limits per project (defaults from the configuration, overridable by an admin),
//! usage computed from the catalog, and the 413 check on every create/extend/snapshot/accept.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::extract::{IdPath, JsonBody, Params};
use super::input::{integer, parse_bool, top};
use super::{blocking, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{
    BackupRecord, BackupStatus, CatalogRead, QuotaRecord, SnapshotRecord, VolumeRecord,
};
use crate::config::ServeConfig;
use crate::lifecycle;
use crate::volume_types;

/// The resources every quota set shows.
const BASE: [&str; 7] = [
    "volumes",
    "snapshots",
    "gigabytes",
    "backups",
    "backup_gigabytes",
    "per_volume_gigabytes",
    "groups",
];

/// The resources of quota sets: the base ones and three per volume type in the catalog.
fn resource_names(r: &impl CatalogRead) -> Result<Vec<String>, ApiError> {
    let mut names: Vec<String> = BASE.iter().map(|s| (*s).to_owned()).collect();
    for t in volume_types::all(r)? {
        for res in ["volumes", "snapshots", "gigabytes"] {
            names.push(format!("{res}_{}", t.name));
        }
    }
    Ok(names)
}

/// Limits of `project` (`-1` = unlimited).
pub fn limits(
    r: &impl CatalogRead,
    config: &ServeConfig,
    project: &str,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut out: BTreeMap<String, i64> = resource_names(r)?.into_iter().map(|n| (n, -1)).collect();
    out.extend(config.quota.clone());
    if let Some(q) = r.get::<QuotaRecord>(project)? {
        out.extend(q.limits);
    }
    Ok(out)
}

/// Usage of `project` by resource name.
pub fn usage(r: &impl CatalogRead, project: &str) -> Result<BTreeMap<String, i64>, ApiError> {
    let volumes: Vec<VolumeRecord> = r.all()?;
    let snapshots: Vec<SnapshotRecord> = r.all()?;
    let mut used = lifecycle::usage(resource_names(r)?, &volumes, &snapshots, project);
    for b in r.all::<BackupRecord>()? {
        if b.project_id == project && b.status != BackupStatus::Deleting {
            *used.entry("backups".into()).or_insert(0) += 1;
            let gib = i64::try_from(b.size).unwrap_or(i64::MAX);
            let e = used.entry("backup_gigabytes".into()).or_insert(0);
            *e = e.saturating_add(gib);
        }
    }
    Ok(used)
}

/// Refuses (413) if adding `deltas` to `project`'s usage exceeds a limit, or if a volume of
/// `volume_size` GiB exceeds `per_volume_gigabytes`.
pub fn check(
    r: &impl CatalogRead,
    config: &ServeConfig,
    project: &str,
    deltas: &[(String, i64)],
    volume_size: Option<u64>,
) -> ApiResult<()> {
    let limits = limits(r, config, project)?;
    let used = usage(r, project)?;
    Ok(lifecycle::within_limits(
        &limits,
        &used,
        deltas,
        volume_size,
    )?)
}

fn quota_set(
    r: &impl CatalogRead,
    config: &ServeConfig,
    project: &str,
    with_usage: bool,
) -> ApiResult<Value> {
    let limits = limits(r, config, project)?;
    let used = if with_usage {
        usage(r, project)?
    } else {
        BTreeMap::new()
    };
    let mut set = Map::new();
    set.insert("id".into(), json!(project));
    for (k, limit) in limits {
        let v = if with_usage {
            let in_use = if k == "per_volume_gigabytes" {
                0
            } else {
                used.get(&k).copied().unwrap_or(0)
            };
            json!({"limit": limit, "in_use": in_use, "reserved": 0})
        } else {
            json!(limit)
        };
        set.insert(k, v);
    }
    Ok(json!({ "quota_set": set }))
}

/// `GET P/os-quota-sets/{target}[?usage=True]`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    params: Params,
) -> ApiResult<Response> {
    let with_usage = match params.get("usage") {
        None => false,
        Some(u) => parse_bool(u)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value '{u}' for 'usage'.")))?,
    };
    if p.id != ctx.project_id && !ctx.is_admin {
        return Err(ApiError::forbidden("Policy check failed."));
    }
    blocking(move || {
        let body = s
            .catalog
            .read(|r| quota_set(r, &s.config, &p.id, with_usage))?;
        Ok(reply(StatusCode::OK, body))
    })
    .await
}

/// `PUT P/os-quota-sets/{target}` (admin): sets limits.
pub async fn update(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    if !ctx.is_admin {
        return Err(ApiError::forbidden("Policy check failed."));
    }
    let set = top(&body, "quota_set")?.clone();
    blocking(move || {
        let body = s.catalog.write(|w| {
            let names = resource_names(w)?;
            let mut new = BTreeMap::new();
            for (k, v) in &set {
                if !names.contains(k) {
                    return Err(ApiError::bad_request(format!(
                        "Bad key(s) {k} in quota_set"
                    )));
                }
                let n = integer(v).filter(|n| *n >= -1).ok_or_else(|| {
                    ApiError::bad_request(format!("Quota limit for {k} must be an integer >= -1"))
                })?;
                new.insert(k.clone(), n);
            }
            let mut rec = w.get::<QuotaRecord>(&p.id)?.unwrap_or(QuotaRecord {
                project_id: p.id.clone(),
                limits: BTreeMap::new(),
            });
            rec.limits.extend(new);
            w.put(&rec)?;
            let mut body = quota_set(w, &s.config, &p.id, false)?;
            if let Some(obj) = body.get_mut("quota_set").and_then(Value::as_object_mut) {
                obj.remove("id");
            }
            Ok::<_, ApiError>(body)
        })?;
        Ok(reply(StatusCode::OK, body))
    })
    .await
}
