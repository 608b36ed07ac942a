//! `GET P/os-tripod-status` (admins): every volume of every project with its catalog status
//! and, while it is open, the health of each replica (in service, degraded with what it
//! misses, resyncing or rebuilding with progress), repairs and space refusals — what
//! `tripod status` shows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody};
use super::requests::{parse, ReplaceReplica};
use super::{blocking, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::backend::{BackendError, ScrubState};
use crate::catalog::{CatalogRead, VolumeRecord};
use crate::data_dir::VolumeError;
use crate::qos::Limits;
use tripod_replication::{ReplicaHealth, ReplicationError, SetStatus};

/// One replica's health as JSON.
fn replica_json(slot: usize, describe: &str, health: &ReplicaHealth) -> Value {
    let (state, detail) = match *health {
        ReplicaHealth::InService => ("in_service", json!({})),
        ReplicaHealth::Degraded {
            missing_chunks,
            needs_rebuild,
        } => (
            "degraded",
            json!({"missing_chunks": missing_chunks, "needs_rebuild": needs_rebuild}),
        ),
        ReplicaHealth::Resyncing { done, total } => {
            ("resyncing", json!({"done": done, "total": total}))
        }
        ReplicaHealth::Rebuilding { done, total } => {
            ("rebuilding", json!({"done": done, "total": total}))
        }
    };
    let mut out = json!({"slot": slot, "location": describe, "health": state});
    if let (Some(o), Some(d)) = (out.as_object_mut(), detail.as_object()) {
        o.extend(d.clone());
    }
    out
}

/// A scrub's state as JSON.
pub fn scrub_json(state: &ScrubState) -> Value {
    match state {
        ScrubState::Running { started } => json!({"state": "running", "started_at": started}),
        ScrubState::Done {
            started,
            ended,
            blocks_checked,
            bad,
            repaired,
            unrepairable,
        } => json!({
            "state": "done", "started_at": started, "ended_at": ended,
            "blocks_checked": blocks_checked, "bad": bad, "repaired": repaired,
            "unrepairable": unrepairable,
        }),
        ScrubState::Failed { started, error } => {
            json!({"state": "failed", "started_at": started, "error": error})
        }
    }
}

/// A volume and, when open, its replicas.
fn volume_json(
    v: &VolumeRecord,
    set: Option<&SetStatus>,
    scrub: Option<ScrubState>,
    operations: Vec<Value>,
    limits: Option<Limits>,
    sync: bool,
) -> Value {
    let qos: serde_json::Map<String, Value> = limits
        .unwrap_or_default()
        .to_pairs()
        .into_iter()
        .map(|(k, n)| (k, json!(n)))
        .collect();
    let mut out = json!({
        "operations": operations,
        "id": v.id,
        "name": v.name,
        "project_id": v.project_id,
        "status": v.status.as_str(),
        "size": v.size,
        "volume_type": v.volume_type,
        "qos": qos,
        "durability": if sync { "sync" } else { "flush" },
        "encrypted": v.encryption.is_some(),
        "open": set.is_some(),
        "last_scrub": scrub.as_ref().map(scrub_json),
    });
    if let (Some(o), Some(s)) = (out.as_object_mut(), set) {
        let replicas: Vec<Value> = s
            .replicas
            .iter()
            .map(|(id, r)| replica_json(id.index(), &r.describe, &r.health))
            .collect();
        o.insert("replicas".into(), Value::Array(replicas));
        o.insert("repairs".into(), json!(s.repairs));
        o.insert("space_refusals".into(), json!(s.space_refusals));
        o.insert("out_of_space".into(), json!(s.out_of_space));
        o.insert("integrity_errors".into(), json!(s.integrity_errors));
    }
    out
}

/// `GET P/os-tripod-status`.
pub async fn show(ctx: Ctx, State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    if !ctx.is_admin {
        return Err(ApiError::forbidden("Policy check failed: admins only."));
    }
    blocking(move || {
        let mut volumes: Vec<VolumeRecord> = s.catalog.read(|r| Ok::<_, ApiError>(r.all()?))?;
        volumes.sort_by(|a, b| (&a.project_id, &a.id).cmp(&(&b.project_id, &b.id)));
        let open = s.backend.registry().open_volumes();
        let mut degraded = 0usize;
        let list: Vec<Value> = volumes
            .iter()
            .map(|v| {
                let status = open
                    .iter()
                    .find(|(id, _)| *id == v.id)
                    .map(|(_, set)| set.status());
                if status.as_ref().is_some_and(|st| {
                    st.replicas
                        .iter()
                        .any(|(_, r)| r.health != ReplicaHealth::InService)
                }) {
                    degraded += 1;
                }
                let ops = s
                    .backend
                    .operations_of(&v.id)
                    .iter()
                    .map(|o| o.to_json())
                    .collect();
                volume_json(
                    v,
                    status.as_ref(),
                    s.backend.scrub_state(&v.id),
                    ops,
                    s.backend.registry().limits(&v.id),
                    s.backend.registry().syncs_writes(&v.id),
                )
            })
            .collect();
        Ok(reply(
            StatusCode::OK,
            json!({
                "volumes": list,
                "summary": {"volumes": volumes.len(), "open": open.len(), "degraded": degraded},
            }),
        ))
    })
    .await
}

/// `POST P/os-tripod-volumes/{id}/scrub` (admins): starts verifying every copy of the volume
/// and repairing bad ones from good ones; 202 with the scrub's state, 409 if one is running.
/// Its progress and result show in `GET P/os-tripod-status` (`last_scrub`).
pub async fn scrub(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    if !ctx.is_admin {
        return Err(ApiError::forbidden("Policy check failed: admins only."));
    }
    blocking(move || {
        let v = s.catalog.read(|r| super::volumes::load(r, &ctx, &p.id))?;
        // Only a volume whose data may be used (not being created, deleted or rolled back).
        if crate::backend::exposure_of(&v) == crate::data_dir::Exposure::Hidden {
            return Err(ApiError::bad_request(format!(
                "Invalid volume: a {} volume cannot be scrubbed.",
                v.status.as_str()
            )));
        }
        if !s.backend.start_scrub(&v.id) {
            return Err(ApiError::conflict(
                "A scrub of this volume is already running.",
            ));
        }
        let state = s.backend.scrub_state(&v.id);
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"scrub": state.as_ref().map(scrub_json)}),
        ))
    })
    .await
}

/// Path parameters of a replica of a volume.
#[derive(Debug, serde::Deserialize)]
pub struct ReplicaPath {
    /// The volume id.
    pub id: String,
    /// The replica slot (0, 1, 2).
    pub slot: String,
}

/// `POST P/os-tripod-volumes/{id}/replicas/{slot}/replace` (admins), body
/// `{"replace": {"with": "/mnt/new-disk/tripod" | "tcp://HOST:PORT"}}`: moves that replica
/// of the volume to a new root online (an empty directory, or a replica node without a copy
/// of it) and rebuilds it there in the background while clients keep using the volume.
/// 202 with the replica's new state; its progress shows in `GET P/os-tripod-status`. 400 for
/// a bad slot or location, 409 unless the other two replicas are in service.
pub async fn replace_replica(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<ReplicaPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    if !ctx.is_admin {
        return Err(ApiError::forbidden("Policy check failed: admins only."));
    }
    let req: ReplaceReplica = parse(&body, "replace", &[], &[])?;
    let slot: usize =
        p.slot.parse().ok().filter(|n| *n < 3).ok_or_else(|| {
            ApiError::bad_request("Invalid input: the replica slot is 0, 1 or 2.")
        })?;
    blocking(move || {
        let v = s.catalog.read(|r| super::volumes::load(r, &ctx, &p.id))?;
        if crate::backend::exposure_of(&v) == crate::data_dir::Exposure::Hidden {
            return Err(ApiError::bad_request(format!(
                "Invalid volume: a replica of a {} volume cannot be replaced.",
                v.status.as_str()
            )));
        }
        let previous = s
            .backend
            .replace_replica(&v.id, slot, &req.with)
            .map_err(|e| match e {
                BackendError::Volume(VolumeError::Invalid(m)) => {
                    ApiError::bad_request(format!("Invalid input: {m}"))
                }
                BackendError::Replication(
                    e @ (ReplicationError::NoQuorum { .. } | ReplicationError::Busy(_)),
                ) => ApiError::conflict(e.to_string()),
                other => ApiError::from(other),
            })?;
        let status = s.backend.registry().get(&v.id).map(|set| set.status());
        let replica = match &status {
            Ok(st) => st
                .replicas
                .iter()
                .find(|(id, _)| id.index() == slot)
                .map(|(id, r)| replica_json(id.index(), &r.describe, &r.health)),
            Err(_) => None,
        };
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"replica": replica, "previous_location": previous}),
        ))
    })
    .await
}
