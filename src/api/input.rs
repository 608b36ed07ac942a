//! Validation of request members, with Cinder's rules (`docs/api.md` §3).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ApiError;

/// A JSON object member of a request.
pub type Obj = Map<String, Value>;

/// `body[key]` as an object (400 "Missing required element" otherwise), rejecting any other
/// top-level member.
pub fn top<'a>(body: &'a Value, key: &str) -> Result<&'a Obj, ApiError> {
    top_with(body, key, &[])
}

/// Like [`top`], tolerating the extra top-level members in `also`.
pub fn top_with<'a>(body: &'a Value, key: &str, also: &[&str]) -> Result<&'a Obj, ApiError> {
    let root = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Malformed request body."))?;
    if let Some(extra) = root
        .keys()
        .find(|k| *k != key && !also.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "Invalid input: additional properties are not allowed ('{extra}' was unexpected)"
        )));
    }
    root.get(key).and_then(Value::as_object).ok_or_else(|| {
        ApiError::bad_request(format!("Missing required element '{key}' in request body."))
    })
}

/// Refuses members of `obj` not in `allowed`.
pub fn only(obj: &Obj, allowed: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(ApiError::bad_request(format!(
            "Invalid input: additional properties are not allowed ('{extra}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

/// An optional text member: absent → `None`; `null` → `Some(None)`; a string is stripped
/// and must be at most `max` characters.
pub fn text(
    obj: &Obj,
    key: &str,
    max: usize,
    evs_code: &'static str,
) -> Result<Option<Option<String>>, ApiError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > max {
                return Err(ApiError::invalid(
                    evs_code,
                    format!("Invalid input for field '{key}': longer than {max} characters."),
                ));
            }
            Ok(Some(Some(s.to_owned())))
        }
        Some(_) => Err(ApiError::invalid(
            evs_code,
            format!("Invalid input for field '{key}': not a string."),
        )),
    }
}

/// Cinder's boolean: JSON booleans and the usual strings.
pub fn boolean(v: &Value, key: &str) -> Result<bool, ApiError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => parse_bool(s).ok_or_else(|| bad_bool(key, s)),
        other => Err(bad_bool(key, &other.to_string())),
    }
}

fn bad_bool(key: &str, s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid value '{s}' for '{key}': it must be a boolean."
    ))
}

/// Parses Cinder's boolean strings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "true" | "TRUE" | "1" | "t" | "y" | "yes" | "YES" | "Yes" | "on" | "ON" | "On" => {
            Some(true)
        }
        "False" | "false" | "FALSE" | "0" | "f" | "n" | "no" | "NO" | "No" | "off" | "OFF"
        | "Off" => Some(false),
        _ => None,
    }
}

/// An integer given as a JSON integer or a string of digits.
pub fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || t.len() > 18 {
                return None;
            }
            t.parse().ok()
        }
        _ => None,
    }
}

/// Whether `s` is a canonical UUID.
pub fn is_uuid(s: &str) -> bool {
    crate::data_dir::parse_id(s).is_ok()
}

fn metadata_key_ok(k: &str) -> bool {
    (1..=255).contains(&k.chars().count())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:. /".contains(&b))
}

/// User metadata: an object of at most 255-character keys matching Cinder's pattern and
/// string values of at most 255 characters; the whole blob at most 1 MiB.
pub fn metadata(v: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let obj = v.as_object().ok_or_else(|| {
        ApiError::bad_request("Invalid input for field 'metadata': not an object.")
    })?;
    let mut out = BTreeMap::new();
    let mut total = 0usize;
    for (k, v) in obj {
        if !metadata_key_ok(k) {
            return Err(ApiError::bad_request(format!(
                "Invalid metadata key '{}': 1 to 255 characters of letters, digits and -_:. /",
                k.chars().take(64).collect::<String>()
            )));
        }
        let v = v.as_str().ok_or_else(|| {
            ApiError::bad_request(format!("Invalid metadata value for '{k}': not a string."))
        })?;
        if v.chars().count() > 255 {
            return Err(ApiError::bad_request(format!(
                "Invalid metadata value for '{k}': longer than 255 characters."
            )));
        }
        total += k.len() + v.len();
        if total > 1 << 20 {
            return Err(ApiError::invalid(
                "EVS.1005",
                "Metadata is larger than 1048576 bytes.",
            ));
        }
        out.insert(k.clone(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_and_integers_parse_like_cinder() {
        assert!(boolean(&json!("yes"), "x").unwrap());
        assert!(!boolean(&json!("Off"), "x").unwrap());
        assert!(boolean(&json!("maybe"), "x").is_err());
        assert!(boolean(&json!(1), "x").is_err());
        assert_eq!(integer(&json!("12")), Some(12));
        assert_eq!(integer(&json!(1.5)), None);
        assert_eq!(integer(&json!("9".repeat(40))), None);
    }

    #[test]
    fn metadata_rules() {
        assert!(metadata(&json!({"a b:c.d-e_f/g": "v"})).is_ok());
        assert!(metadata(&json!({"": "v"})).is_err());
        assert!(metadata(&json!({"k": null})).is_err());
        assert!(metadata(&json!({"k": "x".repeat(256)})).is_err());
        assert!(metadata(&json!({"ké": "v"})).is_err());
        assert!(metadata(&json!(["k"])).is_err());
    }

    #[test]
    fn text_is_stripped_and_capped() {
        let o = json!({"name": "  hi  ", "n": null, "long": "x".repeat(256), "num": 3});
        let o = o.as_object().unwrap();
        assert_eq!(text(o, "name", 255, "E").unwrap(), Some(Some("hi".into())));
        assert_eq!(text(o, "n", 255, "E").unwrap(), Some(None));
        assert_eq!(text(o, "absent", 255, "E").unwrap(), None);
        assert!(text(o, "long", 255, "E").is_err());
        assert!(text(o, "num", 255, "E").is_err());
    }
}
