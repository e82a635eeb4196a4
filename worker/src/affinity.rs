//! Workspace affinity: claims the jobs other hosts left to this host because it
//! has their workspace (`affinity_secs`), while this worker has room.

use std::{sync::Arc, time::Duration};

use crate::context::WorkerCtx;

/// The longest this claimer goes without looking, though nothing told it to:
/// a safety net for a lost publish (a job left to this host and not claimed
/// runs anywhere after `affinity_secs` anyway).
const SAFETY: Duration = Duration::from_secs(60);

/// While jobs may be left and this worker is full: how often it looks for a
/// free place (a place freed also wakes it).
const FULL_RECHECK: Duration = Duration::from_secs(1);

/// Claims, while this worker has room, the jobs other hosts left to this host
/// because it has their workspace (see `affinity_secs`), and runs them. It
/// takes its places in the room first and claims no more jobs than it got, so
/// these jobs count against `--concurrency` with the intake's.
///
/// It looks when told: a host that leaves a job here publishes on this host's
/// channel ([`crate::waker`] wakes it); also after a reconnection, and every
/// [`SAFETY`]. Idle and told nothing, it costs Redis nothing.
///
/// A round is never cut in the middle (a claim taken from Redis is always
/// run), and it counts as one of the worker's jobs while it lasts: the
/// wind-down, which waits for the jobs, waits for it too, and a round that
/// begins after the drain claims nothing.
pub fn spawn_affinity_claimer(ctx: Arc<WorkerCtx>, draining: tokio::sync::watch::Receiver<bool>) {
    ctx.services
        .clone()
        .spawn_loop("affinity claimer", |stop| async move {
            if ctx.cfg.affinity_secs == 0 {
                return;
            }
            // Jobs may be left here: look (at start, for those left meanwhile).
            let mut pending = true;
            loop {
                let wait = if pending {
                    match round(&ctx, &draining).await {
                        Round::AllClaimed => {
                            pending = false;
                            SAFETY
                        }
                        Round::MayBeMore => Duration::ZERO,
                        Round::Later => FULL_RECHECK,
                    }
                } else {
                    SAFETY
                };
                if wait.is_zero() {
                    continue;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ctx.wakes.affinity.notified() => pending = true,
                    _ = tokio::time::sleep(wait) => pending = true,
                }
            }
        });
}

/// What a round found.
enum Round {
    /// Fewer left jobs than free places: none is left now.
    AllClaimed,
    /// As many as places: look again at once.
    MayBeMore,
    /// Not now (no place free, draining, degraded, Redis unreachable).
    Later,
}

async fn round(ctx: &Arc<WorkerCtx>, draining: &tokio::sync::watch::Receiver<bool>) -> Round {
    // Taken before the drain is read: once the drain is seen set,
    // no round is under way that the wind-down does not wait for.
    let _round = ctx.jobs.token();
    if *draining.borrow() || ctx.breaker.degraded().is_some() {
        return Round::Later;
    }
    // Places not used by a claimed job go back when dropped.
    let places = ctx.room.take_free(usize::MAX);
    if places.is_empty() {
        return Round::Later;
    }
    let free = places.len();
    match ctx.store.claim_left_jobs(&ctx.host, free).await {
        Ok(deliveries) => {
            let claimed = deliveries.len();
            // The claim takes at most one job per place.
            for (d, place) in deliveries.into_iter().zip(places) {
                tracing::info!(job = %d.job_id, "claimed a job left to this host (it has the workspace)");
                crate::room::run(ctx.clone(), d, place);
            }
            if claimed < free {
                Round::AllClaimed
            } else {
                Round::MayBeMore
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot claim jobs left to this host");
            Round::Later
        }
    }
}
