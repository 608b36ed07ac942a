//! Lists: `limit`/`marker`/`offset`, `sort` or `sort_key`/`sort_dir`, filters and the
//! next-page link (`docs/api.md` §3).

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::extract::Params;
use super::input::parse_bool;
use super::ApiError;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;

/// A sortable field value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    /// Null sorts first.
    Null,
    /// A number.
    Num(i64),
    /// Text.
    Text(String),
}

/// What a listable record offers the pager.
pub trait Listable {
    /// Its id.
    fn id(&self) -> &str;
    /// Its value of sort key `key` (keys come from [`Listable::SORT_KEYS`]).
    fn sort_value(&self, key: &str) -> SortValue;
    /// Whether it passes filter `key` = `value` (`None`: not a filter of this kind).
    fn matches(&self, key: &str, value: &str) -> Option<bool>;
    /// Accepted sort keys.
    const SORT_KEYS: &'static [&'static str];
}

/// A parsed list request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    limit: usize,
    marker: Option<String>,
    offset: usize,
    sort: Vec<(String, bool)>,
    filters: Vec<(String, String)>,
    /// Admin asked for every project.
    pub all_tenants: bool,
}

const RESERVED: [&str; 8] = [
    "limit",
    "marker",
    "offset",
    "sort",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "with_count",
];

impl ListQuery {
    /// Parses the list parameters of `params` for records of kind `T`.
    pub fn parse<T: Listable>(params: &Params, is_admin: bool) -> Result<Self, ApiError> {
        let limit = match params.get("limit") {
            None => MAX_LIMIT,
            Some(l) => {
                let n: i64 = l
                    .trim()
                    .parse()
                    .map_err(|_| ApiError::invalid("EVS.1023", "limit param must be an integer"))?;
                if n < 0 {
                    return Err(ApiError::invalid(
                        "EVS.1023",
                        "limit param must be positive",
                    ));
                }
                if n > MAX_LIMIT as i64 {
                    return Err(ApiError::invalid(
                        "EVS.2142",
                        format!("limit param must not exceed {MAX_LIMIT}"),
                    ));
                }
                usize::try_from(n).unwrap_or(MAX_LIMIT)
            }
        };
        let offset = match params.get("offset") {
            None => 0,
            Some(o) => o
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(|| {
                    ApiError::bad_request("offset param must be an integer 0 to 2147483647")
                })? as usize,
        };
        let sort = Self::parse_sort::<T>(params)?;
        let all_tenants = is_admin
            && params
                .get("all_tenants")
                .map(|v| parse_bool(v).unwrap_or(true))
                .unwrap_or(false);
        let filters = params
            .0
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Self {
            limit,
            marker: params.get("marker").map(str::to_owned),
            offset,
            sort,
            filters,
            all_tenants,
        })
    }

    fn parse_sort<T: Listable>(params: &Params) -> Result<Vec<(String, bool)>, ApiError> {
        let check_key = |k: &str| {
            let k = if k == "display_name" { "name" } else { k };
            if T::SORT_KEYS.contains(&k) {
                Ok(k.to_owned())
            } else {
                Err(ApiError::invalid(
                    "EVS.1039",
                    format!("Invalid sort key {k:?}"),
                ))
            }
        };
        let check_dir = |d: &str| match d {
            "asc" => Ok(false),
            "desc" => Ok(true),
            _ => Err(ApiError::invalid(
                "EVS.1040",
                format!("Invalid sort direction {d:?}: asc or desc"),
            )),
        };
        let mut keys = Vec::new();
        match (
            params.get("sort"),
            params.get("sort_key"),
            params.get("sort_dir"),
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ApiError::bad_request(
                    "The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.",
                ))
            }
            (Some(sort), None, None) => {
                for part in sort.split(',').filter(|p| !p.trim().is_empty()) {
                    let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
                    keys.push((check_key(k.trim())?, check_dir(d.trim())?));
                }
            }
            (None, k, d) => {
                keys.push((
                    check_key(k.unwrap_or("created_at"))?,
                    check_dir(d.unwrap_or("desc"))?,
                ));
            }
        }
        if keys.is_empty() {
            keys.push(("created_at".into(), true));
        }
        if !keys.iter().any(|(k, _)| k == "id") {
            let dir = keys.last().map(|(_, d)| *d).unwrap_or(true);
            keys.push(("id".into(), dir));
        }
        Ok(keys)
    }

    /// Filters, sorts and pages `items`. Returns the page and, when it is full, the id of its
    /// last item (for the next-page link).
    pub fn apply<T: Listable>(
        &self,
        mut items: Vec<T>,
    ) -> Result<(Vec<T>, Option<String>), ApiError> {
        items.retain(|item| {
            self.filters
                .iter()
                .all(|(k, v)| item.matches(k, v).unwrap_or(true))
        });
        items.sort_by(|a, b| {
            for (key, desc) in &self.sort {
                let o = a.sort_value(key).cmp(&b.sort_value(key));
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        let start = match &self.marker {
            None => 0,
            Some(m) => {
                items.iter().position(|i| i.id() == m).ok_or_else(|| {
                    ApiError::invalid("EVS.1024", format!("marker [{m}] not found"))
                })? + 1
            }
        };
        let page: Vec<T> = items
            .into_iter()
            .skip(start.saturating_add(self.offset))
            .take(self.limit)
            .collect();
        let next = if !page.is_empty() && page.len() == self.limit {
            page.last().map(|i| i.id().to_owned())
        } else {
            None
        };
        Ok((page, next))
    }
}

/// A list answer: `{"<collection>": items}`, plus `<collection>_links` when the page is full.
pub fn collection_body(
    ctx: &super::Ctx,
    collection: &str,
    detail: bool,
    items: Vec<Value>,
    next: Option<String>,
    params: &Params,
) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(collection.to_owned(), Value::Array(items));
    if let Some(marker) = next {
        let path = format!(
            "{}/{}/{}/{collection}{}",
            ctx.base,
            ctx.version,
            ctx.project_id,
            if detail { "/detail" } else { "" }
        );
        body.insert(
            format!("{collection}_links"),
            next_link(&path, params, &marker),
        );
    }
    Value::Object(body)
}

/// The `<collection>_links` value pointing at the page after `marker`.
fn next_link(base_path: &str, params: &Params, marker: &str) -> Value {
    let mut query: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    query.push(("marker".into(), marker.to_owned()));
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    json!([{"rel": "next", "href": format!("{base_path}?{}", encoded.join("&"))}])
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a record's metadata contains every pair of the filter value (a JSON object or a
/// Python-literal dict such as `{'k': 'v'}`); `None` if the value does not parse.
pub fn metadata_matches(
    meta: &std::collections::BTreeMap<String, String>,
    filter: &str,
) -> Option<bool> {
    let parsed: serde_json::Map<String, Value> = serde_json::from_str(filter)
        .or_else(|_| serde_json::from_str(&filter.replace('\'', "\"")))
        .ok()?;
    Some(parsed.iter().all(|(k, v)| {
        let want = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        meta.get(k) == Some(&want)
    }))
}
