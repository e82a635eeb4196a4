//! The guard of a running job: it renews the run lease, the slot and the
//! workspace lease, fences the run when renewals fail, and watches for cancel,
//! shutdown and a working tree over its limit; each is a [`StopReason`] the
//! container stage obeys.

use std::{path::PathBuf, sync::Arc, time::Duration};

use agentq_shared::agent::AgentSpec;
use tokio::sync::watch;

pub use crate::stop::StopReason;
use crate::{context::WorkerCtx, hold::Hold};

/// How often the guard measures the working tree while a job runs.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Renews the run lease and the slot, and watches for cancel and shutdown, while
/// the job runs. A run that cannot renew its lease for [`Config::fence_after`]
/// stops its agent (self-fencing), so it is down before another worker may take
/// the job over; the agent's watchdog does the same if this worker is gone.
///
/// [`Config::fence_after`]: agentq_shared::config::Config::fence_after
pub(crate) fn spawn_guard(
    ctx: Arc<WorkerCtx>,
    hold: Hold,
    agent: AgentSpec,
    workspace: Option<String>,
    repo: Option<PathBuf>,
    beat: Option<Arc<crate::deadman::Beat>>,
) -> (watch::Receiver<StopReason>, GuardTask) {
    let (tx, rx) = watch::channel(StopReason::None);
    let handle = GuardTask::spawn(async move {
        let ttl = ctx.cfg.lease_ttl();
        let every = ctx.cfg.lease_renew_every();
        let fence_after = ctx.cfg.fence_after();
        let mut renew = tokio::time::interval(every);
        let mut watch_renewals = tokio::time::interval(Duration::from_millis(250));
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        let mut size = tokio::time::interval(SIZE_CHECK_EVERY);
        let limit = ctx.cfg.workspace_limit_bytes();
        let mut shutdown = ctx.shutdown.clone();
        let mut last_renewed = std::time::Instant::now();
        let id = hold.id.clone();
        loop {
            tokio::select! {
                _ = size.tick(), if limit.is_some() && repo.is_some() => {
                    let (Some(limit), Some(repo)) = (limit, repo.clone()) else { continue };
                    let used = tokio::task::spawn_blocking(move || agentq_shared::fsutil::tree_size(&repo))
                        .await
                        .unwrap_or(0);
                    if used > limit {
                        tracing::warn!(job = %id, used, limit, "working tree over the limit; stopping the agent");
                        let _ = tx.send(StopReason::WorkspaceTooBig(used));
                    }
                }
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
                _ = poll.tick() => {
                    if matches!(ctx.store.cancel_requested(&id).await, Ok(true)) {
                        let _ = tx.send(StopReason::Cancel);
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_ok() && *shutdown.borrow() == StopReason::Shutdown {
                        let _ = tx.send(StopReason::Shutdown);
                    }
                }
            }
        }
    });
    (rx, handle)
}

/// The guard's task: stopped when this is dropped, so a run that ends any way
/// at all (an outcome, an error, a panic unwinding through it) renews nothing
/// more.
pub(crate) type GuardTask = crate::task::Owned<()>;
