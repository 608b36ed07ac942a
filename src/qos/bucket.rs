//! One token bucket that lends: a request always takes its tokens at once (the level may go
//! below zero) and waits until the bucket has earned back what it owed. That keeps requests in
//! arrival order (each one's debt includes everyone's ahead of it), lets one request larger
//! than the bucket through without special cases, and holds the long-run rate exactly.
//!
//! Time is passed in, never read here, so the arithmetic is tested with a made-up clock.

use std::time::Duration;

/// A token bucket: `rate` tokens a second up to `capacity`; the level may go negative.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    level: f64,
    /// Every token earned since the bucket was made (a request waits for this to reach the
    /// mark it was given, so a rate change applies to requests already waiting).
    earned: f64,
    /// The time `level` and `earned` were brought up to.
    at: Duration,
}

impl Bucket {
    /// A full bucket of `capacity` tokens earning `rate` a second, as of `now`.
    pub fn new(rate: f64, capacity: f64, now: Duration) -> Self {
        Self {
            rate,
            capacity,
            level: capacity,
            earned: 0.0,
            at: now,
        }
    }

    fn advance(&mut self, now: Duration) {
        if now <= self.at {
            return;
        }
        let gained = self.rate * (now - self.at).as_secs_f64();
        self.at = now;
        self.earned += gained;
        self.level = (self.level + gained).min(self.capacity);
    }

    /// Takes `cost` tokens at `now`. `None`: the request may go at once; `Some(mark)`: it
    /// may go once [`Bucket::wait`] for `mark` is zero.
    pub fn take(&mut self, cost: f64, now: Duration) -> Option<f64> {
        self.advance(now);
        self.level -= cost;
        (self.level < 0.0).then_some(self.earned - self.level)
    }

    /// How long from `now` until the bucket has earned up to `mark` at its current rate.
    pub fn wait(&mut self, mark: f64, now: Duration) -> Duration {
        self.advance(now);
        let owed = mark - self.earned;
        if owed.is_nan() || owed <= 0.0 || self.rate.is_nan() || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        // A rate so low that the wait overflows a Duration waits "forever" (the caller
        // rechecks every so often), never panics.
        Duration::try_from_secs_f64(owed / self.rate).unwrap_or(Duration::MAX)
    }

    /// Changes the rate and capacity from `now` on; what was earned until then stays.
    pub fn reshape(&mut self, rate: f64, capacity: f64, now: Duration) {
        self.advance(now);
        self.rate = rate;
        self.capacity = capacity;
        self.level = self.level.min(capacity);
    }

    /// Tokens a second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Equal to within a microsecond (the arithmetic is floating point).
    fn close(got: Duration, want: Duration) {
        let diff = got.abs_diff(want);
        assert!(diff < Duration::from_micros(1), "{got:?} is not {want:?}");
    }

    #[test]
    fn a_full_bucket_lets_its_capacity_through_then_paces_at_the_rate() {
        let mut b = Bucket::new(100.0, 10.0, ms(0));
        for _ in 0..10 {
            assert_eq!(b.take(1.0, ms(0)), None);
        }
        // The 11th owes one token: 10 ms at 100/s.
        let mark = b.take(1.0, ms(0)).unwrap();
        close(b.wait(mark, ms(0)), ms(10));
        close(b.wait(mark, ms(4)), ms(6));
        close(b.wait(mark, ms(10)), Duration::ZERO);
    }

    #[test]
    fn waiting_requests_keep_their_order() {
        let mut b = Bucket::new(10.0, 1.0, ms(0));
        assert_eq!(b.take(1.0, ms(0)), None);
        let first = b.take(1.0, ms(0)).unwrap();
        let second = b.take(1.0, ms(0)).unwrap();
        close(b.wait(first, ms(0)), ms(100));
        close(b.wait(second, ms(0)), ms(200));
    }

    #[test]
    fn a_request_larger_than_the_bucket_passes_and_the_next_pays_for_it() {
        let mut b = Bucket::new(1000.0, 100.0, ms(0));
        assert!(b.take(5000.0, ms(0)).is_some());
        let next = b.take(1.0, ms(0)).unwrap();
        // 4900 owed before the next one's token: 4.901 s at 1000/s.
        close(b.wait(next, ms(0)), Duration::from_micros(4_901_000));
    }

    #[test]
    fn an_idle_bucket_refills_only_to_its_capacity() {
        let mut b = Bucket::new(100.0, 5.0, ms(0));
        for _ in 0..5 {
            b.take(1.0, ms(0));
        }
        // Ten idle seconds earn 1000 tokens, but the bucket holds 5.
        for _ in 0..5 {
            assert_eq!(b.take(1.0, Duration::from_secs(10)), None);
        }
        assert!(b.take(1.0, Duration::from_secs(10)).is_some());
    }

    #[test]
    fn a_new_rate_applies_to_requests_already_waiting() {
        let mut b = Bucket::new(10.0, 1.0, ms(0));
        b.take(1.0, ms(0));
        let mark = b.take(10.0, ms(0)).unwrap();
        close(b.wait(mark, ms(0)), Duration::from_secs(1));
        // Half a second in, the rate goes from 10/s to 100/s: 5 tokens are still owed.
        b.reshape(100.0, 1.0, ms(500));
        close(b.wait(mark, ms(500)), ms(50));
        // And slower: 1/s leaves 5 s for the 5 tokens.
        b.reshape(1.0, 1.0, ms(500));
        close(b.wait(mark, ms(500)), Duration::from_secs(5));
    }

    #[test]
    fn absurd_rates_never_panic() {
        // A valid but tiny limit (1e-300 a second) makes a wait longer than a Duration holds.
        let mut b = Bucket::new(1e-300, 1.0, ms(0));
        b.take(1.0, ms(0));
        let mark = b.take(1.0, ms(0)).unwrap();
        assert_eq!(b.wait(mark, ms(0)), Duration::MAX);
        // An infinite rate times no elapsed time is NaN: no wait, no panic.
        let mut b = Bucket::new(f64::INFINITY, 1.0, ms(0));
        b.take(5.0, ms(0));
        b.reshape(f64::INFINITY, 1.0, ms(0));
        let _ = b.wait(10.0, ms(0));
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let mut b = Bucket::new(10.0, 1.0, ms(100));
        b.take(1.0, ms(100));
        let mark = b.take(1.0, ms(50)).unwrap();
        close(b.wait(mark, ms(0)), ms(100));
    }
}
