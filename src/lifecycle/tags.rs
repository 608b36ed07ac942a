//! Disk tags (EVS's tag API): at most ten per volume; a key of 1 to 36 letters, digits, `-`,
//! `_` or CJK ideographs; a value of at most 43 of those or `.` (empty allowed); both trimmed;
//! adding an existing key replaces its value.

use std::collections::BTreeMap;

use super::refusal::Refusal;
use crate::catalog::VolumeRecord;

/// Most tags one volume carries.
pub const MAX_TAGS: usize = 10;
/// Longest key, in characters.
pub const MAX_TAG_KEY: usize = 36;
/// Longest value, in characters.
pub const MAX_TAG_VALUE: usize = 43;

fn cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || cjk(c)
}

/// A tag checked and trimmed, or why not.
pub fn check_tag(key: &str, value: &str) -> Result<(String, String), Refusal> {
    let key = key.trim();
    let value = value.trim();
    let key_len = key.chars().count();
    if key_len == 0 || key_len > MAX_TAG_KEY || !key.chars().all(key_char) {
        return Err(Refusal::rule(format!(
            "Invalid tag key {key:?}: 1 to {MAX_TAG_KEY} letters, digits, '-', '_' or CJK characters."
        )));
    }
    if value.chars().count() > MAX_TAG_VALUE || !value.chars().all(|c| key_char(c) || c == '.') {
        return Err(Refusal::rule(format!(
            "Invalid tag value {value:?} for {key:?}: at most {MAX_TAG_VALUE} letters, digits, '.', '-', '_' or CJK characters."
        )));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Adds (or replaces) `tags` on `v`; refused whole if one is invalid or the volume would
/// carry more than [`MAX_TAGS`].
pub fn add_tags(v: &mut VolumeRecord, tags: &[(String, String)]) -> Result<(), Refusal> {
    let mut next: BTreeMap<String, String> = v.tags.clone();
    for (k, val) in tags {
        let (k, val) = check_tag(k, val)?;
        next.insert(k, val);
    }
    if next.len() > MAX_TAGS {
        return Err(Refusal::rule(format!(
            "A volume carries at most {MAX_TAGS} tags ({} asked).",
            next.len()
        )));
    }
    v.tags = next;
    Ok(())
}

/// Removes the tags with these keys (keys it does not carry are ignored).
pub fn remove_tags(v: &mut VolumeRecord, keys: &[String]) {
    for k in keys {
        v.tags.remove(k.trim());
    }
}

/// Whether `v` carries every `(key, values)` of `filter` — with one of `values`, or with
/// any value when `values` is empty.
pub fn tags_match(v: &VolumeRecord, filter: &[(String, Vec<String>)]) -> bool {
    filter.iter().all(|(key, values)| match v.tags.get(key) {
        Some(got) => values.is_empty() || values.iter().any(|x| x == got),
        None => false,
    })
}
