//! API errors and the one place they become HTTP: the Cinder fault object (with the EVS
//! error code) on the block API, Keystone's error object under `/identity`.

use super::set_field;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::BackendError;
use crate::catalog::CatalogError;
use crate::identity::IdentityError;
use crate::lifecycle::Refusal;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// EVS error code (`EVS.xxxx`).
    pub evs_code: &'static str,
    /// `Retry-After` seconds (quota errors).
    pub retry_after: Option<u64>,
    /// Render as Keystone's error object instead of Cinder's fault.
    pub keystone: bool,
}

impl ApiError {
    /// An error with `status`, EVS code and message.
    pub fn new(status: StatusCode, evs_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            evs_code,
            retry_after: None,
            keystone: false,
        }
    }

    /// 400 with the generic EVS code.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "EVS.5400", message)
    }

    /// 400 with a specific EVS code.
    pub fn invalid(evs_code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, evs_code, message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "EVS.5401",
            "Authentication required.",
        )
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "EVS.5403", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "EVS.5404", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "EVS.5400", message)
    }

    /// 413 for a quota, with `Retry-After: 0`.
    pub fn over_quota(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::PAYLOAD_TOO_LARGE, "EVS.5413", message);
        e.retry_after = Some(0);
        e
    }

    /// 413 for a request body over the cap (a 413-family code, as the status).
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "EVS.5413", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "EVS.5500", message)
    }

    /// The same error rendered Keystone's way.
    pub fn keystone(mut self) -> Self {
        self.keystone = true;
        self
    }

    fn fault_name(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "badRequest",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "itemNotFound",
            405 => "badMethod",
            409 => "conflictingRequest",
            413 => "overLimit",
            415 => "badMediaType",
            501 => "notImplemented",
            503 => "serviceUnavailable",
            _ => "computeFault",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status.as_u16();
        let original = self.clone();
        let body = if self.keystone {
            json!({"error": {
                "code": code,
                "message": self.message,
                "title": self.status.canonical_reason().unwrap_or("Error"),
            }})
        } else {
            let mut fault = json!({
                "code": code,
                "message": self.message,
                "error_code": self.evs_code,
            });
            if let Some(secs) = self.retry_after {
                set_field(&mut fault, "retryAfter", json!(secs.to_string()));
            }
            json!({ self.fault_name(): fault })
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if code == 401 && self.keystone {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity/v3\""),
            );
        }
        // Lets a router layer re-render the error (the identity routes use Keystone's shape).
        resp.extensions_mut().insert(original);
        resp
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        tracing::error!("catalog: {e}");
        Self::internal("The catalog failed; the request was not applied.")
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        tracing::error!("backend: {e}");
        Self::internal(format!("The storage backend failed: {e}"))
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::OverQuota(m) => Self::over_quota(m),
            other => Self::invalid(other.code(), other.to_string()),
        }
    }
}

impl From<crate::keys::KeyError> for ApiError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::keys::KeyError;
        match e {
            KeyError::NotFound(_) | KeyError::Invalid { .. } => {
                Self::invalid("EVS.2032", format!("Invalid input received: {e}."))
            }
            KeyError::Unwrap { .. } | KeyError::Store(_) => {
                tracing::error!("keys: {e}");
                Self::internal(format!("The key store failed: {e}"))
            }
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Unauthorized => Self::new(
                StatusCode::UNAUTHORIZED,
                "EVS.5401",
                "The request you have made requires authentication.",
            ),
            IdentityError::NotFound(_) => Self::not_found(e.to_string()),
            IdentityError::Conflict(_) => Self::conflict(e.to_string()),
            IdentityError::BadRequest(m) => Self::bad_request(m),
            IdentityError::Hash(_) | IdentityError::Catalog(_) => {
                tracing::error!("identity: {e}");
                Self::internal("The identity store failed.")
            }
        }
    }
}

/// Result of a handler.
pub type ApiResult<T = Response> = Result<T, ApiError>;
