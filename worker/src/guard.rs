//! The guard of a running job: it renews the run lease, the slot and the
//! workspace lease, fences the run when renewals fail, and watches for cancel,
//! shutdown and a working tree over its limits; each is a [`StopReason`] the
//! container stage obeys.
//!
//! Each watch is a task of its own, so none waits on another: the renewals
//! (and the heartbeat the agent's watchdog reads) never wait behind a walk of
//! the agent's tree, however many files the agent made, nor behind the cancel
//! check. Dropping the guard's task ends them all.

use std::{path::PathBuf, sync::Arc, time::Duration};

use agentq_shared::{
    agent::AgentSpec,
    fsutil::{trees_over, TreeBounds},
};
use tokio::sync::watch;

pub use crate::stop::StopReason;
use crate::{context::WorkerCtx, hold::Hold};

/// How often the guard measures the working tree while a job runs.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Starts the guard's watch of the working tree: until then the tree is
/// prep's (maybe still the last run's), not this run's agent's, and is not
/// measured. The agent stage arms it as the agent is about to start.
#[derive(Debug, Clone)]
pub(crate) struct TreeArm(Arc<watch::Sender<bool>>);

impl TreeArm {
    /// The agent's run begins: measure its tree from now on.
    pub(crate) fn arm(&self) {
        self.0.send_replace(true);
    }

    /// The agent's run is over: its tree is measured once more by the stage
    /// itself, and no later walk (during QA, say) may stop the run.
    pub(crate) fn disarm(&self) {
        self.0.send_replace(false);
    }
}

/// The guard's task: stopped when this is dropped, so a run that ends any way
/// at all (an outcome, an error, a panic unwinding through it) renews nothing
/// more; its helper tasks (tree, asks) end with it.
pub(crate) type GuardTask = crate::task::Owned<()>;

/// Renews the run lease and the slot, and watches for cancel, shutdown and
/// the working tree's bounds, while the job runs. A run that cannot renew its
/// lease for [`Config::fence_after`] stops its agent (self-fencing), so it is
/// down before another worker may take the job over; the agent's watchdog
/// does the same if this worker is gone.
///
/// [`Config::fence_after`]: agentq_shared::config::Config::fence_after
pub(crate) fn spawn_guard(
    ctx: Arc<WorkerCtx>,
    hold: Hold,
    agent: AgentSpec,
    workspace: Option<String>,
    trees: Vec<PathBuf>,
    beat: Option<Arc<crate::deadman::Beat>>,
    admitted: Option<agentq_shared::stamp::Stamp>,
) -> (watch::Receiver<StopReason>, GuardTask, TreeArm) {
    let (tx, rx) = watch::channel(StopReason::None);
    let tx = Arc::new(tx);
    let (arm, armed) = watch::channel(false);
    let bounds = ctx.cfg.tree_bounds();
    let tree = (!trees.is_empty() && bounds.any()).then(|| {
        crate::task::Owned::spawn(watch_tree(
            trees,
            bounds,
            armed,
            tx.clone(),
            hold.id.clone(),
        ))
    });
    let asks = crate::task::Owned::spawn(watch_asks(
        ctx.clone(),
        hold.id.clone(),
        agent.pool().to_string(),
        admitted.map(agentq_shared::stamp::Stamp::ms),
        tx.clone(),
    ));
    let handle = GuardTask::spawn(async move {
        let _helpers = (tree, asks);
        renew(ctx, hold, agent, workspace, beat, tx).await;
    });
    (rx, handle, TreeArm(Arc::new(arm)))
}

/// The renewals: run lease, heartbeat, slot, workspace lease; self-fencing
/// when the run lease has not been renewed for too long. Waits on Redis only
/// (each renewal bounded by its interval), never on the file system.
async fn renew(
    ctx: Arc<WorkerCtx>,
    hold: Hold,
    agent: AgentSpec,
    workspace: Option<String>,
    beat: Option<Arc<crate::deadman::Beat>>,
    tx: Arc<watch::Sender<StopReason>>,
) {
    let ttl = ctx.cfg.lease_ttl();
    let every = ctx.cfg.lease_renew_every();
    let fence_after = ctx.cfg.fence_after();
    let mut renew = tokio::time::interval(every);
    let mut watch_renewals = tokio::time::interval(Duration::from_millis(250));
    let mut last_renewed = std::time::Instant::now();
    let id = hold.id.clone();
    loop {
        tokio::select! {
            _ = renew.tick() => {
                let sent = std::time::SystemTime::now();
                let began = std::time::Instant::now();
                match tokio::time::timeout(every, hold.renew(ttl)).await {
                    Ok(Ok(true)) => {
                        last_renewed = began;
                        if let Some(b) = &beat {
                            if let Err(e) = b.touch(sent) {
                                tracing::warn!(job = %id, error = %e, "cannot refresh the agent's heartbeat file");
                            }
                        }
                        if let Err(e) = ctx.store.renew_slot(&agent, &id, ttl).await {
                            tracing::warn!(job = %id, error = %e, "cannot renew slot lease");
                        }
                        if let Some(ws) = &workspace {
                            match ctx.store.renew_workspace(ws, &id, ttl).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    tracing::warn!(job = %id, workspace = %ws, "workspace lease lost; stopping the agent");
                                    let _ = tx.send(StopReason::Fenced);
                                }
                                Err(e) => tracing::warn!(job = %id, error = %e, "cannot renew workspace lease"),
                            }
                        }
                    }
                    Ok(Ok(false)) => {
                        tracing::warn!(job = %id, "run lease lost to another run; stopping the agent");
                        let _ = tx.send(StopReason::Fenced);
                    }
                    Ok(Err(e)) => tracing::warn!(job = %id, error = %e, "cannot renew run lease"),
                    Err(_) => tracing::warn!(job = %id, "run lease renewal timed out"),
                }
            }
            _ = watch_renewals.tick() => {
                if last_renewed.elapsed() > fence_after && *tx.borrow() != StopReason::Fenced {
                    tracing::warn!(job = %id, unrenewed = ?last_renewed.elapsed(), "run lease not renewable; stopping the agent before another worker may take over (self-fencing)");
                    let _ = tx.send(StopReason::Fenced);
                }
            }
        }
    }
}

/// Cancel requests and an operator's stop of the pool (`agentq stop --now`),
/// polled together (one round trip a second), and the worker's shutdown. A
/// stop counts for a run admitted (granted its slot, Redis's clock) before it:
/// a run admitted after an unpause is not stopped by an older stop.
async fn watch_asks(
    ctx: Arc<WorkerCtx>,
    id: String,
    pool: String,
    admitted_ms: Option<i64>,
    tx: Arc<watch::Sender<StopReason>>,
) {
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut shutdown = ctx.shutdown.clone();
    // Once the shutdown signal's sender is gone (its service stopped), it
    // can change no more: only the cancel flag is watched from then on (a
    // closed channel answers at once, and would spin this loop).
    let mut open = true;
    loop {
        tokio::select! {
            _ = poll.tick() => {
                match ctx.store.asks(&id, &pool).await {
                    Ok(asks) if asks.cancel => {
                        let _ = tx.send(StopReason::Cancel);
                    }
                    Ok(asks) if stopped_by(asks.stopped_at, admitted_ms) => {
                        tx.send_if_modified(|reason| {
                            let first = *reason == StopReason::None;
                            if first {
                                tracing::info!(job = %id, pool = %pool, "an operator stopped the pool (stop --now); stopping the agent");
                                *reason = StopReason::StopNow;
                            }
                            first
                        });
                    }
                    _ => {}
                }
            }
            changed = shutdown.changed(), if open => {
                match changed {
                    Ok(()) if *shutdown.borrow() == StopReason::Shutdown => {
                        let _ = tx.send(StopReason::Shutdown);
                    }
                    Ok(()) => {}
                    Err(_) => {
                        open = false;
                        if *shutdown.borrow() == StopReason::Shutdown {
                            let _ = tx.send(StopReason::Shutdown);
                        }
                    }
                }
            }
        }
    }
}

/// Whether an operator's stop at `stopped_at` (Redis ms) is for a run
/// admitted at `admitted_ms`: one admitted before it, or at the same
/// millisecond. A run with no admission time (a dry run) runs no agent.
fn stopped_by(stopped_at: Option<i64>, admitted_ms: Option<i64>) -> bool {
    matches!((stopped_at, admitted_ms), (Some(s), Some(a)) if a <= s)
}

/// Once armed ([`TreeArm`]) and until disarmed, measures the agent's working
/// tree and its output directory (`trees`, counted together) every
/// [`SIZE_CHECK_EVERY`], each walk bounded by `bounds` (it stops at a limit,
/// and past its time budget the tree counts as over); trees over their bounds
/// stop the agent.
async fn watch_tree(
    trees: Vec<PathBuf>,
    bounds: TreeBounds,
    mut armed: watch::Receiver<bool>,
    tx: Arc<watch::Sender<StopReason>>,
    id: String,
) {
    if armed.wait_for(|a| *a).await.is_err() {
        return;
    }
    let mut every = tokio::time::interval(SIZE_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if !*armed.borrow() {
            return;
        }
        let t = trees.clone();
        let over = tokio::task::spawn_blocking(move || {
            let dirs: Vec<&std::path::Path> = t.iter().map(PathBuf::as_path).collect();
            trees_over(&dirs, &bounds)
        })
        .await
        .ok()
        .flatten();
        // A walk that ends after the agent did stops nothing: the stage has
        // measured the tree itself by then.
        if !*armed.borrow() {
            return;
        }
        if let Some(over) = over {
            tracing::warn!(job = %id, %over, "working tree over its limits; stopping the agent");
            tx.send_if_modified(|reason| {
                let first = *reason == StopReason::None;
                if first {
                    *reason = StopReason::WorkspaceOver(over);
                }
                first
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stopped_by;

    #[test]
    fn a_stop_counts_for_runs_admitted_before_it_only() {
        assert!(stopped_by(Some(100), Some(99)));
        assert!(stopped_by(Some(100), Some(100)));
        assert!(
            !stopped_by(Some(100), Some(101)),
            "admitted after an unpause"
        );
        assert!(!stopped_by(None, Some(1)));
        assert!(!stopped_by(Some(100), None), "a dry run");
    }
}
