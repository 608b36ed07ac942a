//! `GET /metrics`: OpenMetrics text (`prometheus-client`) — API requests by method and status, volumes by status,
//! snapshots, provisioned GiB, and replica repairs of the open volumes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{blocking, ApiError, ApiResult, ApiState};
use crate::catalog::{CatalogRead, SnapshotRecord, VolumeRecord};
use tripod_replication::ReplicaHealth;

/// The labels of an answered request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: u16,
}

/// The label of a volume status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// One label naming a replica health.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabel {
    health: &'static str,
}

/// Request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
}

impl Metrics {
    /// Counts one answered request. Methods outside the standard set count as `OTHER`: the
    /// method is the client's choice, and one label per invented method would grow without
    /// bound.
    pub fn count_request(&self, method: &str, status: u16) {
        const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
        let method = KNOWN
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("OTHER");
        self.requests
            .get_or_create(&RequestLabels {
                method,
                code: status,
            })
            .inc();
    }
}

/// A gauge holding `n`.
fn gauge(n: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(n).unwrap_or(i64::MAX));
    g
}

/// A counter holding `n` (a total kept elsewhere, read at scrape time).
fn counter(n: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(n);
    c
}

/// `GET /metrics`: OpenMetrics text. The request counters live across scrapes; the rest is
/// read from the catalog and the open volumes at scrape time.
pub async fn render(State(s): State<Arc<ApiState>>) -> ApiResult<Response> {
    blocking(move || {
        let (volumes, snapshots) = s
            .catalog
            .read(|r| Ok::<_, ApiError>((r.all::<VolumeRecord>()?, r.all::<SnapshotRecord>()?)))?;
        let mut reg = Registry::default();
        reg.register(
            "tripod_api_requests",
            "Admin API requests answered",
            s.metrics.requests.clone(),
        );
        let by_status = Family::<StatusLabel, Gauge>::default();
        for v in &volumes {
            by_status
                .get_or_create(&StatusLabel {
                    status: v.status.as_str(),
                })
                .inc();
        }
        reg.register(
            "tripod_volumes",
            "Volumes in the catalog by status",
            by_status,
        );
        let gib: u64 = volumes.iter().map(|v| v.size).sum();
        reg.register(
            "tripod_volume_provisioned_gigabytes",
            "Sum of volume sizes",
            gauge(gib),
        );
        reg.register(
            "tripod_snapshots",
            "Snapshots in the catalog",
            gauge(snapshots.len() as u64),
        );
        let open = s.backend.registry().open_volumes();
        let repairs: u64 = open.iter().map(|(_, set)| set.repairs()).sum();
        reg.register(
            "tripod_replica_repairs",
            "Bad block copies repaired from a good replica (open volumes)",
            counter(repairs),
        );
        let statuses: Vec<_> = open.iter().map(|(_, set)| set.status()).collect();
        let refusals: u64 = statuses.iter().map(|s| s.space_refusals).sum();
        reg.register(
            "tripod_space_refusals",
            "Writes refused because the replicas' disks were full (open volumes)",
            counter(refusals),
        );
        let full = statuses.iter().filter(|s| s.out_of_space).count();
        reg.register(
            "tripod_volumes_out_of_space",
            "Open volumes whose latest write was refused for lack of space",
            gauge(full as u64),
        );
        let health = Family::<HealthLabel, Gauge>::default();
        for state in ["in_service", "degraded", "resyncing", "rebuilding"] {
            health.get_or_create(&HealthLabel { health: state }).set(0);
        }
        for status in &statuses {
            for (_, r) in status.replicas.iter() {
                let state = match r.health {
                    ReplicaHealth::InService => "in_service",
                    ReplicaHealth::Degraded { .. } => "degraded",
                    ReplicaHealth::Resyncing { .. } => "resyncing",
                    ReplicaHealth::Rebuilding { .. } => "rebuilding",
                };
                health.get_or_create(&HealthLabel { health: state }).inc();
            }
        }
        s.backend.registry().io_metrics().register(&mut reg);
        reg.register(
            "tripod_replicas",
            "Replicas of the open volumes by health (anything but in_service misses writes)",
            health,
        );
        let mut out = String::new();
        encode(&mut out, &reg).map_err(|e| ApiError::internal(format!("metrics: {e}")))?;
        Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::Metrics;

    #[test]
    fn invented_methods_share_one_label() {
        let m = Metrics::default();
        for i in 0..100 {
            m.count_request(&format!("X{i}"), 405);
        }
        m.count_request("GET", 200);
        let mut reg = Registry::default();
        reg.register("r", "requests", m.requests.clone());
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("r_total{")).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            out.contains("r_total{method=\"OTHER\",code=\"405\"} 100"),
            "{out}"
        );
    }
}
