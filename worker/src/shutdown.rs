//! Shutdown in two steps. The first SIGTERM or SIGINT drains: the worker takes
//! no new job and lets running ones finish. After the grace period, or at a
//! second signal, running agents are stopped ([`StopReason::Shutdown`]) and
//! their jobs handed back, spending no attempt.
//!
//! Then `main` winds down, in this order: the intake has drained; the jobs
//! end ([`wait_for_jobs`]); the background services stop
//! ([`crate::services`]); the worker leaves the registry. No task outlives
//! `main`.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::{services::Services, stop::StopReason};

/// What the rest of the worker watches.
pub struct Shutdown {
    /// True once the first signal came: take no new jobs.
    pub drain: watch::Receiver<bool>,
    /// [`StopReason::Shutdown`] once the grace period is over.
    pub stop: watch::Receiver<StopReason>,
}

/// Listens for the signals from now on, with `grace` between the two steps;
/// the listener is one of `services`.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn listen(grace: Duration, services: &Services) -> std::io::Result<Shutdown> {
    let (drain_tx, drain) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(StopReason::None);
    let mut signals = ShutdownSignals::listen()?;
    services.spawn("signals", async move {
        signals.next().await;
        tracing::info!(
            ?grace,
            "shutdown requested: taking no new jobs, letting running ones finish"
        );
        let _ = drain_tx.send(true);
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = signals.next() => {}
        }
        tracing::warn!(
            "shutdown grace period over: stopping running agents and handing their jobs back"
        );
        let _ = stop_tx.send(StopReason::Shutdown);
    });
    Ok(Shutdown { drain, stop })
}

/// How long stopped jobs may take to hand their jobs back, on top of the
/// agents' own `stop_grace_secs`.
const HAND_BACK: Duration = Duration::from_secs(60);

/// Waits for every job task of `jobs` to end. Jobs end by themselves: they
/// finish, or their agents are stopped once `stop` says
/// [`StopReason::Shutdown`]. Past that, they have `stop_grace` (the agents'
/// SIGTERM to SIGKILL) and [`HAND_BACK`] more; false if some are still
/// running then (the runtime drops them when `main` returns).
pub async fn wait_for_jobs(
    jobs: &TaskTracker,
    mut stop: watch::Receiver<StopReason>,
    stop_grace: Duration,
) -> bool {
    jobs.close();
    let too_long = async {
        let _ = stop.wait_for(|s| *s == StopReason::Shutdown).await;
        tokio::time::sleep(stop_grace + HAND_BACK).await;
    };
    tokio::select! {
        _ = jobs.wait() => true,
        _ = too_long => false,
    }
}

/// SIGTERM and SIGINT, listened to from the worker's start, so that a second
/// signal sent right after the first is never missed.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
