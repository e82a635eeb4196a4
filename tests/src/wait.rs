//! Polling until something holds, with a deadline: the tests wait for events
//! this way, never with a bare sleep.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use crate::TestEnv;

/// How often [`poll_until`] looks again.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// What one look of [`poll_until`] saw: ready (with a value), or not yet (with
/// what it saw instead, for the failure message).
pub trait Observation {
    /// The value when ready.
    type Ready;
    /// The value, or a description of what was seen instead.
    fn ready(self) -> Result<Self::Ready, String>;
}

/// `Some(v)` is ready; `None` is not yet, with nothing more to say.
impl<T> Observation for Option<T> {
    type Ready = T;
    fn ready(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_string())
    }
}

/// `Ok(v)` is ready; `Err(seen)` is not yet, and `seen` is what was observed.
impl<T, E: Debug> Observation for Result<T, E> {
    type Ready = T;
    fn ready(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Looks with `probe` every [`POLL_EVERY`] until it is ready, and returns its
/// value. Fails the test after `timeout`, naming `what` and the last
/// observation.
///
/// `probe` returns an `Option<T>` (`None`: not yet) or a `Result<T, E>`
/// (`Err(seen)`: not yet, and `seen` shows in the failure message).
///
/// ```ignore
/// let rec = poll_until("the job to run", LONG, async || {
///     store.get(&id).await.unwrap().filter(|r| r.state == JobState::Running)
/// })
/// .await;
/// ```
pub async fn poll_until<O: Observation>(
    what: &str,
    timeout: Duration,
    probe: impl AsyncFnMut() -> O,
) -> O::Ready {
    poll_then_explain(what, timeout, probe, String::new).await
}

impl TestEnv {
    /// [`poll_until`], with the tail of every worker log in the failure
    /// message.
    pub async fn poll_until<O: Observation>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl AsyncFnMut() -> O,
    ) -> O::Ready {
        poll_then_explain(what, timeout, probe, || self.worker_logs()).await
    }
}

/// [`poll_until`], adding `more()` to the failure message.
async fn poll_then_explain<O: Observation>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> O,
    more: impl FnOnce() -> String,
) -> O::Ready {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await.ready() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!(
                    "waited {timeout:?} for {what}; last seen: {seen}\n{}",
                    more()
                )
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_ready_value_comes_back() {
        let mut looks = 0;
        let v = poll_until("the third look", Duration::from_secs(10), async || {
            looks += 1;
            (looks == 3).then_some(looks * 10)
        })
        .await;
        assert_eq!((v, looks), (30, 3));
    }

    #[tokio::test]
    #[should_panic(expected = "for the answer; last seen: \"41 so far\"")]
    async fn a_timeout_names_what_and_the_last_observation() {
        let mut n = 40;
        let _: () = poll_until("the answer", Duration::from_millis(250), async || {
            n += 1;
            Err(format!("{} so far", n.min(41)))
        })
        .await;
    }
}
