//! [`Fanout`]: the answers of several replicas to one request, gathered as they arrive (by
//! the replicas' own threads, through [`Pending::then`]) and waited for under one deadline —
//! by a blocked thread or by an async task, without a thread per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::ReplicaFault;
use crate::ids::ReplicaId;
use crate::replica::Pending;

/// What each replica answered (`Timeout` for those that did not answer in time).
pub(crate) type Answers<T> = Vec<(ReplicaId, Result<T, ReplicaFault>)>;

struct State<T> {
    answers: Vec<(ReplicaId, Option<Result<T, ReplicaFault>>)>,
    remaining: usize,
    /// Successful answers so far.
    ok: usize,
    /// When the `quorum`-th success arrived.
    quorum_at: Option<Instant>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Wakes an async waiter (the last answer, or the quorum, arrived).
    wake: tokio::sync::Notify,
}

/// How long the last replicas get once enough have answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lag {
    /// Successes after which the others are waited for only a little longer.
    pub quorum: usize,
    /// That little longer: at least this, ...
    pub grace: Duration,
    /// ... and at least this many times what the quorum took (a slow disk under load is
    /// slow for every replica; a hung one is slow alone).
    pub factor: u32,
}

/// Answers of several replicas to one request.
pub(crate) struct Fanout<T> {
    shared: Arc<Shared<T>>,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
    lag: Option<Lag>,
}

impl<T: Send + 'static> Fanout<T> {
    /// Gathers the answers of `pending`; waiting ends at `timeout` from now.
    pub(crate) fn new(pending: Vec<(ReplicaId, Pending<T>)>, timeout: Duration) -> Self {
        Self::with_lag(pending, timeout, None)
    }

    /// [`Fanout::new`], but once `lag.quorum` replicas have answered successfully the rest
    /// are waited for only `lag`'s grace more: one hung replica delays a request by seconds,
    /// not by the whole timeout (it then counts as timed out).
    pub(crate) fn with_lag(
        pending: Vec<(ReplicaId, Pending<T>)>,
        timeout: Duration,
        lag: Option<Lag>,
    ) -> Self {
        let quorum = lag.map_or(usize::MAX, |l| l.quorum);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                answers: pending.iter().map(|(id, _)| (*id, None)).collect(),
                remaining: pending.len(),
                ok: 0,
                quorum_at: None,
            }),
            ready: Condvar::new(),
            wake: tokio::sync::Notify::new(),
        });
        for (i, (_, p)) in pending.into_iter().enumerate() {
            let shared = shared.clone();
            p.then(move |answer| {
                let mut s = shared.state.lock();
                let success = answer.is_ok();
                if let Some(slot) = s.answers.get_mut(i) {
                    slot.1 = Some(answer);
                }
                s.remaining = s.remaining.saturating_sub(1);
                if success {
                    s.ok += 1;
                }
                let quorum_now = success && s.ok == quorum && s.quorum_at.is_none();
                if quorum_now {
                    s.quorum_at = Some(Instant::now());
                }
                if s.remaining == 0 || quorum_now {
                    shared.wake.notify_one();
                    shared.ready.notify_all();
                }
            });
        }
        let started = Instant::now();
        Self {
            shared,
            started,
            deadline: started + timeout,
            timeout,
            lag,
        }
    }

    /// When waiting ends given `s`: the deadline, or earlier once the quorum is in.
    fn until(&self, s: &State<T>) -> Instant {
        match (self.lag, s.quorum_at) {
            (Some(lag), Some(at)) => {
                let took = at.saturating_duration_since(self.started);
                let grace = lag.grace.max(took.saturating_mul(lag.factor));
                self.deadline.min(at + grace)
            }
            _ => self.deadline,
        }
    }

    /// Blocks until every answer is in or waiting ends.
    pub(crate) fn wait(self) -> Answers<T> {
        {
            let mut s = self.shared.state.lock();
            while s.remaining > 0 {
                let until = self.until(&s);
                if Instant::now() >= until {
                    break;
                }
                // Woken early when the quorum arrives: `until` moves closer.
                let _ = self.shared.ready.wait_until(&mut s, until);
            }
        }
        self.take()
    }

    /// Waits without blocking a thread until every answer is in or waiting ends.
    ///
    /// # Cancel safety
    /// Dropping the future drops the answers still to come; the replicas' work goes on.
    pub(crate) async fn wait_async(self) -> Answers<T> {
        loop {
            let until = {
                let s = self.shared.state.lock();
                if s.remaining == 0 {
                    break;
                }
                self.until(&s)
            };
            if Instant::now() >= until {
                break;
            }
            let until = tokio::time::Instant::from_std(until);
            let _ = tokio::time::timeout_at(until, self.shared.wake.notified()).await;
        }
        self.take()
    }

    fn take(self) -> Answers<T> {
        let timeout = self.timeout;
        let mut s = self.shared.state.lock();
        std::mem::take(&mut s.answers)
            .into_iter()
            .map(|(id, a)| (id, a.unwrap_or(Err(ReplicaFault::Timeout(timeout)))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: [ReplicaId; 3] = ReplicaId::ALL;

    #[test]
    fn answers_arrive_in_any_order_and_silence_times_out_under_one_deadline() {
        let (a, pa) = Pending::new();
        let (b, pb) = Pending::new();
        let (_c, pc) = Pending::<u32>::new();
        let f = Fanout::new(
            vec![(R[0], pa), (R[1], pb), (R[2], pc)],
            Duration::from_millis(50),
        );
        b.complete(Ok(2));
        a.complete(Ok(1));
        let began = Instant::now();
        let got = f.wait();
        assert!(began.elapsed() < Duration::from_secs(5));
        assert!(matches!(got[0], (id, Ok(1)) if id == R[0]));
        assert!(matches!(got[1], (id, Ok(2)) if id == R[1]));
        assert!(matches!(got[2], (id, Err(ReplicaFault::Timeout(_))) if id == R[2]));
    }

    #[test]
    fn once_a_quorum_answered_the_rest_get_only_the_lag() {
        let lag = Some(Lag {
            quorum: 2,
            grace: Duration::from_millis(30),
            factor: 4,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for blocking in [true, false] {
            let (a, pa) = Pending::new();
            let (b, pb) = Pending::new();
            let (_c, pc) = Pending::<u32>::new();
            let pending = vec![(R[0], pa), (R[1], pb), (R[2], pc)];
            let f = Fanout::with_lag(pending, Duration::from_secs(600), lag);
            a.complete(Ok(1));
            b.complete(Ok(2));
            let got = if blocking {
                f.wait()
            } else {
                rt.block_on(f.wait_async())
            };
            assert!(matches!(got[2], (_, Err(ReplicaFault::Timeout(_)))));
            assert!(got[0].1.is_ok() && got[1].1.is_ok());
        }
        // Failures do not count towards the quorum: the deadline holds.
        let (a, pa) = Pending::<u32>::new();
        let (_b, pb) = Pending::<u32>::new();
        let f = Fanout::with_lag(vec![(R[0], pa), (R[1], pb)], Duration::from_millis(50), lag);
        a.complete(Err(ReplicaFault::Disconnected));
        let began = Instant::now();
        let got = f.wait();
        assert!(began.elapsed() >= Duration::from_millis(40));
        assert!(matches!(got[1], (_, Err(ReplicaFault::Timeout(_)))));
    }

    #[test]
    fn an_async_waiter_wakes_when_the_last_answer_arrives() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (a, pa) = Pending::new();
        let (b, pb) = Pending::new();
        let f = Fanout::new(vec![(R[0], pa), (R[1], pb)], Duration::from_secs(30));
        let t = std::thread::spawn(move || {
            a.complete(Ok(()));
            b.complete(Err(ReplicaFault::Disconnected));
        });
        let got = rt.block_on(f.wait_async());
        t.join().unwrap();
        assert!(got[0].1.is_ok());
        assert!(matches!(got[1].1, Err(ReplicaFault::Disconnected)));
    }
}
