//! Version documents: `GET /` (300), `GET /v2` and `GET /v3` (200), no token needed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{request::Parts, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::extract::base_url;
use super::{reply, ApiState};

fn entry(base: &str, v: &str) -> Value {
    let (id, status, min, max, updated) = match v {
        "v2" => ("v2.0", "DEPRECATED", "", "", "2017-02-25T12:00:00Z"),
        _ => ("v3.0", "CURRENT", "3.0", "3.0", "2026-11-28T00:00:00Z"),
    };
    let media = if v == "v2" { "2" } else { "3" };
    json!({
        "id": id,
        "status": status,
        "updated": updated,
        "min_version": min,
        "version": max,
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/{v}/")},
        ],
        "media-types": [
            {"base": "application/json", "type": format!("application/vnd.openstack.volume+json;version={media}")}
        ],
    })
}

/// `GET /`: every version, 300 Multiple Choices.
pub async fn root(State(s): State<Arc<ApiState>>, parts: Parts) -> Response {
    let base = base_url(&parts.headers, &s);
    reply(
        StatusCode::MULTIPLE_CHOICES,
        json!({"versions": [entry(&base, "v2"), entry(&base, "v3")]}),
    )
}

/// `GET /v2`.
pub async fn v2(State(s): State<Arc<ApiState>>, parts: Parts) -> Response {
    let base = base_url(&parts.headers, &s);
    reply(StatusCode::OK, json!({"versions": [entry(&base, "v2")]}))
}

/// `GET /v3`.
pub async fn v3(State(s): State<Arc<ApiState>>, parts: Parts) -> Response {
    let base = base_url(&parts.headers, &s);
    reply(StatusCode::OK, json!({"versions": [entry(&base, "v3")]}))
}
