//! The worker's background loops: its entry in the live-worker registry, the
//! safety sweep (orphans and lost deliveries), and the janitor (stale agent
//! containers, apalis's finished deliveries).

use std::{sync::Arc, time::Duration};

use crate::{context::WorkerCtx, docker};

/// Keeps this worker's entry in the live-worker registry (`agentq workers`) fresh.
pub fn spawn_registry(ctx: Arc<WorkerCtx>, concurrency: u32) {
    let started_at = agentq_shared::store::now_rfc3339();
    tokio::spawn(async move {
        let every = ctx.cfg.heartbeat_every();
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let mut running: Vec<String> = ctx.running.lock().unwrap().iter().cloned().collect();
            running.sort();
            let info = agentq_shared::store::ops::WorkerInfo {
                id: ctx.worker_id.clone(),
                host: ctx.host.clone(),
                pid: std::process::id(),
                concurrency,
                running,
                started_at: started_at.clone(),
                heartbeat_at: agentq_shared::store::now_rfc3339(),
                heartbeat_ms: agentq_shared::clock::now_ms(),
                stale_after_ms: ctx.cfg.worker_stale_after().as_millis() as i64,
                degraded: ctx
                    .breaker
                    .degraded()
                    .map(|(why, _)| why)
                    .unwrap_or_default(),
                workspace_bytes: ctx
                    .workspace_bytes
                    .load(std::sync::atomic::Ordering::Relaxed),
                pools: ctx.served.pools(),
            };
            if let Err(e) = ctx.store.worker_heartbeat(&info).await {
                tracing::warn!(error = %e, "cannot update the worker registry");
            }
        }
    });
}

/// Every heartbeat, one worker of the pool (a lock) puts back jobs whose run
/// lease expired mid-run and wakes every parked pool (for slots that expired);
/// every `sweep_secs`, also waiting jobs whose delivery was lost. Redis errors skip a round: nothing is concluded from them.
pub fn spawn_sweeper(ctx: Arc<WorkerCtx>) {
    tokio::spawn(async move {
        let every = ctx.cfg.heartbeat_every();
        let lost_every = ctx.cfg.sweep_every();
        // A delivery younger than this is never called lost (it may be on its
        // way from one list to another).
        let grace = ctx.cfg.lease_ttl() * 2 + Duration::from_secs(5);
        let mut tick = tokio::time::interval(every);
        let mut last_lost = std::time::Instant::now();
        loop {
            tick.tick().await;
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
            if last_lost.elapsed() >= lost_every {
                last_lost = std::time::Instant::now();
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

/// Claims, while this worker has room, the jobs other hosts left to this host
/// because it has their workspace (see `affinity_secs`), and runs them.
pub fn spawn_affinity_claimer(
    ctx: Arc<WorkerCtx>,
    concurrency: u32,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
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
                        tokio::spawn(crate::job::process(ctx.clone(), d));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot claim jobs left to this host"),
            }
        }
    });
}

/// Looks after this host's workspaces every `workspace_sweep_secs` (see
/// [`crate::housekeeping`]), and measures their disk use for `agentq workers`.
pub fn spawn_housekeeping(ctx: Arc<WorkerCtx>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ctx.cfg.workspace_sweep_every());
        loop {
            tick.tick().await;
            if let Some(bytes) = crate::housekeeping::sweep(&ctx).await {
                ctx.workspace_bytes
                    .store(bytes, std::sync::atomic::Ordering::Relaxed);
            }
            crate::memory::give_back();
        }
    });
}

/// Removes agent containers on this engine whose run is over, and apalis's
/// copies of deliveries finished more than `vacuum_after_secs` ago.
pub fn spawn_janitor(ctx: Arc<WorkerCtx>) {
    tokio::spawn(async move {
        let age = Duration::from_secs(ctx.cfg.vacuum_after_secs);
        let every = (age / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut tick = tokio::time::interval(every);
        let mut last_reap = std::time::Instant::now();
        loop {
            tick.tick().await;
            if last_reap.elapsed() >= Duration::from_secs(30) {
                reap(&ctx).await;
                last_reap = std::time::Instant::now();
            }
            match ctx.store.vacuum(age).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(n, "vacuumed finished deliveries"),
                Err(e) => tracing::warn!(error = %e, "cannot vacuum finished deliveries"),
            }
        }
    });
}

/// Removes this engine's agent containers whose worker no longer holds their
/// job; returns how many.
pub async fn reap(ctx: &Arc<WorkerCtx>) -> usize {
    let store = ctx.store.clone();
    docker::reap_stale(&ctx.docker, ctx.store.keys().namespace(), move |job| {
        let store = store.clone();
        async move { store.run_lease_holder(&job).await }
    })
    .await
}
