//! One piece of work at a time, in a task of its own, its result shared by
//! every caller that asked while it ran (single flight).
//!
//! Why a task of its own: a caller's future may stop being polled without
//! being dropped (a `select!` branch that lost but is kept for the next
//! round, a stream no one reads while its consumer is busy). Work done
//! *inside* such a future, holding a lock every other caller waits on, would
//! stop with it, and every later caller would wait forever (a futurelock: a
//! worker's Redis connection once stopped this way during a Sentinel
//! failover, and every lease renewal after it timed out). Here the work is
//! the runtime's: it runs to its end whether or not anyone still waits, and
//! a caller only ever waits on a shared result, never on another caller.

use std::{future::Future, sync::Mutex};

use futures::{
    future::{BoxFuture, Shared},
    FutureExt,
};

/// The flight in the air, if any (see the module's documentation).
pub struct Flight<T: Clone> {
    current: Mutex<Option<InAir<T>>>,
}

struct InAir<T: Clone> {
    result: Shared<BoxFuture<'static, T>>,
    /// Whether the work's task ended (its result may not have been polled).
    task: tokio::task::AbortHandle,
}

impl<T: Clone> Default for Flight<T> {
    fn default() -> Self {
        Self {
            current: Mutex::new(None),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flight<T> {
    /// Joins the flight in the air, or starts `work` (spawned on the
    /// runtime) when none is. `lost` is the result when the work's task
    /// panicked or was cancelled by the runtime's shutdown.
    pub fn join<F>(
        &self,
        work: impl FnOnce() -> F,
        lost: fn() -> T,
    ) -> Shared<BoxFuture<'static, T>>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut current = self.current.lock().unwrap();
        if let Some(f) = current.as_ref() {
            if !f.task.is_finished() {
                return f.result.clone();
            }
        }
        let task = tokio::spawn(work());
        let handle = task.abort_handle();
        let result = async move { task.await.unwrap_or_else(|_| lost()) }
            .boxed()
            .shared();
        *current = Some(InAir {
            result: result.clone(),
            task: handle,
        });
        result
    }

    /// Whether a flight is in the air.
    pub fn in_flight(&self) -> bool {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|f| !f.task.is_finished())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };

    #[tokio::test]
    async fn callers_in_the_air_share_one_run() {
        let flight = Flight::<usize>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let r = runs.clone();
        let a = flight.join(
            move || async move {
                let _ = rx.await;
                r.fetch_add(1, Ordering::SeqCst) + 1
            },
            || 0,
        );
        let b = flight.join(|| async { 99 }, || 0);
        assert!(flight.in_flight());
        tx.send(()).unwrap();
        assert_eq!((a.await, b.await), (1, 1));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Landed: the next caller starts a new run.
        assert_eq!(flight.join(|| async { 7 }, || 0).await, 7);
    }

    #[tokio::test]
    async fn the_work_ends_though_no_caller_polls_it() {
        let flight = Flight::<u8>::default();
        let parked = flight.join(|| async { 5 }, || 0);
        // Nobody awaits `parked`: the work runs to its end all the same.
        tokio::time::timeout(Duration::from_secs(5), async {
            while flight.in_flight() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the flight landed with no one waiting for it");
        drop(parked);
    }

    #[tokio::test]
    async fn a_panicking_work_gives_the_lost_result() {
        let flight = Flight::<u8>::default();
        let f = flight.join(|| async { panic!("boom") }, || 42);
        assert_eq!(f.await, 42);
    }
}
