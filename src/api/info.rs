//! Read-only catalogs: availability zones (§4.11) and extensions (§4.10).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{reply, ApiResult, ApiState, Ctx};

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
    const EXTENSIONS: [(&str, &str, &str, &str); 15] = [
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
            "Types manage support.",
            "2011-08-24T00:00:00+00:00",
        ),
        (
            "qos-specs",
            "Qos_specs_manage",
            "QoS specs support.",
            "2013-08-02T00:00:00+00:00",
        ),
        (
            "os-types-extra-specs",
            "TypesExtraSpecs",
            "Type extra specs support.",
            "2011-08-24T00:00:00+00:00",
        ),
        (
            "backups",
            "Backups",
            "Backups support.",
            "2012-12-12T00:00:00+00:00",
        ),
        (
            "os-backup-project-attr",
            "BackupProjectAttribute",
            "Expose backup's project id to admins.",
            "2015-09-22T00:00:00+00:00",
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
