//! QoS specs: the key/value limits an admin puts on a volume type (Cinder's qos-specs keys,
//! plus two of Tripod's to express EVS's "baseline + per GiB, up to a ceiling"), checked
//! when they are set and resolved into [`Limits`] for one volume's size.
//!
//! For each scope `total`, `read`, `write` and unit `iops`, `bytes` (e.g. `total_iops_sec`):
//!
//! | key | meaning |
//! |---|---|
//! | `{scope}_{unit}_sec` | a fixed limit per second (Cinder) |
//! | `{scope}_{unit}_sec_per_gb` | a limit that grows with the size: this much per GiB (Cinder) |
//! | `{scope}_{unit}_sec_base` | added to the per-GiB part (Tripod; EVS's "baseline") |
//! | `{scope}_{unit}_sec_per_gb_min` | the per-GiB limit is at least this (Cinder) |
//! | `{scope}_{unit}_sec_per_gb_max` | the per-GiB limit is at most this (Tripod; EVS's "maximum") |
//! | `{scope}_{unit}_sec_max` | burst: the rate allowed while burst credit lasts (Cinder) |
//! | `{scope}_{unit}_sec_max_length` | seconds a full burst credit lasts (libvirt; default 1) |
//! | `size_iops_sec` | bytes one I/O counts as: larger requests count in proportion (Cinder) |
//!
//! When both a fixed and a per-GiB limit are given, the per-GiB one wins (as in Cinder). A
//! `total` limit cannot be combined with a `read` or `write` one of the same unit. Zero means
//! no limit. Keys with a colon (`vendor:key`) are kept and ignored; any other unknown key is
//! refused, because a misspelt limit that silently does nothing is worse than an error.

use std::collections::BTreeMap;

/// Who enforces a spec (Cinder's `consumer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// The hypervisor, where the disk is attached: Tripod stores the spec and leaves it.
    FrontEnd,
    /// The storage: Tripod enforces it.
    BackEnd,
    /// Both (Tripod enforces it).
    Both,
}

impl Consumer {
    /// Parses Cinder's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "front-end" => Some(Self::FrontEnd),
            "back-end" => Some(Self::BackEnd),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether Tripod enforces specs of this consumer.
    pub fn enforced(self) -> bool {
        self != Self::FrontEnd
    }
}

/// What requests a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Reads and writes together.
    Total,
    /// Reads.
    Read,
    /// Writes (and zeroing and trims).
    Write,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Total, Scope::Read, Scope::Write];

    fn name(self) -> &'static str {
        match self {
            Scope::Total => "total",
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// Requests.
    Iops,
    /// Bytes.
    Bytes,
}

impl Unit {
    /// Both units.
    pub const ALL: [Unit; 2] = [Unit::Iops, Unit::Bytes];

    fn name(self) -> &'static str {
        match self {
            Unit::Iops => "iops",
            Unit::Bytes => "bytes",
        }
    }
}

/// One resolved limit: a sustained rate and an optional burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained, per second.
    pub per_sec: f64,
    /// The rate allowed while burst credit lasts (above `per_sec`), if any.
    pub burst: Option<f64>,
    /// Seconds a full burst credit lasts.
    pub burst_secs: f64,
}

/// The limits of one volume: a rate per scope and unit (where set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    rates: BTreeMap<(Scope, Unit), Rate>,
    /// Bytes one I/O counts as (larger requests count in proportion).
    pub iops_size: Option<u64>,
}

impl Limits {
    /// The limit of `scope` and `unit`, if any.
    pub fn rate(&self, scope: Scope, unit: Unit) -> Option<Rate> {
        self.rates.get(&(scope, unit)).copied()
    }

    /// Sets the limit of `scope` and `unit`.
    pub fn set(&mut self, scope: Scope, unit: Unit, rate: Option<Rate>) {
        match rate {
            Some(r) => self.rates.insert((scope, unit), r),
            None => self.rates.remove(&(scope, unit)),
        };
    }

    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.rates.is_empty()
    }

    /// The limits as resolved numbers under Cinder's key names (`total_iops_sec`, its burst
    /// as `total_iops_sec_max`, `size_iops_sec`, …), for display.
    pub fn to_pairs(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for scope in Scope::ALL {
            for unit in Unit::ALL {
                if let Some(r) = self.rate(scope, unit) {
                    let stem = format!("{}_{}_sec", scope.name(), unit.name());
                    if let Some(b) = r.burst {
                        out.push((format!("{stem}_max"), b));
                        out.push((format!("{stem}_max_length"), r.burst_secs));
                    }
                    out.push((stem, r.per_sec));
                }
            }
        }
        if let (Some(size), false) = (self.iops_size, self.is_unlimited()) {
            out.push(("size_iops_sec".into(), size as f64));
        }
        out
    }
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A key Tripod does not know (and not `vendor:`-scoped).
    #[error("unknown QoS key {0:?}")]
    UnknownKey(String),
    /// A value that is not a non-negative number (a whole one for `size_iops_sec`).
    #[error("QoS key {key:?} must be a non-negative number, not {value:?}")]
    BadValue {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// `total` combined with `read`/`write` for one unit.
    #[error("{0} cannot be combined with read_* or write_* limits of the same unit")]
    Mixed(String),
}

/// The suffixes of a scope-and-unit key, after `{scope}_{unit}_sec`.
const SUFFIXES: [&str; 7] = [
    "",
    "_per_gb",
    "_base",
    "_per_gb_min",
    "_per_gb_max",
    "_max",
    "_max_length",
];

fn split_key(key: &str) -> Option<(Scope, Unit, &'static str)> {
    for scope in Scope::ALL {
        for unit in Unit::ALL {
            let stem = format!("{}_{}_sec", scope.name(), unit.name());
            if let Some(rest) = key.strip_prefix(stem.as_str()) {
                if let Some(s) = SUFFIXES.iter().find(|s| **s == rest) {
                    return Some((scope, unit, s));
                }
            }
        }
    }
    None
}

fn number(key: &str, value: &str) -> Result<f64, SpecError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| SpecError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
        })
}

fn whole(key: &str, value: &str) -> Result<u64, SpecError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| SpecError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
        })
}

/// Checks every key and value of `specs` (the whole set, as it would be stored).
pub fn validate(specs: &BTreeMap<String, String>) -> Result<(), SpecError> {
    let mut used = std::collections::BTreeSet::new();
    for (key, value) in specs {
        if key.contains(':') {
            continue;
        }
        if key == "size_iops_sec" {
            whole(key, value)?;
            continue;
        }
        let (scope, unit, _) = split_key(key).ok_or_else(|| SpecError::UnknownKey(key.clone()))?;
        number(key, value)?;
        used.insert((scope, unit));
    }
    for unit in Unit::ALL {
        if used.contains(&(Scope::Total, unit))
            && (used.contains(&(Scope::Read, unit)) || used.contains(&(Scope::Write, unit)))
        {
            return Err(SpecError::Mixed(format!("total_{}_sec", unit.name())));
        }
    }
    Ok(())
}

/// The limits `specs` give a volume of `size_gib` GiB (keys that do not check out are
/// skipped: specs are checked when they are set).
pub fn resolve(specs: &BTreeMap<String, String>, size_gib: u64) -> Limits {
    let get = |key: &str| specs.get(key).and_then(|v| number(key, v).ok());
    let size = size_gib as f64;
    let mut limits = Limits {
        iops_size: specs
            .get("size_iops_sec")
            .and_then(|v| whole("size_iops_sec", v).ok())
            .filter(|n| *n >= 1),
        ..Limits::default()
    };
    for scope in Scope::ALL {
        for unit in Unit::ALL {
            let stem = format!("{}_{}_sec", scope.name(), unit.name());
            let key = |suffix: &str| get(&format!("{stem}{suffix}"));
            let per_sec = match key("_per_gb") {
                Some(per_gb) => {
                    let mut v = key("_base").unwrap_or(0.0) + per_gb * size;
                    if let Some(min) = key("_per_gb_min") {
                        v = v.max(min);
                    }
                    if let Some(max) = key("_per_gb_max").filter(|m| *m > 0.0) {
                        v = v.min(max);
                    }
                    Some(v)
                }
                None => key(""),
            }
            // A per-GiB limit can overflow to infinity: that is no limit.
            .filter(|v| v.is_finite() && *v > 0.0);
            let rate = per_sec.map(|per_sec| Rate {
                per_sec,
                burst: key("_max").filter(|b| *b > per_sec),
                burst_secs: key("_max_length").filter(|s| *s > 0.0).unwrap_or(1.0),
            });
            limits.set(scope, unit, rate);
        }
    }
    limits
}

/// `n` MiB in bytes, as a spec value.
pub fn mib(n: f64) -> String {
    format!("{}", (n * (1u64 << 20) as f64).round())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn specs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn per_gib_limits_follow_the_size_between_floor_and_ceiling() {
        let s = specs(&[
            ("total_iops_sec_base", "1800"),
            ("total_iops_sec_per_gb", "50"),
            ("total_iops_sec_per_gb_max", "128000"),
            ("total_iops_sec_max", "64000"),
        ]);
        validate(&s).unwrap();
        let at = |gib| resolve(&s, gib).rate(Scope::Total, Unit::Iops).unwrap();
        assert_eq!(at(10).per_sec, 2300.0);
        assert_eq!(at(10).burst, Some(64000.0));
        assert_eq!(at(5000).per_sec, 128000.0);
        // Above the burst rate the burst means nothing.
        assert_eq!(at(5000).burst, None);
    }

    #[test]
    fn a_per_gib_limit_that_overflows_is_no_limit() {
        let s = specs(&[("total_iops_sec_per_gb", "1e308")]);
        validate(&s).unwrap();
        assert!(resolve(&s, 1000).rate(Scope::Total, Unit::Iops).is_none());
        assert!(resolve(&s, 1).rate(Scope::Total, Unit::Iops).is_some());
    }

    #[test]
    fn the_per_gib_floor_is_cinders() {
        let s = specs(&[
            ("read_bytes_sec_per_gb", "1000"),
            ("read_bytes_sec_per_gb_min", "50000"),
        ]);
        let r = resolve(&s, 10).rate(Scope::Read, Unit::Bytes).unwrap();
        assert_eq!(r.per_sec, 50000.0);
        assert!(resolve(&s, 10).rate(Scope::Total, Unit::Bytes).is_none());
    }

    #[test]
    fn a_fixed_limit_and_zero_for_none() {
        let s = specs(&[("total_iops_sec", "500"), ("write_bytes_sec", "0")]);
        let l = resolve(&s, 1);
        assert_eq!(l.rate(Scope::Total, Unit::Iops).unwrap().per_sec, 500.0);
        assert!(l.rate(Scope::Write, Unit::Bytes).is_none());
        assert!(!l.is_unlimited());
        assert!(resolve(&BTreeMap::new(), 1).is_unlimited());
    }

    #[test]
    fn bad_specs_are_refused_with_the_key_named() {
        assert_eq!(
            validate(&specs(&[("total_iops_secs", "5")])),
            Err(SpecError::UnknownKey("total_iops_secs".into()))
        );
        assert!(matches!(
            validate(&specs(&[("total_iops_sec", "-5")])),
            Err(SpecError::BadValue { .. })
        ));
        assert!(matches!(
            validate(&specs(&[("total_iops_sec", "lots")])),
            Err(SpecError::BadValue { .. })
        ));
        assert!(matches!(
            validate(&specs(&[("total_iops_sec", "5"), ("read_iops_sec", "5")])),
            Err(SpecError::Mixed(_))
        ));
        // Different units may mix scopes; vendor keys pass.
        validate(&specs(&[
            ("total_iops_sec", "5"),
            ("read_bytes_sec", "5"),
            ("netapp:qos_policy_group", "gold"),
        ]))
        .unwrap();
    }
}
