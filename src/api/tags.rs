//! EVS's disk tags (`docs/api.md` §5): add and remove a volume's tags, show them, every tag
//! of the project, and find volumes by tag. Also under EVS's older `os-vendor-volumes` path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{IdPath, JsonBody};
use super::requests::{int, typed};
use super::volumes::{self, view, Shape};
use super::{blocking, empty, reply, ApiError, ApiResult, ApiState, Ctx};
use crate::catalog::VolumeRecord;
use crate::lifecycle;

/// One tag in a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

/// `POST …/{id}/tags/action`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagAction {
    action: String,
    tags: Vec<Tag>,
}

/// One tag filter of a query: the key with one of `values` (any value when empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagFilter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

/// `POST P/cloudvolumes/resource_instances/action`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    action: String,
    #[serde(default)]
    tags: Vec<TagFilter>,
    #[serde(default, deserialize_with = "int_or_default")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "int_or_default")]
    offset: Option<i64>,
}

fn int_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    int(d).map(Some)
}

fn tag_list(v: &VolumeRecord) -> Value {
    let tags: Vec<Value> = v
        .tags
        .iter()
        .map(|(k, val)| json!({"key": k, "value": val}))
        .collect();
    Value::Array(tags)
}

/// `POST P/cloudvolumes/{id}/tags/action`: `create` adds or replaces, `delete` removes by key.
pub async fn action(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: TagAction = typed(&body, &[])?;
    let pairs: Vec<(String, String)> = req.tags.into_iter().map(|t| (t.key, t.value)).collect();
    if pairs.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid input: 'tags' must not be empty.",
        ));
    }
    let create = match req.action.as_str() {
        "create" => true,
        "delete" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid action {other:?}: create or delete."
            )))
        }
    };
    blocking(move || {
        s.catalog.write(|w| {
            let mut v = volumes::load(w, &ctx, &p.id)?;
            lifecycle::may_change(&v)?;
            if create {
                lifecycle::add_tags(&mut v, &pairs)?;
            } else {
                let keys: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
                lifecycle::remove_tags(&mut v, &keys);
            }
            volumes::save(w, &mut v)?;
            Ok::<_, ApiError>(())
        })?;
        Ok(empty(StatusCode::NO_CONTENT))
    })
    .await
}

/// `GET P/cloudvolumes/{id}/tags`.
pub async fn show(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let v = s.catalog.read(|r| volumes::load(r, &ctx, &p.id))?;
        Ok(reply(StatusCode::OK, json!({ "tags": tag_list(&v) })))
    })
    .await
}

/// The volumes of the caller's project.
fn own_volumes(s: &ApiState, ctx: &Ctx) -> ApiResult<Vec<VolumeRecord>> {
    let all: Vec<VolumeRecord> = s.catalog.read(|r| {
        use crate::catalog::CatalogRead;
        Ok::<_, ApiError>(r.all::<VolumeRecord>()?)
    })?;
    Ok(all
        .into_iter()
        .filter(|v| v.project_id == ctx.project_id)
        .collect())
}

/// `GET P/cloudvolumes/tags`: every key used in the project, with the values it has.
pub async fn project(ctx: Ctx, State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    blocking(move || {
        let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for v in own_volumes(&s, &ctx)? {
            for (k, val) in v.tags {
                keys.entry(k).or_default().insert(val);
            }
        }
        Ok(reply(StatusCode::OK, json!({ "tags": keys })))
    })
    .await
}

/// `POST P/cloudvolumes/resource_instances/action`: the project's volumes carrying every
/// tag of the filter (`action: filter`, paged by `limit`/`offset`), or how many (`count`).
pub async fn query(
    ctx: Ctx,
    State(s): State<Arc<ApiState>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: Query = typed(&body, &[])?;
    let count_only = match req.action.as_str() {
        "filter" => false,
        "count" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid action {other:?}: filter or count."
            )))
        }
    };
    let limit = usize::try_from(req.limit.unwrap_or(1000))
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| ApiError::bad_request("limit must be 1 to 1000."))?;
    let offset = usize::try_from(req.offset.unwrap_or(0))
        .map_err(|_| ApiError::bad_request("offset must not be negative."))?;
    let filter: Vec<(String, Vec<String>)> =
        req.tags.into_iter().map(|t| (t.key, t.values)).collect();
    blocking(move || {
        let mut found: Vec<VolumeRecord> = own_volumes(&s, &ctx)?
            .into_iter()
            .filter(|v| lifecycle::tags_match(v, &filter))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        let total = found.len();
        if count_only {
            return Ok(reply(StatusCode::OK, json!({ "total_count": total })));
        }
        let resources: Vec<Value> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|v| {
                json!({
                    "resource_id": v.id,
                    "resource_name": v.name.clone().unwrap_or_default(),
                    "resource_detail": view(&s, &ctx, v, Shape::Detail),
                    "tags": tag_list(v),
                })
            })
            .collect();
        Ok(reply(
            StatusCode::OK,
            json!({ "resources": resources, "total_count": total }),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_refuse_strangers() {
        let a: TagAction = typed(
            &json!({"action": "create", "tags": [{"key": "k", "value": "v"}, {"key": "n"}]}),
            &[],
        )
        .unwrap();
        assert_eq!(a.tags.len(), 2);
        assert_eq!(a.tags[1].value, "");
        assert!(typed::<TagAction>(&json!({"action": "create"}), &[]).is_err());
        assert!(typed::<TagAction>(&json!({"action": "create", "tags": [], "x": 1}), &[]).is_err());
        let q: Query = typed(
            &json!({"action": "filter", "tags": [{"key": "k", "values": ["a"]}], "limit": "5"}),
            &[],
        )
        .unwrap();
        assert_eq!(q.limit, Some(5));
    }
}
