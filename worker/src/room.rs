//! This worker's room: `--concurrency` permits, and every job it runs holds
//! one from its delivery to its end, however the job came (the intake's apalis
//! worker or the affinity claimer). So the two intakes together never run more
//! than `--concurrency` jobs at once.
//!
//! The intake asks for room before it fetches ([`RoomLayer`]: its service
//! turns ready only while a permit is free) and takes the permit when a
//! delivery arrives; the affinity claimer takes permits first and claims no
//! more jobs than it got. The two race: the claimer can take the last place
//! between the intake's readiness and its fetch. So the intake waits for a
//! place only [`ROOM_WAIT`] ([`Room::take_within`]) and then hands the
//! delivery back (reason `no_room`) for a worker that has room, rather than
//! sit on it for as long as the claimer's job runs.
//!
//! The gate waits for a place to come free on a [`Notify`], never in the
//! semaphore's queue: a parked acquire would be handed the freed permit and
//! hold it, unpolled, while the claimer and the handlers find the room full
//! (a futurelock).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use agentq_shared::store::Delivery;
use apalis::prelude::{Layer, Service};
use tokio::sync::{futures::OwnedNotified, Notify, OwnedSemaphorePermit, Semaphore};

use crate::context::WorkerCtx;

/// How long a delivery the intake fetched waits for a place (the affinity
/// claimer took the last one since the intake turned ready) before it is
/// handed back.
pub const ROOM_WAIT: Duration = Duration::from_secs(5);

/// The permits of one worker.
#[derive(Debug)]
pub struct Room {
    permits: Arc<Semaphore>,
    /// Notified each time a place is given back.
    freed: Arc<Notify>,
}

/// A job's place in the room: given back when dropped.
#[derive(Debug)]
pub struct Place {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Place {
    fn drop(&mut self) {
        // The permit first, then the news: a gate woken by it finds it free.
        drop(self.permit.take());
        self.freed.notify_waiters();
    }
}

impl Room {
    /// `concurrency` places.
    pub fn new(concurrency: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency as usize)),
            freed: Arc::new(Notify::new()),
        }
    }

    fn place(&self, permit: OwnedSemaphorePermit) -> Place {
        Place {
            permit: Some(permit),
            freed: self.freed.clone(),
        }
    }

    /// Up to `most` places, those free now; never waits.
    pub fn take_free(&self, most: usize) -> Vec<Place> {
        std::iter::from_fn(|| self.permits.clone().try_acquire_owned().ok())
            .take(most)
            .map(|permit| self.place(permit))
            .collect()
    }

    /// One place, waiting at most `wait` for one to come free; `None` if none
    /// did.
    pub async fn take_within(&self, wait: Duration) -> Option<Place> {
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .expect("the room's semaphore is never closed");
        Some(self.place(permit))
    }

    /// A layer that keeps a service unready while no place is free.
    pub fn layer(&self) -> RoomLayer {
        RoomLayer {
            permits: self.permits.clone(),
            freed: self.freed.clone(),
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
    freed: Arc<Notify>,
}

impl<S> Layer<S> for RoomLayer {
    type Service = RoomGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoomGate {
            inner,
            permits: self.permits.clone(),
            freed: self.freed.clone(),
            waiting: None,
            ready: false,
        }
    }
}

/// A service that turns ready only while the room has a free place. It takes
/// no place itself: an idle intake holds none, so the affinity claimer can use
/// every place. The handler takes its place when a delivery arrives.
///
/// Once ready it stays ready until its next call (tower's contract): apalis
/// may have fetched a delivery by then, and a gate that closed under it would
/// keep that delivery from every worker until a place came free. The handler
/// hands it back instead ([`Room::take_within`]).
pub struct RoomGate<S> {
    inner: S,
    permits: Arc<Semaphore>,
    freed: Arc<Notify>,
    /// Waits for a place to be given back, while none is free. Holds no
    /// permit and queues for none.
    waiting: Option<Pin<Box<OwnedNotified>>>,
    /// Said ready since the last call.
    ready: bool,
}

impl<S: Clone> Clone for RoomGate<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            permits: self.permits.clone(),
            freed: self.freed.clone(),
            waiting: None,
            ready: false,
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
        while !self.ready {
            if self.permits.available_permits() > 0 {
                self.waiting = None;
                self.ready = true;
                break;
            }
            match &mut self.waiting {
                None => {
                    // Registered before the room is looked at again, so a
                    // place given back in between is not missed.
                    let mut freed = Box::pin(self.freed.clone().notified_owned());
                    freed.as_mut().enable();
                    self.waiting = Some(freed);
                }
                Some(freed) => match freed.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.waiting = None,
                },
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.ready = false;
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

    fn poll_ready<S: Service<()>>(gate: &mut RoomGate<S>) -> Poll<Result<(), S::Error>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        gate.poll_ready(&mut cx)
    }

    #[tokio::test]
    async fn the_gate_turns_ready_only_while_a_place_is_free() {
        let room = Room::new(1);
        let mut gate = room.layer().layer(tower_ready());
        assert!(poll_ready(&mut gate).is_ready());
        assert_eq!(
            room.permits.available_permits(),
            1,
            "a ready gate holds no place"
        );
        gate.call(()).await.unwrap();
        let place = room.take_free(1).pop().unwrap();
        assert!(poll_ready(&mut gate).is_pending());
        drop(place);
        assert!(poll_ready(&mut gate).is_ready());
        assert_eq!(room.permits.available_permits(), 1);
    }

    /// The race: the claimer takes the last place between the gate's
    /// readiness and the call (apalis fetched meanwhile). The gate does not
    /// close under the fetched delivery, and the handler, finding no place
    /// within the wait, gets none (it hands the delivery back).
    #[tokio::test]
    async fn a_delivery_fetched_after_the_claimer_took_the_last_place_gets_none() {
        let room = Room::new(1);
        let mut gate = room.layer().layer(tower_ready());
        assert!(poll_ready(&mut gate).is_ready());
        let claimed = room.take_free(usize::MAX);
        assert_eq!(claimed.len(), 1);
        assert!(
            poll_ready(&mut gate).is_ready(),
            "a ready gate stays ready until its call"
        );
        gate.call(()).await.unwrap();
        assert!(room.take_within(Duration::from_millis(50)).await.is_none());
        assert!(poll_ready(&mut gate).is_pending(), "closed after the call");
        drop(claimed);
        assert!(room.take_within(ROOM_WAIT).await.is_some());
    }

    /// A gate waiting for a place holds none and queues for none: a place
    /// given back while the gate is not polled is free for the claimer.
    #[tokio::test]
    async fn a_waiting_gate_left_unpolled_keeps_no_place_from_the_claimer() {
        let room = Room::new(1);
        let mut gate = room.layer().layer(tower_ready());
        let place = room.take_free(1).pop().unwrap();
        assert!(poll_ready(&mut gate).is_pending());
        drop(place);
        assert_eq!(
            room.take_free(1).len(),
            1,
            "the freed place is free, not parked in the gate"
        );
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
