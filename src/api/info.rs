//! Read-only catalogs: volume types (§4.8), availability zones (§4.11), extensions (§4.10).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::IdPath;
use super::{reply, ApiError, ApiResult, ApiState, Ctx};
use crate::config::VOLUME_TYPES;

/// Fixed ids of the volume types, in [`VOLUME_TYPES`] order.
const TYPE_IDS: [&str; 5] = [
    "0f7b5e7e-6c1a-4b8e-9a44-1d2f3c4b5a61",
    "1a8c6f8f-7d2b-4c9f-8b55-2e3f4d5c6b72",
    "2b9d7a9a-8e3c-4daa-9c66-3f4a5e6d7c83",
    "3cae8bab-9f4d-4ebb-8d77-4a5b6f7e8d94",
    "4dbf9cbc-a05e-4fcc-9e88-5b6c7a8f9ea5",
];

/// The type named or identified by `name_or_id` (its name), if it exists.
pub fn find_type(name_or_id: &str) -> Option<&'static str> {
    VOLUME_TYPES
        .iter()
        .zip(TYPE_IDS)
        .find(|(name, id)| **name == name_or_id || *id == name_or_id)
        .map(|(name, _)| *name)
}

fn type_view(name: &str, id: &str, zone: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "description": format!("{name} volumes (three replicas)"),
        "is_public": true,
        "extra_specs": {
            "volume_backend_name": "tripod",
            "availability-zone": zone,
            "RESKEY:availability_zones": zone,
        },
        "qos_specs_id": null,
        "os-volume-type-access:is_public": true,
    })
}

/// The full type record used in upload answers.
pub fn type_record(name: &str) -> Value {
    let id = VOLUME_TYPES
        .iter()
        .zip(TYPE_IDS)
        .find_map(|(n, id)| (*n == name).then_some(id))
        .unwrap_or("");
    json!({
        "id": id,
        "name": name,
        "description": null,
        "is_public": true,
        "extra_specs": {},
        "qos_specs_id": null,
        "created_at": "2026-01-01T00:00:00.000000",
        "updated_at": null,
        "deleted": false,
        "deleted_at": null,
    })
}

/// `GET P/types`.
pub async fn types(_ctx: Ctx, State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    let all: Vec<Value> = VOLUME_TYPES
        .iter()
        .zip(TYPE_IDS)
        .map(|(n, id)| type_view(n, id, &s.config.availability_zone))
        .collect();
    Ok(reply(StatusCode::OK, json!({ "volume_types": all })))
}

/// `GET P/types/{id}` (`default` names the default type).
pub async fn type_show(
    _ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    let wanted = if p.id == "default" {
        s.config.default_volume_type.as_str()
    } else {
        p.id.as_str()
    };
    let (name, id) = VOLUME_TYPES
        .iter()
        .zip(TYPE_IDS)
        .find(|(n, id)| **n == wanted || *id == wanted)
        .ok_or_else(|| ApiError::not_found(format!("Volume type {} could not be found.", p.id)))?;
    Ok(reply(
        StatusCode::OK,
        json!({"volume_type": type_view(name, id, &s.config.availability_zone)}),
    ))
}

/// `GET P/os-availability-zone`.
pub async fn zones(_ctx: Ctx, State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    Ok(reply(
        StatusCode::OK,
        json!({"availabilityZoneInfo": [
            {"zoneName": s.config.availability_zone, "zoneState": {"available": true}}
        ]}),
    ))
}

/// `GET P/extensions`: what is implemented.
pub async fn extensions(_ctx: Ctx) -> ApiResult<Response> {
    const EXTENSIONS: [(&str, &str, &str, &str); 11] = [
        (
            "os-volume-actions",
            "VolumeActions",
            "Enable volume actions.",
            "2012-05-31T00:00:00+00:00",
        ),
        (
            "os-volume-transfer",
            "VolumeTransfer",
            "Volume transfer management support.",
            "2013-05-29T00:00:00+00:00",
        ),
        (
            "os-availability-zone",
            "AvailabilityZones",
            "Describe Availability Zones.",
            "2013-06-27T00:00:00+00:00",
        ),
        (
            "os-quota-sets",
            "Quotas",
            "Quota management support.",
            "2011-08-08T00:00:00+00:00",
        ),
        (
            "os-vol-host-attr",
            "VolumeHostAttribute",
            "Expose host as an attribute of a volume.",
            "2011-11-03T00:00:00+00:00",
        ),
        (
            "os-vol-tenant-attr",
            "VolumeTenantAttribute",
            "Expose the internal project_id as an attribute of a volume.",
            "2011-11-03T00:00:00+00:00",
        ),
        (
            "os-vol-mig-status-attr",
            "VolumeMigStatusAttribute",
            "Expose migration_status as an attribute of a volume.",
            "2013-08-08T00:00:00+00:00",
        ),
        (
            "os-extended-snapshot-attributes",
            "ExtendedSnapshotAttributes",
            "Extended SnapshotAttributes support.",
            "2012-06-19T00:00:00+00:00",
        ),
        (
            "os-vol-image-meta",
            "VolumeImageMetadata",
            "Show image metadata associated with the volume.",
            "2012-12-07T00:00:00+00:00",
        ),
        (
            "OS-SCH-HNT",
            "SchedulerHints",
            "Pass arbitrary key/value pairs to the scheduler.",
            "2013-04-18T00:00:00+00:00",
        ),
        (
            "os-types-manage",
            "TypesManage",
            "Types manage support (read-only here).",
            "2011-08-24T00:00:00+00:00",
        ),
    ];
    let list: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(alias, name, description, updated)| {
            json!({"alias": alias, "name": name, "description": description, "updated": updated, "links": []})
        })
        .collect();
    Ok(reply(StatusCode::OK, json!({ "extensions": list })))
}
