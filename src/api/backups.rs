//! Backups (Cinder's backup API, as python-openstackclient and openstacksdk use it):
//! create (full or incremental, from a volume or one of its snapshots), list, show, delete,
//! restore into a new or an existing volume, `os-force_delete` / `os-reset_status`, export
//! and import of a backup record, and Tripod's `verify` (`docs/api.md` §Backups).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody, Params};
use super::input::{is_uuid, top};
use super::list::{collection_body, ListQuery, Listable, SortValue};
use super::requests::{flag, opt_id, parse, present, text, user_metadata, TextUpdate, TEXT_CODES};
use super::{
    blocking, empty, quotas, reply, set_field, volumes, ApiError, ApiResult, ApiState, Ctx,
};
use crate::backend::GIB;
use crate::catalog::{
    BackupRecord, BackupStatus, CatalogRead, PendingOp, SnapshotRecord, SnapshotStatus, Timestamp,
    VolumeRecord, VolumeSource, VolumeStatus, Writer,
};
use crate::lifecycle;

/// `POST P/backups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupCreate {
    #[serde(default, deserialize_with = "opt_id")]
    volume_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    snapshot_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    name: TextUpdate,
    #[serde(default, deserialize_with = "text")]
    description: TextUpdate,
    #[serde(default, deserialize_with = "text")]
    container: TextUpdate,
    #[serde(default, deserialize_with = "flag")]
    incremental: bool,
    #[serde(default, deserialize_with = "flag")]
    force: bool,
    #[serde(default, deserialize_with = "present")]
    metadata: Option<Value>,
    #[serde(default, deserialize_with = "opt_id")]
    availability_zone: Option<String>,
}

/// `POST P/backups/{id}/restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    #[serde(default, deserialize_with = "opt_id")]
    volume_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    name: TextUpdate,
}

/// What an exported backup record carries (hex-encoded JSON in `backup_url`): enough to
/// list the backup in another Tripod that reaches the same target.
#[derive(Debug, Serialize, Deserialize)]
struct Exported {
    id: String,
    volume_id: String,
    name: Option<String>,
    description: Option<String>,
    container: Option<String>,
    size: u64,
    parent_id: Option<String>,
    data_timestamp: i64,
    object_count: u64,
}

/// The service name export records carry.
const BACKUP_SERVICE: &str = "tripod.backup.object_store";

/// Backup `id` as `ctx` may see it, else 404.
fn load(r: &impl CatalogRead, ctx: &Ctx, id: &str) -> ApiResult<BackupRecord> {
    r.get::<BackupRecord>(id)?
        .filter(|b| b.project_id == ctx.project_id || ctx.is_admin)
        .ok_or_else(|| ApiError::not_found(format!("Backup {id} could not be found.")))
}

fn admin_only(ctx: &Ctx, what: &str) -> ApiResult<()> {
    if ctx.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Policy doesn't allow backup:{what} to be performed."
        )))
    }
}

/// How far backup `b`'s taking or restoring has come (the operation: `kind`, `done`,
/// `total`, `unit` = 4 MiB ranges, …), while it runs.
fn progress(s: &ApiState, b: &BackupRecord) -> Value {
    use crate::operations::Kind;
    let (volume, kind) = match (b.status, &b.restore_volume_id) {
        (BackupStatus::Creating, _) => (b.volume_id.as_str(), Kind::Backup),
        (BackupStatus::Restoring, Some(v)) => (v.as_str(), Kind::Restore),
        _ => return Value::Null,
    };
    s.backend
        .operations_of(volume)
        .iter()
        .find(|o| o.kind == kind)
        .map_or(Value::Null, |o| o.to_json())
}

/// The summary (`detail` false) or detail view (with the progress of a running backup or
/// restore when `s` is given).
fn view(
    ctx: &Ctx,
    b: &BackupRecord,
    all: &[BackupRecord],
    detail: bool,
    s: Option<&ApiState>,
) -> Value {
    let mut out = json!({
        "id": b.id,
        "name": b.name,
        "links": volumes::links(ctx, "backups", &b.id),
    });
    if detail {
        for (k, v) in [
            ("status", json!(b.status.as_str())),
            ("size", json!(b.size)),
            ("object_count", json!(b.object_count)),
            ("availability_zone", json!(b.availability_zone)),
            ("container", json!(b.container)),
            ("created_at", json!(b.created_at.cinder())),
            ("updated_at", json!(b.updated_at.map(Timestamp::cinder))),
            ("data_timestamp", json!(b.data_timestamp.cinder())),
            ("description", json!(b.description)),
            ("fail_reason", json!(b.fail_reason)),
            ("volume_id", json!(b.volume_id)),
            ("snapshot_id", json!(b.snapshot_id)),
            ("is_incremental", json!(b.parent_id.is_some())),
            (
                "has_dependent_backups",
                json!(lifecycle::has_dependents(b, all)),
            ),
            ("metadata", json!(b.metadata)),
            ("user_id", json!(b.user_id)),
            ("encryption_key_id", Value::Null),
            (
                "os-tripod-backup:uploaded",
                json!({"objects": b.uploaded_objects, "bytes": b.uploaded_bytes, "read_bytes": b.read_bytes}),
            ),
        ] {
            set_field(&mut out, k, v);
        }
        if let Some(s) = s {
            set_field(&mut out, "os-tripod-backup:progress", progress(s, b));
        }
        if ctx.is_admin {
            set_field(
                &mut out,
                "os-backup-project-attr:project_id",
                json!(b.project_id),
            );
        }
    }
    out
}

impl Listable for BackupRecord {
    fn id(&self) -> &str {
        &self.id
    }

    const SORT_KEYS: &'static [&'static str] = &[
        "id",
        "name",
        "status",
        "size",
        "created_at",
        "updated_at",
        "volume_id",
        "data_timestamp",
    ];

    fn sort_value(&self, key: &str) -> SortValue {
        match key {
            "id" => SortValue::Text(self.id.clone()),
            "name" => self.name.clone().map_or(SortValue::Null, SortValue::Text),
            "status" => SortValue::Text(self.status.as_str().into()),
            "size" => SortValue::Num(i64::try_from(self.size).unwrap_or(i64::MAX)),
            "created_at" => SortValue::Num(self.created_at.0),
            "updated_at" => self
                .updated_at
                .map_or(SortValue::Null, |t| SortValue::Num(t.0)),
            "volume_id" => SortValue::Text(self.volume_id.clone()),
            "data_timestamp" => SortValue::Num(self.data_timestamp.0),
            _ => SortValue::Null,
        }
    }

    fn matches(&self, key: &str, value: &str) -> Option<bool> {
        Some(match key {
            "name" => self.name.as_deref() == Some(value),
            "status" => self.status.as_str() == value,
            "volume_id" => self.volume_id == value,
            "availability_zone" => self.availability_zone == value,
            _ => return None,
        })
    }
}

async fn list_any(ctx: Ctx, s: Arc<ApiState>, params: Params, detail: bool) -> ApiResult<Response> {
    let q = ListQuery::parse::<BackupRecord>(&params, ctx.is_admin)?;
    blocking(move || {
        let all: Vec<BackupRecord> = s.catalog.read(|r| r.all())?;
        let mine: Vec<BackupRecord> = all
            .iter()
            .filter(|b| q.all_tenants || b.project_id == ctx.project_id)
            .cloned()
            .collect();
        let (page, next) = q.apply(mine)?;
        let items: Vec<Value> = page
            .iter()
            .map(|b| view(&ctx, b, &all, detail, Some(&s)))
            .collect();
        let body = collection_body(&ctx, "backups", detail, items, next, &params);
        Ok(reply(StatusCode::OK, body))
    })
    .await
}

/// `GET P/backups`.
pub async fn list(ctx: Ctx, State(s): State<Arc<ApiState>>, params: Params) -> ApiResult<Response> {
    list_any(ctx, s, params, false).await
}

/// `GET P/backups/detail`.
pub async fn list_detail(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    params: Params,
) -> ApiResult<Response> {
    list_any(ctx, s, params, true).await
}

/// `GET P/backups/{id}`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let (b, all) = s.catalog.read(|r| {
            let b = load(r, &ctx, &p.id)?;
            Ok::<_, ApiError>((b, r.all::<BackupRecord>()?))
        })?;
        Ok(reply(
            StatusCode::OK,
            json!({"backup": view(&ctx, &b, &all, true, Some(&s))}),
        ))
    })
    .await
}

/// What a new backup of `size` GiB adds to its project's usage.
fn backup_deltas(size: u64) -> Vec<(String, i64)> {
    vec![
        ("backups".into(), 1),
        (
            "backup_gigabytes".into(),
            i64::try_from(size).unwrap_or(i64::MAX),
        ),
    ]
}

/// The newest available backup of `volume_id`: the parent of an incremental one.
fn latest_backup(all: &[BackupRecord], volume_id: &str) -> Option<BackupRecord> {
    all.iter()
        .filter(|b| b.volume_id == volume_id && b.status == BackupStatus::Available)
        .max_by_key(|b| (b.data_timestamp.0, b.created_at.0))
        .cloned()
}

/// `POST P/backups`: starts a backup; answers 202 with its id.
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: BackupCreate = parse(&body, "backup", &[], TEXT_CODES)?;
    let volume_id = req.volume_id.clone().ok_or_else(|| {
        ApiError::bad_request("Invalid input: 'volume_id' is a required property")
    })?;
    if !is_uuid(&volume_id) {
        return Err(ApiError::not_found(format!(
            "Volume {volume_id} could not be found."
        )));
    }
    if let Some(az) = &req.availability_zone {
        if *az != s.config.availability_zone {
            return Err(ApiError::bad_request(format!(
                "Invalid input received: availability zone '{az}' is invalid."
            )));
        }
    }
    let meta = user_metadata(&req.metadata)?.unwrap_or_default();
    if s.backend.backup_store().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "EVS.5503",
            "No backup target is configured.",
        ));
    }
    blocking(move || {
        let (rec, vol) = s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &volume_id)?;
            if let Some(sid) = &req.snapshot_id {
                let snap = w
                    .get::<SnapshotRecord>(sid)?
                    .filter(|x| x.project_id == ctx.project_id || ctx.is_admin)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("Snapshot {sid} could not be found."))
                    })?;
                if snap.volume_id != v.id {
                    return Err(ApiError::bad_request(format!(
                        "Invalid input received: snapshot {sid} is not of volume {}.",
                        v.id
                    )));
                }
                if snap.status != SnapshotStatus::Available {
                    return Err(ApiError::bad_request(format!(
                        "Invalid snapshot: snapshot status must be available (it is {}).",
                        snap.status.as_str()
                    )));
                }
            }
            let all: Vec<BackupRecord> = w.all()?;
            let parent = if req.incremental {
                Some(latest_backup(&all, &v.id).ok_or_else(|| {
                    ApiError::bad_request(
                        "Invalid backup: No backups available to do an incremental backup.",
                    )
                })?)
            } else {
                None
            };
            quotas::check(w, &s.config, &v.project_id, &backup_deltas(v.size), None)?;
            let id = uuid::Uuid::new_v4().hyphenated().to_string();
            lifecycle::begin_backup(&mut v, req.force, req.snapshot_id.is_some(), &id)?;
            let now = Timestamp::now();
            let rec = BackupRecord {
                id,
                project_id: v.project_id.clone(),
                user_id: ctx.user_id.clone(),
                volume_id: v.id.clone(),
                snapshot_id: req.snapshot_id.clone(),
                name: req.name.clone().flatten(),
                description: req.description.clone().flatten(),
                container: req.container.clone().flatten(),
                status: BackupStatus::Creating,
                size: v.size,
                object_count: 0,
                uploaded_objects: 0,
                uploaded_bytes: 0,
                read_bytes: 0,
                parent_id: parent.map(|p| p.id),
                fail_reason: None,
                base_snapshot: None,
                restore_volume_id: None,
                availability_zone: v.availability_zone.clone(),
                metadata: meta.clone(),
                data_timestamp: now,
                created_at: now,
                updated_at: None,
                source_cmk: v.encryption.as_ref().map(|k| k.cmk_id.clone()),
            };
            w.put(&rec)?;
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>((rec, v))
        })?;
        s.backend.expose(&vol);
        s.backend.start_volume(&vol.id);
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"backup": {"id": rec.id, "name": rec.name, "links": volumes::links(&ctx, "backups", &rec.id)}}),
        ))
    })
    .await
}

fn begin_delete(w: &mut Writer, ctx: &Ctx, id: &str, force: bool) -> ApiResult<()> {
    let mut b = load(w, ctx, id)?;
    let all: Vec<BackupRecord> = w.all()?;
    lifecycle::begin_backup_delete(&mut b, &all, force)?;
    b.updated_at = Some(Timestamp::now());
    w.put(&b)?;
    Ok(())
}

/// `DELETE P/backups/{id}`: refused while another backup is incremental to it.
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        s.catalog.write(|w| begin_delete(w, &ctx, &p.id, false))?;
        s.backend.start_backup_delete(&p.id);
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}

/// `POST P/backups/{id}/action`: `os-force_delete` and `os-reset_status` (admins).
pub async fn action(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let obj = body
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| ApiError::bad_request("Invalid input: exactly one action is expected."))?;
    let (name, arg) = obj
        .iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("Invalid input: exactly one action is expected."))?;
    match name.as_str() {
        "os-force_delete" => {
            admin_only(&ctx, "backup-admin-actions:force_delete")?;
            blocking(move || {
                s.catalog.write(|w| begin_delete(w, &ctx, &p.id, true))?;
                s.backend.start_backup_delete(&p.id);
                Ok(empty(StatusCode::ACCEPTED))
            })
            .await
        }
        "os-reset_status" => {
            admin_only(&ctx, "backup-admin-actions:reset_status")?;
            let status = match arg.get("status").and_then(Value::as_str) {
                Some("available") => BackupStatus::Available,
                Some("error") => BackupStatus::Error,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid input: status must be available or error (got {other:?})."
                    )))
                }
            };
            blocking(move || {
                s.catalog.write(|w| {
                    let mut b = load(w, &ctx, &p.id)?;
                    b.status = status;
                    b.updated_at = Some(Timestamp::now());
                    w.put(&b)?;
                    Ok::<_, ApiError>(())
                })?;
                Ok(empty(StatusCode::ACCEPTED))
            })
            .await
        }
        other => Err(ApiError::bad_request(format!(
            "Invalid input: there is no backup action {other}."
        ))),
    }
}

/// `POST P/backups/{id}/restore`: into `volume_id` (available, large enough; its content
/// is replaced) or, without one, into a new volume of the backup's size.
pub async fn restore(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: RestoreRequest = parse(&body, "restore", &[], TEXT_CODES)?;
    if let Some(v) = &req.volume_id {
        if !is_uuid(v) {
            return Err(ApiError::not_found(format!(
                "Volume {v} could not be found."
            )));
        }
    }
    blocking(move || {
        let vol = s.catalog.write(|w| {
            let mut b = load(w, &ctx, &p.id)?;
            let mut v = match &req.volume_id {
                Some(vid) => {
                    let mut v = volumes::load(w, &ctx, vid)?;
                    lifecycle::begin_restore(&mut b, &mut v)?;
                    v
                }
                None => {
                    if b.status != BackupStatus::Available {
                        return Err(ApiError::bad_request(format!(
                            "Invalid backup: backup status must be available (it is {}).",
                            b.status.as_str()
                        )));
                    }
                    let volume_type = s.config.default_volume_type.clone();
                    quotas::check(
                        w,
                        &s.config,
                        &ctx.project_id,
                        &lifecycle::volume_deltas(b.size, &volume_type),
                        Some(b.size),
                    )?;
                    let id = uuid::Uuid::new_v4().hyphenated().to_string();
                    b.status = BackupStatus::Restoring;
                    b.restore_volume_id = Some(id.clone());
                    // A backup of an encrypted volume restores into an encrypted volume.
                    let encryption = match &b.source_cmk {
                        Some(cmk) => {
                            let keys = s.backend.keys().ok_or_else(|| {
                                ApiError::invalid(
                                    "EVS.2032",
                                    "Invalid input received: the backup is of an encrypted volume and no key provider is configured.",
                                )
                            })?;
                            Some(crate::keys::new_volume_key(
                                keys.as_ref(),
                                &ctx.project_id,
                                cmk,
                                &id,
                            )?)
                        }
                        None => None,
                    };
                    let metadata: BTreeMap<String, String> = encryption
                        .iter()
                        .flat_map(|k| {
                            [
                                (lifecycle::ENCRYPTED_KEY.to_owned(), "1".to_owned()),
                                (lifecycle::CMK_KEY.to_owned(), k.cmk_id.clone()),
                            ]
                        })
                        .collect();
                    VolumeRecord {
                        id,
                        project_id: ctx.project_id.clone(),
                        user_id: ctx.user_id.clone(),
                        name: Some(
                            req.name
                                .clone()
                                .flatten()
                                .unwrap_or_else(|| format!("restore_backup_{}", b.id)),
                        ),
                        description: None,
                        status: VolumeStatus::Creating,
                        size: b.size,
                        availability_zone: s.config.availability_zone.clone(),
                        volume_type,
                        snapshot_id: None,
                        source_volid: None,
                        metadata,
                        readonly: false,
                        readonly_shown: false,
                        bootable: false,
                        multiattach: false,
                        tags: BTreeMap::new(),
                        attachments: Vec::new(),
                        pending: Some(PendingOp::Create(VolumeSource::Backup(b.id.clone()))),
                        created_at: Timestamp::now(),
                        updated_at: None,
                        encryption,
                    }
                }
            };
            b.updated_at = Some(Timestamp::now());
            w.put(&b)?;
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&vol);
        s.backend.start_volume(&vol.id);
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"restore": {"backup_id": p.id, "volume_id": vol.id, "volume_name": vol.name}}),
        ))
    })
    .await
}

/// `GET P/backups/{id}/export_record` (admins): an opaque record another Tripod that
/// reaches the same target imports to list the backup.
pub async fn export_record(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    admin_only(&ctx, "backup-admin-actions:export-import")?;
    blocking(move || {
        let b = s.catalog.read(|r| load(r, &ctx, &p.id))?;
        if b.status != BackupStatus::Available {
            return Err(ApiError::bad_request(format!(
                "Invalid backup: backup status must be available (it is {}).",
                b.status.as_str()
            )));
        }
        let e = Exported {
            id: b.id,
            volume_id: b.volume_id,
            name: b.name,
            description: b.description,
            container: b.container,
            size: b.size,
            parent_id: b.parent_id,
            data_timestamp: b.data_timestamp.0,
            object_count: b.object_count,
        };
        let url = hex::encode(serde_json::to_vec(&e).unwrap_or_default());
        Ok(reply(
            StatusCode::OK,
            json!({"backup-record": {"backup_service": BACKUP_SERVICE, "backup_url": url}}),
        ))
    })
    .await
}

/// `POST P/backups/import_record` (admins): lists an exported backup in this project, once
/// its manifest is found in this daemon's backup target.
pub async fn import_record(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    admin_only(&ctx, "backup-admin-actions:export-import")?;
    let rec = top(&body, "backup-record")?;
    let service = rec.get("backup_service").and_then(Value::as_str);
    if service != Some(BACKUP_SERVICE) {
        return Err(ApiError::bad_request(format!(
            "Invalid input: backup_service must be {BACKUP_SERVICE} (got {service:?})."
        )));
    }
    let e: Exported = rec
        .get("backup_url")
        .and_then(Value::as_str)
        .and_then(|u| hex::decode(u).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::bad_request("Invalid input: backup_url is not a Tripod backup record.")
        })?;
    if !is_uuid(&e.id) {
        return Err(ApiError::bad_request(
            "Invalid input: the record's backup id is not a UUID.",
        ));
    }
    blocking(move || {
        let store = s.backend.backup_store().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "EVS.5503", "No backup target is configured.")
        })?;
        let m = store
            .manifest(&e.id)
            .map_err(|err| ApiError::bad_request(format!("Invalid backup record: {err}")))?
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid backup record: backup {} is not in this daemon's backup target {}.",
                    e.id,
                    store.url()
                ))
            })?;
        let rec = s.catalog.write(|w| {
            if w.get::<BackupRecord>(&e.id)?.is_some() {
                return Err(ApiError::conflict(format!("Backup {} already exists.", e.id)));
            }
            let size = m.size.div_ceil(GIB);
            quotas::check(w, &s.config, &ctx.project_id, &backup_deltas(size), None)?;
            let rec = BackupRecord {
                id: e.id.clone(),
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                volume_id: m.volume_id.clone(),
                snapshot_id: None,
                name: e.name.clone(),
                description: e.description.clone(),
                container: e.container.clone(),
                status: BackupStatus::Available,
                size,
                object_count: m.blocks.len() as u64,
                uploaded_objects: 0,
                uploaded_bytes: 0,
                read_bytes: 0,
                parent_id: e.parent_id.clone().filter(|p| w.get::<BackupRecord>(p).ok().flatten().is_some()),
                fail_reason: None,
                base_snapshot: None,
                restore_volume_id: None,
                availability_zone: s.config.availability_zone.clone(),
                metadata: BTreeMap::new(),
                data_timestamp: Timestamp(e.data_timestamp),
                created_at: Timestamp::now(),
                updated_at: None,
                source_cmk: None,
            };
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        Ok(reply(
            StatusCode::CREATED,
            json!({"backup": {"id": rec.id, "name": rec.name, "links": volumes::links(&ctx, "backups", &rec.id)}}),
        ))
    })
    .await
}

/// `POST P/os-tripod-backups/{id}/verify`: fetches and checks every block of the backup in
/// the target without restoring it; answers what it found (a damaged or missing block is
/// named).
pub async fn verify(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let b = s.catalog.read(|r| load(r, &ctx, &p.id))?;
        let body = match s.backend.verify_backup(&b.id) {
            Ok(n) => json!({"verify": {"backup_id": b.id, "ok": true, "blocks_checked": n}}),
            Err(e) => json!({"verify": {"backup_id": b.id, "ok": false, "error": e.to_string()}}),
        };
        Ok(reply(StatusCode::OK, body))
    })
    .await
}
