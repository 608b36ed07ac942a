//! Quotas: limits per project (defaults from the configuration, overridable by an admin),
//! usage computed from the catalog, and the 413 check on every create/extend/snapshot/accept.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::extract::{JsonBody, Params};
use super::input::{integer, parse_bool, top};
use super::{blocking, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{CatalogRead, QuotaRecord, SnapshotRecord, VolumeRecord, VolumeStatus};
use crate::config::{ServeConfig, VOLUME_TYPES};

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

fn resource_names() -> Vec<String> {
    let mut names: Vec<String> = BASE.iter().map(|s| (*s).to_owned()).collect();
    for t in VOLUME_TYPES {
        for r in ["volumes", "snapshots", "gigabytes"] {
            names.push(format!("{r}_{t}"));
        }
    }
    names
}

/// Limits of `project` (`-1` = unlimited).
pub fn limits(
    r: &impl CatalogRead,
    config: &ServeConfig,
    project: &str,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut out: BTreeMap<String, i64> = resource_names().into_iter().map(|n| (n, -1)).collect();
    out.extend(config.quota.clone());
    if let Some(q) = r.get::<QuotaRecord>(project)? {
        out.extend(q.limits);
    }
    Ok(out)
}

/// Usage of `project` by resource name.
pub fn usage(r: &impl CatalogRead, project: &str) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut out: BTreeMap<String, i64> = resource_names().into_iter().map(|n| (n, 0)).collect();
    let mut add = |k: String, n: i64| *out.entry(k).or_insert(0) += n;
    let volumes: Vec<VolumeRecord> = r.all()?;
    let mut type_of = BTreeMap::new();
    for v in &volumes {
        type_of.insert(v.id.clone(), v.volume_type.clone());
        if v.project_id != project || v.status == VolumeStatus::Deleting {
            continue;
        }
        let size = i64::try_from(v.size).unwrap_or(i64::MAX);
        add("volumes".into(), 1);
        add("gigabytes".into(), size);
        add(format!("volumes_{}", v.volume_type), 1);
        add(format!("gigabytes_{}", v.volume_type), size);
    }
    for s in r.all::<SnapshotRecord>()? {
        if s.project_id != project {
            continue;
        }
        let size = i64::try_from(s.size).unwrap_or(i64::MAX);
        add("snapshots".into(), 1);
        add("gigabytes".into(), size);
        if let Some(t) = type_of.get(&s.volume_id) {
            add(format!("snapshots_{t}"), 1);
            add(format!("gigabytes_{t}"), size);
        }
    }
    Ok(out)
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
    if let Some(size) = volume_size {
        let per = limits.get("per_volume_gigabytes").copied().unwrap_or(-1);
        if per >= 0 && i64::try_from(size).unwrap_or(i64::MAX) > per {
            return Err(ApiError::over_quota(format!(
                "VolumeSizeExceedsLimit: Requested volume size {size}G is larger than maximum allowed limit {per}G."
            )));
        }
    }
    let used = usage(r, project)?;
    for (resource, add) in deltas {
        let limit = limits.get(resource).copied().unwrap_or(-1);
        let now = used.get(resource).copied().unwrap_or(0);
        if limit >= 0 && now.saturating_add(*add) > limit {
            return Err(ApiError::over_quota(format!(
                "Quota exceeded for {resource}: requested {add}, already used {now} of {limit}."
            )));
        }
    }
    Ok(())
}

/// The usual deltas of a volume of `size` GiB of type `t`.
pub fn volume_deltas(size: u64, t: &str) -> Vec<(String, i64)> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    vec![
        ("volumes".into(), 1),
        ("gigabytes".into(), size),
        (format!("volumes_{t}"), 1),
        (format!("gigabytes_{t}"), size),
    ]
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
    Path(p): Path<super::volumes::IdPath>,
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
    Path(p): Path<super::volumes::IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    if !ctx.is_admin {
        return Err(ApiError::forbidden("Policy check failed."));
    }
    let set = top(&body, "quota_set")?;
    let names = resource_names();
    let mut new = BTreeMap::new();
    for (k, v) in set {
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
    blocking(move || {
        let body = s.catalog.write(|w| {
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
