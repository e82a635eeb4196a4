//! Workspace affinity: claims the jobs other hosts left to this host because it
//! has their workspace (`affinity_secs`), while this worker has room.

use std::{sync::Arc, time::Duration};

use crate::context::WorkerCtx;

/// Claims, while this worker has room, the jobs other hosts left to this host
/// because it has their workspace (see `affinity_secs`), and runs them. It
/// takes its places in the room first and claims no more jobs than it got, so
/// these jobs count against `--concurrency` with the intake's.
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
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while crate::services::tick(&mut tick, &stop).await {
                // Taken before the drain is read: once the drain is seen set,
                // no round is under way that the wind-down does not wait for.
                let _round = ctx.jobs.token();
                if *draining.borrow() || ctx.breaker.degraded().is_some() {
                    continue;
                }
                // Places not used by a claimed job go back when dropped.
                let places = ctx.room.take_free(usize::MAX);
                if places.is_empty() {
                    continue;
                }
                match ctx.store.claim_left_jobs(&ctx.host, places.len()).await {
                    Ok(deliveries) => {
                        // The claim takes at most one job per place.
                        for (d, place) in deliveries.into_iter().zip(places) {
                            tracing::info!(job = %d.job_id, "claimed a job left to this host (it has the workspace)");
                            crate::room::run(ctx.clone(), d, place);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot claim jobs left to this host"),
                }
            }
        });
}
