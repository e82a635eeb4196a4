//! Wakes parked jobs (see [`agentq_shared::store::park`]) when what they wait for
//! changes, and tells this worker's loops that wait when there is work.
//!
//! - A pub/sub connection listens on `{ns}:wake` (a pool whose slot freed, that
//!   got new jobs, whose pause was lifted), `{ns}:deliver` (deliveries were
//!   pushed: the apalis intake fetches), `{ns}:timer` (a timer due before
//!   every other was added), this host's affinity channel (a job was left to
//!   it) and `{ns}:verify-wake`. Wake-ups that arrive together are coalesced:
//!   each pool is woken once. After every (re)connection every parked pool is
//!   woken and every waiting loop looks once, for the messages missed meanwhile.
//! - The timers (pauses that end, pacing intervals that pass, delayed
//!   deliveries: `@deliveries`) are one wait on the first due time, read from
//!   Redis, looked at again when a publish says an earlier one was added, and
//!   at the latest every [`TIMER_SAFETY`].
//! - The sweep leader wakes every parked pool each heartbeat (see
//!   [`crate::sweeper::spawn_sweeper`]), for the slots of dead workers, whose
//!   leases expire without anyone releasing them, and writes the live
//!   workers' total concurrency (the window), which every worker reads with
//!   its heartbeat (see [`crate::registry`]).
//!
//! Nothing here reads the jobs that wait, and nothing polls: the cost is per
//! event, never per waiter or per tick.

use std::{collections::BTreeSet, sync::atomic::Ordering, sync::Arc, time::Duration};

use agentq_shared::store::park::{deliver_channel, wake_channel, DELIVERIES_TIMER};
use futures::{FutureExt, StreamExt};
use tokio::sync::Notify;

use crate::context::WorkerCtx;

/// The longest wait between two looks at the timers: a safety net for a
/// publish on `{ns}:timer` that was lost (the listener also wakes the loop
/// after every reconnection).
pub const TIMER_SAFETY: Duration = Duration::from_secs(30);

/// What the listener tells the loops that wait (each `Notify` keeps one
/// wake-up for a loop that is not waiting yet).
#[derive(Debug, Default)]
pub struct Wakes {
    /// A timer due before every other was added: the timer loop looks again.
    pub timer: Notify,
    /// A job was left to this host: the affinity claimer looks.
    pub affinity: Notify,
    /// A verify request or a branch cleanup was queued.
    pub verify: Notify,
    /// This host turned out degraded while taking a job: the intake pauses
    /// now, not at its next check (a degraded host that keeps fetching hands
    /// every delivery straight back, as fast as Redis answers).
    pub degraded: Notify,
}

impl Wakes {
    /// Every loop looks once (after a reconnection: messages may be lost).
    fn all(&self) {
        self.timer.notify_one();
        self.affinity.notify_one();
        self.verify.notify_one();
    }
}

/// Starts the listener and the timer loop.
pub fn spawn(ctx: Arc<WorkerCtx>, concurrency: u32) {
    ctx.window.store(concurrency.max(1), Ordering::Relaxed);
    ctx.services.spawn("waker listener", listen(ctx.clone()));
    ctx.services.clone().spawn("waker timers", timers(ctx));
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
    let keys = ctx.store.keys().clone();
    let ns = keys.namespace().to_string();
    let (wake_ch, deliver_ch) = (wake_channel(&ns), deliver_channel(&ns));
    let (timer_ch, affinity_ch, verify_ch) = (
        keys.timer_wake(),
        keys.affinity_wake(&ctx.host),
        keys.verify_wake(),
    );
    let channels = [
        wake_ch,
        deliver_ch.clone(),
        timer_ch.clone(),
        affinity_ch.clone(),
        verify_ch.clone(),
    ];
    loop {
        match ctx.store.subscribe(&channels).await {
            Ok(ps) => {
                wake_all(&ctx).await;
                ctx.poke.notify_one();
                ctx.wakes.all();
                let mut messages = ps.into_on_message();
                while let Some(first) = messages.next().await {
                    // Take whatever else has arrived too, and wake each pool once.
                    let mut pools = BTreeSet::new();
                    let mut deliver = false;
                    let mut next = Some(first);
                    while let Some(msg) = next {
                        let channel = msg.get_channel_name();
                        if channel == deliver_ch {
                            deliver = true;
                        } else if channel == timer_ch {
                            ctx.wakes.timer.notify_one();
                        } else if channel == affinity_ch {
                            ctx.wakes.affinity.notify_one();
                        } else if channel == verify_ch {
                            ctx.wakes.verify.notify_one();
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

/// One wait on the first due timer: take the due ones (and learn when the
/// next is), then sleep until then, until a publish says an earlier one was
/// added, or [`TIMER_SAFETY`], whichever comes first.
async fn timers(ctx: Arc<WorkerCtx>) {
    loop {
        let wait = match ctx.store.due_timers().await {
            Ok(taken) => {
                for member in &taken.due {
                    on_due(&ctx, member).await;
                }
                match taken.next {
                    // `due` takes at most 100 at once: more may be due.
                    _ if taken.due.len() >= 100 => Duration::ZERO,
                    Some(next) => next.min(TIMER_SAFETY),
                    None => TIMER_SAFETY,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read timers");
                Duration::from_secs(1)
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.wakes.timer.notified() => {}
        }
    }
}

/// What a due timer means, in one place: a pool's pause or pacing gap ended
/// (wake the pool); [`DELIVERIES_TIMER`]: delayed deliveries came due (the
/// `due` script moved them to the active list and told every intake; this
/// worker's looks at once). Other `@`-names are timers of their own kind.
pub async fn on_due(ctx: &WorkerCtx, member: &str) {
    match member {
        DELIVERIES_TIMER => ctx.poke.notify_one(),
        other if other.starts_with('@') => {
            tracing::warn!(
                timer = other,
                "a timer of a kind this worker does not know; ignored"
            )
        }
        pool => wake(ctx, pool).await,
    }
}
