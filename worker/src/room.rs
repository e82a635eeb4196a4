//! This worker's room: `--concurrency` permits, and every job it runs holds
//! one from its delivery to its end, however the job came (the intake's apalis
//! worker or the affinity claimer). So the two intakes together never run more
//! than `--concurrency` jobs at once.
//!
//! The intake asks for room before it fetches ([`RoomLayer`]: its service is
//! ready only while a permit is free) and takes the permit when a delivery
//! arrives; the affinity claimer takes permits first and claims no more jobs
//! than it got.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use agentq_shared::store::Delivery;
use apalis::prelude::{Layer, Service};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::context::WorkerCtx;

/// The permits of one worker.
#[derive(Debug)]
pub struct Room {
    permits: Arc<Semaphore>,
}

/// A job's place in the room: given back when dropped.
#[derive(Debug)]
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

impl Room {
    /// `concurrency` places.
    pub fn new(concurrency: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency as usize)),
        }
    }

    /// Up to `most` places, those free now; never waits.
    pub fn take_free(&self, most: usize) -> Vec<Place> {
        std::iter::from_fn(|| self.permits.clone().try_acquire_owned().ok())
            .take(most)
            .map(|permit| Place { _permit: permit })
            .collect()
    }

    /// One place, waiting for it if none is free.
    pub async fn take(&self) -> Place {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the room's semaphore is never closed");
        Place { _permit: permit }
    }

    /// A layer that keeps a service unready while no place is free.
    pub fn layer(&self) -> RoomLayer {
        RoomLayer {
            permits: self.permits.clone(),
        }
    }
}

/// Runs `delivery` on its own task, which holds `place` until the job ends.
/// The task outlives whoever awaits the handle (apalis may drop its handler
/// when Redis fails under it): the job keeps its place while it runs.
/// The task is one of the worker's jobs ([`WorkerCtx::jobs`]): `main` waits
/// for it at shutdown.
pub fn run(ctx: Arc<WorkerCtx>, delivery: Delivery, place: Place) -> tokio::task::JoinHandle<()> {
    ctx.jobs.clone().spawn(async move {
        crate::job::process(ctx, delivery).await;
        drop(place);
    })
}

/// See [`Room::layer`].
#[derive(Debug, Clone)]
pub struct RoomLayer {
    permits: Arc<Semaphore>,
}

impl<S> Layer<S> for RoomLayer {
    type Service = RoomGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoomGate {
            inner,
            permits: self.permits.clone(),
            waiting: None,
        }
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A service ready only while the room has a free place. It takes no place
/// itself: an idle intake holds none, so the affinity claimer can use every
/// place. The handler takes its place when a delivery arrives.
pub struct RoomGate<S> {
    inner: S,
    permits: Arc<Semaphore>,
    /// Waits for a place to be given back, while none is free.
    waiting: Option<Acquire>,
}

impl<S: Clone> Clone for RoomGate<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            permits: self.permits.clone(),
            waiting: None,
        }
    }
}

impl<S, R> Service<R> for RoomGate<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permits.available_permits() == 0 {
            let waiting = self
                .waiting
                .get_or_insert_with(|| Box::pin(self.permits.clone().acquire_owned()));
            match waiting.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // A place came free: give it back at once (the handler takes it).
                Poll::Ready(permit) => drop(permit),
            }
        }
        self.waiting = None;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_taken_are_not_free_until_given_back() {
        let room = Room::new(2);
        let taken = room.take_free(5);
        assert_eq!(taken.len(), 2);
        assert_eq!(room.permits.available_permits(), 0);
        assert!(room.take_free(1).is_empty());
        drop(taken);
        assert_eq!(room.permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn the_gate_is_ready_only_while_a_place_is_free() {
        let room = Room::new(1);
        let mut gate = room.layer().layer(tower_ready());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut ready = |gate: &mut RoomGate<_>| Service::<()>::poll_ready(gate, &mut cx);
        assert!(ready(&mut gate).is_ready());
        assert_eq!(
            room.permits.available_permits(),
            1,
            "a ready gate holds no place"
        );
        let place = room.take().await;
        assert!(ready(&mut gate).is_pending());
        drop(place);
        assert!(ready(&mut gate).is_ready());
        assert_eq!(room.permits.available_permits(), 1);
    }

    /// A service that is always ready.
    fn tower_ready(
    ) -> impl Service<(), Response = (), Error = (), Future = std::future::Ready<Result<(), ()>>>
    {
        struct Ready;
        impl Service<()> for Ready {
            type Response = ();
            type Error = ();
            type Future = std::future::Ready<Result<(), ()>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ()) -> Self::Future {
                std::future::ready(Ok(()))
            }
        }
        Ready
    }
}
