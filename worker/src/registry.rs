//! This worker's entry in the live-worker registry (`agentq workers`, the web
//! console, the admission window): refreshed every heartbeat, which also
//! brings back the fleet's window (see [`crate::waker`]).

use std::sync::{atomic::Ordering, Arc};

/// Every this many heartbeats, the whole registry is tidied (entries of
/// pools this worker no longer serves, expired ones).
const TIDY_EVERY: u64 = 30;

use crate::context::WorkerCtx;

/// Keeps this worker's entry in the live-worker registry (`agentq workers`)
/// fresh, until the services stop: `main` removes the entry after that, so no
/// late heartbeat puts it back.
pub fn spawn_registry(ctx: Arc<WorkerCtx>, concurrency: u32) {
    let started_at = agentq_shared::store::now_rfc3339();
    ctx.services
        .clone()
        .spawn_loop("registry", |stop| async move {
            let every = ctx.cfg.heartbeat_every();
            let mut tick = tokio::time::interval(every);
            let mut beats = 0u64;
            let mut served: Option<Vec<String>> = None;
            while crate::services::tick(&mut tick, &stop).await {
                let pools = ctx.served.pools();
                // The whole registry is tidied on the first beat, when the
                // pools this worker serves change, and every TIDY_EVERY beats.
                let tidy = beats.is_multiple_of(TIDY_EVERY) || served.as_ref() != Some(&pools);
                beats += 1;
                let mut running: Vec<String> =
                    ctx.running.lock().unwrap().iter().cloned().collect();
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
                    pools: pools.clone(),
                };
                match ctx
                    .store
                    .worker_heartbeat(&info, &ctx.cfg.agent_table().names(), tidy)
                    .await
                {
                    Ok(window) => {
                        served = Some(pools);
                        if let Some(w) = window {
                            ctx.window
                                .store(w.max(concurrency).max(1), Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot update the worker registry"),
                }
            }
        });
}
