//! Shutdown in two steps. The first SIGTERM or SIGINT drains: the worker takes
//! no new job and lets running ones finish. After the grace period, or at a
//! second signal, running agents are stopped ([`StopReason::Shutdown`]) and
//! their jobs handed back, spending no attempt.

use std::time::Duration;

use tokio::sync::watch;

use crate::stop::StopReason;

/// What the rest of the worker watches.
pub struct Shutdown {
    /// True once the first signal came: take no new jobs.
    pub drain: watch::Receiver<bool>,
    /// [`StopReason::Shutdown`] once the grace period is over.
    pub stop: watch::Receiver<StopReason>,
}

/// Listens for the signals from now on, with `grace` between the two steps.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn listen(grace: Duration) -> std::io::Result<Shutdown> {
    let (drain_tx, drain) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(StopReason::None);
    let mut signals = ShutdownSignals::listen()?;
    tokio::spawn(async move {
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
