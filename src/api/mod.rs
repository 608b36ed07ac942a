//! The admin API: Cinder v2 (the EVS dialect) under `/v2/{project_id}` and `/v3/{project_id}`,
//! a Keystone v3 subset under `/identity/v3`, version documents and `/metrics`
//! (reference: `docs/api.md`).
//!
//! Handlers validate synchronously, commit the catalog change, and hand data work to the
//! [`Backend`] — the API answers `202` with a transient status as Cinder does. Catalog and
//! identity calls block (a commit is an fsync, a password hash is deliberately slow), so
//! handlers run them on the blocking pool via [`blocking`].

mod actions;
mod backups;
mod error;
mod extract;
mod info;
mod input;
mod keystone;
mod list;
mod metadata;
mod metrics;
mod qos_specs;
mod quotas;
mod requests;
mod snapshots;
mod status;
mod tags;
mod transfers;
mod type_encryption;
mod types;
mod ui;
mod versions;
mod volumes;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::Value;

use crate::backend::Backend;
use crate::catalog::Catalog;
use crate::config::ServeConfig;
use crate::identity::Identity;

pub use error::{ApiError, ApiResult};
pub use extract::{Ctx, MAX_BODY};
pub use metrics::Metrics;

/// What every handler shares.
pub struct ApiState {
    /// Resolved configuration.
    pub config: ServeConfig,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// Projects, users, tokens.
    pub identity: Arc<Identity>,
    /// The volume lifecycle.
    pub backend: Arc<Backend>,
    /// Request counters.
    pub metrics: Metrics,
}

/// Runs `f` on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request handler failed: {e}")))?
}

/// Sets `key` of the JSON object `obj` (which the caller built as an object; anything else
/// is left alone rather than indexed into a panic).
pub(crate) fn set_field(obj: &mut Value, key: &str, value: Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

/// A JSON answer.
pub fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An answer with a zero-length body.
pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// The whole API.
pub fn router(state: Arc<ApiState>) -> Router {
    let block = Router::new()
        .route("/volumes", get(volumes::list).post(volumes::create))
        .route("/volumes/detail", get(volumes::list_detail))
        .route(
            "/volumes/{id}",
            get(volumes::show)
                .put(volumes::update)
                .delete(volumes::delete),
        )
        .route(
            "/volumes/{id}/metadata",
            get(metadata::volume_all)
                .post(metadata::volume_merge)
                .put(metadata::volume_replace),
        )
        .route(
            "/volumes/{id}/metadata/{key}",
            get(metadata::volume_one)
                .put(metadata::volume_put_one)
                .delete(metadata::volume_delete_one),
        )
        .route("/volumes/{id}/action", post(actions::action))
        .route("/snapshots", get(snapshots::list).post(snapshots::create))
        .route("/snapshots/detail", get(snapshots::list_detail))
        .route(
            "/snapshots/{id}",
            get(snapshots::show)
                .put(snapshots::update)
                .delete(snapshots::delete),
        )
        .route(
            "/snapshots/{id}/metadata",
            get(metadata::snapshot_all)
                .post(metadata::snapshot_merge)
                .put(metadata::snapshot_replace),
        )
        .route(
            "/snapshots/{id}/metadata/{key}",
            get(metadata::snapshot_one)
                .put(metadata::snapshot_put_one)
                .delete(metadata::snapshot_delete_one),
        )
        .route("/cloudsnapshots/{id}/rollback", post(snapshots::rollback))
        .route(
            "/os-vendor-snapshots/{id}/rollback",
            post(snapshots::rollback),
        )
        .route("/backups", get(backups::list).post(backups::create))
        .route("/backups/detail", get(backups::list_detail))
        .route("/backups/import_record", post(backups::import_record))
        .route("/backups/{id}", get(backups::show).delete(backups::delete))
        .route("/backups/{id}/action", post(backups::action))
        .route("/backups/{id}/restore", post(backups::restore))
        .route("/backups/{id}/export_record", get(backups::export_record))
        .route("/os-tripod-backups/{id}/verify", post(backups::verify))
        .route("/os-tripod-status", get(status::show))
        .route("/os-tripod-volumes/{id}/scrub", post(status::scrub))
        .route(
            "/os-tripod-volumes/{id}/replicas/{slot}/replace",
            post(status::replace_replica),
        )
        .route("/cloudvolumes/tags", get(tags::project))
        .route("/cloudvolumes/resource_instances/action", post(tags::query))
        .route("/cloudvolumes/{id}/tags", get(tags::show))
        .route("/cloudvolumes/{id}/tags/action", post(tags::action))
        .route("/os-vendor-volumes/{id}/tags", get(tags::show))
        .route("/os-vendor-volumes/{id}/tags/action", post(tags::action))
        .route("/types", get(types::list).post(types::create))
        .route(
            "/types/{id}",
            get(types::show).put(types::update).delete(types::delete),
        )
        .route(
            "/types/{id}/extra_specs",
            get(types::extra_specs).post(types::set_extra_specs),
        )
        .route(
            "/types/{id}/extra_specs/{key}",
            get(types::extra_specs)
                .put(types::set_extra_spec)
                .delete(types::delete_extra_spec),
        )
        .route(
            "/types/{id}/encryption",
            get(type_encryption::show).post(type_encryption::create),
        )
        .route(
            "/types/{id}/encryption/{key}",
            get(type_encryption::show)
                .put(type_encryption::update)
                .delete(type_encryption::delete),
        )
        .route("/qos-specs", get(qos_specs::list).post(qos_specs::create))
        .route(
            "/qos-specs/{id}",
            get(qos_specs::show)
                .put(qos_specs::update)
                .delete(qos_specs::delete),
        )
        .route("/qos-specs/{id}/delete_keys", put(qos_specs::delete_keys))
        .route("/qos-specs/{id}/associations", get(qos_specs::associations))
        .route("/qos-specs/{id}/associate", get(qos_specs::associate))
        .route("/qos-specs/{id}/disassociate", get(qos_specs::disassociate))
        .route(
            "/qos-specs/{id}/disassociate_all",
            get(qos_specs::disassociate_all),
        )
        .route("/os-quota-sets/{id}", get(quotas::show).put(quotas::update))
        .route("/extensions", get(info::extensions))
        .route("/os-availability-zone", get(info::zones))
        .route(
            "/os-volume-transfer",
            get(transfers::list).post(transfers::create),
        )
        .route("/os-volume-transfer/detail", get(transfers::list_detail))
        .route(
            "/os-volume-transfer/{id}",
            get(transfers::show).delete(transfers::delete),
        )
        .route("/os-volume-transfer/{id}/accept", post(transfers::accept))
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method);
    Router::new()
        .route("/", get(versions::root))
        .route("/v2", get(versions::v2))
        .route("/v2/", get(versions::v2))
        .route("/v3", get(versions::v3))
        .route("/v3/", get(versions::v3))
        .route("/metrics", get(metrics::render))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/app.js", get(ui::script))
        .nest("/v2/{project_id}", block.clone())
        .nest("/v3/{project_id}", block)
        .merge(keystone::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method)
        .layer(middleware::from_fn_with_state(state.clone(), audit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

async fn bad_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "EVS.5400",
        "The method is not allowed for the requested URL.",
    )
}

/// Gives every request an id, counts it and writes the audit line (who, what, outcome).
async fn audit(State(state): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let slot = extract::AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut()
            .insert("x-openstack-request-id", v.clone());
        resp.headers_mut().insert("x-compute-request-id", v);
    }
    let status = resp.status().as_u16();
    state.metrics.count_request(method.as_str(), status);
    let from_handler = resp
        .extensions()
        .get::<extract::AuditSlot>()
        .and_then(|s| s.0.lock().clone());
    let (user, project) = from_handler
        .or_else(|| slot.0.lock().clone())
        .unwrap_or_default();
    tracing::info!(
        target: crate::logging::AUDIT_TARGET,
        request_id = %request_id,
        method = %method,
        path = %path,
        user = %user,
        project = %project,
        status,
        "api request"
    );
    resp
}
