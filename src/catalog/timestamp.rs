//! Timestamps: microseconds since the Unix epoch, shown the way Cinder shows them.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(micros)
    }

    /// This time plus `secs` seconds.
    pub fn plus_secs(self, secs: u64) -> Self {
        let add = i64::try_from(secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        Self(self.0.saturating_add(add))
    }

    fn datetime(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// Cinder's form: `2016-05-25T02:38:40.392463` (UTC, no zone).
    pub fn cinder(self) -> String {
        let f = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
        );
        self.datetime().format(f).unwrap_or_default()
    }

    /// Keystone's form: `2016-05-25T02:38:40.392463Z`.
    pub fn keystone(self) -> String {
        format!("{}Z", self.cinder())
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn formats_like_cinder_and_keystone() {
        let t = Timestamp(1_464_143_920_392_463);
        assert_eq!(t.cinder(), "2016-05-25T02:38:40.392463");
        assert_eq!(t.keystone(), "2016-05-25T02:38:40.392463Z");
        assert_eq!(t.plus_secs(1).0, 1_464_143_921_392_463);
    }
}
