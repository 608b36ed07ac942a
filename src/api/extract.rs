//! What every request brings: the caller ([`Ctx`], from `X-Auth-Token`), a JSON body
//! ([`JsonBody`], capped and type-checked) and query parameters ([`Params`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header, request::Parts, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;

use super::{ApiError, ApiState};
use crate::config::AuthMode;

/// Path parameters `{id}` (and `{key}`).
#[derive(Debug, serde::Deserialize)]
pub struct IdPath {
    /// The resource id.
    pub id: String,
    /// A metadata key, where the route has one.
    #[serde(default)]
    pub key: String,
}

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Filled by [`Ctx`] so the audit log knows who called.
#[derive(Clone, Default)]
pub struct AuditSlot(pub Arc<Mutex<Option<(String, String)>>>);

impl AuditSlot {
    /// A slot already naming `user` and `project` (handlers that authenticate the caller
    /// themselves put it in their response's extensions).
    pub fn of(user: &str, project: &str) -> Self {
        Self(Arc::new(Mutex::new(Some((
            user.to_owned(),
            project.to_owned(),
        )))))
    }
}

/// The authenticated caller of a `/v2/{project_id}/…` request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// User id.
    pub user_id: String,
    /// The project in the path (checked against the token's).
    pub project_id: String,
    /// Holds the admin role.
    pub is_admin: bool,
    /// `scheme://host:port` for links.
    pub base: String,
    /// `v2` or `v3`.
    pub version: &'static str,
}

/// The base URL of a request: the configured public endpoint, else `http://<Host>`.
pub fn base_url(headers: &axum::http::HeaderMap, state: &ApiState) -> String {
    if let Some(e) = &state.config.public_endpoint {
        return e.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.api_listen.clone());
    format!("http://{host}")
}

/// The `X-Auth-Token` header, if any.
pub fn auth_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn valid_project_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FromRequestParts<Arc<ApiState>> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let params: HashMap<String, String> =
            match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
                Ok(Path(p)) => p,
                Err(_) => HashMap::new(),
            };
        let project_id = params.get("project_id").cloned().unwrap_or_default();
        let version = if parts.uri.path().starts_with("/v3") || {
            parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .is_some_and(|u| u.0.path().starts_with("/v3"))
        } {
            "v3"
        } else {
            "v2"
        };
        let token = auth_token(parts).ok_or_else(ApiError::unauthorized)?;
        let (user_id, token_project, is_admin) = match state.config.auth {
            AuthMode::Noauth => {
                let (user, project) = token.split_once(':').unwrap_or((token, ""));
                (
                    user.to_owned(),
                    Some(project.to_owned()).filter(|p| !p.is_empty()),
                    true,
                )
            }
            AuthMode::Keystone => {
                let identity = state.identity.clone();
                let token = token.to_owned();
                let principal = tokio::task::spawn_blocking(move || identity.validate(&token))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map_err(|_| ApiError::unauthorized())?;
                let admin = principal.is_admin();
                (principal.user_id, principal.project_id, admin)
            }
        };
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            *slot.0.lock() = Some((user_id.clone(), project_id.clone()));
        }
        if !valid_project_id(&project_id) {
            return Err(ApiError::invalid("EVS.0001", "Malformed request url"));
        }
        match &token_project {
            Some(p) if p == &project_id => {}
            // Admins may act on any project; an unscoped token may act on none.
            Some(_) if is_admin => {}
            None if is_admin && state.config.auth == AuthMode::Noauth => {}
            None => return Err(ApiError::unauthorized()),
            Some(_) => return Err(ApiError::bad_request("Malformed request url")),
        }
        Ok(Ctx {
            user_id,
            project_id,
            is_admin,
            base: base_url(&parts.headers, state),
            version,
        })
    }
}

/// A JSON request body: at most [`MAX_BODY`] bytes (else 413), declared
/// `application/json` if a type is declared (else 415), well-formed (else 400).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "EVS.5400",
                    format!("Unsupported Content-Type {ct:?}; use application/json."),
                ));
            }
        }
        let bytes = read_body(req.into_body()).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ApiError::bad_request("Malformed request body."))?;
        Ok(JsonBody(value))
    }
}

/// Reads a body up to [`MAX_BODY`] bytes.
pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::too_large(format!(
            "Request body too large: the limit is {MAX_BODY} bytes."
        ))
    })
}

/// The query string as ordered key/value pairs (400 if it does not decode).
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(p)) => Ok(Params(p)),
            Err(_) => Err(ApiError::bad_request("Malformed query string.")),
        }
    }
}

impl Params {
    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
