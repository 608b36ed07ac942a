//! Per-volume I/O figures (what Cloud Eye shows for a disk): requests and bytes by operation,
//! errors, a latency histogram and the requests in flight, counted where NBD requests reach a
//! volume. The label set is bounded: a volume's series exist while it is open and are
//! dropped when it is closed or deleted.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read.
    Read,
    /// A write.
    Write,
    /// Write zeroes.
    WriteZeroes,
    /// Trim (discard).
    Trim,
    /// Flush (or the sync of a FUA write).
    Flush,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::WriteZeroes => "write_zeroes",
            Op::Trim => "trim",
            Op::Flush => "flush",
        }
    }

    const ALL: [Op; 5] = [Op::Read, Op::Write, Op::WriteZeroes, Op::Trim, Op::Flush];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeOp {
    volume: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabel {
    volume: String,
}

/// Latency buckets: 50 µs doubling to about 3.3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 17))
}

/// The I/O figures of every open volume.
pub struct IoMetrics {
    requests: Family<VolumeOp, Counter>,
    errors: Family<VolumeOp, Counter>,
    bytes: Family<VolumeOp, Counter>,
    latency: Family<VolumeOp, Histogram, fn() -> Histogram>,
    in_flight: Family<VolumeLabel, Gauge>,
    throttled_seconds: Family<VolumeLabel, Counter<f64, AtomicU64>>,
    throttled_requests: Family<VolumeLabel, Counter>,
}

impl Default for IoMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            errors: Family::default(),
            bytes: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            throttled_seconds: Family::default(),
            throttled_requests: Family::default(),
        }
    }
}

impl IoMetrics {
    /// The handles of `volume`'s series (created if new), so that counting a request
    /// touches only atomics: no label hashing or allocation per request.
    pub fn volume(&self, volume: &str) -> VolumeIo {
        let per_op = Op::ALL.map(|op| {
            let labels = VolumeOp {
                volume: volume.to_owned(),
                op: op.label(),
            };
            OpSeries {
                requests: self.requests.get_or_create(&labels).clone(),
                errors: self.errors.get_or_create(&labels).clone(),
                bytes: self.bytes.get_or_create(&labels).clone(),
                latency: self.latency.get_or_create(&labels).clone(),
            }
        });
        let label = VolumeLabel {
            volume: volume.to_owned(),
        };
        VolumeIo {
            per_op: Arc::new(per_op),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            throttled_seconds: self.throttled_seconds.get_or_create(&label).clone(),
            throttled_requests: self.throttled_requests.get_or_create(&label).clone(),
        }
    }

    /// Drops every series of `volume` (closed or deleted).
    pub fn forget(&self, volume: &str) {
        for op in Op::ALL {
            let labels = VolumeOp {
                volume: volume.to_owned(),
                op: op.label(),
            };
            self.requests.remove(&labels);
            self.errors.remove(&labels);
            self.bytes.remove(&labels);
            self.latency.remove(&labels);
        }
        let label = VolumeLabel {
            volume: volume.to_owned(),
        };
        self.in_flight.remove(&label);
        self.throttled_seconds.remove(&label);
        self.throttled_requests.remove(&label);
    }

    /// Adds the families to `reg`.
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "tripod_volume_requests",
            "Requests a volume completed, by operation",
            self.requests.clone(),
        );
        reg.register(
            "tripod_volume_errors",
            "Requests a volume answered with an error, by operation",
            self.errors.clone(),
        );
        reg.register(
            "tripod_volume_bytes",
            "Bytes a volume read or wrote (zeroed and trimmed bytes too), by operation",
            self.bytes.clone(),
        );
        reg.register(
            "tripod_volume_request_seconds",
            "Time from a request reaching the volume to its answer, by operation",
            self.latency.clone(),
        );
        reg.register(
            "tripod_volume_in_flight",
            "Requests a volume is working on now (its queue depth)",
            self.in_flight.clone(),
        );
        reg.register(
            "tripod_volume_throttled_seconds",
            "Time requests to a volume waited for its QoS limits (summed over requests)",
            self.throttled_seconds.clone(),
        );
        reg.register(
            "tripod_volume_throttled_requests",
            "Requests to a volume that waited for its QoS limits",
            self.throttled_requests.clone(),
        );
    }
}

/// One operation's series of one volume.
#[derive(Clone)]
struct OpSeries {
    requests: Counter,
    errors: Counter,
    bytes: Counter,
    latency: Histogram,
}

/// The series of one volume, ready to count its requests.
#[derive(Clone)]
pub struct VolumeIo {
    per_op: Arc<[OpSeries; 5]>,
    in_flight: Gauge,
    throttled_seconds: Counter<f64, AtomicU64>,
    throttled_requests: Counter,
}

impl VolumeIo {
    fn series(&self, op: Op) -> &OpSeries {
        // In the order of `Op::ALL`.
        let [read, write, zeroes, trim, flush] = &*self.per_op;
        match op {
            Op::Read => read,
            Op::Write => write,
            Op::WriteZeroes => zeroes,
            Op::Trim => trim,
            Op::Flush => flush,
        }
    }

    /// Notes that a request waited `waited` for the volume's QoS limits.
    pub fn throttled(&self, waited: Duration) {
        if !waited.is_zero() {
            self.throttled_seconds.inc_by(waited.as_secs_f64());
            self.throttled_requests.inc();
        }
    }

    /// Notes a request starting; the returned guard records it when done.
    pub fn start(&self, op: Op, bytes: u64) -> InFlight {
        self.in_flight.inc();
        InFlight {
            io: self.clone(),
            op,
            bytes,
            started: Instant::now(),
        }
    }
}

/// A request in progress; [`InFlight::done`] records how it ended.
pub struct InFlight {
    io: VolumeIo,
    op: Op,
    bytes: u64,
    started: Instant,
}

impl InFlight {
    /// Records the request as answered (`ok` or an error).
    pub fn done(self, ok: bool) {
        let s = self.io.series(self.op);
        s.requests.inc();
        if ok {
            s.bytes.inc_by(self.bytes);
        } else {
            s.errors.inc();
        }
        s.latency.observe(self.started.elapsed().as_secs_f64());
        self.io.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn text(m: &IoMetrics) -> String {
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        out
    }

    #[test]
    fn requests_bytes_errors_and_in_flight_per_volume() {
        let m = IoMetrics::default();
        let v1 = m.volume("v1");
        let a = v1.start(Op::Write, 4096);
        let b = v1.start(Op::Read, 512);
        assert!(text(&m).contains("tripod_volume_in_flight{volume=\"v1\"} 2"));
        a.done(true);
        b.done(false);
        m.volume("v2").start(Op::Write, 100).done(true);
        let t = text(&m);
        assert!(
            t.contains("tripod_volume_requests_total{volume=\"v1\",op=\"write\"} 1"),
            "{t}"
        );
        assert!(t.contains("tripod_volume_bytes_total{volume=\"v1\",op=\"write\"} 4096"));
        assert!(t.contains("tripod_volume_errors_total{volume=\"v1\",op=\"read\"} 1"));
        assert!(!t.contains("tripod_volume_bytes_total{volume=\"v1\",op=\"read\"} 512"));
        assert!(t.contains("tripod_volume_request_seconds_count{volume=\"v1\",op=\"write\"} 1"));
        assert!(t.contains("tripod_volume_in_flight{volume=\"v1\"} 0"));
        v1.throttled(Duration::ZERO);
        v1.throttled(Duration::from_millis(1500));
        let t = text(&m);
        assert!(
            t.contains("tripod_volume_throttled_seconds_total{volume=\"v1\"} 1.5"),
            "{t}"
        );
        assert!(t.contains("tripod_volume_throttled_requests_total{volume=\"v1\"} 1"));
        m.forget("v1");
        let t = text(&m);
        assert!(!t.contains("volume=\"v1\""), "{t}");
        assert!(t.contains("volume=\"v2\""));
    }
}
