//! The intake: the apalis worker that takes this worker's deliveries from
//! Redis and hands each to [`crate::job::process`] while this worker has room
//! (a place in [`crate::room`], shared with the affinity claimer). apalis-redis
//! ends a worker's stream when Redis fails under it (apalis-redis #76), so it
//! runs generation after generation until shutdown; a degraded host (its
//! circuit breaker open) pauses it.

use std::{sync::Arc, time::Duration};

use agentq_shared::{
    status::WaitReason,
    store::{apalis_config, Delivery},
};
use apalis::prelude::*;
use tokio::sync::watch;

use crate::context::WorkerCtx;

async fn handle(delivery: Delivery, ctx: Data<Arc<WorkerCtx>>) -> Result<(), BoxDynError> {
    let id = delivery.job_id.clone();
    // The affinity claimer may have taken the last place since this intake
    // turned ready: then the delivery goes back for a worker with room.
    let Some(place) = ctx.room.take_within(crate::room::ROOM_WAIT).await else {
        tracing::info!(job = %id, "no place came free for the fetched delivery; handing it back");
        crate::job::hand_back((*ctx).clone(), delivery, WaitReason::NoRoom).await;
        return Ok(());
    };
    if let Err(e) = crate::room::run((*ctx).clone(), delivery, place).await {
        tracing::error!(job = %id, error = %e, "job task panicked");
    }
    Ok(())
}

/// Takes deliveries until `drain` turns true.
pub async fn run(ctx: Arc<WorkerCtx>, drain: watch::Receiver<bool>) {
    let keys = ctx.store.keys().clone();
    let poll = ctx.cfg.poll_every();
    // apalis-redis ends a worker's stream when Redis fails under it (apalis-redis
    // #76): run generation after generation until shutdown.
    for generation in 1u64.. {
        let apalis_cfg = apalis_config(&keys)
            .heartbeat_interval(ctx.cfg.apalis_heartbeat_every())
            .missed_heartbeats(ctx.cfg.apalis_missed_heartbeats())
            // One delivery per fetch: a busy worker does not sit on jobs an idle one could run.
            .batch_size(1);
        // apalis fetches only when its worker task is polled: after an empty fetch it
        // parks until woken (apalis-core 1.0, `Persisted::poll_next` in
        // backend/persistence/mod.rs), and *any* wake-up of that task fetches
        // again (a Redis script of five commands). `poll_with_stream` (its
        // `BackendExt`) polls this channel before every fetch, so a message
        // wakes it to fetch again. The loop below runs in the worker's task too
        // (`try_join!` in `Worker::run_with_ctx`), so it wakes only when there
        // may be work: deliveries were pushed (`poke`: `{ns}:deliver`, a due
        // timer, a reconnection) or the safety poll (`poll_ms`, long: it is a
        // safety net for a lost publish; apalis also fetches after each of its
        // own heartbeats). apalis cannot wait on Redis itself (no blocking
        // fetch in apalis-redis 1.0), hence the poke. The degraded check runs
        // on a task of its own, for the same reason: a tick here would fetch.
        let (wake, woken) = futures::channel::mpsc::channel::<()>(0);
        let backend = ctx
            .store
            .queue()
            .with_config(apalis_cfg)
            .poll_with_stream(woken);
        let worker = WorkerBuilder::new(format!("{}-g{generation}", ctx.worker_id))
            .backend(backend)
            .data(ctx.clone())
            // Fetches only while this worker has room: the affinity claimer's
            // jobs hold places in the same room (see `crate::room`).
            .layer(ctx.room.layer())
            .build(handle);
        let gen_drain = drain.clone();
        let wctx_ctx = ctx.clone();
        let result = worker
            .run_with_ctx(move |wctx| {
                let mut drain = gen_drain.clone();
                let wctx_ctx = wctx_ctx.clone();
                let mut wake = wake.clone();
                async move {
                    let _degraded =
                        AbortOnDrop(tokio::spawn(watch_degraded(wctx.clone(), wctx_ctx.clone())));
                    let mut tick = tokio::time::interval(poll);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = async {
                                tokio::select! {
                                    _ = tick.tick() => {}
                                    _ = wctx_ctx.poke.notified() => {}
                                }
                            } => {
                                if wctx.is_stopped() || wctx.is_shutting_down() {
                                    return Ok(());
                                }
                                if wctx_ctx.breaker.degraded().is_some() {
                                    continue;
                                }
                                // Wake apalis to look for due and newly pushed jobs
                                // (a full channel: a wake is pending already).
                                let _ = wake.try_send(());
                            }
                            _ = drain.wait_for(|d| *d) => {
                                let _ = wctx.stop();
                                return Ok(());
                            }
                        }
                    }
                }
            })
            .await;
        if *drain.borrow() {
            break;
        }
        match result {
            Ok(()) => tracing::warn!(generation, "worker stream ended; starting again"),
            Err(e) => {
                tracing::error!(generation, error = %e, "worker stream failed (Redis gone?); starting again in 1 s")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often the degraded check runs (local: the disk and the breaker, no
/// Redis).
const DEGRADED_EVERY: Duration = Duration::from_millis(500);

/// Pauses the apalis worker while this host is degraded (its breaker open,
/// or its disk under `min_free_gb`) and resumes it after. On a task of its
/// own: a wake-up of the intake's task makes apalis fetch.
async fn watch_degraded(wctx: WorkerContext, ctx: Arc<WorkerCtx>) {
    let mut tick = tokio::time::interval(DEGRADED_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.wakes.degraded.notified() => {}
        }
        crate::space::degrade_if_full(&ctx);
        if ctx.breaker.degraded().is_some() {
            if wctx.is_running() {
                let _ = wctx.pause();
            }
        } else if wctx.is_paused() {
            // A worker paused while degraded takes jobs again.
            let _ = wctx.resume();
        }
    }
}

/// Aborts the task when dropped (the intake's generation ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
