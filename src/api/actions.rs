//! Volume actions: `POST P/volumes/{id}/action` (`docs/api.md` §5).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::extract::IdPath;
use super::extract::JsonBody;
use super::input::is_uuid;
use super::requests::{
    typed, Action, Attach, Retype, TextUpdate, UploadImage, ACTIONS, ACTION_CODES,
};
use super::volumes;
use super::{blocking, empty, quotas, reply, types, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{
    Attachment, CatalogRead, ImageRecord, SnapshotRecord, Timestamp, VolumeRecord,
};
use crate::images::{image_format, qemu_img_available};
use crate::lifecycle::{self, Refusal, MAX_SIZE_GIB};
use crate::volume_types;

/// `POST P/volumes/{id}/action`.
pub async fn action(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let name = match body.as_object() {
        Some(o) if o.len() == 1 => o.keys().next().cloned().unwrap_or_default(),
        _ => {
            return Err(ApiError::bad_request(
                "Malformed request body: one action expected.",
            ))
        }
    };
    if !ACTIONS.contains(&name.as_str()) {
        return Err(ApiError::bad_request(format!(
            "There is no such action: {name}"
        )));
    }
    let id = p.id;
    match typed::<Action>(&body, ACTION_CODES)? {
        Action::Extend(a) => extend(ctx, s, id, a.new_size).await,
        Action::SetBootable(a) => {
            let change_to = a.bootable;
            change(ctx, s, id, StatusCode::OK, move |v| {
                lifecycle::set_bootable(v, change_to)
            })
            .await
        }
        Action::UpdateReadonly(a) => {
            let change_to = a.readonly;
            change(ctx, s, id, StatusCode::ACCEPTED, move |v| {
                lifecycle::set_readonly(v, change_to)
            })
            .await
        }
        Action::Reserve(_) => change(ctx, s, id, StatusCode::ACCEPTED, lifecycle::reserve).await,
        Action::Unreserve(_) => {
            change(ctx, s, id, StatusCode::ACCEPTED, lifecycle::unreserve).await
        }
        Action::Attach(a) => attach(ctx, s, id, a).await,
        Action::Detach(a) => {
            let attachment_id = a.and_then(|a| a.attachment_id);
            change(ctx, s, id, StatusCode::ACCEPTED, move |v| {
                lifecycle::detach(v, attachment_id.as_deref())
            })
            .await
        }
        Action::UploadImage(a) => upload(ctx, s, id, a).await,
        Action::Retype(a) => retype(ctx, s, id, a).await,
    }
}

/// Applies the lifecycle change `f` to the volume and answers `status` with no body.
async fn change(
    ctx: Ctx,
    s: Arc<ApiState>,
    id: String,
    status: StatusCode,
    f: impl FnOnce(&mut VolumeRecord) -> Result<(), Refusal> + Send + 'static,
) -> ApiResult<Response> {
    blocking(move || {
        let v = s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &id)?;
            f(&mut v)?;
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&v);
        Ok(empty(status))
    })
    .await
}

async fn extend(ctx: Ctx, s: Arc<ApiState>, id: String, new_size: i64) -> ApiResult<Response> {
    let new_size = u64::try_from(new_size)
        .ok()
        .filter(|n| (1..=MAX_SIZE_GIB).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(
                "EVS.1010",
                format!("new_size must be an integer from 1 to {MAX_SIZE_GIB}."),
            )
        })?;
    blocking(move || {
        let v = s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &id)?;
            let grow = lifecycle::begin_extend(&mut v, new_size)?;
            quotas::check(
                w,
                &s.config,
                &v.project_id,
                &lifecycle::extend_deltas(grow, &v.volume_type),
                Some(new_size),
            )?;
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&v);
        s.backend.start_volume(&v.id);
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

/// `os-retype`: the new type's limits reach the volume's I/O at once (requests already
/// waiting included); the new type's quotas are checked first.
async fn retype(ctx: Ctx, s: Arc<ApiState>, id: String, a: Retype) -> ApiResult<Response> {
    let policy = lifecycle::MigrationPolicy::parse(a.migration_policy.as_deref())?;
    blocking(move || {
        let v = s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &id)?;
            let t = volume_types::find(w, &a.new_type)?
                .filter(|t| t.is_public || ctx.is_admin)
                .ok_or_else(|| {
                    ApiError::not_found(format!("Volume type {} could not be found.", a.new_type))
                })?;
            let snapshots: Vec<u64> = w
                .all::<SnapshotRecord>()?
                .into_iter()
                .filter(|x| x.volume_id == v.id)
                .map(|x| x.size)
                .collect();
            quotas::check(
                w,
                &s.config,
                &v.project_id,
                &lifecycle::retype_deltas(v.size, &snapshots, &t.name),
                None,
            )?;
            lifecycle::check_retype_encryption(&v, t.encryption.is_some())?;
            let old = lifecycle::retype(&mut v, &t.name, policy)?;
            tracing::info!(volume = %v.id, from = %old, to = %t.name, "volume retyped");
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&v);
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

async fn attach(ctx: Ctx, s: Arc<ApiState>, id: String, a: Attach) -> ApiResult<Response> {
    let nonempty = |t: TextUpdate| t.flatten().filter(|x| !x.is_empty());
    let mountpoint = nonempty(a.mountpoint)
        .ok_or_else(|| ApiError::bad_request("'mountpoint' is a required property"))?;
    let instance = nonempty(a.instance_uuid);
    let host = nonempty(a.host_name);
    if instance.is_none() && host.is_none() {
        return Err(ApiError::bad_request(
            "Invalid request to attach volume: instance_uuid or host_name is required.",
        ));
    }
    if let Some(i) = &instance {
        if !is_uuid(i) && uuid::Uuid::parse_str(i).is_err() {
            return Err(ApiError::bad_request("Invalid instance_uuid: not a UUID."));
        }
    }
    let mode = nonempty(a.mode).unwrap_or_else(|| "rw".into());
    if mode != "rw" && mode != "ro" {
        return Err(ApiError::bad_request("Invalid attach mode: rw or ro."));
    }
    change(ctx, s, id, StatusCode::ACCEPTED, move |v| {
        lifecycle::attach(
            v,
            Attachment {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                server_id: instance,
                host_name: host,
                device: mountpoint,
                mode,
                attached_at: Timestamp::now(),
            },
        )
    })
    .await
}

async fn upload(ctx: Ctx, s: Arc<ApiState>, id: String, a: UploadImage) -> ApiResult<Response> {
    let image_name = a
        .image_name
        .flatten()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("'image_name' is required: 1 to 255 characters."))?;
    let force = a.force;
    let disk_format = a.disk_format.flatten().unwrap_or_else(|| "raw".to_owned());
    const KNOWN: [&str; 10] = [
        "raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop", "zvhd", "zvhd2", "iso",
    ];
    if !KNOWN.contains(&disk_format.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid disk_format {disk_format:?}."
        )));
    }
    if image_format(&disk_format).is_none() {
        return Err(ApiError::bad_request(format!(
            "disk_format {disk_format} is not supported here: use raw, qcow2, vmdk, vdi, vhd or vhdx."
        )));
    }
    let container_format = a
        .container_format
        .flatten()
        .unwrap_or_else(|| "bare".to_owned());
    if let Some(os) = a.os_type.flatten() {
        if os != "windows" && os != "linux" {
            return Err(ApiError::bad_request("__os_type must be windows or linux."));
        }
    }
    blocking(move || {
        // Runs a process: off the async threads, like the rest of the handler.
        if disk_format != "raw" && !qemu_img_available() {
            return Err(ApiError::bad_request(format!(
                "disk_format {disk_format} needs qemu-img on the server; only raw is available."
            )));
        }
        let image_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let v = s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &id)?;
            lifecycle::begin_upload(&mut v, force, &image_id)?;
            let ext = if disk_format == "vhd" {
                "vhd".into()
            } else {
                disk_format.clone()
            };
            w.put(&ImageRecord {
                id: image_id.clone(),
                project_id: v.project_id.clone(),
                name: image_name.clone(),
                volume_id: v.id.clone(),
                disk_format: disk_format.clone(),
                container_format: container_format.clone(),
                file: format!("{image_id}.{ext}"),
                status: "saving".into(),
                created_at: Timestamp::now(),
            })?;
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&v);
        s.backend.start_volume(&v.id);
        let volume_type = s.catalog.read(|r| types::record_view(r, &v.volume_type))?;
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"os-volume_upload_image": {
                "id": v.id,
                "updated_at": v.updated_at.map(Timestamp::cinder),
                "status": v.status.as_str(),
                "display_description": v.description,
                "size": v.size,
                "volume_type": volume_type,
                "image_id": image_id,
                "image_name": image_name,
                "container_format": container_format,
                "disk_format": disk_format,
            }}),
        ))
    })
    .await
}
