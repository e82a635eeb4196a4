//! The safety sweep, run by one worker of the pool at a time: jobs whose run
//! lease expired mid-run (orphans), slots and workspace lines of dead runs, and
//! waiting jobs whose delivery was lost.

use std::{sync::Arc, time::Duration};

use crate::context::WorkerCtx;

/// Every heartbeat, one worker of the pool (a lock) puts back jobs whose run
/// lease expired mid-run and wakes every parked pool (for slots that expired);
/// every `sweep_secs`, also waiting jobs whose delivery was lost; and writes
/// the fleet's window. Redis errors skip a round: nothing is concluded from them.
pub fn spawn_sweeper(ctx: Arc<WorkerCtx>) {
    ctx.services
        .clone()
        .spawn_loop("sweeper", |stop| async move {
            let every = ctx.cfg.heartbeat_every();
            let lost_every = ctx.cfg.sweep_every();
            // A delivery younger than this is never called lost (it may be on its
            // way from one list to another).
            let grace = ctx.cfg.lease_ttl() * 2 + Duration::from_secs(5);
            let mut tick = tokio::time::interval(every);
            let mut last_lost = std::time::Instant::now();
            while crate::services::tick(&mut tick, &stop).await {
                match ctx.store.try_sweep_lock(&ctx.worker_id, every).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "sweep skipped: Redis unreachable");
                        continue;
                    }
                }
                sweep_orphans_now(&ctx).await;
                // Slots of dead workers expire without a release: wake every parked
                // pool, and move on the lines of workspaces whose holder is gone.
                match ctx.store.free_dead_workspaces().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(n, "jobs waiting for a dead run's workspace moved on"),
                    Err(e) => tracing::debug!(error = %e, "workspace lines not looked at"),
                }
                crate::waker::wake_all(&ctx).await;
                measure_window(&ctx, every).await;
                if last_lost.elapsed() >= lost_every {
                    last_lost = std::time::Instant::now();
                    let _ = ctx.store.rearm_scheduled_timer().await; // delayed jobs' timer, if a release failed
                    match ctx.store.sweep_lost(grace).await {
                        Ok(lost) if !lost.is_empty() => {
                            tracing::error!(
                                n = lost.len(),
                                "jobs without a delivery were put back (agentq_jobs_rescued)"
                            )
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "lost-delivery sweep interrupted"),
                    }
                }
            }
        });
}

/// Puts back, first in line, the jobs whose run lease expired mid-run. Run once
/// at start too, before this worker takes deliveries: a dead worker's jobs then
/// go back as `orphaned` and first, rather than through apalis's own orphan
/// recovery (which queues them last). Each rescue is atomic, so two workers
/// sweeping at once is harmless.
pub async fn sweep_orphans_now(ctx: &WorkerCtx) {
    if let Err(e) = ctx.store.sweep_orphans().await {
        tracing::debug!(error = %e, "orphan sweep interrupted");
    }
}

/// Writes the fleet's window (the live workers' total concurrency, the room
/// of a pool without a limit), which every worker reads with its heartbeat:
/// one worker reads the registry, not all of them.
async fn measure_window(ctx: &WorkerCtx, every: Duration) {
    if let Ok(live) = ctx.store.live_workers().await {
        let total: u32 = live
            .iter()
            .filter(|w| w.degraded.is_empty())
            .map(|w| w.concurrency)
            .sum();
        // Kept for three beats: a late sweep does not drop it.
        if let Err(e) = ctx.store.set_window(total.max(1), every * 3).await {
            tracing::debug!(error = %e, "window not written");
        }
    }
}
