//! The janitor: removes stale agent containers on this engine, of any
//! namespace, with their heartbeat directories (this namespace's at start;
//! every namespace's soon after and every 30 s), and apalis's copies of
//! finished deliveries.
//!
//! Other namespaces are never on the start path: asking their Redis servers
//! (dead ones cost a timeout each) runs in its own task, apart from the
//! vacuum, so a machine full of other runs' leftovers neither delays a
//! worker's first job nor its housekeeping.

use std::{sync::Arc, time::Duration};

use crate::{context::WorkerCtx, docker};

/// How often stale agent containers are looked for.
const REAP_EVERY: Duration = Duration::from_secs(30);

/// Removes agent containers on this engine whose run is over (a task of its
/// own), and apalis's copies of deliveries finished more than
/// `vacuum_after_secs` ago.
pub fn spawn_janitor(ctx: Arc<WorkerCtx>) {
    let reaper = ctx.clone();
    ctx.services
        .spawn_loop("janitor reaper", |stop| async move {
            // The first round at once: start reaped this namespace only.
            let mut tick = tokio::time::interval(REAP_EVERY);
            while crate::services::tick(&mut tick, &stop).await {
                // A round over other namespaces may wait on dead Redis servers
                // (a timeout each): cut short at shutdown, harmlessly (each
                // removal stands alone; the next start reaps again).
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = reap(&reaper) => {}
                }
            }
        });
    ctx.services
        .clone()
        .spawn_loop("janitor vacuum", |stop| async move {
            let age = Duration::from_secs(ctx.cfg.vacuum_after_secs);
            let mut tick = tokio::time::interval(ctx.cfg.vacuum_every());
            while crate::services::tick(&mut tick, &stop).await {
                match ctx.store.vacuum(age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(n, "vacuumed finished deliveries"),
                    Err(e) => tracing::warn!(error = %e, "cannot vacuum finished deliveries"),
                }
            }
        });
}

/// Removes this namespace's agent containers whose worker no longer holds
/// their job; returns how many. Asks only this worker's own Redis: fit for
/// the start path.
pub async fn reap_own(ctx: &Arc<WorkerCtx>) -> usize {
    let store = ctx.store.clone();
    let ns = ctx.store.keys().namespace();
    docker::reap_stale(&ctx.docker, ns, move |job| {
        let store = store.clone();
        async move { store.run_lease_holder(&job).await }
    })
    .await
}

/// [`reap_own`], then every other namespace's containers on this engine, by
/// what their own Redis says (or their age: see [`crate::orphans`]); returns
/// how many were removed.
pub async fn reap(ctx: &Arc<WorkerCtx>) -> usize {
    let own = reap_own(ctx).await;
    let ns = ctx.store.keys().namespace();
    let others = crate::orphans::reap_dead(&ctx.docker, Some((ns, &ctx.store)), true).await;
    own + others.len()
}
