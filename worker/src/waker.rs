//! Wakes parked jobs (see [`agentq_shared::store::park`]) when what they wait for
//! changes, and tells this worker's apalis loop when deliveries were pushed.
//!
//! - A pub/sub connection listens on `{ns}:wake` (a pool whose slot freed, that
//!   got new jobs, whose pause was lifted) and `{ns}:deliver` (deliveries were
//!   pushed). Wake-ups that arrive together are coalesced: each pool is woken
//!   once. After every (re)connection every parked pool is woken, for the
//!   messages missed meanwhile.
//! - A few times a second the due timers (pauses that ended, pacing intervals
//!   that passed) wake their pools: one command when none is due.
//! - The sweep leader wakes every parked pool each heartbeat (see
//!   [`crate::sweeper::spawn_sweeper`]), for the slots of dead workers, whose
//!   leases expire without anyone releasing them.
//!
//! Nothing here reads the jobs that wait: the cost is per event, never per waiter.

use std::{collections::BTreeSet, sync::atomic::Ordering, sync::Arc, time::Duration};

use agentq_shared::store::park::{deliver_channel, wake_channel};
use futures::{FutureExt, StreamExt};

use crate::context::WorkerCtx;

/// How often the due timers are looked at.
const TIMER_EVERY: Duration = Duration::from_millis(250);
/// How often the room of pools without a limit is measured.
const WINDOW_EVERY: Duration = Duration::from_secs(5);

/// Starts the listener, the timer loop and the window measurement.
pub fn spawn(ctx: Arc<WorkerCtx>, concurrency: u32) {
    ctx.window.store(concurrency.max(1), Ordering::Relaxed);
    ctx.services.spawn("waker listener", listen(ctx.clone()));
    ctx.services.spawn("waker timers", timers(ctx.clone()));
    ctx.services
        .clone()
        .spawn("window measure", measure_window(ctx, concurrency));
}

/// Wakes one pool; errors are logged (the sweep wakes it again later).
pub async fn wake(ctx: &WorkerCtx, pool: &str) {
    let window = ctx.window.load(Ordering::Relaxed);
    match ctx
        .store
        .wake_pool(&ctx.cfg.admission, pool, ctx.cfg.lease_ttl(), window)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(pool, n, "parked jobs granted a slot"),
        Err(e) => tracing::debug!(pool, error = %e, "cannot wake pool; the sweep will"),
    }
}

/// Wakes every pool that has parked jobs.
pub async fn wake_all(ctx: &WorkerCtx) {
    match ctx.store.parked_pools().await {
        Ok(pools) => {
            for pool in pools {
                wake(ctx, &pool).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot list parked pools"),
    }
}

async fn listen(ctx: Arc<WorkerCtx>) {
    let ns = ctx.store.keys().namespace().to_string();
    let (wake_ch, deliver_ch) = (wake_channel(&ns), deliver_channel(&ns));
    loop {
        match ctx
            .store
            .subscribe(&[wake_ch.clone(), deliver_ch.clone()])
            .await
        {
            Ok(ps) => {
                wake_all(&ctx).await;
                ctx.poke.notify_one();
                let mut messages = ps.into_on_message();
                while let Some(first) = messages.next().await {
                    // Take whatever else has arrived too, and wake each pool once.
                    let mut pools = BTreeSet::new();
                    let mut deliver = false;
                    let mut next = Some(first);
                    while let Some(msg) = next {
                        if msg.get_channel_name() == deliver_ch {
                            deliver = true;
                        } else if let Ok(pool) = msg.get_payload::<String>() {
                            pools.insert(pool);
                        }
                        next = messages.next().now_or_never().flatten();
                    }
                    if deliver {
                        ctx.poke.notify_one();
                    }
                    for pool in pools {
                        wake(&ctx, &pool).await;
                    }
                }
                tracing::warn!("wake-up connection to Redis lost; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to wake-ups; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn timers(ctx: Arc<WorkerCtx>) {
    let mut tick = tokio::time::interval(TIMER_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ctx.store.due_timers().await {
            Ok(pools) => {
                for pool in pools {
                    wake(&ctx, &pool).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read timers"),
        }
    }
}

async fn measure_window(ctx: Arc<WorkerCtx>, own: u32) {
    let mut tick = tokio::time::interval(WINDOW_EVERY);
    loop {
        tick.tick().await;
        if let Ok(live) = ctx.store.live_workers().await {
            let total: u32 = live
                .iter()
                .filter(|w| w.degraded.is_empty())
                .map(|w| w.concurrency)
                .sum();
            ctx.window.store(total.max(own).max(1), Ordering::Relaxed);
        }
    }
}
