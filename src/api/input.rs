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

/// Key/value pairs of a JSON object as text (numbers as written, booleans as `True`/`False`),
/// leaving out the members in `skip`: the extra specs of a type and the keys of a QoS spec.
/// Keys and values are 1 to 255 characters; `what` names them in refusals.
pub fn text_pairs(
    obj: &Obj,
    skip: &[&str],
    what: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    const MAX: usize = 255;
    let mut out = BTreeMap::new();
    for (k, v) in obj.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        let value = match v {
            Value::String(t) => t.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid value for {what} {k}: a string or number is required."
                )))
            }
        };
        if k.is_empty() || k.chars().count() > MAX || value.chars().count() > MAX {
            return Err(ApiError::bad_request(format!(
                "Invalid {what} {k}: keys and values are 1 to {MAX} characters."
            )));
        }
        out.insert(k.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_and_integers_parse_like_cinder() {
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("Off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
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
}
