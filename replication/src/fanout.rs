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
    /// Fired when the last answer arrives (for an async waiter).
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// Answers of several replicas to one request.
pub(crate) struct Fanout<T> {
    shared: Arc<Shared<T>>,
    done: tokio::sync::oneshot::Receiver<()>,
    deadline: Instant,
    timeout: Duration,
}

impl<T: Send + 'static> Fanout<T> {
    /// Gathers the answers of `pending`; waiting ends at `timeout` from now.
    pub(crate) fn new(pending: Vec<(ReplicaId, Pending<T>)>, timeout: Duration) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                answers: pending.iter().map(|(id, _)| (*id, None)).collect(),
                remaining: pending.len(),
                done: Some(tx),
            }),
            ready: Condvar::new(),
        });
        if pending.is_empty() {
            if let Some(tx) = shared.state.lock().done.take() {
                let _ = tx.send(());
            }
        }
        for (i, (_, p)) in pending.into_iter().enumerate() {
            let shared = shared.clone();
            p.then(move |answer| {
                let mut s = shared.state.lock();
                if let Some(slot) = s.answers.get_mut(i) {
                    slot.1 = Some(answer);
                }
                s.remaining = s.remaining.saturating_sub(1);
                if s.remaining == 0 {
                    if let Some(tx) = s.done.take() {
                        let _ = tx.send(());
                    }
                    shared.ready.notify_all();
                }
            });
        }
        Self {
            shared,
            done: rx,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }

    /// Blocks until every answer is in or the deadline passes.
    pub(crate) fn wait(self) -> Answers<T> {
        {
            let mut s = self.shared.state.lock();
            while s.remaining > 0 {
                if self
                    .shared
                    .ready
                    .wait_until(&mut s, self.deadline)
                    .timed_out()
                {
                    break;
                }
            }
        }
        self.take()
    }

    /// Waits without blocking a thread until every answer is in or the deadline passes.
    ///
    /// # Cancel safety
    /// Dropping the future drops the answers still to come; the replicas' work goes on.
    pub(crate) async fn wait_async(mut self) -> Answers<T> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let _ = tokio::time::timeout_at(deadline, &mut self.done).await;
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
