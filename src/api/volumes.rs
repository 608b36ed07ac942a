//! Volumes: create (blank, from a snapshot, or a clone), list, show, update, delete
//! (`docs/api.md` §5), and the volume views (§4).

use super::set_field;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody, Params};
use super::input::{integer, is_uuid};
use super::list::{collection_body, metadata_matches, ListQuery, Listable, SortValue};
use super::requests::{
    parse, user_metadata, Rename, VolumeCreate, TEXT_CODES, VOLUME_CREATE_CODES,
};
use super::{blocking, empty, quotas, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::{
    CatalogRead, PendingOp, SnapshotRecord, Timestamp, VolumeRecord, VolumeStatus,
};
use crate::lifecycle::{self, CreateSource, MAX_SIZE_GIB};
use crate::volume_types;

/// Volume `id` as `ctx` may see it (its own project's, or any for an admin), else 404.
pub fn load(r: &impl CatalogRead, ctx: &Ctx, id: &str) -> ApiResult<VolumeRecord> {
    r.get::<VolumeRecord>(id)?
        .filter(|v| v.project_id == ctx.project_id || ctx.is_admin)
        .ok_or_else(|| ApiError::not_found(format!("Volume {id} could not be found.")))
}

/// Commits `v` (stamping `updated_at`).
pub fn save(w: &mut crate::catalog::Writer, v: &mut VolumeRecord) -> ApiResult<()> {
    v.updated_at = Some(Timestamp::now());
    w.put(v)?;
    Ok(())
}

/// The `self` and `bookmark` links of `collection`/`id`.
pub(crate) fn links(ctx: &Ctx, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/{}/{}/{collection}/{id}", ctx.base, ctx.version, ctx.project_id)},
        {"rel": "bookmark", "href": format!("{}/{}/{collection}/{id}", ctx.base, ctx.project_id)},
    ])
}

/// Links of transfer `id`.
pub fn transfer_links(ctx: &Ctx, id: &str) -> Value {
    links(ctx, "os-volume-transfer", id)
}

/// How much of the detail view to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Create and update answers: no admin extension attributes.
    Created,
    /// Show and list-detail: admin extension attributes for admins.
    Detail,
}

/// The volume detail view.
pub fn view(s: &ApiState, ctx: &Ctx, v: &VolumeRecord, shape: Shape) -> Value {
    let mut meta: BTreeMap<String, String> = v.metadata.clone();
    if v.readonly || v.readonly_shown {
        let shown = if v.readonly { "True" } else { "False" };
        meta.insert("readonly".into(), shown.into());
    }
    if let Some(a) = v.attachments.last() {
        meta.insert("attached_mode".into(), a.mode.clone());
    }
    let attachments: Vec<Value> = v
        .attachments
        .iter()
        .map(|a| {
            json!({
                "id": v.id,
                "attachment_id": a.id,
                "volume_id": v.id,
                "server_id": a.server_id,
                "host_name": if ctx.is_admin { a.host_name.clone() } else { None },
                "device": a.device,
                "attached_at": a.attached_at.cinder(),
            })
        })
        .collect();
    let mut out = json!({
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "status": v.status.as_str(),
        "size": v.size,
        "availability_zone": v.availability_zone,
        "created_at": v.created_at.cinder(),
        "updated_at": v.updated_at.map(Timestamp::cinder),
        "volume_type": v.volume_type,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "metadata": meta,
        "links": links(ctx, "volumes", &v.id),
        "user_id": v.user_id,
        "bootable": if v.bootable { "true" } else { "false" },
        "encrypted": v.encryption.is_some(),
        "replication_status": "disabled",
        "consistencygroup_id": null,
        "multiattach": v.multiattach,
        "attachments": attachments,
    });
    if ctx.is_admin {
        set_field(&mut out, "migration_status", Value::Null);
        if shape == Shape::Detail {
            set_field(
                &mut out,
                "os-vol-host-attr:host",
                json!(format!("tripod@replicas#{}", v.volume_type)),
            );
            set_field(
                &mut out,
                "os-vol-tenant-attr:tenant_id",
                json!(v.project_id),
            );
            set_field(&mut out, "os-vol-mig-status-attr:migstat", Value::Null);
            set_field(&mut out, "os-vol-mig-status-attr:name_id", Value::Null);
        }
    }
    if s.config.evs_extra_fields {
        set_field(&mut out, "shareable", json!(v.multiattach.to_string()));
        set_field(&mut out, "tags", json!(v.tags));
        set_field(&mut out, "storage_cluster_id", Value::Null);
        set_field(
            &mut out,
            "os-volume-replication:extended_status",
            Value::Null,
        );
    }
    out
}

impl Listable for VolumeRecord {
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
        "availability_zone",
        "bootable",
        "volume_type",
    ];

    fn sort_value(&self, key: &str) -> SortValue {
        let text = |s: &Option<String>| s.clone().map_or(SortValue::Null, SortValue::Text);
        match key {
            "id" => SortValue::Text(self.id.clone()),
            "name" => text(&self.name),
            "status" => SortValue::Text(self.status.as_str().into()),
            "size" => SortValue::Num(i64::try_from(self.size).unwrap_or(i64::MAX)),
            "created_at" => SortValue::Num(self.created_at.0),
            "updated_at" => self
                .updated_at
                .map_or(SortValue::Null, |t| SortValue::Num(t.0)),
            "availability_zone" => SortValue::Text(self.availability_zone.clone()),
            "bootable" => SortValue::Num(i64::from(self.bootable)),
            "volume_type" => SortValue::Text(self.volume_type.clone()),
            _ => SortValue::Null,
        }
    }

    fn matches(&self, key: &str, value: &str) -> Option<bool> {
        Some(match key {
            "name" | "display_name" => self.name.as_deref() == Some(value),
            "status" => self.status.as_str() == value,
            "availability_zone" => self.availability_zone == value,
            "bootable" => super::input::parse_bool(value) == Some(self.bootable),
            "size" => value.parse::<u64>().ok() == Some(self.size),
            "metadata" => metadata_matches(&self.metadata, value).unwrap_or(false),
            "migration_status" | "group_id" => false,
            "created_at" => self.created_at.cinder() == value,
            "updated_at" => self.updated_at.map(Timestamp::cinder).as_deref() == Some(value),
            "volume_type" => self.volume_type == value,
            _ => return None,
        })
    }
}

/// Rejects an unparsable `metadata` filter (EVS.1058).
pub fn check_metadata_filter(params: &Params) -> ApiResult<()> {
    if let Some(m) = params.get("metadata") {
        if metadata_matches(&BTreeMap::new(), m).is_none() {
            return Err(ApiError::invalid("EVS.1058", "Invalid metadata filter."));
        }
    }
    Ok(())
}

async fn list_any(ctx: Ctx, s: Arc<ApiState>, params: Params, detail: bool) -> ApiResult<Response> {
    let q = ListQuery::parse::<VolumeRecord>(&params, ctx.is_admin)?;
    check_metadata_filter(&params)?;
    blocking(move || {
        let all: Vec<VolumeRecord> = s.catalog.read(|r| r.all())?;
        let mine: Vec<VolumeRecord> = all
            .into_iter()
            .filter(|v| q.all_tenants || v.project_id == ctx.project_id)
            .collect();
        let (page, next) = q.apply(mine)?;
        let items: Vec<Value> = page
            .iter()
            .map(|v| {
                if detail {
                    view(&s, &ctx, v, Shape::Detail)
                } else {
                    json!({"id": v.id, "name": v.name, "links": links(&ctx, "volumes", &v.id)})
                }
            })
            .collect();
        let body = collection_body(&ctx, "volumes", detail, items, next, &params);
        Ok(reply(StatusCode::OK, body))
    })
    .await
}

/// `GET P/volumes`.
pub async fn list(ctx: Ctx, State(s): State<Arc<ApiState>>, params: Params) -> ApiResult<Response> {
    list_any(ctx, s, params, false).await
}

/// `GET P/volumes/detail`.
pub async fn list_detail(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    params: Params,
) -> ApiResult<Response> {
    list_any(ctx, s, params, true).await
}

/// `GET P/volumes/{id}`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let v = s.catalog.read(|r| load(r, &ctx, &p.id))?;
        Ok(reply(
            StatusCode::OK,
            json!({"volume": view(&s, &ctx, &v, Shape::Detail)}),
        ))
    })
    .await
}

/// `POST P/volumes`.
pub async fn create(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: VolumeCreate = parse(
        &body,
        "volume",
        &["OS-SCH-HNT:scheduler_hints"],
        VOLUME_CREATE_CODES,
    )?;
    let name = req.name.or(req.display_name);
    let description = req.description.or(req.display_description);
    let size = req
        .size
        .map(|n| {
            u64::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_SIZE_GIB).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "EVS.1010",
                        format!(
                            "Invalid input received: volume size must be an integer from 1 to {MAX_SIZE_GIB} GB (got {n})."
                        ),
                    )
                })
        })
        .transpose()?;
    if let Some(az) = &req.availability_zone {
        if *az != s.config.availability_zone {
            return Err(ApiError::invalid(
                "EVS.1036",
                format!("Availability zone '{az}' is invalid."),
            ));
        }
    }
    let requested_type = match &req.volume_type {
        None => None,
        Some(t) => {
            let found = {
                let (s, t) = (s.clone(), t.clone());
                blocking(move || Ok(s.catalog.read(|r| volume_types::find(r, &t))?)).await?
            };
            Some(
                found
                    .filter(|found| found.is_public || ctx.is_admin)
                    .map(|found| found.name)
                    .ok_or_else(|| {
                        ApiError::not_found(format!(
                            "Volume type with name {t} could not be found."
                        ))
                    })?,
            )
        }
    };
    let snapshot_id = req.snapshot_id;
    let source_volid = req.source_volid;
    let image = req.image_ref.or(req.image_id);
    let sources = [&snapshot_id, &source_volid, &image]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if sources > 1 {
        return Err(ApiError::invalid(
            "EVS.1016",
            "Invalid input received: only one of snapshot_id, source_volid and imageRef may be given.",
        ));
    }
    if image.is_some() {
        return Err(ApiError::invalid("EVS.2046", "Invalid imageRef provided."));
    }
    if size.is_none() && sources == 0 {
        return Err(ApiError::invalid(
            "EVS.1010",
            "Invalid input received: size is required.",
        ));
    }
    let user_metadata = user_metadata(&req.metadata)?.unwrap_or_default();
    let multiattach = req.multiattach;
    if let Some(Value::String(cg)) = &req.consistencygroup_id {
        return Err(ApiError::not_found(format!(
            "ConsistencyGroup {cg} could not be found."
        )));
    }
    if let Some(count) = &req.count {
        if integer(count) != Some(1) {
            return Err(ApiError::bad_request(
                "Invalid input received: count must be 1.",
            ));
        }
    }
    if let Some(id) = snapshot_id.as_ref().or(source_volid.as_ref()) {
        if !is_uuid(id) {
            let what = if snapshot_id.is_some() {
                "Snapshot"
            } else {
                "Volume"
            };
            return Err(ApiError::not_found(format!(
                "{what} {id} could not be found."
            )));
        }
    }
    blocking(move || {
        let rec = s.catalog.write(|w| {
            // The records the rules look at live as long as this transaction.
            let (snap, snap_type, src);
            let mut snap_volume = None;
            let from = if let Some(sid) = &snapshot_id {
                snap = w
                    .get::<SnapshotRecord>(sid)?
                    .filter(|x| x.project_id == ctx.project_id || ctx.is_admin)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("Snapshot {sid} could not be found."))
                    })?;
                snap_volume = w.get::<VolumeRecord>(&snap.volume_id)?;
                snap_type = snap_volume
                    .as_ref()
                    .map(|v| v.volume_type.clone())
                    .unwrap_or_else(|| s.config.default_volume_type.clone());
                CreateSource::Snapshot(&snap, &snap_type)
            } else if let Some(vid) = &source_volid {
                src = load(w, &ctx, vid)?;
                CreateSource::Volume(&src)
            } else {
                CreateSource::Blank
            };
            let source_volume: Option<&VolumeRecord> = match &from {
                CreateSource::Snapshot(..) => snap_volume.as_ref(),
                CreateSource::Volume(v) => Some(v),
                CreateSource::Blank => None,
            };
            let (size, volume_type, source) = lifecycle::check_create_source(
                from,
                size,
                requested_type.as_deref(),
                &s.config.default_volume_type,
            )?;
            quotas::check(
                w,
                &s.config,
                &ctx.project_id,
                &lifecycle::volume_deltas(size, &volume_type),
                Some(size),
            )?;
            let id = uuid::Uuid::new_v4().hyphenated().to_string();
            let type_encrypted =
                volume_types::find(w, &volume_type)?.is_some_and(|t| t.encryption.is_some());
            let mut metadata = user_metadata.clone();
            let choice = lifecycle::encryption_for_create(
                source_volume,
                type_encrypted,
                &metadata,
                &ctx.project_id,
            )?;
            let encryption = new_volume_key(&s, &ctx.project_id, &id, choice)?;
            if let Some(k) = &encryption {
                metadata.insert(lifecycle::ENCRYPTED_KEY.into(), "1".into());
                metadata.insert(lifecycle::CMK_KEY.into(), k.cmk_id.clone());
            }
            let rec = VolumeRecord {
                id,
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                name: name.flatten(),
                description: description.flatten(),
                status: VolumeStatus::Creating,
                size,
                availability_zone: s.config.availability_zone.clone(),
                volume_type,
                snapshot_id: snapshot_id.clone(),
                source_volid: source_volid.clone(),
                metadata,
                readonly: false,
                readonly_shown: false,
                bootable: false,
                multiattach,
                tags: BTreeMap::new(),
                attachments: Vec::new(),
                pending: Some(PendingOp::Create(source)),
                created_at: Timestamp::now(),
                updated_at: None,
                encryption,
            };
            w.put(&rec)?;
            Ok::<_, ApiError>(rec)
        })?;
        s.backend.expose(&rec);
        s.backend.start_volume(&rec.id);
        Ok(reply(
            StatusCode::ACCEPTED,
            json!({"volume": view(&s, &ctx, &rec, Shape::Created)}),
        ))
    })
    .await
}

/// The wrapped data key of new volume `id` of `project`, as `choice` says (`None`: plain).
fn new_volume_key(
    s: &ApiState,
    project: &str,
    id: &str,
    choice: lifecycle::NewEncryption<'_>,
) -> ApiResult<Option<crate::keys::VolumeKeyRecord>> {
    use lifecycle::NewEncryption;
    if choice == NewEncryption::Plain {
        return Ok(None);
    }
    let keys = s.backend.keys().ok_or_else(|| {
        ApiError::invalid(
            "EVS.2032",
            "Invalid input received: encrypted volumes need a key provider, and none is configured.",
        )
    })?;
    let keys = keys.as_ref();
    Ok(Some(match choice {
        NewEncryption::Plain => return Ok(None),
        NewEncryption::Fresh { cmk } => {
            let cmk = match cmk {
                Some(c) => {
                    keys.check_key(project, &c)?;
                    c
                }
                None => keys.default_key(project)?,
            };
            crate::keys::new_volume_key(keys, project, &cmk, id)?
        }
        NewEncryption::Shared(src) => match &src.encryption {
            Some(k) => crate::keys::share_volume_key(keys, &src.project_id, &src.id, k, id)?,
            None => return Ok(None),
        },
    }))
}

/// `PUT P/volumes/{id}`: name, description, metadata (replaced whole).
pub async fn update(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: Rename = parse(&body, "volume", &[], TEXT_CODES)?;
    let (name, description) = req.resolved();
    let new_meta = user_metadata(&req.metadata)?;
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let mut v = load(w, &ctx, &p.id)?;
            lifecycle::may_change(&v)?;
            if let Some(n) = name {
                v.name = n;
            }
            if let Some(d) = description {
                v.description = d;
            }
            if let Some(m) = new_meta {
                v.metadata = m;
            }
            save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        Ok(reply(
            StatusCode::OK,
            json!({"volume": view(&s, &ctx, &rec, Shape::Created)}),
        ))
    })
    .await
}

/// `DELETE P/volumes/{id}[?cascade=true]`.
pub async fn delete(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    params: Params,
) -> ApiResult<Response> {
    let cascade = match params.get("cascade") {
        None => false,
        Some(c) => super::input::parse_bool(c)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value '{c}' for 'cascade'.")))?,
    };
    blocking(move || {
        let rec = s.catalog.write(|w| {
            let mut v = load(w, &ctx, &p.id)?;
            let snaps: Vec<SnapshotRecord> = w
                .all::<SnapshotRecord>()?
                .into_iter()
                .filter(|x| x.volume_id == v.id)
                .collect();
            lifecycle::begin_delete(&mut v, &snaps, cascade, &w.all::<VolumeRecord>()?)?;
            save(w, &mut v)?;
            Ok::<_, ApiError>(v)
        })?;
        s.backend.expose(&rec);
        s.backend.start_volume(&rec.id);
        Ok(empty(StatusCode::ACCEPTED))
    })
    .await
}
