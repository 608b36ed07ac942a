//! `GET /metrics`: Prometheus text — API requests by method and status, volumes by status,
//! snapshots, provisioned GiB, and replica repairs of the open volumes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use super::{blocking, ApiResult, ApiState};
use crate::catalog::{CatalogRead, SnapshotRecord, VolumeRecord};
use tripod_replication::ReplicaHealth;

/// Request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Counts one answered request. Methods outside the standard set count as `OTHER`: the
    /// method is the client's choice, and one label per invented method would grow without
    /// bound.
    pub fn count_request(&self, method: &str, status: u16) {
        const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
        let label = KNOWN
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("OTHER");
        *self
            .requests
            .lock()
            .entry((label.to_owned(), status))
            .or_insert(0) += 1;
    }
}

/// `GET /metrics`.
pub async fn render(State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    blocking(move || {
        let (volumes, snapshots) = s.catalog.read(|r| {
            Ok::<_, super::ApiError>((r.all::<VolumeRecord>()?, r.all::<SnapshotRecord>()?))
        })?;
        let mut out = String::new();
        let _ = writeln!(out, "# HELP tripod_api_requests_total Admin API requests answered.");
        let _ = writeln!(out, "# TYPE tripod_api_requests_total counter");
        for ((method, status), n) in s.metrics.requests.lock().iter() {
            let _ = writeln!(
                out,
                "tripod_api_requests_total{{method=\"{method}\",code=\"{status}\"}} {n}"
            );
        }
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for v in &volumes {
            *by_status.entry(v.status.as_str()).or_insert(0) += 1;
        }
        let _ = writeln!(out, "# HELP tripod_volumes Volumes in the catalog by status.");
        let _ = writeln!(out, "# TYPE tripod_volumes gauge");
        for (status, n) in by_status {
            let _ = writeln!(out, "tripod_volumes{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP tripod_volume_provisioned_gigabytes Sum of volume sizes.");
        let _ = writeln!(out, "# TYPE tripod_volume_provisioned_gigabytes gauge");
        let gib: u64 = volumes.iter().map(|v| v.size).sum();
        let _ = writeln!(out, "tripod_volume_provisioned_gigabytes {gib}");
        let _ = writeln!(out, "# HELP tripod_snapshots Snapshots in the catalog.");
        let _ = writeln!(out, "# TYPE tripod_snapshots gauge");
        let _ = writeln!(out, "tripod_snapshots {}", snapshots.len());
        let _ = writeln!(
            out,
            "# HELP tripod_replica_repairs_total Bad block copies repaired from a good replica (open volumes)."
        );
        let _ = writeln!(out, "# TYPE tripod_replica_repairs_total counter");
        let open = s.backend.registry().open_volumes();
        let repairs: u64 = open.iter().map(|(_, set)| set.repairs()).sum();
        let _ = writeln!(out, "tripod_replica_repairs_total {repairs}");
        let statuses: Vec<_> = open.iter().map(|(_, set)| set.status()).collect();
        let _ = writeln!(
            out,
            "# HELP tripod_space_refusals_total Writes refused because the replicas' disks were full (open volumes)."
        );
        let _ = writeln!(out, "# TYPE tripod_space_refusals_total counter");
        let refusals: u64 = statuses.iter().map(|s| s.space_refusals).sum();
        let _ = writeln!(out, "tripod_space_refusals_total {refusals}");
        let _ = writeln!(
            out,
            "# HELP tripod_volumes_out_of_space Open volumes whose latest write was refused for lack of space."
        );
        let _ = writeln!(out, "# TYPE tripod_volumes_out_of_space gauge");
        let full = statuses.iter().filter(|s| s.out_of_space).count();
        let _ = writeln!(out, "tripod_volumes_out_of_space {full}");
        let mut health: BTreeMap<&str, u64> =
            [("in_service", 0), ("degraded", 0), ("resyncing", 0), ("rebuilding", 0)]
                .into_iter()
                .collect();
        for status in &statuses {
            for (_, r) in status.replicas.iter() {
                let state = match r.health {
                    ReplicaHealth::InService => "in_service",
                    ReplicaHealth::Degraded { .. } => "degraded",
                    ReplicaHealth::Resyncing { .. } => "resyncing",
                    ReplicaHealth::Rebuilding { .. } => "rebuilding",
                };
                *health.entry(state).or_insert(0) += 1;
            }
        }
        let _ = writeln!(
            out,
            "# HELP tripod_replicas Replicas of the open volumes by health (anything but in_service misses writes)."
        );
        let _ = writeln!(out, "# TYPE tripod_replicas gauge");
        for (state, n) in health {
            let _ = writeln!(out, "tripod_replicas{{health=\"{state}\"}} {n}");
        }
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            out,
        )
            .into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn invented_methods_share_one_label() {
        let m = Metrics::default();
        for i in 0..100 {
            m.count_request(&format!("X{i}"), 405);
        }
        m.count_request("GET", 200);
        let counts = m.requests.lock();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&("OTHER".to_owned(), 405)], 100);
    }
}
