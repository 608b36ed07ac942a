//! Volume actions: `POST P/volumes/{id}/action` (`docs/api.md` §5).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::IdPath;
use super::extract::JsonBody;
use super::input::{boolean, integer, is_uuid, only, Obj};
use super::volumes;
use super::{blocking, empty, info, quotas, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{Attachment, ImageRecord, Timestamp, VolumeRecord};
use crate::images::{image_format, qemu_img_available};
use crate::lifecycle::{self, Refusal, MAX_SIZE_GIB};

/// `POST P/volumes/{id}/action`.
pub async fn action(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let root = body
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| ApiError::bad_request("Malformed request body: one action expected."))?;
    let (name, args) = root
        .iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("Malformed request body."))?;
    let empty_obj = Obj::new();
    let args_obj = match args {
        Value::Object(o) => o,
        Value::Null if matches!(name.as_str(), "os-reserve" | "os-unreserve" | "os-detach") => {
            &empty_obj
        }
        _ if matches!(name.as_str(), "os-reserve" | "os-unreserve") => &empty_obj,
        _ => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for action {name}: an object is expected."
            )))
        }
    };
    let args = args_obj.clone();
    match name.as_str() {
        "os-extend" => extend(ctx, s, p.id, args).await,
        "os-set_bootable" => {
            only(&args, &["bootable"])?;
            let bootable = boolean(
                args.get("bootable")
                    .ok_or_else(|| ApiError::bad_request("'bootable' is a required property"))?,
                "bootable",
            )?;
            change(ctx, s, p.id, StatusCode::OK, move |v| {
                lifecycle::set_bootable(v, bootable)
            })
            .await
        }
        "os-update_readonly_flag" => {
            only(&args, &["readonly"])?;
            let readonly = boolean(
                args.get("readonly")
                    .ok_or_else(|| ApiError::bad_request("'readonly' is a required property"))?,
                "readonly",
            )?;
            change(ctx, s, p.id, StatusCode::ACCEPTED, move |v| {
                lifecycle::set_readonly(v, readonly)
            })
            .await
        }
        "os-reserve" => change(ctx, s, p.id, StatusCode::ACCEPTED, lifecycle::reserve).await,
        "os-unreserve" => change(ctx, s, p.id, StatusCode::ACCEPTED, lifecycle::unreserve).await,
        "os-attach" => attach(ctx, s, p.id, args).await,
        "os-detach" => {
            only(&args, &["attachment_id"])?;
            let attachment_id = match args.get("attachment_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(a)) => Some(a.clone()),
                Some(_) => return Err(ApiError::bad_request("Invalid attachment_id.")),
            };
            change(ctx, s, p.id, StatusCode::ACCEPTED, move |v| {
                lifecycle::detach(v, attachment_id.as_deref())
            })
            .await
        }
        "os-volume_upload_image" => upload(ctx, s, p.id, args).await,
        other => Err(ApiError::bad_request(format!(
            "There is no such action: {other}"
        ))),
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

async fn extend(ctx: Ctx, s: Arc<ApiState>, id: String, args: Obj) -> ApiResult<Response> {
    only(&args, &["new_size"])?;
    let new_size = args
        .get("new_size")
        .and_then(integer)
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::invalid("EVS.1010", "new_size must be an integer of at least 1.")
        })? as u64;
    if new_size > MAX_SIZE_GIB {
        return Err(ApiError::invalid(
            "EVS.1010",
            format!("new_size must be at most {MAX_SIZE_GIB} GB."),
        ));
    }
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

async fn attach(ctx: Ctx, s: Arc<ApiState>, id: String, args: Obj) -> ApiResult<Response> {
    only(&args, &["instance_uuid", "mountpoint", "host_name", "mode"])?;
    let text = |k: &str| -> ApiResult<Option<String>> {
        match args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(x)) if !x.is_empty() && x.chars().count() <= 255 => {
                Ok(Some(x.clone()))
            }
            Some(_) => Err(ApiError::bad_request(format!(
                "Invalid input for field '{k}': a string of 1 to 255 characters is expected."
            ))),
        }
    };
    let mountpoint = text("mountpoint")?
        .ok_or_else(|| ApiError::bad_request("'mountpoint' is a required property"))?;
    let instance = text("instance_uuid")?;
    let host = text("host_name")?;
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
    let mode = text("mode")?.unwrap_or_else(|| "rw".into());
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

async fn upload(ctx: Ctx, s: Arc<ApiState>, id: String, args: Obj) -> ApiResult<Response> {
    only(
        &args,
        &[
            "image_name",
            "force",
            "disk_format",
            "container_format",
            "__os_type",
            "visibility",
            "protected",
        ],
    )?;
    let image_name = match args.get("image_name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= 255 => n.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "'image_name' is required: 1 to 255 characters.",
            ))
        }
    };
    let force = match args.get("force") {
        None | Some(Value::Null) => false,
        Some(v) => boolean(v, "force")?,
    };
    let disk_format = match args.get("disk_format") {
        None | Some(Value::Null) => "raw".to_owned(),
        Some(Value::String(f)) => f.clone(),
        Some(_) => return Err(ApiError::bad_request("Invalid disk_format.")),
    };
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
    let container_format = match args.get("container_format") {
        None | Some(Value::Null) => "bare".to_owned(),
        Some(Value::String(c)) if c.chars().count() <= 255 => c.clone(),
        Some(_) => return Err(ApiError::bad_request("Invalid container_format.")),
    };
    if let Some(os) = args.get("__os_type") {
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
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"os-volume_upload_image": {
                "id": v.id,
                "updated_at": v.updated_at.map(Timestamp::cinder),
                "status": v.status.as_str(),
                "display_description": v.description,
                "size": v.size,
                "volume_type": info::type_record(&v.volume_type),
                "image_id": image_id,
                "image_name": image_name,
                "container_format": container_format,
                "disk_format": disk_format,
            }}),
        ))
    })
    .await
}
