//! The worker's background services: the loops that run for the worker's
//! whole life (registry, sweeper, janitor, housekeeping, waker, write-back,
//! the forge check, the HTTP server, the signal listener).
//!
//! They run under one [`TaskTracker`] and one [`CancellationToken`], owned by
//! `main`. At shutdown `main` stops them once the intake has drained and the
//! jobs have ended, and waits for them, for a bounded time: a service still
//! running then is aborted and named in the log. No service outlives `main`.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::task::AbortHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The running services by spawn number: their names, and how to abort them.
type Live = Arc<Mutex<BTreeMap<u64, (&'static str, AbortHandle)>>>;

/// The worker's background services. Clones share the same services.
#[derive(Debug, Clone, Default)]
pub struct Services {
    tracker: TaskTracker,
    stop: CancellationToken,
    live: Live,
    next: Arc<AtomicU64>,
}

/// How a stop went: the services that did not end in time (and were aborted).
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Names of the services aborted after the time allowed.
    pub aborted: Vec<&'static str>,
}

impl Services {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `service` until it ends or the services stop, whichever comes
    /// first. At the stop, `service` is dropped at the await it waits on.
    pub fn spawn(&self, name: &'static str, service: impl Future<Output = ()> + Send + 'static) {
        self.spawn_loop(name, move |stop| async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = service => {}
            }
        });
    }

    /// Runs the loop `make(stop)` returns. The loop itself watches `stop`
    /// (e.g. with [`tick`]), so a round it has begun is finished. A loop
    /// still running when the time allowed for the stop runs out is aborted.
    pub fn spawn_loop<F, Fut>(&self, name: &'static str, make: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let gone = Gone {
            id,
            name,
            live: self.live.clone(),
        };
        let service = make(self.stop.clone());
        // The map is locked until the handle is in it, so the task cannot
        // take itself out of it before it is there.
        let mut live = self.live.lock().unwrap();
        let handle = self.tracker.spawn(async move {
            let _gone = gone;
            service.await;
        });
        live.insert(id, (name, handle.abort_handle()));
    }

    /// Whether the stop has begun.
    #[cfg(test)]
    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops every service and waits up to `within` for them to end; aborts
    /// those still running then. Returns when every service has ended.
    pub async fn stop(&self, within: Duration) -> Stopped {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
        {
            return Stopped { aborted: vec![] };
        }
        let late: Vec<(&'static str, AbortHandle)> =
            self.live.lock().unwrap().values().cloned().collect();
        for (_, h) in &late {
            h.abort();
        }
        // An aborted task ends at its next await; blocking work it started
        // goes on in its thread, not in the task.
        self.tracker.wait().await;
        Stopped {
            aborted: late.into_iter().map(|(n, _)| n).collect(),
        }
    }
}

/// Takes a service out of the live map when its task ends, however it ends.
struct Gone {
    id: u64,
    name: &'static str,
    live: Live,
}

impl Drop for Gone {
    fn drop(&mut self) {
        self.live.lock().unwrap().remove(&self.id);
        tracing::debug!(service = self.name, "background task stopped");
    }
}

/// Waits for the next tick of `every`; false once `stop` is cancelled (the
/// loop then ends).
pub async fn tick(every: &mut tokio::time::Interval, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = every.tick() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender that says, by being dropped, that the task holding it ended.
    fn ended() -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        tokio::sync::oneshot::channel()
    }

    #[tokio::test]
    async fn a_stop_ends_every_service_and_leaves_none_running() {
        let services = Services::new();
        let (tx, mut rx) = ended();
        services.spawn("forever", async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        let rounds = Arc::new(AtomicU64::new(0));
        let counted = rounds.clone();
        services.spawn_loop("ticker", move |stop| async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            while tick(&mut every, &stop).await {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(rx.try_recv().is_err(), "the service ended before the stop");
        let stopped = services.stop(Duration::from_secs(10)).await;
        assert_eq!(stopped, Stopped { aborted: vec![] });
        assert!(services.stopping());
        assert!(services.live.lock().unwrap().is_empty());
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
        // The loop does no round after the stop.
        let after = rounds.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rounds.load(Ordering::Relaxed), after);
    }

    #[tokio::test]
    async fn a_loop_that_ignores_the_stop_is_aborted_after_the_time_allowed_and_named() {
        let services = Services::new();
        let (tx, mut rx) = ended();
        services.spawn_loop("deaf", move |_stop| async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        services.spawn_loop("polite", |stop| async move { stop.cancelled().await });
        let stopped = services.stop(Duration::from_millis(100)).await;
        assert_eq!(
            stopped,
            Stopped {
                aborted: vec!["deaf"]
            }
        );
        assert!(services.live.lock().unwrap().is_empty());
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_loop_finishes_the_round_it_began_before_it_stops() {
        let services = Services::new();
        let (began_tx, began) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(AtomicU64::new(0));
        let f = finished.clone();
        services.spawn_loop("round", move |stop| async move {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            let (mut began_tx, mut go) = (Some(began_tx), Some(go));
            while tick(&mut every, &stop).await {
                if let (Some(b), Some(g)) = (began_tx.take(), go.take()) {
                    let _ = b.send(());
                    let _ = g.await;
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        began.await.unwrap();
        let stop = tokio::spawn({
            let services = services.clone();
            async move { services.stop(Duration::from_secs(10)).await }
        });
        // The stop waits for the round.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !services.stopping() {
            assert!(std::time::Instant::now() < deadline, "the stop never began");
            tokio::task::yield_now().await;
        }
        assert_eq!(finished.load(Ordering::Relaxed), 0);
        go_tx.send(()).unwrap();
        assert_eq!(stop.await.unwrap(), Stopped { aborted: vec![] });
        assert_eq!(finished.load(Ordering::Relaxed), 1);
    }
}
