//! The five built-in volume types, named and limited after EVS's disk classes.
//!
//! Source: Huawei Cloud EVS, "Disk Types and Performance"
//! (<https://support.huaweicloud.com/intl/en-us/productdesc-evs/en-us_topic_0014580744.html>):
//! a disk's IOPS limit is min(maximum, baseline + IOPS per GiB × size), its throughput limit
//! min(maximum, baseline + MiB/s per GiB × size), and a small disk may burst to the class's
//! burst IOPS "for a short period". Common I/O (SATA) is the page's previous-generation
//! class (some regional copies of the page still list older, lower figures for it).
//!
//! Tripod's own choices, which the page does not fix: a full burst credit lasts
//! [`BURST_SECS`] seconds at the burst rate, and one I/O counts as up to [`IOPS_SIZE`] bytes
//! (a 1 MiB request counts as four), the unit block-storage services commonly use for SSD
//! classes.

use std::collections::BTreeMap;

use super::spec::mib;

/// Seconds a full burst credit lasts at the burst rate.
pub const BURST_SECS: u64 = 60;
/// Bytes one I/O counts as.
pub const IOPS_SIZE: u64 = 256 << 10;

/// One built-in class.
#[derive(Debug, Clone, Copy)]
pub struct Class {
    /// The type's name (EVS's API name).
    pub name: &'static str,
    /// The type's fixed id.
    pub type_id: &'static str,
    /// The fixed id of its QoS spec.
    pub qos_id: &'static str,
    /// What EVS calls it.
    pub title: &'static str,
    iops_base: f64,
    iops_per_gib: f64,
    iops_max: f64,
    iops_burst: f64,
    mibps_base: f64,
    mibps_per_gib: f64,
    mibps_max: f64,
}

/// The built-in classes, slowest first.
pub const CLASSES: [Class; 5] = [
    Class {
        name: "SATA",
        type_id: "0f7b5e7e-6c1a-4b8e-9a44-1d2f3c4b5a61",
        qos_id: "5e0a1b2c-3d4e-4f50-8a61-72b3c4d5e6f1",
        title: "Common I/O",
        iops_base: 500.0,
        iops_per_gib: 2.0,
        iops_max: 2200.0,
        iops_burst: 2200.0,
        mibps_base: 40.0,
        mibps_per_gib: 0.2,
        mibps_max: 50.0,
    },
    Class {
        name: "SAS",
        type_id: "1a8c6f8f-7d2b-4c9f-8b55-2e3f4d5c6b72",
        qos_id: "6f1b2c3d-4e5f-4061-9b72-83c4d5e6f702",
        title: "High I/O",
        iops_base: 1800.0,
        iops_per_gib: 8.0,
        iops_max: 5000.0,
        iops_burst: 5000.0,
        mibps_base: 100.0,
        mibps_per_gib: 0.15,
        mibps_max: 150.0,
    },
    Class {
        name: "SSD",
        type_id: "2b9d7a9a-8e3c-4daa-9c66-3f4a5e6d7c83",
        qos_id: "7a2c3d4e-5f60-4172-8c83-94d5e6f70813",
        title: "Ultra-high I/O",
        iops_base: 1800.0,
        iops_per_gib: 50.0,
        iops_max: 50000.0,
        iops_burst: 16000.0,
        mibps_base: 120.0,
        mibps_per_gib: 0.5,
        mibps_max: 350.0,
    },
    Class {
        name: "GPSSD",
        type_id: "3cae8bab-9f4d-4ebb-8d77-4a5b6f7e8d94",
        qos_id: "8b3d4e5f-6071-4283-9d94-a5e6f7081924",
        title: "General Purpose SSD",
        iops_base: 1800.0,
        iops_per_gib: 12.0,
        iops_max: 20000.0,
        iops_burst: 8000.0,
        mibps_base: 100.0,
        mibps_per_gib: 0.5,
        mibps_max: 250.0,
    },
    Class {
        name: "ESSD",
        type_id: "4dbf9cbc-a05e-4fcc-9e88-5b6c7a8f9ea5",
        qos_id: "9c4e5f60-7182-4394-8ea5-b6f708192a35",
        title: "Extreme SSD",
        iops_base: 1800.0,
        iops_per_gib: 50.0,
        iops_max: 128000.0,
        iops_burst: 64000.0,
        mibps_base: 120.0,
        mibps_per_gib: 0.5,
        mibps_max: 1000.0,
    },
];

impl Class {
    /// The class's QoS spec, in the keys of [`super::spec`].
    pub fn specs(&self) -> BTreeMap<String, String> {
        let pairs = [
            ("total_iops_sec_base", self.iops_base.to_string()),
            ("total_iops_sec_per_gb", self.iops_per_gib.to_string()),
            ("total_iops_sec_per_gb_max", self.iops_max.to_string()),
            ("total_iops_sec_max", self.iops_burst.to_string()),
            ("total_iops_sec_max_length", BURST_SECS.to_string()),
            ("total_bytes_sec_base", mib(self.mibps_base)),
            ("total_bytes_sec_per_gb", mib(self.mibps_per_gib)),
            ("total_bytes_sec_per_gb_max", mib(self.mibps_max)),
            ("size_iops_sec", IOPS_SIZE.to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::super::spec::{resolve, validate, Scope, Unit};
    use super::*;

    fn limits(name: &str, gib: u64) -> (f64, Option<f64>, f64) {
        let class = CLASSES.iter().find(|c| c.name == name).unwrap();
        validate(&class.specs()).unwrap();
        let l = resolve(&class.specs(), gib);
        let iops = l.rate(Scope::Total, Unit::Iops).unwrap();
        let bytes = l.rate(Scope::Total, Unit::Bytes).unwrap();
        // To the hundredth of a MiB/s: per-GiB byte rates are stored as whole bytes.
        let mibps = (bytes.per_sec / f64::from(1u32 << 20) * 100.0).round() / 100.0;
        (iops.per_sec, iops.burst, mibps)
    }

    #[test]
    fn the_published_formulas() {
        // EVS's own worked example: a 100 GiB ultra-high I/O disk has 6,800 IOPS.
        assert_eq!(limits("SSD", 100), (6800.0, Some(16000.0), 170.0));
        assert_eq!(limits("ESSD", 100), (6800.0, Some(64000.0), 170.0));
        assert_eq!(limits("ESSD", 32768), (128000.0, None, 1000.0));
        assert_eq!(limits("GPSSD", 100), (3000.0, Some(8000.0), 150.0));
        assert_eq!(limits("SAS", 100), (2600.0, Some(5000.0), 115.0));
        assert_eq!(limits("SAS", 1000), (5000.0, None, 150.0));
        assert_eq!(limits("SATA", 10), (520.0, Some(2200.0), 42.0));
        assert_eq!(limits("SATA", 1000), (2200.0, None, 50.0));
    }
}
