//! The notifier: sends the notification outbox (see
//! `agentq_shared::store::outbox`) from whichever worker holds the notify
//! lease. It never touches a job: the scripts that move jobs hand events
//! over, and this loop only reads and settles outbox items, so a slow or
//! hanging receiver delays other notifications (by at most
//! `notify_timeout_secs` a round), never a job.
//!
//! Each round (every [`ROUND`]): take or renew the lease; send up to
//! [`BATCH`] due items at once, each within `notify_timeout_secs`; a 2xx
//! answer settles the item as sent, anything else retries it after
//! `notify_backoff_ms * 2^tries` (at most [`MAX_BACKOFF`]) until
//! `notify_retry_hours` after it was handed over, then dead-letters it. The
//! lease holder also watches for pools whose queue drained
//! ([`drained`]).

mod drained;

use std::{collections::HashMap, sync::Arc, time::Duration};

use agentq_shared::{
    notify::NotifyConfig,
    store::outbox::{receiver_id, Notification, Settle},
    webhook::send::deliver,
};

use crate::context::WorkerCtx;

/// How often the notifier looks at the outbox.
pub const ROUND: Duration = Duration::from_millis(200);
/// Most items sent in one round (at once).
pub const BATCH: usize = 32;
/// Longest wait between two tries of one item.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Publishes this worker's `[[notify]]` routes (so events are handed to the
/// outbox from now on, whoever runs) and, when there are receivers, runs the
/// notifier loop.
pub fn spawn(ctx: Arc<WorkerCtx>) {
    ctx.services
        .clone()
        .spawn_loop("notifier", |stop| async move {
            let mut every = tokio::time::interval(ROUND);
            let mut published = false;
            let mut watch = drained::Watch::default();
            let receivers: HashMap<String, NotifyConfig> = ctx
                .cfg
                .notify
                .iter()
                .map(|n| (receiver_id(&n.url), n.clone()))
                .collect();
            while crate::services::tick(&mut every, &stop).await {
                if !published {
                    match ctx
                        .store
                        .publish_notify_routes(&ctx.cfg.notify, ctx.cfg.notify_outbox_max)
                        .await
                    {
                        Ok(()) => published = true,
                        Err(e) => {
                            tracing::debug!(error = %e, "notify routes not written yet");
                            continue;
                        }
                    }
                    if receivers.is_empty() {
                        return;
                    }
                }
                match ctx
                    .store
                    .notify_lease(&ctx.worker_id, lease_ttl(&ctx))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        watch = drained::Watch::default();
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "notify round skipped: Redis unreachable");
                        continue;
                    }
                }
                round(&ctx, &receivers).await;
                watch.look(&ctx).await;
            }
        });
}

/// The lease outlives a round: every send of a round ends within the
/// request timeout.
fn lease_ttl(ctx: &WorkerCtx) -> Duration {
    Duration::from_secs(ctx.cfg.notify_timeout_secs.max(1)) * 2 + Duration::from_secs(10)
}

/// Sends the due items, at once, and settles each.
async fn round(ctx: &WorkerCtx, receivers: &HashMap<String, NotifyConfig>) {
    let due = match ctx.store.due_notifications(BATCH).await {
        Ok(d) if d.is_empty() => return,
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "outbox not read");
            return;
        }
    };
    let sends = due
        .into_iter()
        .map(|(item, n)| async move { send_one(ctx, receivers, &item, &n).await });
    futures::future::join_all(sends).await;
}

async fn send_one(
    ctx: &WorkerCtx,
    receivers: &HashMap<String, NotifyConfig>,
    item: &str,
    n: &Notification,
) {
    let timeout = Duration::from_secs(ctx.cfg.notify_timeout_secs.max(1));
    let (outcome, note, status) = match receivers.get(&n.receiver) {
        None => (
            Settle::Dead,
            "no [[notify]] receiver has this id any more (configuration changed)".to_string(),
            None,
        ),
        Some(to) => match deliver(n, to, &ctx.cfg.web_url, timeout).await {
            Ok(a) if a.ok() => (Settle::Sent, a.body, Some(a.status)),
            Ok(a) => (
                failed(ctx, n).await,
                format!("HTTP {}: {}", a.status, a.body),
                Some(a.status),
            ),
            Err(e) => (failed(ctx, n).await, e.to_string(), None),
        },
    };
    if outcome != Settle::Sent {
        tracing::info!(item, event = %n.event, tries = n.tries + 1, error = %note, "notification not delivered");
    }
    match ctx
        .store
        .settle_notification(&ctx.worker_id, item, &outcome, &note, status)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::debug!(item, "notify lease lost: another worker settles it"),
        Err(e) => tracing::debug!(item, error = %e, "notification not settled (it is sent again)"),
    }
}

/// A failed try: retried after the backoff, or dead once the retry window
/// since the hand-over has passed.
async fn failed(ctx: &WorkerCtx, n: &Notification) -> Settle {
    let now = ctx
        .store
        .redis_now_ms()
        .await
        .unwrap_or_else(|_| agentq_shared::store::now_ms());
    next_try(
        now,
        n.created_ms,
        n.tries,
        Duration::from_millis(ctx.cfg.notify_backoff_ms.max(1)),
        ctx.cfg.notify_retry_hours,
    )
}

/// What to do after try number `tries + 1` failed at `now` (ms), for an item
/// handed over at `created_ms`.
fn next_try(now: i64, created_ms: i64, tries: u32, base: Duration, retry_hours: f64) -> Settle {
    let window_ms = (retry_hours * 3_600_000.0) as i64;
    if now - created_ms >= window_ms {
        return Settle::Dead;
    }
    let delay = base
        .saturating_mul(1u32.checked_shl(tries.min(20)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF);
    Settle::Retry(now + delay.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_then_dead_letter_after_the_window() {
        let base = Duration::from_millis(100);
        assert_eq!(next_try(1000, 1000, 0, base, 1.0), Settle::Retry(1100));
        assert_eq!(next_try(1000, 1000, 3, base, 1.0), Settle::Retry(1800));
        assert_eq!(
            next_try(1000, 1000, 40, base, 1.0),
            Settle::Retry(1000 + MAX_BACKOFF.as_millis() as i64)
        );
        // One hour after the hand-over: dead.
        assert_eq!(next_try(3_601_000, 1000, 5, base, 1.0), Settle::Dead);
        assert_eq!(next_try(1000, 1000, 0, base, 0.0), Settle::Dead);
    }
}
