//! `GET P/os-tripod-status` (admins): every volume of every project with its catalog status
//! and, while it is open, the health of each replica (in service, degraded with what it
//! misses, resyncing or rebuilding with progress), repairs and space refusals — what
//! `tripod status` shows.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{blocking, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{CatalogRead, VolumeRecord};
use tripod_replication::{ReplicaHealth, SetStatus};

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

/// A volume and, when open, its replicas.
fn volume_json(v: &VolumeRecord, set: Option<&SetStatus>) -> Value {
    let mut out = json!({
        "id": v.id,
        "name": v.name,
        "project_id": v.project_id,
        "status": v.status.as_str(),
        "size": v.size,
        "open": set.is_some(),
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
                volume_json(v, status.as_ref())
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
