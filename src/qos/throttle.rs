//! A volume's throttle: the buckets its limits make, shared by every connection to the
//! volume, through which each request passes before it reaches the replica set. A request
//! over the limits waits (asynchronously: no thread is held) and is never refused; requests
//! wait in arrival order; a change of limits (extend, retype, a new spec) reaches requests
//! already waiting at their next check, at most [`RECHECK`] later.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;

use super::bucket::Bucket;
use super::spec::{Limits, Rate, Scope, Unit};

/// Longest a waiting request sleeps before it looks at the limits again.
pub const RECHECK: Duration = Duration::from_millis(250);
/// The shortest burst a bucket holds, in seconds of its rate, so a queue of requests is not
/// spaced out one by one at low rates.
const MIN_WINDOW: f64 = 0.1;

/// Which way a request moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A read.
    Read,
    /// A write, zeroing or trim.
    Write,
}

/// Where a bucket sits: its scope, unit and whether it is the peak (burst-rate) one.
type SlotKey = (Scope, Unit, bool);

/// A bucket and the serial of its making, so a request waiting on a bucket that was removed
/// and made anew does not wait on the new one's count.
#[derive(Debug)]
struct Slot {
    bucket: Bucket,
    serial: u64,
}

#[derive(Debug, Default)]
struct State {
    limits: Limits,
    slots: BTreeMap<SlotKey, Slot>,
    iops_size: Option<u64>,
    serial: u64,
}

/// The (rate, capacity) of the bucket one rate makes: the sustained one or, for a burst,
/// the peak one.
fn shape(rate: Rate, peak: bool) -> Option<(f64, f64)> {
    if peak {
        return rate.burst.map(|b| (b, b * MIN_WINDOW));
    }
    let capacity = match rate.burst {
        Some(b) => ((b - rate.per_sec) * rate.burst_secs).max(rate.per_sec * MIN_WINDOW),
        None => rate.per_sec * MIN_WINDOW,
    };
    Some((rate.per_sec, capacity))
}

/// Where a request stands in the buckets it took from.
#[derive(Debug, Default)]
pub struct Ticket {
    marks: Vec<(SlotKey, u64, f64)>,
}

/// One volume's throttle.
#[derive(Debug)]
pub struct Throttle {
    limited: AtomicBool,
    state: Mutex<State>,
    epoch: Instant,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            limited: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            epoch: Instant::now(),
        }
    }
}

impl Throttle {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Applies `limits` from now on (also to requests already waiting).
    pub fn set_limits(&self, limits: &Limits) {
        self.set_limits_at(limits, self.now());
    }

    /// [`Throttle::set_limits`] at time `now` (since the throttle was made).
    pub fn set_limits_at(&self, limits: &Limits, now: Duration) {
        let mut st = self.state.lock();
        st.limits = limits.clone();
        st.iops_size = limits.iops_size;
        for scope in Scope::ALL {
            for unit in Unit::ALL {
                for peak in [false, true] {
                    let key = (scope, unit, peak);
                    let wanted = limits.rate(scope, unit).and_then(|r| shape(r, peak));
                    match (wanted, st.slots.get_mut(&key)) {
                        (Some((rate, cap)), Some(s)) => s.bucket.reshape(rate, cap, now),
                        (Some((rate, cap)), None) => {
                            st.serial += 1;
                            let serial = st.serial;
                            st.slots.insert(
                                key,
                                Slot {
                                    bucket: Bucket::new(rate, cap, now),
                                    serial,
                                },
                            );
                        }
                        (None, _) => {
                            st.slots.remove(&key);
                        }
                    }
                }
            }
        }
        self.limited.store(!st.slots.is_empty(), Ordering::Release);
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.state.lock().limits.clone()
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.limited.load(Ordering::Acquire)
    }

    /// Takes what a request of `bytes` moving `dir` costs, at `now`. `data`: whether the
    /// request moves its bytes (zeroing and trims count as one I/O and no bytes).
    pub fn reserve_at(&self, dir: Direction, bytes: u64, data: bool, now: Duration) -> Ticket {
        let mut ticket = Ticket::default();
        if !self.is_limited() {
            return ticket;
        }
        let mut st = self.state.lock();
        let ios = match (st.iops_size, data) {
            (Some(size), true) if bytes > size => bytes as f64 / size as f64,
            _ => 1.0,
        };
        let byte_cost = if data { bytes as f64 } else { 0.0 };
        let scope = match dir {
            Direction::Read => Scope::Read,
            Direction::Write => Scope::Write,
        };
        for s in [Scope::Total, scope] {
            for (unit, cost) in [(Unit::Iops, ios), (Unit::Bytes, byte_cost)] {
                if cost <= 0.0 {
                    continue;
                }
                for peak in [false, true] {
                    let key = (s, unit, peak);
                    if let Some(slot) = st.slots.get_mut(&key) {
                        if let Some(mark) = slot.bucket.take(cost, now) {
                            ticket.marks.push((key, slot.serial, mark));
                        }
                    }
                }
            }
        }
        ticket
    }

    /// How long from `now` the request holding `ticket` still has to wait.
    pub fn wait_at(&self, ticket: &Ticket, now: Duration) -> Duration {
        if ticket.marks.is_empty() {
            return Duration::ZERO;
        }
        let mut st = self.state.lock();
        let mut wait = Duration::ZERO;
        for &(key, serial, mark) in &ticket.marks {
            if let Some(slot) = st.slots.get_mut(&key).filter(|s| s.serial == serial) {
                wait = wait.max(slot.bucket.wait(mark, now));
            }
        }
        wait
    }

    /// Lets a request through once the limits allow it; returns how long it waited.
    pub async fn admit(&self, dir: Direction, bytes: u64, data: bool) -> Duration {
        let start = self.now();
        let ticket = self.reserve_at(dir, bytes, data, start);
        loop {
            let wait = self.wait_at(&ticket, self.now());
            if wait.is_zero() {
                return self.now().saturating_sub(start);
            }
            tokio::time::sleep(wait.min(RECHECK)).await;
        }
    }

    /// [`Throttle::admit`] for a caller on a thread of its own (it sleeps).
    pub fn admit_blocking(&self, dir: Direction, bytes: u64, data: bool) -> Duration {
        let start = self.now();
        let ticket = self.reserve_at(dir, bytes, data, start);
        loop {
            let wait = self.wait_at(&ticket, self.now());
            if wait.is_zero() {
                return self.now().saturating_sub(start);
            }
            std::thread::sleep(wait.min(RECHECK));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn limits(scope: Scope, unit: Unit, per_sec: f64, burst: Option<f64>) -> Limits {
        let mut l = Limits::default();
        l.set(
            scope,
            unit,
            Some(Rate {
                per_sec,
                burst,
                burst_secs: 2.0,
            }),
        );
        l
    }

    /// Runs `n` back-to-back requests from `start` on a made-up clock, each issued the
    /// moment the one before it may go; returns when the last may go.
    fn drive(t: &Throttle, n: usize, dir: Direction, bytes: u64, start: Duration) -> Duration {
        let mut now = start;
        for _ in 0..n {
            let ticket = t.reserve_at(dir, bytes, true, now);
            now += t.wait_at(&ticket, now);
        }
        now
    }

    #[test]
    fn without_limits_nothing_waits() {
        let t = Throttle::default();
        assert!(!t.is_limited());
        assert_eq!(
            drive(&t, 10_000, Direction::Write, 1 << 20, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn an_iops_limit_holds_over_a_long_run() {
        let t = Throttle::default();
        t.set_limits_at(
            &limits(Scope::Total, Unit::Iops, 1000.0, None),
            Duration::ZERO,
        );
        // 10,100 requests: 100 ride the 0.1 s bucket, 10,000 take 10 s.
        let end = drive(&t, 10_100, Direction::Read, 4096, Duration::ZERO);
        assert!((end.as_secs_f64() - 10.0).abs() < 0.01, "{end:?}");
    }

    #[test]
    fn a_burst_runs_at_the_burst_rate_until_the_credit_is_spent() {
        let t = Throttle::default();
        // 100/s sustained, 1000/s burst for 2 s: the credit is (1000 - 100) x 2 = 1800.
        t.set_limits_at(
            &limits(Scope::Total, Unit::Iops, 100.0, Some(1000.0)),
            Duration::ZERO,
        );
        // The first 1,000 requests ride the burst: about one second at 1000/s.
        let t1 = drive(&t, 1000, Direction::Write, 4096, Duration::ZERO);
        assert!(t1.as_secs_f64() < 1.0, "{t1:?}");
        // The credit is gone after about 2 s; from then on 100/s.
        let t2 = drive(&t, 2000, Direction::Write, 4096, t1);
        let t3 = drive(&t, 500, Direction::Write, 4096, t2);
        assert!(
            ((t3 - t2).as_secs_f64() - 5.0).abs() < 0.05,
            "{:?}",
            t3 - t2
        );
    }

    #[test]
    fn large_requests_count_in_proportion_and_bytes_are_limited() {
        let t = Throttle::default();
        let mut l = limits(Scope::Total, Unit::Iops, 100.0, None);
        l.iops_size = Some(64 << 10);
        t.set_limits_at(&l, Duration::ZERO);
        // 1 MiB counts as 16 I/Os: 100 of them need 16 s at 100 IOPS (less the bucket).
        let end = drive(&t, 100, Direction::Read, 1 << 20, Duration::ZERO);
        assert!((end.as_secs_f64() - 15.9).abs() < 0.05, "{end:?}");

        let t = Throttle::default();
        t.set_limits_at(
            &limits(Scope::Write, Unit::Bytes, f64::from(10u32 << 20), None),
            Duration::ZERO,
        );
        // 100 MiB of writes at 10 MiB/s: 10 s (less the 0.1 s bucket)...
        let end = drive(&t, 100, Direction::Write, 1 << 20, Duration::ZERO);
        assert!((end.as_secs_f64() - 9.9).abs() < 0.05, "{end:?}");
        // ...while reads are not limited at all, and zeroing moves no bytes.
        assert_eq!(drive(&t, 1000, Direction::Read, 1 << 20, end), end);
        let z = t.reserve_at(Direction::Write, 1 << 30, false, end);
        assert_eq!(t.wait_at(&z, end), Duration::ZERO);
    }

    #[test]
    fn new_limits_reach_requests_already_waiting() {
        let t = Throttle::default();
        t.set_limits_at(
            &limits(Scope::Total, Unit::Iops, 10.0, None),
            Duration::ZERO,
        );
        let mut tickets: Vec<Ticket> = (0..21)
            .map(|_| t.reserve_at(Direction::Read, 4096, true, Duration::ZERO))
            .collect();
        let last = tickets.pop().unwrap();
        // One rides the bucket; twenty owe two seconds at 10/s.
        let w = t.wait_at(&last, Duration::ZERO);
        assert!((w.as_secs_f64() - 2.0).abs() < 1e-6, "{w:?}");
        // Raised to 1000/s after half a second: the 15 still owed take 15 ms.
        let half = Duration::from_millis(500);
        t.set_limits_at(&limits(Scope::Total, Unit::Iops, 1000.0, None), half);
        let w = t.wait_at(&last, half);
        assert!((w.as_secs_f64() - 0.015).abs() < 1e-6, "{w:?}");
        // Limits removed: nobody waits.
        t.set_limits_at(&Limits::default(), half);
        assert!(!t.is_limited());
        assert_eq!(t.wait_at(&last, half), Duration::ZERO);
        // And limits set anew do not hold the old tickets to the new bucket's count.
        t.set_limits_at(&limits(Scope::Total, Unit::Iops, 1.0, None), half);
        assert_eq!(t.wait_at(&last, half), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn admit_waits_without_a_thread_and_reports_the_wait() {
        let t = std::sync::Arc::new(Throttle::default());
        t.set_limits(&limits(Scope::Total, Unit::Iops, 10.0, None));
        let first = t.admit(Direction::Read, 4096, true).await;
        assert_eq!(first, Duration::ZERO);
        let waited = t.admit(Direction::Read, 4096, true).await;
        // The paused clock advances only by the sleeps: about 0.1 s.
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
    }
}
