//! The janitor: removes stale agent containers on this engine, of any
//! namespace, with their heartbeat directories (at start and every 30 s), and
//! apalis's copies of finished deliveries.

use std::{sync::Arc, time::Duration};

use crate::{context::WorkerCtx, docker};

/// How often stale agent containers are looked for.
const REAP_EVERY: Duration = Duration::from_secs(30);

/// Removes agent containers on this engine whose run is over, and apalis's
/// copies of deliveries finished more than `vacuum_after_secs` ago.
pub fn spawn_janitor(ctx: Arc<WorkerCtx>) {
    tokio::spawn(async move {
        let age = Duration::from_secs(ctx.cfg.vacuum_after_secs);
        let mut tick = tokio::time::interval(ctx.cfg.vacuum_every().min(REAP_EVERY));
        let mut last_reap = std::time::Instant::now();
        loop {
            tick.tick().await;
            if last_reap.elapsed() >= REAP_EVERY {
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
/// job, this namespace's and, by what their own Redis says (or their age),
/// every other namespace's (see [`crate::orphans`]); returns how many.
pub async fn reap(ctx: &Arc<WorkerCtx>) -> usize {
    let store = ctx.store.clone();
    let ns = ctx.store.keys().namespace();
    let own = docker::reap_stale(&ctx.docker, ns, move |job| {
        let store = store.clone();
        async move { store.run_lease_holder(&job).await }
    })
    .await;
    let others = crate::orphans::reap_dead(&ctx.docker, Some((ns, &ctx.store)), true).await;
    own + others.len()
}
