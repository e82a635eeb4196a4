//! A spawned task that belongs to whoever holds it: aborted when dropped, so
//! a run that ends any way at all (an outcome, an error, a panic unwinding
//! through it) leaves none of its tasks behind.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::task::{JoinError, JoinHandle};

/// A task aborted on drop; awaiting it waits for its end.
pub(crate) struct Owned<T>(JoinHandle<T>);

impl<T: Send + 'static> Owned<T> {
    /// Spawns `fut` as a task owned by the caller.
    pub(crate) fn spawn(fut: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(fut))
    }
}

impl<T> Future for Owned<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
