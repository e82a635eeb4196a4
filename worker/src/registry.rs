//! This worker's entry in the live-worker registry (`agentq workers`, the web
//! console, the admission window): refreshed every heartbeat.

use std::sync::Arc;

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
            while crate::services::tick(&mut tick, &stop).await {
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
                    pools: ctx.served.pools(),
                };
                if let Err(e) = ctx
                    .store
                    .worker_heartbeat(&info, &ctx.cfg.agent_table().names())
                    .await
                {
                    tracing::warn!(error = %e, "cannot update the worker registry");
                }
            }
        });
}
