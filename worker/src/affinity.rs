//! Workspace affinity: claims the jobs other hosts left to this host because it
//! has their workspace (`affinity_secs`), while this worker has room.

use std::{sync::Arc, time::Duration};

use crate::context::WorkerCtx;

/// Claims, while this worker has room, the jobs other hosts left to this host
/// because it has their workspace (see `affinity_secs`), and runs them.
pub fn spawn_affinity_claimer(
    ctx: Arc<WorkerCtx>,
    concurrency: u32,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    ctx.services.clone().spawn("affinity claimer", async move {
        if ctx.cfg.affinity_secs == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if *draining.borrow() || ctx.breaker.degraded().is_some() {
                continue;
            }
            let room = (concurrency as usize).saturating_sub(ctx.running.lock().unwrap().len());
            if room == 0 {
                continue;
            }
            match ctx.store.claim_left_jobs(&ctx.host, room).await {
                Ok(deliveries) => {
                    for d in deliveries {
                        tracing::info!(job = %d.job_id, "claimed a job left to this host (it has the workspace)");
                        ctx.jobs.spawn(crate::job::process(ctx.clone(), d));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot claim jobs left to this host"),
            }
        }
    });
}
