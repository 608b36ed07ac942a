//! The Keystone v3 subset under `/identity/v3` (`docs/api.md` §2): version discovery,
//! password (and token) authentication with project scope, token validation and revocation,
//! and admin-only projects, users and role grants.

use super::set_field;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{base_url, AuditSlot, JsonBody};
use super::{blocking, empty, reply, ApiError, ApiResult, ApiState};
use crate::identity::{
    role_id, role_name, Issued, NameOrId, Principal, DOMAIN_ID, DOMAIN_NAME, ROLES,
};

/// The identity routes.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            get(check_token)
                .head(check_token)
                .post(issue)
                .delete(revoke),
        )
        .route(
            "/identity/v3/projects",
            get(list_projects).post(create_project),
        )
        .route("/identity/v3/projects/{id}", get(show_project))
        .route("/identity/v3/users", get(list_users).post(create_user))
        .route("/identity/v3/users/{id}", get(show_user))
        .route("/identity/v3/roles", get(list_roles))
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles",
            get(list_grants),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles/{role}",
            put(grant).head(check_grant).get(check_grant),
        )
        .layer(axum::middleware::map_response(keystone_errors))
}

/// Identity handlers answer errors Keystone's way (see [`keystone_errors`]).
type KsResult = ApiResult<Response>;

/// Renders every error answer of the identity routes as Keystone's error object.
async fn keystone_errors(mut resp: Response) -> Response {
    match resp.extensions_mut().remove::<ApiError>() {
        Some(e) if !e.keystone => e.keystone().into_response(),
        _ => resp,
    }
}

fn version_entry(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(State(s): State<Arc<ApiState>>, parts: Parts) -> Response {
    let base = base_url(&parts.headers, &s);
    reply(
        StatusCode::MULTIPLE_CHOICES,
        json!({"versions": {"values": [version_entry(&base)]}}),
    )
}

async fn version(State(s): State<Arc<ApiState>>, parts: Parts) -> Response {
    let base = base_url(&parts.headers, &s);
    reply(StatusCode::OK, json!({ "version": version_entry(&base) }))
}

fn domain() -> Value {
    json!({"id": DOMAIN_ID, "name": DOMAIN_NAME})
}

fn domain_ok(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(d) => {
            let id_ok = d.get("id").is_none_or(|i| i == DOMAIN_ID);
            let name_ok = d.get("name").is_none_or(|n| n == DOMAIN_NAME);
            id_ok && name_ok
        }
    }
}

fn name_or_id(v: &Value, what: &str) -> ApiResult<NameOrId> {
    if !domain_ok(v.get("domain")) {
        return Err(ApiError::unauthorized());
    }
    match (
        v.get("id").and_then(Value::as_str),
        v.get("name").and_then(Value::as_str),
    ) {
        (Some(id), _) => Ok(NameOrId::Id(id.to_owned())),
        (None, Some(name)) => Ok(NameOrId::Name(name.to_owned())),
        _ => Err(ApiError::bad_request(format!(
            "Expecting to find id or name in {what}."
        ))),
    }
}

fn token_body(s: &ApiState, base: &str, issued: &Principal, methods: &[&str]) -> ApiResult<Value> {
    let user = s
        .identity
        .user(&issued.user_id)?
        .ok_or_else(ApiError::unauthorized)?;
    let mut token = json!({
        "methods": methods,
        "user": {"id": user.id, "name": user.name, "domain": domain(), "password_expires_at": null},
        "audit_ids": [uuid::Uuid::new_v4().simple().to_string()[..22].to_owned()],
        "expires_at": issued.expires_at.keystone(),
        "issued_at": issued.issued_at.keystone(),
    });
    if let Some(pid) = &issued.project_id {
        let project = s
            .identity
            .project(pid)?
            .ok_or_else(ApiError::unauthorized)?;
        set_field(
            &mut token,
            "project",
            json!({"id": project.id, "name": project.name, "domain": domain()}),
        );
        set_field(&mut token, "is_domain", json!(false));
        set_field(
            &mut token,
            "roles",
            json!(issued
                .roles
                .iter()
                .map(|r| json!({"id": role_id(r), "name": r}))
                .collect::<Vec<_>>()),
        );
        let endpoint = |kind: &str, name: &str, url: String| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|iface| {
                    json!({
                        "id": crate::identity::sha256_hex(format!("{kind}/{iface}").as_bytes())[..32].to_owned(),
                        "interface": iface,
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": url,
                    })
                })
                .collect();
            json!({
                "type": kind,
                "name": name,
                "id": crate::identity::sha256_hex(kind.as_bytes())[..32].to_owned(),
                "endpoints": endpoints,
            })
        };
        set_field(
            &mut token,
            "catalog",
            json!([
                endpoint("volumev2", "cinderv2", format!("{base}/v2/{}", project.id)),
                endpoint("volumev3", "cinderv3", format!("{base}/v3/{}", project.id)),
                endpoint(
                    "block-storage",
                    "cinder",
                    format!("{base}/v3/{}", project.id)
                ),
                endpoint("identity", "keystone", format!("{base}/identity")),
            ]),
        );
    }
    Ok(json!({ "token": token }))
}

fn with_subject_token(mut resp: Response, token: &str) -> ApiResult<Response> {
    let v = HeaderValue::from_str(token).map_err(|e| ApiError::internal(e.to_string()))?;
    resp.headers_mut().insert("x-subject-token", v);
    Ok(resp)
}

/// `POST /identity/v3/auth/tokens`.
async fn issue(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> KsResult {
    let base = base_url(&headers, &s);
    {
        let auth = body
            .get("auth")
            .filter(|a| a.is_object())
            .ok_or_else(|| ApiError::bad_request("Expecting to find auth in request body."))?;
        let identity = auth
            .get("identity")
            .ok_or_else(|| ApiError::bad_request("Expecting to find identity in auth."))?;
        let methods: Vec<String> = identity
            .get("methods")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let scope = match auth.get("scope") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if u == "unscoped" => None,
            Some(sc) => match sc.get("project") {
                Some(p) => Some(name_or_id(p, "project")?),
                None => {
                    return Err(ApiError::unauthorized());
                }
            },
        };
        let s2 = s.clone();
        let (issued, method) = if methods.iter().any(|m| m == "password") {
            let user = identity
                .get("password")
                .and_then(|p| p.get("user"))
                .ok_or_else(|| ApiError::bad_request("Expecting to find user in password."))?;
            let who = name_or_id(user, "user")?;
            let password = user
                .get("password")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("Expecting to find password in user."))?
                .to_owned();
            let issued: Issued =
                blocking(move || Ok(s2.identity.authenticate(&who, &password, scope.as_ref())?))
                    .await?;
            (issued, "password")
        } else if methods.iter().any(|m| m == "token") {
            let token = identity
                .get("token")
                .and_then(|t| t.get("id"))
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("Expecting to find id in token."))?
                .to_owned();
            let issued =
                blocking(move || Ok(s2.identity.authenticate_token(&token, scope.as_ref())?))
                    .await?;
            (issued, "token")
        } else {
            return Err(ApiError::unauthorized());
        };
        let s3 = s.clone();
        let principal = issued.principal.clone();
        let body = blocking(move || token_body(&s3, &base, &principal, &[method])).await?;
        let mut resp = with_subject_token(reply(StatusCode::CREATED, body), &issued.token)?;
        resp.extensions_mut().insert(AuditSlot::of(
            &issued.principal.user_id,
            issued.principal.project_id.as_deref().unwrap_or(""),
        ));
        Ok(resp)
    }
}

/// The caller, from `X-Auth-Token`.
async fn caller(s: &Arc<ApiState>, headers: &HeaderMap) -> ApiResult<Principal> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(ApiError::unauthorized)?;
    let s = s.clone();
    blocking(move || Ok(s.identity.validate(&token)?)).await
}

async fn admin(s: &Arc<ApiState>, headers: &HeaderMap) -> ApiResult<Principal> {
    let p = caller(s, headers).await?;
    if p.is_admin() {
        Ok(p)
    } else {
        Err(ApiError::forbidden(
            "You are not authorized to perform the requested action.",
        ))
    }
}

fn subject(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("X-Subject-Token is required."))
}

/// `GET /identity/v3/auth/tokens`: validates `X-Subject-Token`.
async fn check_token(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> KsResult {
    let me = caller(&s, &headers).await?;
    let token = subject(&headers)?;
    let s2 = s.clone();
    let t = token.clone();
    let principal = blocking(move || {
        s2.identity
            .validate(&t)
            .map_err(|_| ApiError::not_found("Could not find token."))
    })
    .await?;
    if principal.user_id != me.user_id && !me.is_admin() {
        return Err(ApiError::forbidden(
            "You are not authorized to validate this token.",
        ));
    }
    let base = base_url(&headers, &s);
    let s3 = s.clone();
    let body = blocking(move || token_body(&s3, &base, &principal, &["password"])).await?;
    with_subject_token(reply(StatusCode::OK, body), &token)
}

/// `DELETE /identity/v3/auth/tokens`: revokes `X-Subject-Token`.
async fn revoke(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> KsResult {
    let me = caller(&s, &headers).await?;
    let token = subject(&headers)?;
    let s2 = s.clone();
    blocking(move || {
        let target = s2
            .identity
            .validate(&token)
            .map_err(|_| ApiError::not_found("Could not find token."))?;
        if target.user_id != me.user_id && !me.is_admin() {
            return Err(ApiError::forbidden(
                "You are not authorized to revoke this token.",
            ));
        }
        s2.identity.revoke(&token)?;
        Ok(empty(StatusCode::NO_CONTENT))
    })
    .await
}

fn project_view(p: &crate::catalog::ProjectRecord) -> Value {
    json!({
        "id": p.id, "name": p.name, "description": p.description, "enabled": p.enabled,
        "domain_id": DOMAIN_ID, "is_domain": false, "parent_id": DOMAIN_ID, "tags": [],
    })
}

fn user_view(u: &crate::catalog::UserRecord) -> Value {
    json!({
        "id": u.id, "name": u.name, "enabled": u.enabled, "domain_id": DOMAIN_ID,
        "default_project_id": u.default_project_id, "password_expires_at": null,
    })
}

async fn list_projects(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> KsResult {
    let me = caller(&s, &headers).await?;
    let s2 = s.clone();
    blocking(move || {
        let projects: Vec<Value> = s2
            .identity
            .projects()?
            .iter()
            .filter(|p| me.is_admin() || Some(&p.id) == me.project_id.as_ref())
            .map(project_view)
            .collect();
        Ok(reply(StatusCode::OK, json!({ "projects": projects })))
    })
    .await
}

async fn show_project(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> KsResult {
    let me = caller(&s, &headers).await?;
    let s2 = s.clone();
    blocking(move || {
        let p = s2
            .identity
            .project(&id)?
            .filter(|p| me.is_admin() || Some(&p.id) == me.project_id.as_ref())
            .ok_or_else(|| ApiError::not_found(format!("Could not find project: {id}.")))?;
        Ok(reply(
            StatusCode::OK,
            json!({ "project": project_view(&p) }),
        ))
    })
    .await
}

async fn create_project(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> KsResult {
    admin(&s, &headers).await?;
    let p = body
        .get("project")
        .filter(|p| p.is_object())
        .ok_or_else(|| ApiError::bad_request("Expecting to find project in request body."))?;
    if !domain_ok(p.get("domain_id").map(|d| json!({"id": d})).as_ref()) {
        return Err(ApiError::bad_request("Only the default domain exists."));
    }
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'name' is a required property"))?
        .to_owned();
    let description = p
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let s2 = s.clone();
    blocking(move || {
        let p = s2.identity.create_project(&name, &description)?;
        Ok(reply(
            StatusCode::CREATED,
            json!({ "project": project_view(&p) }),
        ))
    })
    .await
}

async fn list_users(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> KsResult {
    admin(&s, &headers).await?;
    let s2 = s.clone();
    blocking(move || {
        let users: Vec<Value> = s2.identity.users()?.iter().map(user_view).collect();
        Ok(reply(StatusCode::OK, json!({ "users": users })))
    })
    .await
}

async fn show_user(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> KsResult {
    let me = caller(&s, &headers).await?;
    let s2 = s.clone();
    blocking(move || {
        let u = s2
            .identity
            .user(&id)?
            .filter(|u| me.is_admin() || u.id == me.user_id)
            .ok_or_else(|| ApiError::not_found(format!("Could not find user: {id}.")))?;
        Ok(reply(StatusCode::OK, json!({ "user": user_view(&u) })))
    })
    .await
}

async fn create_user(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> KsResult {
    admin(&s, &headers).await?;
    let u = body
        .get("user")
        .filter(|u| u.is_object())
        .ok_or_else(|| ApiError::bad_request("Expecting to find user in request body."))?;
    let field = |k: &str| u.get(k).and_then(Value::as_str).map(str::to_owned);
    let name =
        field("name").ok_or_else(|| ApiError::bad_request("'name' is a required property"))?;
    let password = field("password")
        .ok_or_else(|| ApiError::bad_request("'password' is a required property"))?;
    let project = field("default_project_id");
    let s2 = s.clone();
    blocking(move || {
        let u = s2
            .identity
            .create_user(&name, &password, project.as_deref())?;
        Ok(reply(StatusCode::CREATED, json!({ "user": user_view(&u) })))
    })
    .await
}

async fn list_roles(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> KsResult {
    caller(&s, &headers).await?;
    let roles: Vec<Value> = ROLES
        .iter()
        .map(|(name, id)| json!({"id": id, "name": name, "domain_id": null}))
        .collect();
    Ok::<_, ApiError>(reply(StatusCode::OK, json!({ "roles": roles })))
}

#[derive(Deserialize)]
struct GrantPath {
    project: String,
    user: String,
    #[serde(default)]
    role: String,
}

async fn grant(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(p): Path<GrantPath>,
) -> KsResult {
    admin(&s, &headers).await?;
    let s2 = s.clone();
    blocking(move || {
        s2.identity.grant(&p.project, &p.user, &p.role)?;
        Ok(empty(StatusCode::NO_CONTENT))
    })
    .await
}

async fn check_grant(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(p): Path<GrantPath>,
) -> KsResult {
    admin(&s, &headers).await?;
    let s2 = s.clone();
    blocking(move || {
        let wanted = role_name(&p.role)
            .ok_or_else(|| ApiError::not_found(format!("Could not find role: {}.", p.role)))?;
        if s2
            .identity
            .roles_of(&p.project, &p.user)?
            .iter()
            .any(|r| r == wanted)
        {
            Ok(empty(StatusCode::NO_CONTENT))
        } else {
            Err(ApiError::not_found("Could not find role assignment."))
        }
    })
    .await
}

async fn list_grants(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(p): Path<GrantPath>,
) -> KsResult {
    let me = caller(&s, &headers).await?;
    if !me.is_admin() && me.user_id != p.user {
        return Err(ApiError::forbidden(
            "You are not authorized to perform the requested action.",
        ));
    }
    let s2 = s.clone();
    blocking(move || {
        let roles: Vec<Value> = s2
            .identity
            .roles_of(&p.project, &p.user)?
            .iter()
            .map(|r| json!({"id": role_id(r), "name": r}))
            .collect();
        Ok(reply(StatusCode::OK, json!({ "roles": roles })))
    })
    .await
}
